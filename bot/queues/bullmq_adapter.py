"""Typed use of the Python `bullmq` package, for the operations where it matches Node exactly.

The package has no type hints; everything untyped stays in this module. Its Queue runs BullMQ's
own Lua scripts on the client it is given. That client is the caller's: bullmq would close it on
`Queue.close()`, and its own clients retry a timed-out call up to 20 times (BULLMQ.md trap 2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import bullmq
import redis.asyncio as aioredis


class BullJob:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    async def retry_failed(self) -> None:
        """`job.retry("failed")`; TypeError when the job is no longer failed or is gone."""
        await self._raw.retry("failed")

    async def promote(self) -> None:
        """`job.promote()`; TypeError when the job is no longer delayed."""
        await self._raw.promote()


class BullQueue:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    async def pause(self) -> None:
        await self._raw.pause()

    async def resume(self) -> None:
        await self._raw.resume()

    async def is_paused(self) -> bool:
        return bool(await self._raw.isPaused())

    async def add(self, name: str, data: Mapping[str, Any]) -> str:
        """`queue.add(name, data)`: the job's id."""
        job = await self._raw.add(name, dict(data))
        return str(job.id)

    def job(self, job_id: str, job_hash: Mapping[str, str]) -> BullJob:
        """A job object from its hash, as `Job.fromId` builds it, without reading it again."""
        return BullJob(bullmq.Job.fromJSON(self._raw, dict(job_hash), job_id))


@asynccontextmanager
async def open_queue(redis: aioredis.Redis, *, prefix: str, queue: str) -> AsyncIterator[BullQueue]:
    raw = bullmq.Queue(queue, {"connection": redis, "prefix": prefix})
    # The client is borrowed: closing the Queue must not close it.
    raw.backend.owns_connection = False
    try:
        yield BullQueue(raw)
    finally:
        await raw.close()
