"""Tailing a queue's event stream (`<prefix>:<queue>:events`) without losing events.

Python bullmq's QueueEvents restarts from `$` when its blocking read outlasts the socket timeout,
dropping what arrived in between (BULLMQ.md trap 3). Here every read continues from the id of
the last entry seen, starting from the stream's last entry at `start()`, and blocks on a
dedicated connection whose socket timeout outlasts the block. A read re-sent after a timeout
asks for the same entries again, so it is harmless.

The stream is capped near 10k entries by BullMQ: a reader more than that far behind loses the
oldest. Read continuously (each read returns at most `count` entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from bot.queues.connection import dedicated_client
from bot.queues.keys import QueueKeys

_SOCKET_TIMEOUT_MARGIN_S = 5.0
_START_OF_STREAM = "0-0"


@dataclass(frozen=True)
class QueueEvent:
    stream_id: str
    event: str  # added, waiting, active, completed, failed, delayed, paused, ...
    job_id: str | None
    fields: dict[str, str]


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """XREAD's entries for the one stream read, in RESP2 (list) or RESP3 (dict) shape."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
    entries: list[tuple[str, dict[str, str]]] = []
    for stream_entries in streams:
        for entry_id, fields in stream_entries:
            entries.append((str(entry_id), {str(k): str(v) for k, v in (fields or {}).items()}))
    return entries


class EventTail:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        queue: str,
        block_ms: int = 1000,
        count: int = 1000,
    ) -> None:
        if block_ms <= 0:
            raise ValueError("block_ms must be positive (0 would block forever)")
        self.key = QueueKeys(prefix, queue).events
        self.block_ms = block_ms
        self.count = count
        self._client = dedicated_client(
            redis, socket_timeout_s=block_ms / 1000 + _SOCKET_TIMEOUT_MARGIN_S
        )
        self._last_id: str | None = None

    @classmethod
    async def open(
        cls,
        redis: aioredis.Redis,
        *,
        prefix: str,
        queue: str,
        block_ms: int = 1000,
        count: int = 1000,
    ) -> EventTail:
        """A started tail; the caller closes it."""
        tail = cls(redis, prefix=prefix, queue=queue, block_ms=block_ms, count=count)
        await tail.__aenter__()
        return tail

    @property
    def last_id(self) -> str | None:
        return self._last_id

    async def start(self) -> None:
        """Remember the stream's current last entry: events after it are what `read` returns."""
        newest = await self._client.xrevrange(self.key, "+", "-", count=1)
        self._last_id = str(newest[0][0]) if newest else _START_OF_STREAM

    async def read(self, *, block_ms: int | None = None) -> list[QueueEvent]:
        """The events after the last one returned, waiting up to `block_ms` for the first.

        `block_ms` defaults to the tail's own; 0 returns at once (unlike XREAD's BLOCK 0, which
        waits forever).
        """
        if self._last_id is None:
            raise RuntimeError("EventTail.read() before start()")
        wait_ms = self.block_ms if block_ms is None else block_ms
        if wait_ms > self.block_ms:
            raise ValueError(f"block_ms over {self.block_ms}, which the socket timeout allows")
        reply = await self._client.xread(
            {self.key: self._last_id}, count=self.count, block=wait_ms or None
        )
        events = []
        for entry_id, fields in _entries(reply):
            events.append(
                QueueEvent(
                    stream_id=entry_id,
                    event=fields.get("event", ""),
                    job_id=fields.get("jobId"),
                    fields=fields,
                )
            )
            self._last_id = entry_id
        return events

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> EventTail:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
