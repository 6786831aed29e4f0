"""Put back what an operation changed: the same code after a failure, a cancel or a crash."""

from __future__ import annotations

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.clock import Clock
from bot.config import EnvironmentConfig
from bot.flags import Running, holders_key, release
from bot.queues import resume_queue
from bot.store import Store

QUEUE_PAUSED = "queue_paused"
FLAG_OFF = "flag_off"


def running_in(store: Store) -> Running:
    """Whether an operation is still running, as `store` has it."""

    async def running(operation_id: str) -> bool:
        op = await store.get_operation(operation_id)
        return op is not None and op.state == "running"

    return running


async def put_back(
    kind: str,
    key: str,
    *,
    env: EnvironmentConfig,
    redis: redis.Redis,
    operation_id: str,
    running: Running | None = None,
) -> str:
    """Undo one change of operation `operation_id`. The producer flag goes back on only once no
    other drain holds it off (`running`, where the store can be asked, drops ended holders)."""
    if kind == QUEUE_PAUSED:
        await resume_queue(redis, prefix=env.prefix, queue=key)
        return f"queue {key} resumed"
    if kind == FLAG_OFF:
        others = await release(
            redis, key, holders_key(env.prefix, key), operation_id, running=running
        )
        return flag_released(key, others)
    raise ValueError(f"unknown restore kind {kind!r}")


def flag_released(key: str, others: list[str]) -> str:
    if not others:
        return f"producer flag {key} back on"
    return (
        f"producer flag {key} left false: {len(others)} other drain(s) still hold producers "
        f"off ({', '.join(others[:5])})"
    )


async def put_back_patiently(
    kind: str,
    key: str,
    *,
    env: EnvironmentConfig,
    redis: redis.Redis,
    clock: Clock,
    patience_s: float,
    operation_id: str,
    running: Running | None = None,
) -> str:
    """`put_back`, tried again while Redis is unreachable (restarting, failing over) for up to
    `patience_s`; then the last connection error. Safe to repeat: each put-back is idempotent."""
    give_up_at = clock.monotonic() + patience_s
    delay_s = 0.1
    while True:
        try:
            return await put_back(
                kind, key, env=env, redis=redis, operation_id=operation_id, running=running
            )
        except (RedisConnectionError, RedisTimeoutError):
            if clock.monotonic() + delay_s >= give_up_at:
                raise
            await clock.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)
