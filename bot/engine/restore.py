"""Put back what an operation changed: the same code after a failure, a cancel or a crash."""

from __future__ import annotations

import redis.asyncio as redis

from bot.config import EnvironmentConfig
from bot.flags import set_flag
from bot.queues import resume_queue

QUEUE_PAUSED = "queue_paused"
FLAG_OFF = "flag_off"


async def put_back(kind: str, key: str, *, env: EnvironmentConfig, redis: redis.Redis) -> str:
    if kind == QUEUE_PAUSED:
        await resume_queue(redis, prefix=env.prefix, queue=key)
        return f"queue {key} resumed"
    if kind == FLAG_OFF:
        await set_flag(redis, key, True)
        return f"producer flag {key} back on"
    raise ValueError(f"unknown restore kind {kind!r}")
