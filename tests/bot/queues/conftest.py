"""Queues made with Python bullmq under the test's own prefix, and a private Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import bullmq
import pytest
import redis.asyncio as redis

from tests.conftest import REDIS_URL, redis_server


@pytest.fixture
def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def bull_queue(prefix: str, queue_name: str, redis_client: redis.Redis) -> AsyncIterator[Any]:
    """A Python bullmq Queue on its own connection; `redis_client` cleans its keys up after."""
    queue = bullmq.Queue(queue_name, {"connection": REDIS_URL, "prefix": prefix})
    try:
        yield queue
    finally:
        await queue.close()


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A redis-server of this test's own, for settings the shared one must not get (ACLs)."""
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"
