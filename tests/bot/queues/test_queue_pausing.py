"""Pause and resume one queue; a wrong prefix is refused before anything is written."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as redis

from bot.errors import QueueNotFound
from bot.queues import is_queue_paused, pause_queue, resume_queue


async def test_pause_and_resume(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("j", {})
    assert await is_queue_paused(redis_client, prefix=prefix, queue=queue_name) is False
    await pause_queue(redis_client, prefix=prefix, queue=queue_name)
    assert await is_queue_paused(redis_client, prefix=prefix, queue=queue_name) is True
    assert await redis_client.hget(f"{prefix}:{queue_name}:meta", "paused") == "1"
    assert await redis_client.llen(f"{prefix}:{queue_name}:wait") == 1
    await resume_queue(redis_client, prefix=prefix, queue=queue_name)
    assert await is_queue_paused(redis_client, prefix=prefix, queue=queue_name) is False
    assert await bull_queue.isPaused() is False


async def test_pause_under_a_wrong_prefix_writes_nothing(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("j", {})
    wrong = f"{prefix}:wrong"
    with pytest.raises(QueueNotFound):
        await pause_queue(redis_client, prefix=wrong, queue=queue_name)
    assert [k async for k in redis_client.scan_iter(match=f"{wrong}:*")] == []


async def test_the_borrowed_client_stays_open(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.add("j", {})
    await pause_queue(redis_client, prefix=prefix, queue=queue_name)
    await resume_queue(redis_client, prefix=prefix, queue=queue_name)
    assert await redis_client.ping() is True
