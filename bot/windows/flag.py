"""The maintenance flag: a Redis key set while a window is open, for the alerting side.

Its value is JSON: `{"window": ID, "until": ISO-8601, "reason": ...}`. It expires on its own a
margin after the window's end, so a bot that dies never leaves alerts suppressed for long;
while the window is open, every scheduler pass sets it again. Clearing it only deletes the
key if it is still this window's (another window may have set it since).
"""

from __future__ import annotations

import json
from datetime import datetime

import redis.asyncio as aioredis

from bot.store.records import WindowRecord

EXPIRY_MARGIN_S = 300
_CLEAR_IF_OURS = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['window'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def assert_flag(redis: aioredis.Redis, key: str, window: WindowRecord, now: datetime) -> None:
    ttl = max(1, int((window.ends_at - now).total_seconds()) + EXPIRY_MARGIN_S)
    value = {"window": window.id, "until": window.ends_at.isoformat(), "reason": window.reason}
    await redis.set(key, json.dumps(value), ex=ttl)


async def clear_flag(redis: aioredis.Redis, key: str, window: WindowRecord) -> bool:
    return bool(await redis.eval(_CLEAR_IF_OURS, 1, key, window.id))
