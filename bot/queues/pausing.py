"""Pause and resume one queue (BullMQ 6: only `meta.paused`; jobs stay in `wait`).

The queue is checked first: pausing under a wrong prefix would create a `meta` hash there, and
that stray key would then make the wrong prefix look like an existing, empty queue.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.queues.bullmq_adapter import open_queue
from bot.queues.states import read_state


async def pause_queue(redis: aioredis.Redis, *, prefix: str, queue: str) -> None:
    await read_state(redis, prefix=prefix, queue=queue)
    async with open_queue(redis, prefix=prefix, queue=queue) as bull:
        await bull.pause()


async def resume_queue(redis: aioredis.Redis, *, prefix: str, queue: str) -> None:
    await read_state(redis, prefix=prefix, queue=queue)
    async with open_queue(redis, prefix=prefix, queue=queue) as bull:
        await bull.resume()


async def is_queue_paused(redis: aioredis.Redis, *, prefix: str, queue: str) -> bool:
    return (await read_state(redis, prefix=prefix, queue=queue)).paused
