"""BullMQ's completed-jobs metric: a running total kept by workers that run with metrics on."""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.queues.keys import QueueKeys


async def completed_total(redis: aioredis.Redis, *, prefix: str, queue: str) -> int | None:
    """`metrics:completed` `count`; None when no worker has recorded metrics for the queue."""
    count = await redis.hget(QueueKeys(prefix, queue).of("metrics:completed"), "count")
    return int(count) if count is not None else None


async def job_id_counter(redis: aioredis.Redis, *, prefix: str, queue: str) -> int:
    """`<prefix>:<queue>:id`, which BullMQ increments for every job added without an id of its
    own: a count no stream trimming can lose."""
    value = await redis.get(QueueKeys(prefix, queue).of("id"))
    return int(value) if value else 0
