"""The bot SIGKILLed in the middle of each step of a drain and of a worker restart, then started
again: the operation is recorded as interrupted at that step, what it changed (the producer
flag, paused queues) is put back and said so, its lock is freed, and the Node worker ran every
job exactly once.

To kill a process *in* a step, not somewhere near it, the bot reaches the environment's Redis
through a gate (tests/faults/redis_gate.py) that stops it at a command only that step sends,
before the command reaches Redis or after Redis applied it but before the reply. The process
then waits there, heartbeating, until it is killed. Its locks and heartbeats do not go through
the gate (CHATOPS_REDIS_URL, the store), nor do the Node worker, producer and test client.
Steps that talk to pm2 rather than Redis are held the same way by a stand-in for the pm2
binary (tests/faults/pm2_gate.py), at a pm2 command while the store shows that step running.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from tests.conftest import REDIS_URL
from tests.faults.pm2_gate import Pm2Gate, running_step
from tests.faults.redis_gate import Command, RedisGate, redis_gate
from tests.faults.test_ops_faults import assert_serving, completed
from tests.fixtures.pm2 import PM2_BIN
from tests.fixtures.serve import served
from tests.scenarios.conftest import Scenario, scenario_on
from tests.scenarios.test_slack import CHANNEL, OPS, SECRET, configure
from tests.scenarios.test_worker_cli import Fleet, _fleet
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack

DRAIN = ("queue", "drain", "sla", "--env", "test", "--yes")
RESTART = ("worker", "restart", "notification", "--env", "test", "--yes")
HEARTBEAT_S = 0.2
LAPSE_S = HEARTBEAT_S * 5 + 0.2  # recovery claims an operation after 5 missed heartbeats
JOBS = 6


@pytest.fixture
async def gate() -> AsyncIterator[RedisGate]:
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    async with redis_gate(host, int(port)) as g:
        yield g


@pytest.fixture
async def scenario(
    prefix: str, redis_client: redis.Redis, tmp_path: Path, gate: RedisGate
) -> AsyncIterator[Scenario]:
    # The environment's Redis behind the gate, the bot's coordination (locks) on Redis directly.
    async with scenario_on(redis_client, prefix, tmp_path, redis_url=gate.url) as s:
        s.extra_env.update(CHATOPS_REDIS_URL=REDIS_URL, CHATOPS_HEARTBEAT_S=str(HEARTBEAT_S))
        yield s


# ---- killing a command in a step ----------------------------------------------------------


@dataclass(frozen=True)
class Killed:
    op_id: str
    output: str


async def kill_when_held(
    scenario: Scenario, args: tuple[str, ...], held: Coroutine[Any, Any, object]
) -> Killed:
    """Run `chatops args`, and SIGKILL it once `held` (a gate's wait) says a gate holds it."""
    proc = await scenario.spawn(*args)
    assert proc.stdout is not None and proc.stderr is not None
    output = asyncio.gather(proc.stdout.read(), proc.stderr.read())
    ended = asyncio.ensure_future(proc.wait())
    holding = asyncio.ensure_future(held)
    try:
        await asyncio.wait({ended, holding}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if proc.returncode is None:
            proc.kill()
        out, err = await output
        await proc.wait()
        holding.cancel()
        ended.cancel()
    text = out.decode() + err.decode()
    reached = holding.done() and not holding.cancelled() and holding.exception() is None
    assert reached, f"never reached the command:\n{text}"
    found = re.search(r"\((op-[0-9a-f]{10})\)", text)
    assert found, f"no operation id printed:\n{text}"
    return Killed(found.group(1), text)


async def kill_in_step(
    scenario: Scenario,
    gate: RedisGate,
    args: tuple[str, ...],
    match: Callable[[Command], bool],
    *,
    forward: bool,
) -> Killed:
    """Run `chatops args`, and SIGKILL it once the gate holds it at the command `match`."""
    gate.arm(match, forward=forward)
    return await kill_when_held(scenario, args, gate.held.wait())


async def recovered(scenario: Scenario, op_id: str) -> tuple[dict[str, Any], str]:
    """`chatops ops show OP` once the dead process's heartbeat lapsed: the operation as the
    command saw it after recovering it at its start, and what that command printed."""
    await asyncio.sleep(LAPSE_S)
    async with asyncio.timeout(30):
        while True:
            result = await scenario.chatops("ops", "show", op_id, "--json")
            assert result.code == 0, result.output
            assert "Traceback" not in result.output, result.output
            if "recovered:" in result.stderr:
                return json.loads(result.stdout), " ".join(result.stderr.split())
            await asyncio.sleep(0.5)


def assert_interrupted_at(shown: dict[str, Any], step: int) -> None:
    """Interrupted at `step` (1-based): that step failed as interrupted, earlier ones succeeded,
    later ones never started."""
    assert shown["state"] == "interrupted", shown
    total = len(shown["steps"])
    assert shown["summary"].startswith(f"interrupted at step {step} of {total} ("), shown
    states = [s["state"] for s in shown["steps"]]
    assert states == ["succeeded"] * (step - 1) + ["failed"] + ["pending"] * (total - step), shown
    assert shown["steps"][step - 1]["error"].startswith("interrupted: its process"), shown


async def locks(scenario: Scenario) -> list[str]:
    pattern = f"chatops:{scenario.prefix}:lock:*"
    return [k async for k in scenario.redis.scan_iter(match=pattern)]


async def paused(scenario: Scenario) -> list[str]:
    return [
        q
        for q in ("sla", "other")
        if await scenario.redis.hget(f"{scenario.prefix}:{q}:meta", "paused") is not None
    ]


def recovery_audit(shown: dict[str, Any]) -> dict[str, Any]:
    (row,) = [a for a in shown["audit"] if a["kind"] == "recovery"]
    return dict(row)


# ---- drain --------------------------------------------------------------------------------


def _command(name: bytes, *args: bytes) -> Callable[[Command], bool]:
    return lambda cmd: (
        cmd[0].upper() == name and all(any(part.endswith(a) for part in cmd[1:]) for a in args)
    )


def _flag_script(word: bytes) -> Callable[[Command], bool]:
    """The script that holds the producer flag off (SADD) or lets go of it (SREM), bot/flags."""
    return lambda cmd: (
        cmd[0].upper() == b"EVAL"
        and word in cmd[1]
        and any(part.endswith(b":flags:WORKER_ACCEPT_JOBS") for part in cmd[2:])
    )


# step (1-based), the command the gate holds it at, whether Redis gets that command first
DRAIN_STEPS = {
    "check": (1, _command(b"CLIENT", b"LIST"), False),  # counting connected workers
    "producers-off": (2, _flag_script(b"SADD"), True),  # the flag off, this drain a holder
    "watch": (3, _command(b"HGET", b":sla:metrics:completed"), False),  # its first poll
    "producers-on": (4, _flag_script(b"SREM"), False),  # let go: back on if no other holds it
}


@pytest.mark.parametrize("where", list(DRAIN_STEPS))
async def test_a_drain_killed_in_a_step_is_put_back_and_a_new_drain_runs_every_job_once(
    scenario: Scenario, gate: RedisGate, where: str
) -> None:
    step, match, forward = DRAIN_STEPS[where]
    await scenario.produce("sla", JOBS)
    async with scenario.node_worker(CONCURRENCY="1", JOB_MS="150"):
        killed = await kill_in_step(scenario, gate, DRAIN, match, forward=forward)
        # What the dead process left: the flag off from step 2 on (at step 4 it never got to
        # turn it on), and its lock, which it can no longer renew.
        assert await scenario.flag() == (None if step == 1 else "false"), killed.output
        assert await locks(scenario) == [f"chatops:{scenario.prefix}:lock:test:queue:sla"], (
            killed.output
        )

        shown, said = await recovered(scenario, killed.op_id)
        assert_interrupted_at(shown, step)
        flag_key = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
        line = f"recovered: operation {killed.op_id} (drain sla in test) {shown['summary']}"
        assert line in said, said
        audit = recovery_audit(shown)
        assert audit["outcome"] == "restored", audit
        if step == 1:
            assert "put back" not in said, said
            assert audit["details"]["restored"] == [], audit
            assert await scenario.flag() is None
        else:
            assert f"put back: producer flag {flag_key} back on" in said, said
            assert audit["details"]["restored"] == [f"producer flag {flag_key} back on"], audit
            assert await scenario.flag() == "true"
        assert await locks(scenario) == []
        assert await paused(scenario) == []

        again = await scenario.chatops(*DRAIN)
        assert again.code == 0, again.output
        assert "recovered:" not in again.output  # recovered once, by the first command only
    assert await scenario.flag() in (None, "true")
    runs = await scenario.runs()
    assert len(runs) == JOBS and set(runs.values()) == {1}, runs


# ---- worker restart under pm2 -------------------------------------------------------------


@pytest.fixture
async def fleet(scenario: Scenario) -> AsyncIterator[Fleet]:
    async for f in _fleet(scenario, "releases"):
        yield f


def _queue_script(state: bytes) -> Callable[[Command], bool]:
    """BullMQ's pause script (ARGV `paused`) or resume script (`resumed`) on sla."""
    return lambda cmd: (
        cmd[0].upper() in (b"EVALSHA", b"EVAL")
        and cmd[-1] == state
        and any(part.endswith(b":sla:meta") for part in cmd)
    )


def _first_poll_after_pause() -> Callable[[Command], bool]:
    """The first read of the queues once sla is paused: the wait for active jobs' first poll."""
    seen = [False]

    def match(cmd: Command) -> bool:
        if _queue_script(b"paused")(cmd):
            seen[0] = True
            return False
        return seen[0] and cmd[0].upper() == b"MULTI"

    return match


@dataclass(frozen=True)
class AtRedis:
    """Held by the Redis gate at the first command `match()` accepts (`forward`: Redis got it)."""

    make_match: Callable[[Path], Callable[[Command], bool]]  # given the scenario's store
    forward: bool


@dataclass(frozen=True)
class AtPm2:
    """Held by the pm2 gate at the first `pm2 <command>` inside the step (`forward`: pm2 ran
    it to the end, and the bot never heard)."""

    command: str
    forward: bool


def _in_step(step: int) -> Callable[[Path], Callable[[Command], bool]]:
    """Any command to the environment's Redis while the operation runs `step`."""
    return lambda store: lambda cmd: running_step(str(store)) == step


# The restart's nine steps, each killed in the middle: (step, where it is held, whether the
# queue is paused when it dies). Each case costs about 8 s (pm2, a Node worker, three CLI runs).
RESTART_STEPS: dict[str, tuple[int, AtRedis | AtPm2, bool]] = {
    "check-worker": (1, AtPm2("jlist", forward=False), False),
    "env-example": (2, AtPm2("jlist", forward=False), False),  # the app's environment keys
    "pause": (3, AtRedis(lambda _: _queue_script(b"paused"), forward=True), True),
    "wait-for-active": (4, AtRedis(lambda _: _first_poll_after_pause(), forward=False), True),
    "reload": (5, AtPm2("reload", forward=True), True),  # reloaded, sla still paused
    "wait-for-ready": (6, AtPm2("jlist", forward=False), True),
    "check-online": (7, AtPm2("jlist", forward=False), True),
    "resume": (8, AtRedis(lambda _: _queue_script(b"resumed"), forward=False), True),
    "check-completing": (9, AtRedis(_in_step(9), forward=False), False),  # sla resumed
}


@pytest.mark.parametrize("where", list(RESTART_STEPS))
async def test_a_restart_killed_in_a_step_resumes_the_queue_and_the_worker_serves_on(
    fleet: Fleet, gate: RedisGate, where: str
) -> None:
    scenario = fleet.scenario
    store = scenario.tmp / "chatops.sqlite3"
    step, at, left_paused = RESTART_STEPS[where]
    await scenario.produce("sla", 2, "--data", json.dumps({"ms": 4000 if step == 4 else 300}))
    async with asyncio.timeout(15):  # both taken by the worker: the restart must wait for them
        while await scenario.redis.llen(f"{scenario.prefix}:sla:active") < 2:
            await asyncio.sleep(0.05)
    if isinstance(at, AtPm2):
        pm2 = Pm2Gate(scenario.tmp / "pm2-gate", real=PM2_BIN, store=store)
        scenario.environments["test"]["workers"]["notification"]["pm2_bin"] = str(pm2.path)
        pm2.arm(step=step, commands={at.command}, forward=at.forward)
        killed = await kill_when_held(scenario, RESTART, pm2.wait_held(timeout_s=60))
    else:
        match = at.make_match(store)
        killed = await kill_in_step(scenario, gate, RESTART, match, forward=at.forward)
    assert await paused(scenario) == (["sla"] if left_paused else []), killed.output
    assert sorted(await locks(scenario)) == [
        f"chatops:{scenario.prefix}:lock:test:queue:sla",
        f"chatops:{scenario.prefix}:lock:test:worker:notification",
    ], killed.output

    shown, said = await recovered(scenario, killed.op_id)
    assert_interrupted_at(shown, step)
    line = f"recovered: operation {killed.op_id} (restart notification in test) {shown['summary']}"
    assert line in said, said
    restored = ["queue sla resumed"] if left_paused else []
    if left_paused:
        assert f"{line}; put back: queue sla resumed" in said, said
    else:
        assert "put back" not in said, said
    assert recovery_audit(shown)["details"] == {"restored": restored, "left": []}
    assert await paused(scenario) == []
    assert await locks(scenario) == []
    assert await scenario.flag() is None  # a restart never touches the producers' flag

    await assert_serving(scenario)
    async with asyncio.timeout(30):  # the two jobs of before the restart completed too
        while await completed(scenario) < 3:
            await asyncio.sleep(0.1)
    runs = await scenario.runs()
    assert len(runs) == 3 and set(runs.values()) == {1}, runs


# ---- through Slack ------------------------------------------------------------------------


@pytest.mark.parametrize("slack", ["up", "failing across the restart"])
async def test_a_serve_process_killed_mid_drain_is_taken_over_and_told_in_its_thread(
    scenario: Scenario, gate: RedisGate, fake_slack: FakeSlack, slack: str
) -> None:
    """With Slack failing, the issue's "429 and 500 for a while, and the bot restarted mid-way":
    the progress updates rate-limited (429) while the drain runs and its process dies, Slack
    down (500) while the next process starts and takes over, then back. The takeover and the
    final state still arrive, once each."""
    outage = slack != "up"
    environ = configure(scenario, fake_slack)
    flag_key = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
    await scenario.produce("sla", JOBS)
    step, match, forward = DRAIN_STEPS["watch"]
    gate.arm(match, forward=forward)

    def progress() -> dict[str, Any] | None:
        found = [m for m in fake_slack.messages(CHANNEL) if ": running" in m.get("text", "")]
        return found[-1] if found else None

    async with scenario.node_worker(CONCURRENCY="1", JOB_MS="150"):
        async with served(environ, scenario.tmp) as (first, port):
            driver = SlackDriver(
                f"http://127.0.0.1:{port}/slack/events", SECRET, fake_slack, channel=CHANNEL
            )
            if outage:
                fake_slack.fail("chat.update", status=429, times=1000)
            await driver.command_confirmed("/queue", "drain sla", user=OPS)
            await gate.wait_held(timeout_s=30)  # watching the queue, producers off
            await fake_slack.wait_until(lambda: progress() is not None, timeout_s=20)
            if outage:  # its step changes were rate-limited, and are still owed
                await fake_slack.wait_until(lambda: _refused_posts(fake_slack) > 0, timeout_s=20)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        message = progress()
        assert message is not None
        found = re.search(r"op-[0-9a-f]{10}", json.dumps(message))
        assert found, message
        op_id = found.group(0)
        assert await scenario.flag() == "false"

        # Started again once the dead one's heartbeat lapsed, as an orchestrator restarts it.
        await asyncio.sleep(LAPSE_S)
        if outage:
            fake_slack.fail_all(status=500)
        refused_before = _refused_posts(fake_slack)
        async with served(environ, scenario.tmp) as (second, _):

            def takeover() -> list[str]:
                replies = fake_slack.thread(CHANNEL, str(message["ts"]))
                return [r["text"] for r in replies if "taken over by" in r.get("text", "")]

            def ended() -> dict[str, Any] | None:
                now = fake_slack.message(CHANNEL, str(message["ts"]))
                return now if now is not None and ": running" not in now["text"] else None

            if outage:
                # The takeover is tried, refused, and kept in the outbox until Slack is back.
                await fake_slack.wait_until(
                    lambda: _refused_posts(fake_slack) > refused_before, timeout_s=20
                )
                await asyncio.sleep(1.0)
                assert not takeover() and not ended()
                fake_slack.recover()
            await fake_slack.wait_until(lambda: bool(takeover()) and bool(ended()), timeout_s=40)
            await asyncio.sleep(1.0)  # anything sent twice would be in by now
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.communicate(), 45)
    (reply,) = takeover()
    # The progress message itself no longer shows the dead process running, nor its Cancel.
    final = ended()
    assert final is not None
    assert final["text"].startswith("drain sla in test: interrupted — interrupted at step 3"), final
    assert "cancel" not in json.dumps(final["blocks"]).lower(), final["blocks"]
    said = " ".join(reply.split())
    assert f"operation {op_id} (drain sla in test) interrupted at step {step} of 4" in said, said
    assert f"put back: producer flag {flag_key} back on" in said, said
    assert await scenario.flag() == "true"
    assert await locks(scenario) == []
    shown = await scenario.json("ops", "show", op_id)
    assert_interrupted_at(shown, step)
    assert recovery_audit(shown)["outcome"] == "restored"
    runs = await scenario.runs()
    assert len(runs) == JOBS and set(runs.values()) == {1}, runs
    running = [m for m in fake_slack.messages(CHANNEL) if "drain sla" in m.get("text", "")]
    assert len(running) == 1  # posted once, then updated in place
    assert fake_slack.rate_limited == 0  # the fake's own tier limits, never exceeded


def _refused_posts(fake_slack: FakeSlack) -> int:
    """Messages the fake turned away with an injected fault (429, 500)."""
    kinds = ("chat.postMessage", "chat.update")
    return sum(1 for call in fake_slack.calls if call.injected and call.method in kinds)
