"""BullMQ's completed-jobs metric: a running total kept by workers that run with metrics on."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from bot.queues.keys import QueueKeys
from bot.queues.states import QueueState


async def completed_totals(
    redis: aioredis.Redis, *, prefix: str, queues: Sequence[str]
) -> list[int | None]:
    """Each queue's `metrics:completed` `count`, in one round trip; None for a queue where no
    worker has recorded metrics."""
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


async def job_id_counters(
    redis: aioredis.Redis, *, prefix: str, queues: Sequence[str]
) -> list[int]:
    """Each queue's `<prefix>:<queue>:id`, in one round trip: BullMQ increments it for every job
    added without an id of its own, a count no stream trimming can lose."""
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.get(QueueKeys(prefix, queue).of("id"))
        return [int(value) if value else 0 for value in await pipe.execute()]
