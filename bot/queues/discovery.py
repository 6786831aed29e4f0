"""Where BullMQ queues live in a Redis database, found with a bounded SCAN.

Only used to explain a missing queue, so it may be incomplete on a huge database but never slow:
at most `budget` keys are examined.
"""

from __future__ import annotations

import redis.asyncio as aioredis

SCAN_BUDGET = 10_000
_SCAN_PAGE = 1_000
_GLOB_SPECIAL = "\\*?[]"


def glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in text)


async def _scan(redis: aioredis.Redis, pattern: str, budget: int) -> list[str]:
    found: list[str] = []
    cursor = 0
    for _ in range(max(1, budget // _SCAN_PAGE)):
        cursor, keys = await redis.scan(cursor=cursor, match=pattern, count=_SCAN_PAGE)
        found.extend(str(k) for k in keys)
        if cursor == 0:
            break
    return found


async def prefixes_of_queue(
    redis: aioredis.Redis, queue: str, *, budget: int = SCAN_BUDGET
) -> list[str]:
    """Prefixes under which a queue named `queue` has a `meta` hash."""
    suffix = f":{queue}:meta"
    keys = await _scan(redis, f"*{glob_escape(suffix)}", budget)
    return sorted({k[: -len(suffix)] for k in keys if k.endswith(suffix)})


async def bullmq_prefixes(redis: aioredis.Redis, *, budget: int = SCAN_BUDGET) -> list[str]:
    """Prefixes of any BullMQ queue: `<prefix>:<queue>:meta` hashes that BullMQ wrote."""
    keys = [k for k in await _scan(redis, "*:*:meta", budget) if k.count(":") >= 2]
    if not keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "version", "opts.maxLenEvents")
    fields = await pipe.execute(raise_on_error=False)
    prefixes = set()
    for key, values in zip(keys, fields, strict=True):
        if not isinstance(values, list):
            continue  # not a hash
        version, max_len_events = values
        # Node's Queue writes `version`; a worker or any job add writes `opts.maxLenEvents`.
        if (version and str(version).startswith("bullmq")) or max_len_events is not None:
            prefixes.add(key.rsplit(":", 2)[0])
    return sorted(prefixes)


async def discover_prefixes(redis: aioredis.Redis, queue: str) -> list[str]:
    return await prefixes_of_queue(redis, queue) or await bullmq_prefixes(redis)
