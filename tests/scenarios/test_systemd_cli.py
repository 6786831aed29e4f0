"""Workers under systemd: the same restart plan as under pm2, through scripted `systemctl` and
`journalctl` (tests/fixtures/fake_systemd.py: systemd cannot run here) that run the real Node
BullMQ worker and keep its output as the unit's journal."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.releases import current_commit
from tests.fixtures.fake_systemd import define_unit, install, stop_unit, unit_pid
from tests.fixtures.pm2 import CANARY_SECRET, REDIS_URL, WORKER_JS, tool_path
from tests.scenarios.conftest import Scenario
from tests.scenarios.test_worker_cli import BUILD, build_env, install_first_release, make_repo

UNIT = "notify-worker.service"


@dataclass
class Unit:
    scenario: Scenario
    state: Path

    def pid(self) -> int | None:
        return unit_pid(self.state, UNIT)


def start_unit(
    scenario: Scenario,
    *,
    script: Path,
    cwd: Path,
    environment: dict[str, str],
    environment_files: list[str] | None = None,
    worker_env: dict[str, str] | None = None,
    **worker: object,
) -> Path:
    """Define and start the unit (the real Node worker) under the scripted systemd, and
    configure worker `notification` on it; the fake's state directory."""
    state = scenario.tmp / "systemd"
    systemctl, journalctl = install(scenario.tmp / "fake-bin")
    node = shutil.which("node", path=tool_path())
    assert node is not None
    define_unit(
        state,
        UNIT,
        exec=[node, str(script)],
        cwd=str(cwd),
        environment={
            "REDIS_URL": REDIS_URL,
            "BULLMQ_PREFIX": scenario.prefix,
            "QUEUES": "sla",
            "WORKER_NAME": "notify",
            **environment,
        },
        environment_files=environment_files or [],
        timeout_stop_s=10,
    )
    fake_env = {"FAKE_SYSTEMD_DIR": str(state), "PATH": tool_path()}
    subprocess.run([str(systemctl), "start", UNIT], env=fake_env, check=True)
    scenario.configure(
        workers={
            "notification": {
                "manager": "systemd",
                "app": "notify-worker",
                "unit": UNIT,
                "systemctl_bin": str(systemctl),
                "journalctl_bin": str(journalctl),
                "queues": ["sla"],
                "env": {**(worker_env or {}), "FAKE_SYSTEMD_DIR": str(state)},
                "ready_timeout_s": 20,
                "active_wait_s": 15,
                "completing_wait_s": 15,
                **worker,
            }
        }
    )
    return state


@pytest.fixture
async def unit(scenario: Scenario) -> AsyncIterator[Unit]:
    app = scenario.tmp / "app"
    app.mkdir()
    (app / ".env.example").write_text(
        "REDIS_URL=\nBULLMQ_PREFIX=\nQUEUES=\nWORKER_NAME=\nEMAIL_API_KEY=\n"
    )
    secrets = scenario.tmp / "worker.env"
    secrets.write_text(f"# from the vault\nEMAIL_API_KEY={CANARY_SECRET}\n")
    state = start_unit(
        scenario,
        script=WORKER_JS,
        cwd=app,
        # The worker prints the secret: it must be masked.
        environment={"PRINT_ENV_KEY": "EMAIL_API_KEY"},
        environment_files=[str(secrets)],
    )
    try:
        yield Unit(scenario, state)
    finally:
        stop_unit(state, UNIT)


async def test_restart_under_systemd_waits_for_the_new_process_and_validates(unit: Unit):
    scenario = unit.scenario
    await scenario.produce("sla", 20)
    status = await scenario.json("worker", "status", "notification", "--env", "test")
    before = unit.pid()
    assert status["status"] == "online" and status["pid"] == before

    result = await scenario.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert "check notify-worker.service under systemd" in result.output
    assert "worker:ready" in result.output
    assert unit.pid() not in (None, before)
    after = await scenario.json("worker", "status", "notification", "--env", "test")
    assert after["status"] == "online" and after["pid"] == unit.pid()
    assert after["kill_timeout_ms"] == 10_000
    assert (await scenario.counts())["waiting"] == 0

    logs = await scenario.chatops("worker", "logs", "notification", "--env", "test")
    assert "worker:debug stderr value=***" in logs.stdout  # the worker's leak, masked
    for output in (result.output, logs.output):
        assert CANARY_SECRET not in output


async def test_env_check_reads_the_units_environment_files(unit: Unit):
    scenario = unit.scenario
    report = await scenario.json("worker", "env-check", "notification", "--env", "test")
    assert report["found"] is True and report["missing"] == []
    assert report["extra"] == ["PRINT_ENV_KEY"]

    (unit.state.parent / "worker.env").write_text("# the vault lost it\n")
    pid = unit.pid()
    restart = await scenario.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert restart.code != 0
    assert "lacks EMAIL_API_KEY" in restart.output
    assert unit.pid() == pid


async def test_a_unit_systemd_does_not_know_is_refused_before_anything(unit: Unit):
    scenario = unit.scenario
    scenario.environments["test"]["workers"]["notification"]["unit"] = "absent.service"
    result = await scenario.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code != 0
    assert "systemd has no 'absent.service'" in result.output


async def test_deploy_and_rollback_under_systemd_switch_the_release_it_runs(scenario: Scenario):
    commits = make_repo(scenario.tmp / "repo")
    env = build_env(scenario.tmp / "build-home")
    root = await install_first_release(scenario, commits, env)
    state = start_unit(
        scenario,
        script=root / "current" / "dist" / "worker.js",
        cwd=root / "current",
        environment={"EMAIL_API_KEY": CANARY_SECRET, "FIXTURE_WORKER": str(WORKER_JS)},
        worker_env={k: v for k, v in env.items() if k != "HOME"},
        deploy={
            "strategy": "releases",
            "repo": str(scenario.tmp / "repo"),
            "deploy_path": str(root),
        },
        build=BUILD,
    )

    def running_release() -> str | None:
        journal = (state / "journal" / f"{UNIT}.log").read_text().splitlines()
        releases = [line.split()[-1] for line in journal if "worker:release" in line]
        return releases[-1] if releases else None

    try:
        async with asyncio.timeout(30):
            while running_release() != "v1":
                await asyncio.sleep(0.1)
        for ref in ("v1", "v2"):
            done = await scenario.chatops(
                "worker", "deploy", "notification", "--env", "test", "--ref", ref, "--yes"
            )
            assert done.code == 0, done.output
        assert running_release() == "v2"
        back = await scenario.chatops(
            "worker", "rollback", "notification", "--env", "test", "--yes"
        )
        assert back.code == 0, back.output
        assert running_release() == "v1"
        assert await current_commit(root) == commits["v1"]
        (incident,) = await scenario.json("ops", "incidents")
        assert incident["kind"] == "rollback"
        assert (incident["from_release"], incident["to_release"]) == (
            commits["v2"][:12],
            commits["v1"][:12],
        )
        assert CANARY_SECRET not in back.output
    finally:
        stop_unit(state, UNIT)


def _edit_unit(unit: Unit, **environment: str) -> None:
    """Change the unit's Environment= in place, as an edit plus daemon-reload would."""
    path = unit.state / "units" / f"{UNIT}.json"
    data = json.loads(path.read_text())
    data["environment"].update(environment)
    path.write_text(json.dumps(data))


async def test_a_unit_that_never_logs_ready_fails_at_the_deadline(unit: Unit):
    unit.scenario.environments["test"]["workers"]["notification"]["ready_timeout_s"] = 3
    _edit_unit(unit, NEVER_READY="1")
    result = await unit.scenario.chatops(
        "worker", "restart", "notification", "--env", "test", "--yes"
    )
    assert result.code != 0
    said = " ".join(result.output.split())
    assert "did not log /worker:ready|BullMQ queue ready/ within 3 s" in said, said
    assert "put back: queue sla resumed" in said


async def test_a_unit_that_crashes_on_start_fails_at_once(unit: Unit):
    _edit_unit(unit, REDIS_URL="redis://127.0.0.1:1/0")
    result = await unit.scenario.chatops(
        "worker", "restart", "notification", "--env", "test", "--yes"
    )
    assert result.code != 0
    said = " ".join(result.output.split())
    assert "notify-worker.service errored" in said, said
    (incident,) = await unit.scenario.json("ops", "incidents")
    assert incident["kind"] == "restart failed"
