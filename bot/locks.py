"""Redis locks for the operation engine: one operation per target at a time.

`hold_locks` takes all its keys or none (one Lua script), renews them in the background while
the body runs, and releases them on every exit path, cancellation included. Each value is JSON
naming the holder, the operation and a random token; renewal and release touch a key only while
it still holds this lock's token, so a lock that expired and was taken by another operation is
never extended or deleted. A renewal that finds the lock gone sets `Lock.lost`, which the engine
checks between steps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from bot.aio import cancel_and_wait
from bot.clock import Clock, SystemClock
from bot.errors import LockHeld

logger = logging.getLogger(__name__)

RELEASE_TIMEOUT_S = 5.0

_ACQUIRE = """
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current then return {key, current} end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return {}
"""

_RENEW = """
local renewed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed = renewed + 1
  end
end
return renewed
"""

_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""

_TAKE = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return {value, ttl}
"""

# Releases still running after the task that started them was cancelled.
_background_releases: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class LockInfo:
    key: str
    holder: str
    operation_id: str | None
    token: str | None
    acquired_at: datetime | None
    ttl_ms: int | None  # None when the key has no expiry


def _parse(key: str, value: str, ttl_ms: int) -> LockInfo:
    try:
        fields: Any = json.loads(value)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):  # not written by this module
        return LockInfo(key, value[:80], None, None, None, ttl_ms if ttl_ms >= 0 else None)
    acquired_at = fields.get("acquired_at")
    return LockInfo(
        key=key,
        holder=str(fields.get("holder", "unknown")),
        operation_id=fields.get("operation_id"),
        token=fields.get("token"),
        acquired_at=datetime.fromisoformat(acquired_at) if acquired_at else None,
        ttl_ms=ttl_ms if ttl_ms >= 0 else None,
    )


class Lock:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Sequence[str],
        *,
        holder: str,
        operation_id: str,
        ttl_ms: int = 30_000,
        renew_every_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not keys:
            raise ValueError("a lock needs at least one key")
        self.keys = list(dict.fromkeys(keys))
        self.holder = holder
        self.operation_id = operation_id
        self.ttl_ms = ttl_ms
        self.renew_every_s = renew_every_s if renew_every_s is not None else ttl_ms / 3000
        self.token = uuid.uuid4().hex
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._redis = redis
        self._clock = clock or SystemClock()
        self._value = json.dumps(
            {
                "holder": holder,
                "operation_id": operation_id,
                "token": self.token,
                "acquired_at": self._clock.now().astimezone(UTC).isoformat(),
            },
            separators=(",", ":"),
        )
        self._renewal: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Take every key or none; LockHeld names the holder of the first key already taken."""
        try:
            taken = await self._redis.eval(
                _ACQUIRE, len(self.keys), *self.keys, self._value, self.ttl_ms
            )
        except BaseException:
            # The script may have run before the reply was lost: undo it (token-checked).
            await self.release()
            raise
        if taken:
            key, value = str(taken[0]), str(taken[1])
            info = _parse(key, value, -1)
            raise LockHeld(key, holder=info.holder, operation_id=info.operation_id)
        self._renewal = asyncio.create_task(self._renew_until_lost())

    async def release(self) -> None:
        """Stop renewing and delete the keys this lock still holds.

        Runs to its end (bounded) even when the caller is cancelled meanwhile; a release that
        cannot reach Redis leaves the keys to expire with their TTL.
        """
        task = asyncio.ensure_future(self._release())
        _background_releases.add(task)
        task.add_done_callback(_background_releases.discard)
        await asyncio.shield(task)

    async def _release(self) -> None:
        if self._renewal is not None:
            await cancel_and_wait(self._renewal)
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self._redis.eval(_RELEASE, len(self.keys), *self.keys, self._value)
        except Exception as err:  # never mask the body's own outcome: the TTL cleans up
            logger.warning("could not release %s, left to expire: %s", self.keys, err)

    def _mark_lost(self, reason: str) -> None:
        self.lost_reason = reason
        self.lost.set()
        logger.warning("lock %s lost: %s", self.keys, reason)

    async def _renew_until_lost(self) -> None:
        last_renewed = self._clock.monotonic()
        while True:
            await self._clock.sleep(self.renew_every_s)
            try:
                async with asyncio.timeout(self.renew_every_s):
                    renewed = await self._redis.eval(
                        _RENEW, len(self.keys), *self.keys, self._value, self.ttl_ms
                    )
            except Exception as err:  # Redis unreachable or slow: retry until the TTL is up
                if self._clock.monotonic() - last_renewed >= self.ttl_ms / 1000:
                    self._mark_lost(f"not renewed for longer than its TTL ({err})")
                    return
                continue
            if int(renewed) < len(self.keys):
                self._mark_lost("expired or taken by another holder")
                return
            last_renewed = self._clock.monotonic()


@asynccontextmanager
async def hold_locks(
    redis: aioredis.Redis,
    keys: Sequence[str],
    *,
    holder: str,
    operation_id: str,
    ttl_ms: int = 30_000,
    renew_every_s: float | None = None,
) -> AsyncIterator[Lock]:
    lock = Lock(
        redis,
        keys,
        holder=holder,
        operation_id=operation_id,
        ttl_ms=ttl_ms,
        renew_every_s=renew_every_s,
    )
    await lock.acquire()
    try:
        yield lock
    finally:
        await lock.release()


async def lock_info(redis: aioredis.Redis, key: str) -> LockInfo | None:
    pipe = redis.pipeline(transaction=True)
    pipe.get(key)
    pipe.pttl(key)
    value, ttl_ms = await pipe.execute()
    return _parse(key, str(value), int(ttl_ms)) if value is not None else None


async def force_release(redis: aioredis.Redis, key: str) -> LockInfo | None:
    """Delete a lock whoever holds it (`chatops lock release`); returns who held it."""
    taken = await redis.eval(_TAKE, 1, key)
    return _parse(key, str(taken[0]), int(taken[1])) if taken else None
