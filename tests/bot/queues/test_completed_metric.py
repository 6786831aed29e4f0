"""The completed-jobs total that workers with metrics keep."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from bot.queues import completed_total, read_state
from tests.bot.queues.bullmq_helpers import eventually, running_worker


async def test_completed_total_counts_processed_jobs(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    assert await completed_total(redis_client, prefix=prefix, queue=queue_name) is None

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
    assert await completed_total(redis_client, prefix=prefix, queue=queue_name) == 3
