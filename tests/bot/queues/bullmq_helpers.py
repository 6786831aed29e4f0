"""Helpers for tests that run Python bullmq workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import bullmq

from tests.conftest import REDIS_URL


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_worker(
    prefix: str, queue: str, processor: Callable[[Any, str], Awaitable[Any]], **opts: Any
) -> AsyncIterator[Any]:
    worker = bullmq.Worker(queue, processor, {"connection": REDIS_URL, "prefix": prefix, **opts})
    try:
        yield worker
    finally:
        await worker.close()
