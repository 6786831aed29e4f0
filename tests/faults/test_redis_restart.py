"""Redis restarted under a drain and under a status call, through the `chatops` CLI a user runs,
with the real Node BullMQ worker and a redis-server of the test's own: the drain resumes and
finishes, or fails naming Redis and puts the producer flag back; never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from tests.faults.redis_process import RedisProcess, redis_process
from tests.scenarios.conftest import Result, Scenario, scenario_on

JOBS = 300


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.05)


def _flat(text: str) -> str:
    """Rich wraps stderr at 80 columns: compare on words."""
    return " ".join(text.split())


def _show(result: Result) -> str:
    return f"exit {result.code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@contextlib.asynccontextmanager
async def _scenario(server: RedisProcess, prefix: str, tmp: Path) -> AsyncIterator[Scenario]:
    # The test's own reads (runs, flag) ride out the restart: retried for a few seconds.
    client = redis.Redis.from_url(
        server.url, decode_responses=True, retry=Retry(ExponentialBackoff(cap=0.5), 20)
    )
    try:
        async with scenario_on(client, prefix, tmp, redis_url=server.url) as scenario:
            yield scenario
    finally:
        await client.aclose()


@pytest.fixture
async def durable_redis() -> AsyncIterator[RedisProcess]:
    """An append-only file: a restart, even after SIGKILL, keeps the jobs, the flag and the lock."""
    async with redis_process(persistent=True) as server:
        yield server


@pytest.fixture
async def scenario(
    durable_redis: RedisProcess, prefix: str, tmp_path: Path
) -> AsyncIterator[Scenario]:
    async with _scenario(durable_redis, prefix, tmp_path) as scenario:
        yield scenario


class _Drain:
    """A `chatops queue drain` running in the background, its output readable as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout = ""

    async def read_until(self, marker: str, timeout_s: float = 60.0) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            while marker not in _flat(self.stdout):
                line = await self.proc.stdout.readline()
                assert line, f"drain ended before {marker!r}:\n{self.stdout}"
                self.stdout += line.decode()

    async def result(self, timeout_s: float = 90.0) -> Result:
        async with asyncio.timeout(timeout_s):
            out, err = await self.proc.communicate()
        return Result(self.proc.returncode or 0, self.stdout + out.decode(), err.decode())


@contextlib.asynccontextmanager
async def _draining(scenario: Scenario) -> AsyncIterator[_Drain]:
    """A drain of `sla` started, its producer flag already off; killed if the test fails."""
    proc = await scenario.spawn("queue", "drain", "sla", "--env", "test", "--yes")
    try:

        async def flag_off() -> bool:
            return await scenario.flag() == "false"

        await _wait_for(flag_off)
        yield _Drain(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def _runs_reach(scenario: Scenario, count: int) -> None:
    async def reached() -> bool:
        return len(await scenario.runs()) >= count

    await _wait_for(reached)


def _no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, _show(result)


async def test_drain_resumes_after_a_restart_that_keeps_the_data_and_runs_every_job_once(
    scenario: Scenario, durable_redis: RedisProcess
) -> None:
    await scenario.produce("sla", JOBS)
    async with _draining(scenario) as drain:
        # The worker starts after the flag is off, so the restart surely falls mid-drain.
        async with scenario.node_worker(CONCURRENCY="2", JOB_MS="15"):
            await _runs_reach(scenario, 20)
            assert len(await scenario.runs()) < JOBS
            await durable_redis.restart()  # SIGKILL: a crash, then a start from the AOF
            result = await drain.result()
    _no_traceback(result)
    assert result.code == 0, _show(result)
    assert "sla drained" in result.stdout
    counts = await scenario.counts()
    assert counts["waiting"] == counts["active"] == counts["delayed"] == 0, counts
    assert counts["completed"] == JOBS
    runs = await scenario.runs()
    assert len(runs) == JOBS and set(runs.values()) == {1}, runs  # none lost, none twice
    assert await scenario.flag() == "true"
    history = await scenario.json("ops", "history")
    assert history[0]["kind"] == "drain" and history[0]["outcome"] == "succeeded"


async def test_drain_fails_naming_redis_when_it_stays_away_and_puts_the_flag_back_on_return(
    scenario: Scenario, durable_redis: RedisProcess
) -> None:
    # Redis away for longer than a stall: kept short. The worker runs before the drain starts
    # (a worker slow to start must not read as a stall), with jobs enough to outlast its start.
    scenario.configure(drain={"stall_s": 2, "timeout_s": 60, "poll_interval_s": 0.2})
    await scenario.produce("sla", JOBS)
    async with scenario.node_worker(CONCURRENCY="2", JOB_MS="40"):
        async with _draining(scenario) as drain:
            assert len(await scenario.runs()) < JOBS
            await durable_redis.stop()
            await drain.read_until("gave up after")  # the watch gave up: step 3 failed
            await durable_redis.start()
            result = await drain.result()
        assert await scenario.flag() == "true"  # put back by the drain itself
        # What the failed drain left is still queued: a second drain finishes it.
        scenario.configure(drain={"stall_s": 6, "timeout_s": 60, "poll_interval_s": 0.2})
        again = await scenario.chatops("queue", "drain", "sla", "--env", "test", "--yes")
    _no_traceback(result)
    assert result.code == 1, _show(result)
    text = _flat(result.stdout)
    assert "Redis unreachable (ConnectionError); retrying" in text, _show(result)
    assert "failed at step 3 of 4" in text and "gave up after" in text, _show(result)
    assert "put back: producer flag" in text, _show(result)
    assert "STILL TO DO BY HAND" not in text, _show(result)
    assert again.code == 0, _show(again)
    runs = await scenario.runs()
    assert len(runs) == JOBS, runs  # none lost
    # Redis was away longer than the fixture worker's 2 s job lock: BullMQ may run the jobs
    # active at that moment again (stalled jobs, at-least-once). No other job runs twice.
    assert sum(n - 1 for n in runs.values()) <= 2, {k: n for k, n in runs.items() if n > 1}
    assert await scenario.flag() == "true"
    second, first = await scenario.json("ops", "history")
    assert first["outcome"] == "failed" and "Redis unreachable" in first["summary"]
    assert second["outcome"] == "succeeded"
    shown = await scenario.json("ops", "show", first["id"])
    assert [s["state"] for s in shown["steps"]] == ["succeeded", "succeeded", "failed", "skipped"]
    assert "Redis unreachable (" in shown["steps"][2]["error"]
    assert "gave up after" in shown["steps"][2]["error"]
    assert [a["outcome"] for a in shown["audit"]] == ["failed", "started"]  # newest first


async def test_drain_fails_clearly_when_redis_comes_back_empty(prefix: str, tmp_path: Path) -> None:
    async with (
        redis_process(persistent=False) as server,
        _scenario(server, prefix, tmp_path) as scenario,
    ):
        await scenario.produce("sla", JOBS)
        async with _draining(scenario) as drain:
            async with scenario.node_worker(CONCURRENCY="2", JOB_MS="15") as worker:
                await _runs_reach(scenario, 20)
                await server.restart()  # no AOF, no RDB: the jobs, the flag and the lock are gone
                result = await drain.result()
                # Node BullMQ's Worker.close() waits forever for jobs whose keys are gone (seen:
                # `worker:closing`, never `worker:closed`): not the bot's to test, so no SIGINT.
                worker.kill()
                await worker.wait()
        _no_traceback(result)
        assert result.code == 1, _show(result)
        gone = f"no queue 'sla' under prefix '{prefix}' ({prefix}:sla:meta is missing)"
        text = _flat(result.stdout)
        assert "failed at step 3 of 4 (wait until sla" in text, _show(result)
        assert f"(up to 60 s)): {gone}" in text, _show(result)
        assert "no BullMQ queue exists in this Redis database" in text, _show(result)
        assert "put back: producer flag" in text, _show(result)
        assert await scenario.flag() == "true"  # producers may add again to the empty Redis
        (op,) = await scenario.json("ops", "history")
        assert op["outcome"] == "failed" and gone in op["summary"]


async def test_status_during_the_outage_names_redis_and_answers_again_once_it_is_back(
    scenario: Scenario, durable_redis: RedisProcess
) -> None:
    await scenario.produce("sla", 5)
    await durable_redis.stop()
    for args in (("queue", "status", "sla"), ("queue", "status", "sla", "--json")):
        down = await scenario.chatops(*args, "--env", "test")
        _no_traceback(down)
        assert down.code == 1, _show(down)
        assert down.stdout == ""
        assert "error: Redis unreachable (ConnectionError" in _flat(down.stderr), _show(down)
    await durable_redis.start()
    assert (await scenario.counts())["waiting"] == 5


async def test_drain_while_redis_is_down_is_refused_naming_redis_and_changes_nothing(
    scenario: Scenario, durable_redis: RedisProcess
) -> None:
    await scenario.produce("sla", 5)
    await durable_redis.stop()
    down = await scenario.chatops("queue", "drain", "sla", "--env", "test", "--yes")
    _no_traceback(down)
    assert down.code == 1, _show(down)
    assert "error: Redis unreachable (ConnectionError" in _flat(down.stderr), _show(down)
    await durable_redis.start()
    assert await scenario.flag() is None  # never turned off
    assert (await scenario.counts())["waiting"] == 5
    # The lock is taken before the operation is recorded, so none was.
    assert await scenario.json("ops", "history") == []
