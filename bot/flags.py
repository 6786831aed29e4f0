"""The producer flag `WORKER_ACCEPT_JOBS`: producers add jobs only while it is not `false`.

BullMQ itself cannot refuse `add`, so a drain stops the producers with this flag. The key is the
caller's (configured per environment, by default `<prefix>:flags:WORKER_ACCEPT_JOBS`); its
values are `true` and `false`. Unset means accepting: producers read anything but `false` as
open, so `get_flag` returns None for unset and callers treat that as True. A value the bot did
not write is reported rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, cast

import redis.asyncio as aioredis

from bot.errors import Refused

_VALUES = {"true": True, "false": False}


async def get_flag(redis: aioredis.Redis, key: str) -> bool | None:
    value = await redis.get(key)
    if value is None:
        return None
    text = str(value)
    if text not in _VALUES:
        raise Refused(f"{key} holds {text[:40]!r}; expected 'true' or 'false'")
    return _VALUES[text]


async def set_flag(redis: aioredis.Redis, key: str, value: bool) -> None:
    await redis.set(key, "true" if value else "false")


# Several drains may run at once (one per queue), and all of them need producers off: the first
# turns the flag off, each joins a set of holders, and only the last one out turns it back on.
# A flag found false with no holder was turned off by someone else, and is left as found.
_HOLD = """
local flag = redis.call('GET', KEYS[1])
if flag == 'false' and redis.call('SCARD', KEYS[2]) == 0 then
  return 'manual'
end
redis.call('SADD', KEYS[2], ARGV[1])
if flag == 'false' then
  return 'joined'
end
redis.call('SET', KEYS[1], 'false')
return 'off'
"""

_RELEASE = """
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('SET', KEYS[1], 'true')
end
return redis.call('SMEMBERS', KEYS[2])
"""

Held = Literal["off", "joined", "manual"]
Running = Callable[[str], Awaitable[bool]]  # whether an operation (a holder) still runs


def holders_key(prefix: str, flag_key: str) -> str:
    """The set of operations holding `flag_key` off (under the bot's own `chatops:` keys)."""
    return f"chatops:{prefix}:holders:{flag_key}"


async def hold_off(redis: aioredis.Redis, key: str, holders: str, holder: str) -> Held:
    """Producers off for `holder`: `off` (it turned the flag off), `joined` (other holders had),
    or `manual` (false with no holder: someone else's, not joined, never turned back on)."""
    result = await redis.eval(_HOLD, 2, key, holders, holder)
    held = str(result)
    if held not in ("off", "joined", "manual"):
        raise RuntimeError(f"unexpected answer from the flag script: {held!r}")
    return cast(Held, held)


async def release(
    redis: aioredis.Redis,
    key: str,
    holders: str,
    holder: str,
    *,
    running: Running | None = None,
) -> list[str]:
    """`holder` lets go; the flag goes back on if no other holder is left. Holders whose
    operation has ended (`running` says, where the store can be asked) are dropped first: an
    operation whose put-back failed must not hold producers off for ever. The holders left."""
    if running is not None:
        for other in await redis.smembers(holders):
            if str(other) != holder and not await running(str(other)):
                await redis.srem(holders, other)
    left = await redis.eval(_RELEASE, 2, key, holders, holder)
    return sorted(str(h) for h in left)
