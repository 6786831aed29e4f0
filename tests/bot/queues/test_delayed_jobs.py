"""Delayed jobs with due times decoded from BullMQ's scores, job schedulers apart, promotion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis

import bot.queues.moves
from bot.queues import (
    Skipped,
    delayed_due_counts,
    delayed_jobs,
    promote_jobs,
    read_state,
)
from bot.queues.keys import delayed_due_ms


async def _add_delayed(bull_queue: Any, delays_ms: dict[str, int]) -> dict[str, tuple[str, int]]:
    """name -> (job id, due at in ms)."""
    added = {}
    for name, delay in delays_ms.items():
        job = await bull_queue.add(name, {}, {"delay": delay})
        added[name] = (job.id, job.timestamp + delay)
    return added


async def test_due_time_is_decoded_from_the_score(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    added = await _add_delayed(bull_queue, {"soon": 5_000, "later": 3_600_000})
    # Two jobs due in the same millisecond get consecutive scores, same due time.
    same = await bull_queue.add("same", {}, {"delay": 5_000, "timestamp": added["soon"][1] - 5_000})
    score = await redis_client.zscore(f"{prefix}:{queue_name}:delayed", added["soon"][0])
    assert score is not None and int(score) % 0x1000 == 0
    assert delayed_due_ms(score) == added["soon"][1]

    now = datetime.fromtimestamp(added["soon"][1] / 1000, UTC) + timedelta(seconds=1)
    listing = await delayed_jobs(redis_client, prefix=prefix, queue=queue_name, limit=10, now=now)
    assert [(j.name, j.overdue) for j in listing.jobs] == [
        ("soon", True),
        ("same", True),
        ("later", False),
    ]
    assert listing.jobs[1].id == same.id
    assert listing.jobs[0].due_at == datetime.fromtimestamp(added["soon"][1] / 1000, UTC)
    assert listing.jobs[2].due_at == datetime.fromtimestamp(added["later"][1] / 1000, UTC)
    assert listing.schedulers == []
    short = await delayed_jobs(redis_client, prefix=prefix, queue=queue_name, limit=1, now=now)
    assert [j.name for j in short.jobs] == ["soon"]


async def test_due_count_before_a_moment(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    added = await _add_delayed(bull_queue, {"a": 1_000, "b": 2_000, "c": 3_600_000})
    due_b = added["b"][1]

    def at(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    async def due(before_ms: int) -> list[int]:
        # with a queue that has no delayed set: each count in its queue's place
        queues = [queue_name, f"{queue_name}-none"]
        return await delayed_due_counts(
            redis_client, prefix=prefix, queues=queues, before=at(before_ms)
        )

    assert await due(due_b) == [1, 0]
    assert await due(due_b + 1) == [2, 0]


async def test_promote_overdue_only(
    redis_client: redis.Redis,
    bull_queue: Any,
    prefix: str,
    queue_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.queues.moves, "PAGE_SIZE", 2)
    added = await _add_delayed(
        bull_queue, {"a": 1_000, "b": 1_500, "c": 2_000, "d": 3_600_000, "e": 7_200_000}
    )
    now = datetime.fromtimestamp(added["c"][1] / 1000, UTC)  # c is due exactly now
    result = await promote_jobs(redis_client, prefix=prefix, queue=queue_name, ids=None, now=now)
    assert sorted(result.promoted) == sorted(added[n][0] for n in "abc")
    assert result.skipped == []
    counts = (await read_state(redis_client, prefix=prefix, queue=queue_name)).counts
    assert (counts.delayed, counts.waiting) == (2, 3)


async def test_promote_given_ids_each_checked(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    added = await _add_delayed(bull_queue, {"later": 3_600_000, "other": 3_600_000})
    waiting = await bull_queue.add("now", {})
    later_id = added["later"][0]
    result = await promote_jobs(
        redis_client, prefix=prefix, queue=queue_name, ids=[later_id, waiting.id, "missing"]
    )
    assert result.promoted == [later_id]
    assert result.skipped == [
        Skipped(waiting.id, "not delayed (it is waiting or active)"),
        Skipped("missing", "no such job"),
    ]
    counts = (await read_state(redis_client, prefix=prefix, queue=queue_name)).counts
    assert (counts.delayed, counts.waiting) == (1, 2)


async def test_job_schedulers_are_listed_apart(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    await bull_queue.upsertJobScheduler("new-year", {"pattern": "0 0 1 1 *"}, "greet", {})
    await _add_delayed(bull_queue, {"plain": 60_000})
    listing = await delayed_jobs(redis_client, prefix=prefix, queue=queue_name, limit=10)
    assert [(j.name, j.scheduler_id) for j in listing.jobs] == [
        ("plain", None),
        ("greet", "new-year"),
    ]
    (scheduler,) = listing.schedulers
    assert scheduler.key == "new-year"
    assert scheduler.name == "greet"
    assert scheduler.pattern == "0 0 1 1 *"
    assert scheduler.legacy is False
    assert scheduler.next_at == listing.jobs[1].due_at
    assert scheduler.next_at.month == 1 and scheduler.next_at.day == 1
