"""Put back what an operation changed: the same code after a failure, a cancel or a crash."""

from __future__ import annotations

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.clock import Clock
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


async def put_back_patiently(
    kind: str,
    key: str,
    *,
    env: EnvironmentConfig,
    redis: redis.Redis,
    clock: Clock,
    patience_s: float,
) -> str:
    """`put_back`, tried again while Redis is unreachable (restarting, failing over) for up to
    `patience_s`; then the last connection error. Safe to repeat: each put-back is idempotent."""
    give_up_at = clock.monotonic() + patience_s
    delay_s = 0.1
    while True:
        try:
            return await put_back(kind, key, env=env, redis=redis)
        except (RedisConnectionError, RedisTimeoutError):
            if clock.monotonic() + delay_s >= give_up_at:
                raise
            await clock.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)
