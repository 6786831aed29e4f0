"""Queue states and counts against real BullMQ keys written by Python bullmq."""

from __future__ import annotations

import asyncio
from typing import Any

import bullmq
import pytest
import redis.asyncio as redis
from redis.asyncio.client import Pipeline

from bot.errors import QueueNotFound, UnsupportedQueue
from bot.queues import (
    QueueCounts,
    pause_queue,
    read_state,
    read_states,
    resume_queue,
    states_now,
)
from tests.bot.queues.bullmq_helpers import eventually, running_worker
from tests.conftest import REDIS_URL


async def test_counts_every_state_like_get_job_counts(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    release = asyncio.Event()

    async def process(job: Any, token: str) -> str:
        if job.name == "fail":
            raise ValueError("boom")
        if job.name == "hold":
            await release.wait()
        return "ok"

    await bull_queue.add("fail", {})
    await bull_queue.add("ok", {})
    await bull_queue.add("hold", {})
    async with running_worker(prefix, queue_name, process):

        async def held() -> bool:
            c = (await read_state(redis_client, prefix=prefix, queue=queue_name)).counts
            return (c.failed, c.completed, c.active) == (1, 1, 1)

        await eventually(held)
        for i in range(3):
            await bull_queue.add("plain", {"i": i})
        await bull_queue.add("later", {}, {"delay": 60_000})
        await bull_queue.add("later", {}, {"delay": 120_000})
        await bull_queue.add("urgent", {}, {"priority": 1})
        await bull_queue.add("urgent", {}, {"priority": 5})
        flows = bullmq.FlowProducer({"connection": REDIS_URL, "prefix": prefix})
        try:
            await flows.add(
                {
                    "name": "parent",
                    "queueName": queue_name,
                    "data": {},
                    "children": [{"name": "child", "queueName": queue_name, "data": {}}],
                }
            )
        finally:
            await flows.close()

        state = await read_state(redis_client, prefix=prefix, queue=queue_name)
        assert state.counts == QueueCounts(
            waiting=4, active=1, delayed=2, prioritized=2, waiting_children=1, failed=1, completed=1
        )
        assert state.counts.as_job_counts() == await bull_queue.getJobCounts()
        assert state.summary() == (
            f"{queue_name}: 4 waiting, 1 active, 2 delayed, 2 prioritized, 1 waiting-children, "
            "1 failed"
        )
        assert state.name == queue_name
        assert state.paused is False
        release.set()


async def test_paused_keeps_counts(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("a", {})
    await bull_queue.add("b", {})
    await pause_queue(redis_client, prefix=prefix, queue=queue_name)
    paused = await read_state(redis_client, prefix=prefix, queue=queue_name)
    assert paused.paused is True
    assert paused.counts.waiting == 2  # v6: jobs stay in `wait`
    assert paused.summary() == f"{queue_name}: 2 waiting, 0 active, 0 delayed (paused)"
    assert await bull_queue.isPaused() is True
    await resume_queue(redis_client, prefix=prefix, queue=queue_name)
    assert (await read_state(redis_client, prefix=prefix, queue=queue_name)).paused is False


async def test_many_queues_in_one_transaction(
    redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["alpha", "beta", "gamma"]
    queues = [bullmq.Queue(n, {"connection": REDIS_URL, "prefix": prefix}) for n in names]
    try:
        for count, queue in enumerate(queues, start=1):
            for _ in range(count):
                await queue.add("j", {})
    finally:
        for queue in queues:
            await queue.close()

    executions = []
    original = Pipeline.execute

    async def counted(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        executions.append(len(self.command_stack))
        return await original(self, raise_on_error)

    async def no_direct_command(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a command outside the pipeline: {args[:2]}")

    monkeypatch.setattr(Pipeline, "execute", counted)
    monkeypatch.setattr(redis_client, "execute_command", no_direct_command)
    states = await read_states(redis_client, prefix=prefix, queues=names)
    assert [s.name for s in states] == names
    assert [s.counts.waiting for s in states] == [1, 2, 3]
    assert len(executions) == 1


async def test_a_plan_over_many_queues_shows_totals_and_the_busiest(
    redis_client: redis.Redis, prefix: str
) -> None:
    names = [f"q{i}" for i in range(7)]
    queues = [bullmq.Queue(n, {"connection": REDIS_URL, "prefix": prefix}) for n in names]
    try:
        await queues[0].add("later", {}, {"delay": 60_000})  # q0: one delayed job
        for jobs, queue in enumerate(queues):  # then q1 holds one waiting, q6 six
            for _ in range(jobs):
                await queue.add("j", {})
    finally:
        for queue in queues:
            await queue.close()
    states = await read_states(redis_client, prefix=prefix, queues=names)
    assert states_now(states[:2]) == (
        "now q0: 0 waiting, 0 active, 1 delayed",
        "now q1: 1 waiting, 0 active, 0 delayed",
    )
    assert states_now(states, shown=3) == (
        "now 7 queues: 21 waiting, 0 active in all",
        "now q6: 6 waiting, 0 active, 0 delayed",
        "now q5: 5 waiting, 0 active, 0 delayed",
        "now q4: 4 waiting, 0 active, 0 delayed",
        "and 4 more queues holding jobs",
    )


async def test_wrong_prefix_names_the_real_one(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("j", {})
    with pytest.raises(QueueNotFound) as caught:
        await read_states(redis_client, prefix=f"{prefix}-wrong", queues=[queue_name])
    assert caught.value.prefixes_found == [prefix]
    assert repr(prefix) in str(caught.value)


async def test_unknown_queue_lists_prefixes_that_hold_queues(
    redis_client: redis.Redis, bull_queue: Any, prefix: str
) -> None:
    await bull_queue.add("j", {})
    with pytest.raises(QueueNotFound) as caught:
        await read_states(redis_client, prefix="bullmq", queues=[f"{prefix}-none"])
    assert prefix in caught.value.prefixes_found


async def test_queue_without_meta_is_found_by_its_other_keys(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("j", {})
    await redis_client.delete(f"{prefix}:{queue_name}:meta")
    state = await read_state(redis_client, prefix=prefix, queue=queue_name)
    assert state.counts.waiting == 1
    assert state.version == ""


async def test_node_version_is_reported(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("j", {})
    await redis_client.hset(f"{prefix}:{queue_name}:meta", "version", "bullmq:6.7.0")
    assert (
        await read_state(redis_client, prefix=prefix, queue=queue_name)
    ).version == "bullmq:6.7.0"


@pytest.mark.parametrize("version", ["bullmq:5.58.0", "bullmq:4.17.0", "bullmq-pro:7.3.0"])
async def test_older_bullmq_is_refused(
    redis_client: redis.Redis, prefix: str, queue_name: str, version: str
) -> None:
    await redis_client.hset(f"{prefix}:{queue_name}:meta", mapping={"version": version})
    with pytest.raises(UnsupportedQueue, match=version):
        await read_states(redis_client, prefix=prefix, queues=[queue_name])


async def test_v5_paused_list_is_refused(
    redis_client: redis.Redis, prefix: str, queue_name: str
) -> None:
    await redis_client.rpush(f"{prefix}:{queue_name}:paused", "1", "2")
    with pytest.raises(UnsupportedQueue, match="paused list"):
        await read_states(redis_client, prefix=prefix, queues=[queue_name])


async def test_legacy_marker_in_wait_is_not_a_job(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("j", {})
    await redis_client.rpush(f"{prefix}:{queue_name}:wait", "0:0")
    state = await read_state(redis_client, prefix=prefix, queue=queue_name)
    assert state.counts.waiting == 1
    assert await redis_client.llen(f"{prefix}:{queue_name}:wait") == 2  # read, not popped
