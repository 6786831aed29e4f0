"""Restart, deploy and rollback through the `chatops` CLI: a real pm2 running the fixture app
from git releases built with the pinned pnpm, real Redis, real Node BullMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.releases import current_commit, prepare_release, switch_current
from tests.fixtures.pm2 import (
    APP_TEMPLATE,
    CANARY_SECRET,
    PM2_BIN,
    PNPM_BIN,
    Pm2Home,
    pm2_home,
    release_app,
    tool_path,
)
from tests.scenarios.conftest import Scenario

BUILD = [["pnpm", "install", "--frozen-lockfile"], ["pnpm", "build"]]


def _git(repo: Path, *args: str) -> str:
    env = {
        "PATH": tool_path(),
        "HOME": str(repo.parent),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repo(path: Path) -> dict[str, str]:
    """The app's history: v1 and v2 are good releases, `bad` never becomes ready."""
    shutil.copytree(APP_TEMPLATE, path, ignore=shutil.ignore_patterns("node_modules", "dist"))
    _git(path, "init", "-q", "-b", "main")
    commits = {}
    for version in ("v1", "v2", "bad"):
        (path / "src" / "version.txt").write_text(f"{version}\n")
        if version == "bad":
            worker = path / "src" / "worker.js"
            worker.write_text("process.env.NEVER_READY = '1';\n" + worker.read_text())
        _git(path, "add", "-A")
        _git(path, "commit", "-q", "-m", version)
        _git(path, "tag", version)
        commits[version] = _git(path, "rev-parse", "HEAD")
    return commits


def build_env(home: Path) -> dict[str, str]:
    return {
        "PATH": f"{PNPM_BIN.parent}{os.pathsep}{tool_path()}",
        "HOME": str(home),
        "pnpm_config_registry": "http://127.0.0.1:9/",
        "pnpm_config_fetch_retries": "0",
        "pnpm_config_update_notifier": "false",
    }


@dataclass
class Fleet:
    scenario: Scenario
    pm2: Pm2Home
    commits: dict[str, str]
    root: Path  # deploy_path, or the checkout for in_place

    async def chatops(self, *args: str, timeout_s: float = 180):
        return await self.scenario.chatops(*args, timeout_s=timeout_s)

    async def running_release(self) -> str:
        """The release the live process announced last (its log, not the bot's word)."""
        logs = (
            await self.pm2.pm2("logs", "worker", "--nostream", "--lines", "200", "--raw")
        ).output
        releases = [line.split()[-1] for line in logs.splitlines() if "worker:release" in line]
        return releases[-1]

    async def pid(self) -> int:
        (app,) = [a for a in await self.pm2.jlist() if a["name"] == "worker"]
        return int(app["pid"])


async def install_first_release(
    scenario: Scenario, commits: dict[str, str], env: dict[str, str]
) -> Path:
    """v1 built under `<tmp>/srv/releases` and made `current`, as a first install leaves it."""
    root = scenario.tmp / "srv"
    await prepare_release(
        strategy="releases",
        repo=str(scenario.tmp / "repo"),
        deploy_path=root,
        commit=commits["v1"],
        build=BUILD,
        env=env,
        timeout_s=120,
    )
    await switch_current(deploy_path=root, commit=commits["v1"])
    return root


async def _fleet(scenario: Scenario, strategy: str, **worker_options) -> AsyncIterator[Fleet]:
    commits = make_repo(scenario.tmp / "repo")
    env = build_env(scenario.tmp / "build-home")
    async with pm2_home() as pm2:
        if strategy == "releases":
            root = await install_first_release(scenario, commits, env)
            app = release_app("worker", root, prefix=scenario.prefix, **worker_options)
            deploy = {
                "strategy": "releases",
                "repo": str(scenario.tmp / "repo"),
                "deploy_path": str(root),
            }
        else:
            root = scenario.tmp / "checkout"
            subprocess.run(
                ["git", "clone", "-q", str(scenario.tmp / "repo"), str(root)], check=True, env=env
            )
            _git(root, "checkout", "-q", "--detach", "v1")
            for argv in BUILD:
                subprocess.run(argv, cwd=root, env=env, check=True, capture_output=True)
            app = release_app("worker", root, prefix=scenario.prefix, **worker_options)
            app["script"] = str(root / "dist" / "worker.js")
            app["cwd"] = str(root)
            deploy = {"strategy": "in_place", "repo_path": str(root)}
        await pm2.start(app)
        scenario.configure(
            workers={
                "notification": {
                    "app": "worker",
                    "pm2_home": str(pm2.path),
                    "pm2_bin": str(PM2_BIN),
                    "queues": ["sla"],
                    "env": {k: v for k, v in env.items() if k != "HOME"},
                    "deploy": deploy,
                    "build": BUILD,
                    "ready_timeout_s": 8,
                    "active_wait_s": 15,
                    "completing_wait_s": 10,
                }
            }
        )
        fleet = Fleet(scenario, pm2, commits, root)
        async with asyncio.timeout(20):
            while True:
                logs = (await pm2.pm2("logs", "worker", "--nostream", "--raw")).output
                if "worker:ready" in logs:
                    break
                await asyncio.sleep(0.2)
        yield fleet


@pytest.fixture
async def fleet(scenario: Scenario) -> AsyncIterator[Fleet]:
    async for f in _fleet(scenario, "releases"):
        yield f


@pytest.fixture
async def in_place_fleet(scenario: Scenario) -> AsyncIterator[Fleet]:
    async for f in _fleet(scenario, "in_place"):
        yield f


async def test_deploy_good_then_bad_keeps_the_good_release_running(fleet: Fleet):
    await fleet.scenario.produce("sla", 30)
    good = await fleet.chatops(
        "worker", "deploy", "notification", "--env", "test", "--ref", "v2", "--yes"
    )
    assert good.code == 0, good.output
    assert await fleet.running_release() == "v2"
    assert await current_commit(fleet.root) == fleet.commits["v2"]
    releases = await fleet.scenario.json("worker", "releases", "notification", "--env", "test")
    assert [(r["commit"], r["known_good"]) for r in releases][:1] == [(fleet.commits["v2"], True)]

    bad = await fleet.chatops(
        "worker", "deploy", "notification", "--env", "test", "--ref", "bad", "--yes"
    )
    assert bad.code == 1, bad.output
    assert "failed at step" in bad.output and "wait for /worker:ready" in bad.output
    assert await current_commit(fleet.root) == fleet.commits["v2"]  # switched back
    assert await fleet.running_release() == "v2"
    status = await fleet.scenario.json("queue", "status", "sla", "--env", "test")
    assert status["queues"][0]["paused"] is False
    releases = await fleet.scenario.json("worker", "releases", "notification", "--env", "test")
    assert not any(r["known_good"] for r in releases if r["commit"] == fleet.commits["bad"])


@contextlib.asynccontextmanager
async def incident_webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint standing in for an incident tool: what it received, in order."""
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks/T000/B000/incident-canary-path", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hooks/T000/B000/incident-canary-path", received
    finally:
        await runner.cleanup()


async def test_rollback_returns_to_the_last_known_good_release(fleet: Fleet):
    none_yet = await fleet.chatops("worker", "rollback", "notification", "--env", "test", "--yes")
    assert none_yet.code == 2, none_yet.output
    assert "mark one with: chatops worker mark-good notification --env test REF" in none_yet.stderr

    for ref in ("v1", "v2"):
        done = await fleet.chatops(
            "worker", "deploy", "notification", "--env", "test", "--ref", ref, "--yes"
        )
        assert done.code == 0, done.output
    v1, v2 = fleet.commits["v1"][:12], fleet.commits["v2"][:12]
    dry = await fleet.chatops("worker", "rollback", "notification", "--env", "test", "--dry-run")
    assert dry.code == 0 and f"release {v2} → {v1}" in dry.stdout, dry.stdout
    # A deploy's plan shows what runs and the ref asked for; a restart's, what it reloads.
    dry = await fleet.chatops(
        "worker", "deploy", "notification", "--env", "test", "--ref", "v1", "--dry-run"
    )
    assert dry.code == 0 and f"release {v2} → v1 (resolved" in dry.stdout, dry.stdout
    dry = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--dry-run")
    assert dry.code == 0 and f"release {v2}, unchanged" in dry.stdout, dry.stdout
    assert await fleet.running_release() == "v2"

    async with incident_webhook() as (url, received):
        fleet.scenario.extra_config = {"incidents": {"webhook_url": url}}
        back = await fleet.chatops("worker", "rollback", "notification", "--env", "test", "--yes")
    assert back.code == 0, back.output
    assert "reused" in back.stdout  # a switch back, no rebuild
    assert await fleet.running_release() == "v1"
    assert await current_commit(fleet.root) == fleet.commits["v1"]
    history = await fleet.scenario.json("ops", "history")
    assert [(h["kind"], h["outcome"]) for h in history[:3]] == [
        ("rollback", "succeeded"),
        ("deploy", "succeeded"),
        ("deploy", "succeeded"),
    ]

    # The rollback is an incident: in the store, and told to the webhook, once.
    (incident,) = await fleet.scenario.json("ops", "incidents")
    assert incident["kind"] == "rollback" and incident["outcome"] == "succeeded"
    assert incident["worker"] == "notification" and incident["env"] == "test"
    assert incident["from_release"] == fleet.commits["v2"][:12]
    assert incident["to_release"] == fleet.commits["v1"][:12]
    assert incident["operation_id"] == history[0]["id"]
    assert incident["actor"].endswith("(cli)")
    assert [r["incident"]["id"] for r in received] == [incident["id"]]
    assert f"incident #{incident['id']}: rollback of notification in test" in received[0]["text"]
    assert "incident-canary-path" not in json.dumps(received) + back.output


async def test_in_place_deploy_and_rollback(in_place_fleet: Fleet):
    fleet = in_place_fleet
    for ref in ("v1", "v2"):
        done = await fleet.chatops(
            "worker", "deploy", "notification", "--env", "test", "--ref", ref, "--yes"
        )
        assert done.code == 0, done.output
    assert await fleet.running_release() == "v2"
    back = await fleet.chatops("worker", "rollback", "notification", "--env", "test", "--yes")
    assert back.code == 0, back.output
    assert await fleet.running_release() == "v1"
    assert _git(fleet.root, "rev-parse", "HEAD") == fleet.commits["v1"]


async def test_restart_waits_for_jobs_longer_than_kill_timeout_so_none_runs_twice(fleet: Fleet):
    scenario = fleet.scenario
    await scenario.produce("sla", 6, "--data", json.dumps({"ms": 3000}))
    async with asyncio.timeout(10):
        while (await scenario.counts())["active"] == 0:
            await asyncio.sleep(0.1)
    before = await fleet.pid()
    result = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert await fleet.pid() != before
    async with asyncio.timeout(30):
        while (await scenario.counts())["completed"] < 6:
            await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # a killed job would come back as stalled within ~2 s here
    runs = await scenario.runs()
    assert len(runs) == 6 and set(runs.values()) == {1}, runs


async def test_a_deploy_is_refused_while_a_drain_holds_its_queue(fleet: Fleet):
    scenario = fleet.scenario
    await scenario.redis.set(f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS", "true")
    # About 12 s of work for the worker's 5 slots: the drain still holds its lock when the
    # deploy starts, however slow the machine is to start a second CLI.
    await scenario.produce("sla", 40, "--data", json.dumps({"ms": 1500}))
    drain = await scenario.spawn("queue", "drain", "sla", "--env", "test", "--yes")
    try:
        async with asyncio.timeout(20):
            while await scenario.flag() != "false":
                await asyncio.sleep(0.1)
        result = await fleet.chatops(
            "worker", "deploy", "notification", "--env", "test", "--ref", "v2", "--yes"
        )
        assert result.code == 2, result.output
        assert "is locked by" in result.stderr and "queue:sla" in result.stderr
    finally:
        out, err = await asyncio.wait_for(drain.communicate(), 90)
    assert drain.returncode == 0, out.decode() + err.decode()
    assert await fleet.running_release() == "v1"


@pytest.mark.parametrize(
    "ref",
    [
        "v1;touch /tmp/chatops-pwned",
        "$(touch /tmp/chatops-pwned)",
        "--upload-pack=touch /tmp/chatops-pwned",
    ],
)
async def test_hostile_refs_are_refused_and_change_nothing(fleet: Fleet, ref: str):
    pid = await fleet.pid()
    result = await fleet.chatops(
        "worker", "deploy", "notification", "--env", "test", "--ref", ref, "--yes"
    )
    assert result.code == 2, result.output
    assert "ref" in result.stderr
    assert not Path("/tmp/chatops-pwned").exists()
    assert await fleet.pid() == pid
    assert await current_commit(fleet.root) == fleet.commits["v1"]


async def test_the_bots_secrets_never_reach_the_worker(fleet: Fleet):
    fleet.scenario.extra_env["SLACK_BOT_TOKEN"] = "xoxb-canary-never-in-worker"
    result = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code == 0, result.output
    raw = json.dumps(await fleet.pm2.jlist())
    assert "xoxb-canary-never-in-worker" not in raw
    assert "SLACK_BOT_TOKEN" not in raw


async def test_status_logs_and_dry_run(fleet: Fleet):
    status = await fleet.scenario.json("worker", "status", "notification", "--env", "test")
    assert status["status"] == "online" and status["name"] == "worker"
    assert "canary-secret" not in json.dumps(status)
    logs = await fleet.chatops("worker", "logs", "notification", "--env", "test", "--lines", "20")
    assert logs.code == 0 and "worker:ready" in logs.stdout
    pid = await fleet.pid()
    dry = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--dry-run")
    assert dry.code == 0, dry.output
    assert "(dry run) restart notification in test" in dry.stdout
    assert "reload worker with its own environment" in dry.stdout
    assert await fleet.pid() == pid
    assert await fleet.scenario.json("ops", "history") == []


async def test_build_makes_a_first_install_current_and_never_touches_a_running_one(
    scenario: Scenario,
):
    commits = make_repo(scenario.tmp / "repo")
    deploy_path = scenario.tmp / "srv"
    env = build_env(scenario.tmp / "build-home")
    scenario.configure(
        workers={
            "notification": {
                "app": "worker",
                "pm2_home": str(scenario.tmp / "pm2-unused"),
                "queues": ["sla"],
                "env": {k: v for k, v in env.items() if k != "HOME"},
                "deploy": {"repo": str(scenario.tmp / "repo"), "deploy_path": str(deploy_path)},
                "build": BUILD,
            }
        }
    )
    first = await scenario.chatops(
        "worker", "build", "notification", "--env", "test", "--ref", "v1", "--yes"
    )
    assert first.code == 0, first.output
    assert "first install" in first.stdout
    assert await current_commit(deploy_path) == commits["v1"]
    second = await scenario.chatops(
        "worker", "build", "notification", "--env", "test", "--ref", "v2", "--yes"
    )
    assert second.code == 0, second.output
    assert await current_commit(deploy_path) == commits["v1"]
    assert (deploy_path / "releases" / commits["v2"] / "dist" / "release.txt").read_text() == "v2\n"


def _worker_config(fleet: Fleet) -> dict:
    return fleet.scenario.environments["test"]["workers"]["notification"]


async def test_a_canary_job_proves_processing_on_an_idle_queue(fleet: Fleet):
    idle = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert idle.code == 0, idle.output
    assert "no traffic" in idle.stdout
    _worker_config(fleet)["canary"] = {"queue": "sla", "data": {"ms": 10}, "timeout_s": 15}
    result = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert "completed on sla" in result.stdout
    assert (await fleet.scenario.counts())["completed"] == 1


async def test_graceful_quiesce_stops_when_kill_timeout_is_shorter_than_recent_jobs(fleet: Fleet):
    scenario = fleet.scenario
    await scenario.produce("sla", 2, "--data", json.dumps({"ms": 2500}))
    async with asyncio.timeout(20):
        while (await scenario.counts())["completed"] < 2:
            await asyncio.sleep(0.2)
    _worker_config(fleet)["quiesce"] = "graceful"
    pid = await fleet.pid()
    result = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code == 1, result.output
    assert "kill_timeout is 1600 ms but recent jobs took up to 25" in result.output
    assert await fleet.pid() == pid  # nothing was reloaded


async def test_env_check_names_missing_keys_and_never_shows_a_value(fleet: Fleet):
    scenario = fleet.scenario
    fine = await fleet.chatops("worker", "env-check", "notification", "--env", "test", "--json")
    assert fine.code == 0, fine.output
    report = json.loads(fine.stdout)
    assert report["found"] is True and report["missing"] == []
    assert report["example"] == str(fleet.root / "current" / ".env.example")

    # The running release now names a key the live environment lacks.
    example = fleet.root / "current" / ".env.example"
    example.write_text(example.read_text() + "SMS_API_KEY=\n")
    pid = await fleet.pid()
    check = await fleet.chatops("worker", "env-check", "notification", "--env", "test")
    assert check.code == 1
    assert "missing: SMS_API_KEY" in check.stdout
    restart = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert restart.code != 0, restart.output
    assert "lacks SMS_API_KEY" in restart.output and "--skip-env-check" in restart.output
    assert await fleet.pid() == pid  # stopped before touching anything
    status = await scenario.json("queue", "status", "sla", "--env", "test")
    assert status["queues"][0]["paused"] is False

    forced = await fleet.chatops(
        "worker", "restart", "notification", "--env", "test", "--skip-env-check", "--yes"
    )
    assert forced.code == 0, forced.output
    assert "warning: missing: SMS_API_KEY" in forced.output
    assert await fleet.pid() != pid
    for result in (fine, check, restart, forced):
        assert CANARY_SECRET not in result.output


async def test_a_deploy_whose_release_needs_a_new_key_stops_before_the_switch(fleet: Fleet):
    repo = fleet.scenario.tmp / "repo"
    example = repo / ".env.example"
    example.write_text(example.read_text() + "SMS_API_KEY=\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "v3 sends SMS")
    _git(repo, "tag", "v3")
    pid = await fleet.pid()
    deploy = await fleet.chatops(
        "worker", "deploy", "notification", "--env", "test", "--ref", "v3", "--yes"
    )
    assert deploy.code != 0, deploy.output
    assert "lacks SMS_API_KEY" in deploy.output
    assert await current_commit(fleet.root) == fleet.commits["v1"]
    assert await fleet.pid() == pid
    assert await fleet.running_release() == "v1"
