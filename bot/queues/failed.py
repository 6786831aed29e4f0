"""Failed jobs: the newest listed with their error's first line, and retried on request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from bot.queues.bullmq_adapter import BullJob, open_queue
from bot.queues.keys import QueueKeys
from bot.queues.moves import Skipped, move_by_score, move_ids
from bot.queues.paging import zrange_pages
from bot.queues.states import read_state


@dataclass(frozen=True)
class FailedJob:
    id: str
    name: str
    failed_reason_first_line: str
    attempts_made: int
    finished_on: datetime


@dataclass(frozen=True)
class RetryResult:
    retried: list[str]
    skipped: list[Skipped]


def _from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


async def failed_jobs(
    redis: aioredis.Redis, *, prefix: str, queue: str, limit: int
) -> list[FailedJob]:
    """The `limit` most recently failed jobs, newest first (the set is scored by finishedOn)."""
    await read_state(redis, prefix=prefix, queue=queue)
    keys = QueueKeys(prefix, queue)
    jobs: list[FailedJob] = []
    async for page in zrange_pages(redis, keys.of("failed"), limit=limit, highest_first=True):
        pipe = redis.pipeline(transaction=False)
        for job_id, _ in page:
            pipe.hmget(keys.job(job_id), "name", "failedReason", "atm", "attemptsMade")
        for (job_id, score), fields in zip(page, await pipe.execute(), strict=True):
            name, reason, atm, attempts_made = fields
            if name is None and reason is None:
                continue  # removed since the range was read
            jobs.append(
                FailedJob(
                    id=job_id,
                    name=name or "",
                    failed_reason_first_line=first_line(reason or ""),
                    attempts_made=int(atm or attempts_made or 0),
                    finished_on=_from_ms(score),
                )
            )
    return jobs


async def _retry(job: BullJob) -> None:
    await job.retry_failed()


async def retry_failed(
    redis: aioredis.Redis, *, prefix: str, queue: str, ids: Sequence[str] | None
) -> RetryResult:
    """Move failed jobs back to waiting with `job.retry("failed")`; `ids=None` retries all.

    "All" is every job that had failed when the call started (Redis' clock): a job failing again
    while the retry runs is not retried a second time.
    """
    await read_state(redis, prefix=prefix, queue=queue)
    keys = QueueKeys(prefix, queue)
    async with open_queue(redis, prefix=prefix, queue=queue) as bull:
        if ids is None:
            seconds, micros = await redis.time()
            cutoff_ms = seconds * 1000 + micros // 1000
            moves = await move_by_score(
                redis, bull, keys, state="failed", max_score=cutoff_ms, action=_retry
            )
        else:
            unique = list(dict.fromkeys(ids))
            moves = await move_ids(redis, bull, keys, state="failed", ids=unique, action=_retry)
    return RetryResult(retried=moves.moved, skipped=moves.skipped)
