"""Failed jobs listed newest first with their error's first line, retried by id or all."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as redis

import bot.queues.moves
from bot.queues import Skipped, failed_jobs, read_state, retry_failed
from tests.bot.queues.bullmq_helpers import eventually, running_worker


async def _fail_jobs(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue: str, names: list[str]
) -> list[str]:
    """Add jobs and let a worker fail the ones named fail-*, complete the others."""

    async def process(job: Any, token: str) -> str:
        if job.name.startswith("fail"):
            raise RuntimeError(f"{job.name} broke\n  at line two\n  at line three")
        return "done"

    ids = [(await bull_queue.add(name, {}, {"attempts": 2})).id for name in names]
    failing = sum(1 for n in names if n.startswith("fail"))
    async with running_worker(prefix, queue, process):

        async def finished() -> bool:
            c = (await read_state(redis_client, prefix=prefix, queue=queue)).counts
            return c.failed == failing and c.completed == len(names) - failing

        await eventually(finished)
    return ids


async def test_failed_listed_newest_first_with_first_line(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    ids = await _fail_jobs(
        redis_client, bull_queue, prefix, queue_name, ["fail-a", "ok", "fail-b", "fail-c"]
    )
    jobs = await failed_jobs(redis_client, prefix=prefix, queue=queue_name, limit=10)
    assert [j.name for j in jobs] == ["fail-c", "fail-b", "fail-a"]
    assert [j.id for j in jobs] == [ids[3], ids[2], ids[0]]
    assert jobs[0].failed_reason_first_line == "fail-c broke"
    assert all(j.attempts_made == 2 for j in jobs)
    assert jobs[0].finished_on >= jobs[1].finished_on >= jobs[2].finished_on
    limited = await failed_jobs(redis_client, prefix=prefix, queue=queue_name, limit=2)
    assert [j.name for j in limited] == ["fail-c", "fail-b"]


async def test_retry_some_ids_reports_the_others(
    redis_client: redis.Redis, bull_queue: Any, prefix: str, queue_name: str
) -> None:
    fail_a, ok, fail_b = await _fail_jobs(
        redis_client, bull_queue, prefix, queue_name, ["fail-a", "ok", "fail-b"]
    )
    result = await retry_failed(
        redis_client, prefix=prefix, queue=queue_name, ids=[fail_a, ok, "nope", fail_a]
    )
    assert result.retried == [fail_a]
    assert result.skipped == [
        Skipped(ok, "not failed (it is completed)"),
        Skipped("nope", "no such job"),
    ]
    state = await read_state(redis_client, prefix=prefix, queue=queue_name)
    assert (state.counts.failed, state.counts.waiting) == (1, 1)
    assert await redis_client.lrange(f"{prefix}:{queue_name}:wait", 0, -1) == [fail_a]
    assert await redis_client.hget(f"{prefix}:{queue_name}:{fail_a}", "failedReason") is None
    # Retried once: now waiting, so a second retry of the same id is refused with the reason.
    again = await retry_failed(redis_client, prefix=prefix, queue=queue_name, ids=[fail_a, fail_b])
    assert again.retried == [fail_b]
    assert again.skipped == [Skipped(fail_a, "not failed (it is waiting or active)")]


async def test_retry_all_in_pages(
    redis_client: redis.Redis,
    bull_queue: Any,
    prefix: str,
    queue_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.queues.moves, "PAGE_SIZE", 2)
    names = [f"fail-{i}" for i in range(5)] + ["ok"]
    ids = await _fail_jobs(redis_client, bull_queue, prefix, queue_name, names)
    result = await retry_failed(redis_client, prefix=prefix, queue=queue_name, ids=None)
    assert sorted(result.retried) == sorted(ids[:5])
    assert result.skipped == []
    counts = (await read_state(redis_client, prefix=prefix, queue=queue_name)).counts
    assert (counts.failed, counts.waiting, counts.completed) == (0, 5, 1)
