"""Reading a sorted set in small pages, so no single call is O(size of the set)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

PAGE_SIZE = 100


async def zrange_pages(
    redis: aioredis.Redis, key: str, *, limit: int, highest_first: bool = False
) -> AsyncIterator[list[tuple[str, float]]]:
    """The first `limit` members with their scores, a page at a time."""
    for start in range(0, max(limit, 0), PAGE_SIZE):
        end = min(start + PAGE_SIZE, limit) - 1
        read = redis.zrevrange if highest_first else redis.zrange
        reply: list[Any] = await read(key, start, end, withscores=True)
        page = [(str(member), float(score)) for member, score in reply]
        if page:
            yield page
        if len(page) < end - start + 1:
            return
