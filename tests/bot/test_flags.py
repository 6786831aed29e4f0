"""The producer flag WORKER_ACCEPT_JOBS: unset, true, false, and a value the bot did not write."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from bot.errors import Refused
from bot.flags import get_flag, set_flag


async def test_unset_then_false_then_true(redis_client: redis.Redis, prefix: str) -> None:
    key = f"{prefix}:flags:WORKER_ACCEPT_JOBS"
    assert await get_flag(redis_client, key) is None
    await set_flag(redis_client, key, False)
    assert await redis_client.get(key) == "false"
    assert await get_flag(redis_client, key) is False
    await set_flag(redis_client, key, True)
    assert await redis_client.get(key) == "true"
    assert await get_flag(redis_client, key) is True


async def test_a_foreign_value_is_reported(redis_client: redis.Redis, prefix: str) -> None:
    key = f"{prefix}:flags:WORKER_ACCEPT_JOBS"
    await redis_client.set(key, "0")
    with pytest.raises(Refused, match=f"{key} holds '0'"):
        await get_flag(redis_client, key)
