"""Delayed jobs: listed soonest first with their due time, counted by due time, and promoted.

A job scheduler's next iteration is a delayed job too (id `repeat:<scheduler>:<millis>`); it is
listed with its `scheduler_id`, and the schedulers themselves are listed apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from bot.clock import SystemClock
from bot.queues.bullmq_adapter import BullJob, open_queue
from bot.queues.keys import DELAYED_SCORE_FACTOR, QueueKeys, delayed_due_ms, delayed_score_cutoff
from bot.queues.moves import Skipped, move_by_score, move_ids
from bot.queues.paging import zrange_pages
from bot.queues.schedulers import JobScheduler, read_schedulers
from bot.queues.states import read_state


@dataclass(frozen=True)
class DelayedJob:
    id: str
    name: str
    due_at: datetime
    overdue: bool  # due at or before `now`: a worker would have promoted it already
    scheduler_id: str | None  # set for an iteration of a job scheduler


@dataclass(frozen=True)
class DelayedListing:
    jobs: list[DelayedJob]
    schedulers: list[JobScheduler]


@dataclass(frozen=True)
class PromoteResult:
    promoted: list[str]
    skipped: list[Skipped]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def _read_delayed(
    redis: aioredis.Redis, keys: QueueKeys, *, limit: int, now_ms: int
) -> list[DelayedJob]:
    jobs: list[DelayedJob] = []
    async for page in zrange_pages(redis, keys.of("delayed"), limit=limit):
        pipe = redis.pipeline(transaction=False)
        for job_id, _ in page:
            pipe.hmget(keys.job(job_id), "name", "rjk")
        for (job_id, score), (name, scheduler_id) in zip(page, await pipe.execute(), strict=True):
            due_ms = delayed_due_ms(score)
            jobs.append(
                DelayedJob(
                    id=job_id,
                    name=name or "",
                    due_at=datetime.fromtimestamp(due_ms / 1000, UTC),
                    overdue=due_ms <= now_ms,
                    scheduler_id=scheduler_id,
                )
            )
    return jobs


async def delayed_jobs(
    redis: aioredis.Redis,
    *,
    prefix: str,
    queue: str,
    limit: int,
    now: datetime | None = None,
) -> DelayedListing:
    """The `limit` delayed jobs due soonest, and the `limit` job schedulers that run soonest."""
    await read_state(redis, prefix=prefix, queue=queue)
    keys = QueueKeys(prefix, queue)
    now_ms = _ms(now or SystemClock().now())
    return DelayedListing(
        jobs=await _read_delayed(redis, keys, limit=limit, now_ms=now_ms),
        schedulers=await read_schedulers(redis, keys, limit=limit),
    )


async def delayed_due_counts(
    redis: aioredis.Redis, *, prefix: str, queues: Sequence[str], before: datetime
) -> list[int]:
    """Each queue's delayed jobs due before `before` (as Node's `getJobCounts` with a delayed
    cutoff), in one round trip."""
    cutoff = _ms(before) * DELAYED_SCORE_FACTOR - 1
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcount(QueueKeys(prefix, queue).of("delayed"), "-inf", cutoff)
        return [int(count) for count in await pipe.execute()]


async def _promote(job: BullJob) -> None:
    await job.promote()


async def promote_jobs(
    redis: aioredis.Redis,
    *,
    prefix: str,
    queue: str,
    ids: Sequence[str] | None,
    now: datetime | None = None,
) -> PromoteResult:
    """Move delayed jobs to waiting now with `job.promote()`.

    With `ids`, exactly those jobs, each checked to be delayed; with None, only the jobs due at
    or before `now` (overdue): those due later stay delayed.
    """
    await read_state(redis, prefix=prefix, queue=queue)
    keys = QueueKeys(prefix, queue)
    async with open_queue(redis, prefix=prefix, queue=queue) as bull:
        if ids is None:
            cutoff = delayed_score_cutoff(_ms(now or SystemClock().now()))
            moves = await move_by_score(
                redis, bull, keys, state="delayed", max_score=cutoff, action=_promote
            )
        else:
            unique = list(dict.fromkeys(ids))
            moves = await move_ids(redis, bull, keys, state="delayed", ids=unique, action=_promote)
    return PromoteResult(promoted=moves.moved, skipped=moves.skipped)
