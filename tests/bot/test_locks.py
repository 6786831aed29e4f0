"""Operation locks: exclusion naming the holder, all-or-nothing, renewal, release on every exit."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as redis

from bot.errors import LockHeld
from bot.locks import force_release, hold_locks, lock_info


@pytest.fixture
def lock_keys(prefix: str) -> list[str]:
    return [f"chatops:{prefix}:lock:staging:queue:sla", f"chatops:{prefix}:lock:staging:worker:n"]


async def test_a_second_holder_is_refused_with_the_first_named(
    redis_client: redis.Redis, lock_keys: list[str]
) -> None:
    async with hold_locks(redis_client, lock_keys[:1], holder="alice (slack)", operation_id="op-1"):
        with pytest.raises(LockHeld) as caught:
            async with hold_locks(redis_client, lock_keys[:1], holder="bob", operation_id="op-2"):
                pytest.fail("acquired a held lock")
        assert caught.value.holder == "alice (slack)"
        assert caught.value.operation_id == "op-1"
        assert caught.value.key == lock_keys[0]
        assert "alice (slack) (operation op-1)" in str(caught.value)
    assert await redis_client.exists(*lock_keys) == 0


async def test_all_keys_or_none(redis_client: redis.Redis, lock_keys: list[str]) -> None:
    async with hold_locks(redis_client, lock_keys[1:], holder="alice", operation_id="op-1"):
        with pytest.raises(LockHeld) as caught:
            async with hold_locks(redis_client, lock_keys, holder="bob", operation_id="op-2"):
                pytest.fail("acquired a held lock")
        assert caught.value.key == lock_keys[1]
        # The free key was not taken by the refused attempt.
        assert await redis_client.exists(lock_keys[0]) == 0
    async with hold_locks(redis_client, lock_keys, holder="bob", operation_id="op-2") as lock:
        for key in lock_keys:
            value = json.loads(await redis_client.get(key) or "{}")
            assert value["holder"] == "bob"
            assert value["operation_id"] == "op-2"
            assert value["token"] == lock.token
    assert await redis_client.exists(*lock_keys) == 0


async def test_renewal_keeps_it_past_its_ttl(
    redis_client: redis.Redis, lock_keys: list[str]
) -> None:
    async with hold_locks(
        redis_client, lock_keys, holder="alice", operation_id="op-1", ttl_ms=300, renew_every_s=0.1
    ) as lock:
        await asyncio.sleep(0.9)
        assert await redis_client.exists(*lock_keys) == 2
        assert not lock.lost.is_set()
        info = await lock_info(redis_client, lock_keys[0])
        assert info is not None and 0 < (info.ttl_ms or 0) <= 300


async def test_a_lock_taken_away_is_signalled_lost_and_left_alone(
    redis_client: redis.Redis, lock_keys: list[str]
) -> None:
    async with hold_locks(
        redis_client,
        lock_keys,
        holder="alice",
        operation_id="op-1",
        ttl_ms=5000,
        renew_every_s=0.05,
    ) as lock:
        await force_release(redis_client, lock_keys[0])
        await redis_client.set(lock_keys[0], "someone else")
        await asyncio.wait_for(lock.lost.wait(), 2)
        assert lock.lost_reason == "expired or taken by another holder"
    # Release deleted only what was still ours.
    assert await redis_client.get(lock_keys[0]) == "someone else"
    assert await redis_client.exists(lock_keys[1]) == 0


async def test_released_on_exception(redis_client: redis.Redis, lock_keys: list[str]) -> None:
    with pytest.raises(RuntimeError):
        async with hold_locks(redis_client, lock_keys, holder="alice", operation_id="op-1"):
            raise RuntimeError("step failed")
    assert await redis_client.exists(*lock_keys) == 0


async def test_released_on_cancellation(redis_client: redis.Redis, lock_keys: list[str]) -> None:
    entered = asyncio.Event()

    async def operation() -> None:
        async with hold_locks(redis_client, lock_keys, holder="alice", operation_id="op-1"):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(operation())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis_client.exists(*lock_keys) == 0


async def test_info_and_force_release(redis_client: redis.Redis, lock_keys: list[str]) -> None:
    assert await lock_info(redis_client, lock_keys[0]) is None
    assert await force_release(redis_client, lock_keys[0]) is None
    async with hold_locks(redis_client, lock_keys[:1], holder="alice", operation_id="op-7") as lock:
        info = await lock_info(redis_client, lock_keys[0])
        assert info is not None
        assert (info.holder, info.operation_id, info.token) == ("alice", "op-7", lock.token)
        assert info.acquired_at is not None
        released = await force_release(redis_client, lock_keys[0])
        assert released is not None and released.holder == "alice"
        assert await redis_client.exists(lock_keys[0]) == 0
        async with hold_locks(redis_client, lock_keys[:1], holder="bob", operation_id="op-8"):
            pass


async def test_a_foreign_value_is_named_as_is(
    redis_client: redis.Redis, lock_keys: list[str]
) -> None:
    await redis_client.set(lock_keys[0], "manual maintenance")
    with pytest.raises(LockHeld, match="manual maintenance"):
        async with hold_locks(redis_client, lock_keys[:1], holder="bob", operation_id="op-2"):
            pass
