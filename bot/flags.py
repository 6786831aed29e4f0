"""The producer flag `WORKER_ACCEPT_JOBS`: producers add jobs only while it is not `false`.

BullMQ itself cannot refuse `add`, so a drain stops the producers with this flag. The key is the
caller's (configured per environment, by default `<prefix>:flags:WORKER_ACCEPT_JOBS`); its
values are `true` and `false`. Unset means accepting: producers read anything but `false` as
open, so `get_flag` returns None for unset and callers treat that as True. A value the bot did
not write is reported rather than guessed at.
"""

from __future__ import annotations

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
