"""Operations faults end to end: the `chatops` CLI as a subprocess against a real pm2 running the
Node BullMQ worker from git releases (the fleet of tests/scenarios/test_worker_cli.py).

The pm2 daemon dead before and during a restart, the worker's host unreachable over SSH, the git
remote failing during a deploy, a build that hangs: each must end with a message that names the
fault (never a traceback) and a clean state: no lock left, no queue left paused, the operation
recorded as failed at its step, `current` unchanged, and the worker serving jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.releases import current_commit
from tests.conftest import free_port
from tests.faults.proxy import fault_proxy
from tests.fixtures.pm2 import Pm2Home, release_app
from tests.fixtures.sshd import Sshd, sshd_server
from tests.scenarios.conftest import Result, Scenario
from tests.scenarios.test_worker_cli import Fleet, _fleet, _git

RESTART = ("worker", "restart", "notification", "--env", "test", "--yes")


@pytest.fixture
async def fleet(scenario: Scenario) -> AsyncIterator[Fleet]:
    async for f in _fleet(scenario, "releases"):
        yield f


def _worker(fleet: Fleet) -> dict[str, Any]:
    worker: dict[str, Any] = fleet.scenario.environments["test"]["workers"]["notification"]
    return worker


def deploy(ref: str) -> tuple[str, ...]:
    return ("worker", "deploy", "notification", "--env", "test", "--ref", ref, "--yes")


# ---- what every fault must leave behind ---------------------------------------------------


def assert_said(result: Result, *fragments: str) -> None:
    """The CLI failed with these words (joined across rich's line wraps), and no traceback."""
    assert result.code != 0, result.output
    assert "Traceback" not in result.output, result.output
    said = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in said, result.output


async def assert_clean(scenario: Scenario, *, step: str) -> dict[str, Any]:
    """No lock left, no queue paused, the flag as it was, the last operation failed at `step`."""
    locks = [k async for k in scenario.redis.scan_iter(match=f"chatops:{scenario.prefix}:lock:*")]
    assert locks == []
    for queue in ("sla", "other"):
        assert await scenario.redis.hget(f"{scenario.prefix}:{queue}:meta", "paused") is None
    assert await scenario.flag() is None  # a restart or deploy never touches the producers' flag
    last = (await scenario.json("ops", "history"))[0]
    shown: dict[str, Any] = await scenario.json("ops", "show", last["id"])
    assert shown["state"] == "failed", shown
    (failed,) = [s for s in shown["steps"] if s["state"] == "failed"]
    assert failed["name"].startswith(step), shown
    assert all(s["state"] == "skipped" for s in shown["steps"][failed["index"] + 1 :]), shown
    return shown


async def completed(scenario: Scenario) -> int:
    return int(await scenario.redis.zcard(f"{scenario.prefix}:sla:completed"))


async def assert_serving(scenario: Scenario, *, timeout_s: float = 30) -> None:
    """A job produced now runs to completion."""
    before = await completed(scenario)
    await scenario.produce("sla", 1)
    async with asyncio.timeout(timeout_s):
        while await completed(scenario) <= before:
            await asyncio.sleep(0.2)


async def restart_during(scenario: Scenario, fault: Callable[[], Awaitable[object]]) -> Result:
    """Run a restart and bring `fault` about once the restart has paused sla and waits for
    the active jobs; what the CLI said when it ended."""
    proc = await scenario.spawn(*RESTART)
    problem: BaseException | None = None
    try:
        async with asyncio.timeout(30):
            while await scenario.redis.hget(f"{scenario.prefix}:sla:meta", "paused") != "1":
                assert proc.returncode is None, "the restart ended before it paused sla"
                await asyncio.sleep(0.05)
        await fault()
    except (AssertionError, TimeoutError) as exc:
        problem = exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    result = Result(proc.returncode or 0, out.decode(), err.decode())
    if problem is not None:
        raise AssertionError(f"{problem!r}; the restart said:\n{result.output}") from problem
    return result


# ---- pm2 ----------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def kill_daemon(pm2: Pm2Home) -> int:
    """SIGKILL the pm2 God daemon of this PM2_HOME, as the OOM killer would; its pid."""
    god = int((pm2.path / "pm2.pid").read_text())
    os.kill(god, signal.SIGKILL)
    async with asyncio.timeout(15):
        while _alive(god):
            await asyncio.sleep(0.05)
    return god


async def revive(fleet: Fleet) -> None:
    """Start the app again under a new daemon, as an operator would after the alert."""
    await fleet.pm2.start(release_app("worker", fleet.root, prefix=fleet.scenario.prefix))


async def test_a_dead_pm2_daemon_stops_a_restart_before_anything_changes(fleet: Fleet) -> None:
    scenario = fleet.scenario
    worker_pid = await fleet.pid()
    god = await kill_daemon(fleet.pm2)
    # Measured: the worker goes with its daemon (pm2's IPC channel closes) within a second.
    async with asyncio.timeout(15):
        while _alive(worker_pid):
            await asyncio.sleep(0.05)

    result = await fleet.chatops(*RESTART)
    assert result.code == 1
    assert_said(
        result,
        "pm2 daemon for 'worker' is not running",
        f"pid {god} from {fleet.pm2.path}/pm2.pid is gone",
        "failed at step 1 of",
    )
    await assert_clean(scenario, step="check worker under pm2")
    # The bot did not start an empty daemon of its own (every pm2 command would).
    assert int((fleet.pm2.path / "pm2.pid").read_text()) == god

    await revive(fleet)
    await assert_serving(scenario)


async def test_a_pm2_daemon_dying_mid_restart_fails_the_restart_and_resumes_the_queue(
    fleet: Fleet,
) -> None:
    scenario = fleet.scenario
    await scenario.produce("sla", 3, "--data", json.dumps({"ms": 12_000}))
    async with asyncio.timeout(15):
        while await scenario.redis.llen(f"{scenario.prefix}:sla:active") < 3:
            await asyncio.sleep(0.05)
    god = int((fleet.pm2.path / "pm2.pid").read_text())
    # The restart paused sla and waits for the three active jobs: the daemon dies now.
    result = await restart_during(scenario, lambda: kill_daemon(fleet.pm2))
    assert result.code == 1, result.output
    assert_said(
        result,
        "pm2 daemon for 'worker' is not running",
        f"pid {god} from {fleet.pm2.path}/pm2.pid is gone",
        "put back: queue sla resumed",
    )
    await assert_clean(scenario, step="wait for active jobs to finish")

    # Back under a new daemon, the worker takes the killed jobs back (stalled) and new ones.
    await revive(fleet)
    await assert_serving(scenario)


# ---- SSH ----------------------------------------------------------------------------------


def _ssh_key(tmp: Path) -> tuple[Path, Path]:
    """A client key and a known_hosts file: everything but a server."""
    key = tmp / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    known = tmp / "known_hosts"
    known.write_text("")
    return key, known


async def test_an_unreachable_worker_host_is_named_and_nothing_changes(fleet: Fleet) -> None:
    scenario = fleet.scenario
    port = free_port()  # nothing listens there: connections are refused
    key, known = _ssh_key(scenario.tmp)
    _worker(fleet).update(
        host=f"ssh://root@127.0.0.1:{port}", ssh_key=str(key), known_hosts=str(known)
    )
    pid = await fleet.pid()

    for args in (RESTART, deploy("v2")):
        result = await fleet.chatops(*args)
        assert result.code == 1
        assert_said(result, f"ssh root@127.0.0.1:{port}: cannot connect", "failed at step 1 of")
        await assert_clean(scenario, step="check worker under pm2")
    assert await fleet.pid() == pid
    assert await current_commit(fleet.root) == fleet.commits["v1"]
    await assert_serving(scenario)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with sshd_server(tmp_path / "sshd", free_port()) as server:
        yield server


async def test_the_worker_host_going_away_mid_restart_is_named_and_the_queue_resumed(
    fleet: Fleet, sshd: Sshd
) -> None:
    scenario = fleet.scenario
    async with fault_proxy("127.0.0.1", sshd.port) as proxy:
        # The bot reaches the host through a proxy that can cut every connection at once, as
        # a crashed host or a network partition would (nothing on the host is killed).
        kind, key = (sshd.known_hosts.parent / "host_key.pub").read_text().split()[:2]
        known = scenario.tmp / "proxy_known_hosts"
        known.write_text(f"[127.0.0.1]:{proxy.port} {kind} {key}\n")
        address = f"{sshd.user}@127.0.0.1:{proxy.port}"
        _worker(fleet).update(
            host=f"ssh://{address}", ssh_key=str(sshd.client_key), known_hosts=str(known)
        )
        await scenario.produce("sla", 3, "--data", json.dumps({"ms": 12_000}))
        async with asyncio.timeout(15):
            while await scenario.redis.llen(f"{scenario.prefix}:sla:active") < 3:
                await asyncio.sleep(0.05)
        pid = await fleet.pid()

        async def host_goes_away() -> None:
            proxy.set_mode("reset")

        result = await restart_during(scenario, host_goes_away)
    assert result.code == 1, result.output
    assert_said(result, f"ssh {address}", "put back: queue sla resumed")
    await assert_clean(scenario, step="wait for active jobs to finish")
    assert await fleet.pid() == pid  # never reloaded
    await assert_serving(scenario)


# ---- git and the build --------------------------------------------------------------------


async def test_a_failing_git_remote_stops_a_deploy_and_the_running_release_serves_on(
    fleet: Fleet,
) -> None:
    scenario = fleet.scenario
    pid = await fleet.pid()
    repo = scenario.tmp / "repo"
    gone = scenario.tmp / "repo-moved-away"
    repo.rename(gone)
    result = await fleet.chatops(*deploy("v2"))
    assert result.code == 1
    assert_said(result, f"fetching {repo}", "does not appear to be a git repository")
    await assert_clean(scenario, step="resolve v2 to a commit")

    # A remote that refuses the connection.
    port = free_port()
    _worker(fleet)["deploy"]["repo"] = f"http://127.0.0.1:{port}/app.git"
    result = await fleet.chatops(*deploy("v2"))
    assert result.code == 1
    assert_said(
        result,
        f"fetching http://127.0.0.1:{port}/app.git",
        f"Failed to connect to 127.0.0.1 port {port}",
    )
    await assert_clean(scenario, step="resolve v2 to a commit")

    assert await current_commit(fleet.root) == fleet.commits["v1"]
    assert not (fleet.root / "releases" / fleet.commits["v2"]).exists()
    assert await fleet.pid() == pid
    assert await fleet.running_release() == "v1"
    await assert_serving(scenario)


async def test_a_hanging_git_remote_fails_the_deploy_at_fetch_timeout_s(fleet: Fleet) -> None:
    """A remote that takes the connection and never answers: the fetch is stopped after the
    worker's `fetch_timeout_s`, named, and nothing is switched."""
    scenario = fleet.scenario
    pid = await fleet.pid()
    async with fault_proxy("127.0.0.1", free_port()) as remote:
        remote.set_mode("blackhole")
        url = f"http://127.0.0.1:{remote.port}/app.git"
        _worker(fleet)["deploy"].update(repo=url, fetch_timeout_s=3)
        result = await fleet.chatops(*deploy("v2"))
    assert result.code == 1, result.output
    assert_said(result, f"fetching {url}", "timed out after 3s")
    await assert_clean(scenario, step="resolve v2 to a commit")
    assert await fleet.pid() == pid
    assert await fleet.running_release() == "v1"
    await assert_serving(scenario)


def _processes_with(token: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if token.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


def commit_hanging_build(repo: Path, token: str) -> str:
    """A release whose `pnpm build` never ends, with a child process of its own."""
    (repo / "hang.js").write_text(
        "const { spawn } = require('child_process');\n"
        "if (process.argv[3] !== 'child') {\n"
        "  spawn(process.execPath, [__filename, process.argv[2], 'child'], { stdio: 'ignore' });\n"
        "}\n"
        "console.log('build:hanging');\n"
        "setInterval(() => {}, 1 << 30);\n"
    )
    package = json.loads((repo / "package.json").read_text())
    package["scripts"]["build"] = f"node hang.js {token}"
    (repo / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "a build that hangs")
    _git(repo, "tag", "hang")
    return _git(repo, "rev-parse", "HEAD")


async def test_a_hanging_build_times_out_kills_its_processes_and_switches_nothing(
    fleet: Fleet,
) -> None:
    scenario = fleet.scenario
    token = f"hang-{uuid.uuid4().hex}"
    commit = commit_hanging_build(scenario.tmp / "repo", token)
    _worker(fleet)["deploy"]["build_timeout_s"] = 5
    pid = await fleet.pid()
    try:
        result = await fleet.chatops(*deploy("hang"))
        assert result.code == 1
        assert "build:hanging" in result.output  # the build did start, and hung
        assert_said(result, "build step 2 of 2 (pnpm build) timed out after 5s")
        await assert_clean(scenario, step="fetch and build the release")
        assert _processes_with(token) == []  # pnpm, sh, node and node's child: the whole group
    finally:
        for leftover in _processes_with(token):
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
    # No half-built release left to switch to, and `current` never moved.
    assert not (fleet.root / "releases" / commit).exists()
    assert [p.name for p in (fleet.root / "releases").iterdir()] == [fleet.commits["v1"]]
    assert await current_commit(fleet.root) == fleet.commits["v1"]
    assert await fleet.pid() == pid
    assert await fleet.running_release() == "v1"
    await assert_serving(scenario)
