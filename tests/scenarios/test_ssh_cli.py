"""Workers on another host: the pm2 target through a real sshd on loopback (its own port,
generated keys), against the real Node worker under pm2. The "remote" host is this machine,
reached only through SSH: every pm2 call and every log read goes over the connection."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.errors import CommandFailed
from bot.hosts import SshAddress
from bot.releases import current_commit
from bot.ssh import SshHost
from tests.conftest import free_port
from tests.fixtures.pm2 import CANARY_SECRET
from tests.fixtures.sshd import Sshd, sshd_server
from tests.scenarios.conftest import Scenario
from tests.scenarios.test_worker_cli import Fleet, _fleet


@pytest.fixture
async def fleet(scenario: Scenario) -> AsyncIterator[Fleet]:
    async for f in _fleet(scenario, "releases"):
        yield f


@pytest.fixture
def sshd(tmp_path) -> Iterator[Sshd]:
    with sshd_server(tmp_path / "sshd", free_port()) as server:
        yield server


def _over_ssh(fleet: Fleet, sshd: Sshd, known_hosts: str) -> None:
    worker = fleet.scenario.environments["test"]["workers"]["notification"]
    worker.update(host=sshd.url, ssh_key=str(sshd.client_key), known_hosts=known_hosts)


async def test_restart_over_ssh_runs_the_whole_plan_on_the_remote_pm2(fleet: Fleet, sshd: Sshd):
    _over_ssh(fleet, sshd, str(sshd.known_hosts))
    await fleet.scenario.produce("sla", 20)
    pid = await fleet.pid()
    status = await fleet.scenario.json("worker", "status", "notification", "--env", "test")
    assert status["status"] == "online" and status["pid"] == pid

    result = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert "worker:ready" in result.output
    assert await fleet.pid() != pid
    assert (await fleet.scenario.counts())["waiting"] == 0

    logs = await fleet.chatops("worker", "logs", "notification", "--env", "test", "--lines", "20")
    assert logs.code == 0 and "worker:ready" in logs.stdout
    check = await fleet.scenario.json("worker", "env-check", "notification", "--env", "test")
    assert check["found"] is True and check["missing"] == []
    for output in (result.output, logs.output):
        assert CANARY_SECRET not in output


async def test_a_host_key_that_does_not_match_is_refused(fleet: Fleet, sshd: Sshd):
    _over_ssh(fleet, sshd, str(sshd.wrong_known_hosts))
    pid = await fleet.pid()
    result = await fleet.chatops("worker", "restart", "notification", "--env", "test", "--yes")
    assert result.code != 0
    said = " ".join(result.output.split())
    assert "the host's key is not the one in" in said and "refusing to connect" in said
    assert await fleet.pid() == pid


async def test_deploy_and_rollback_over_ssh_build_and_switch_on_the_remote_host(
    fleet: Fleet, sshd: Sshd
):
    _over_ssh(fleet, sshd, str(sshd.known_hosts))
    await fleet.scenario.produce("sla", 10)
    for ref in ("v1", "v2"):  # v1: adopt the release installed first, as known-good
        deploy = await fleet.chatops(
            "worker", "deploy", "notification", "--env", "test", "--ref", ref, "--yes"
        )
        assert deploy.code == 0, deploy.output
    assert await fleet.running_release() == "v2"
    assert await current_commit(fleet.root) == fleet.commits["v2"]
    # The "remote" host is this machine: its SFTP log shows the release was marked built and
    # `current` switched through the SSH connection, not on the bot's own filesystem.
    log = sshd.sftp_log.read_text()
    release = fleet.root / "releases" / fleet.commits["v2"]
    assert f'open "{release}/.chatops-built" flags WRITE' in log, log
    assert f'new "{fleet.root}/current"' in log

    back = await fleet.chatops("worker", "rollback", "notification", "--env", "test", "--yes")
    assert back.code == 0, back.output
    assert await fleet.running_release() == "v1"
    assert await current_commit(fleet.root) == fleet.commits["v1"]
    assert (await fleet.scenario.counts())["waiting"] == 0
    for output in (deploy.output, back.output):
        assert CANARY_SECRET not in output


async def test_in_place_deploys_over_ssh_are_refused_with_the_reason(fleet: Fleet, sshd: Sshd):
    _over_ssh(fleet, sshd, str(sshd.known_hosts))
    worker = fleet.scenario.environments["test"]["workers"]["notification"]
    worker["deploy"] = {"strategy": "in_place", "repo_path": str(fleet.root)}
    result = await fleet.chatops(
        "worker", "deploy", "notification", "--env", "test", "--ref", "v2", "--yes"
    )
    assert result.code != 0
    assert "the in_place strategy works on the bot's host only" in " ".join(result.output.split())


async def test_arguments_cross_ssh_as_one_argument_each(sshd: Sshd, tmp_path):
    marker = tmp_path / "pwned"
    hostile = [
        "v1 with spaces",
        'it\'s "quoted"',
        f"v1; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        "--upload-pack=x",
        "",
        "tab\there\nnewline",
    ]
    cwd = tmp_path / "a dir; with $(odd) name"
    cwd.mkdir()
    host = SshHost(
        SshAddress.parse(sshd.url), key_path=str(sshd.client_key), known_hosts=str(sshd.known_hosts)
    )
    try:
        done = await host.run(
            [
                sys.executable,
                "-c",
                "import json,os,sys; print(json.dumps([os.getcwd(), *sys.argv[1:]]))",
                *hostile,
            ],
            env={"PATH": "/usr/bin:/bin", "ODD": "a b; $(c)"},
            timeout_s=30,
            cwd=str(cwd),
        )
    finally:
        await host.aclose()
    assert json.loads(done.lines[-1]) == [str(cwd), *hostile]
    assert not marker.exists()


async def test_a_command_that_hangs_over_ssh_times_out_and_its_processes_are_killed(
    sshd: Sshd,
):
    """A hung build on a remote host: the step gives up at its timeout, and nothing it started
    (the command and its children) runs on after it."""
    marker = f"{1000 + secrets.randbelow(10**6) / 10**6:.6f}"  # a unique `sleep` argument
    host = SshHost(
        SshAddress.parse(sshd.url), key_path=str(sshd.client_key), known_hosts=str(sshd.known_hosts)
    )
    try:
        with pytest.raises(CommandFailed, match="timed out after 2 s"):
            await host.run(
                ["sh", "-c", f"sleep {marker} & sleep {marker}; echo never"],
                env={"PATH": "/usr/bin:/bin"},
                timeout_s=2,
            )
        # The connection is still good for the next command.
        done = await host.run(["echo", "next"], env={"PATH": "/usr/bin:/bin"}, timeout_s=30)
        assert done.lines == ("next",)
    finally:
        await host.aclose()
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


async def test_a_zombie_on_the_remote_host_is_not_alive(sshd: Sshd):
    """A killed pm2 daemon that its parent has not reaped yet runs nothing: the SSH host, like
    the local one, does not count it alive."""
    # Popen, not asyncio's subprocesses: asyncio reaps its children, and a zombie is a child
    # that nobody has reaped.
    running = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220
    zombie = subprocess.Popen(["true"])  # noqa: ASYNC220  (exits at once, never waited for)
    gone = subprocess.Popen(["true"])  # noqa: ASYNC220
    gone.wait()
    host = SshHost(
        SshAddress.parse(sshd.url), key_path=str(sshd.client_key), known_hosts=str(sshd.known_hosts)
    )
    try:
        for _ in range(100):
            if Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            await asyncio.sleep(0.05)
        assert await host.pid_alive(running.pid)
        assert not await host.pid_alive(zombie.pid)
        assert not await host.pid_alive(gone.pid)
        assert await host.pid_alive(1)
    finally:
        await host.aclose()
        running.kill()
        running.wait()
        zombie.wait()
