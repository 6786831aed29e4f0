"""The completed-jobs total that workers with metrics keep."""

from __future__ import annotations

from typing import Any

import bullmq
import redis.asyncio as redis

from bot.queues import completed_totals, completions, read_state, read_states
from tests.bot.queues.bullmq_helpers import eventually, running_worker
from tests.conftest import REDIS_URL


async def test_completed_totals_count_processed_jobs(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    assert await completed_totals(redis_client, prefix=prefix, queues=[queue_name]) == [None]

    async def process(job: Any, token: str) -> str:
        return "done"

    for i in range(3):
        await bull_queue.add("j", {"i": i}, {"removeOnComplete": True})
    async with running_worker(prefix, queue_name, process, metrics={"maxDataPoints": 60}):

        async def drained() -> bool:
            c = (await read_state(redis_client, prefix=prefix, queue=queue_name)).counts
            return c.waiting + c.active == 0

        await eventually(drained)
    # The jobs themselves are gone (removeOnComplete); the running total stays.
    assert (await read_state(redis_client, prefix=prefix, queue=queue_name)).counts.completed == 0
    assert await completed_totals(redis_client, prefix=prefix, queues=[queue_name]) == [3]


async def test_completions_take_each_queues_metric_or_else_its_completed_set(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    """One queue whose workers keep metrics (jobs removed on completion), one whose workers
    do not (jobs kept): counted together, each the way it can be."""
    plain_name = f"{queue_name}-plain"
    plain = bullmq.Queue(plain_name, {"connection": REDIS_URL, "prefix": prefix})

    async def process(job: Any, token: str) -> str:
        return "done"

    try:
        for i in range(3):
            await bull_queue.add("j", {"i": i}, {"removeOnComplete": True})
        for i in range(2):
            await plain.add("j", {"i": i})
        async with (
            running_worker(prefix, queue_name, process, metrics={"maxDataPoints": 60}),
            running_worker(prefix, plain_name, process),
        ):

            async def drained() -> bool:
                states = await read_states(
                    redis_client, prefix=prefix, queues=[queue_name, plain_name]
                )
                return all(s.counts.waiting + s.counts.active == 0 for s in states)

            await eventually(drained)
        states = await read_states(redis_client, prefix=prefix, queues=[queue_name, plain_name])
        assert [s.counts.completed for s in states] == [0, 2]
        assert await completions(redis_client, prefix=prefix, states=states) == 5
    finally:
        await plain.close()  # its keys are under the test's prefix: `redis_client` deletes them
