"""Tailing the events stream from a remembered id: nothing before the start, nothing lost."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis

from bot.queues import EventTail


def _added(events: list[Any]) -> list[str]:
    return [e.job_id for e in events if e.event == "added"]


async def test_sees_jobs_added_after_start_and_loses_none(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    before = await bull_queue.add("before", {})
    async with EventTail(redis_client, prefix=prefix, queue=queue_name, block_ms=500) as tail:
        first = [(await bull_queue.add("a", {})).id, (await bull_queue.add("b", {})).id]
        read_one = await tail.read()
        # Added between two reads: still seen by the second.
        second = [(await bull_queue.add("c", {})).id]
        read_two = await tail.read()
        read_three = await tail.read(block_ms=0)
    assert before.id not in _added(read_one)
    assert _added(read_one) == first
    assert _added(read_two) == second
    assert read_three == []
    assert read_one[0].fields["name"] == "a"
    assert tail.last_id == read_two[-1].stream_id


async def test_starts_on_a_queue_with_no_stream_yet(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    tail = await EventTail.open(redis_client, prefix=prefix, queue=queue_name, block_ms=200)
    try:
        assert await tail.read() == []
        job = await bull_queue.add("first", {})
        assert _added(await tail.read()) == [job.id]
    finally:
        await tail.close()


async def test_blocks_longer_than_the_shared_clients_socket_timeout(
    redis_client: redis.Redis, prefix: str, queue_name: str
) -> None:
    # redis-py 8 gives the shared client a 5 s socket timeout; the tail's own connection outlasts
    # a longer block instead of timing out (and a retried read would start over).
    block_ms = 5_500
    async with EventTail(redis_client, prefix=prefix, queue=queue_name, block_ms=block_ms) as tail:
        started = time.monotonic()
        assert await tail.read() == []
        elapsed = time.monotonic() - started
    assert block_ms / 1000 - 0.2 <= elapsed < block_ms / 1000 + 2
