"""BullMQ's completed-jobs metric: a running total kept by workers that run with metrics on."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from bot.queues.keys import QueueKeys
from bot.queues.states import QueueState


async def completed_total(redis: aioredis.Redis, *, prefix: str, queue: str) -> int | None:
    """`metrics:completed` `count`; None when no worker has recorded metrics for the queue."""
    (count,) = await completed_totals(redis, prefix=prefix, queues=[queue])
    return count


async def completed_totals(
    redis: aioredis.Redis, *, prefix: str, queues: Sequence[str]
) -> list[int | None]:
    """`completed_total` of each queue, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.hget(QueueKeys(prefix, queue).of("metrics:completed"), "count")
        return [int(count) if count is not None else None for count in await pipe.execute()]


async def completions(redis: aioredis.Redis, *, prefix: str, states: Sequence[QueueState]) -> int:
    """Completions so far, the queues of `states` together: the metrics count where workers keep
    one (it survives `removeOnComplete`), else the completed set."""
    totals = await completed_totals(redis, prefix=prefix, queues=[state.name for state in states])
    return sum(
        state.counts.completed if total is None else total
        for state, total in zip(states, totals, strict=True)
    )


async def job_id_counter(redis: aioredis.Redis, *, prefix: str, queue: str) -> int:
    """`<prefix>:<queue>:id`, which BullMQ increments for every job added without an id of its
    own: a count no stream trimming can lose."""
    value = await redis.get(QueueKeys(prefix, queue).of("id"))
    return int(value) if value else 0
