"""Job schedulers (BullMQ 6's repeatable jobs), listed apart from the delayed jobs they create.

`<prefix>:<queue>:repeat` is a sorted set of scheduler ids scored by their next run (plain
milliseconds, unlike `delayed`); each scheduler's settings are in the hash `...:repeat:<id>`.
A member without that hash is a legacy repeatable-job key from before job schedulers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from bot.queues.keys import QueueKeys
from bot.queues.paging import zrange_pages
from bot.queues.states import read_state

_FIELDS = ("name", "pattern", "every", "tz", "ic", "limit", "endDate")


@dataclass(frozen=True)
class JobScheduler:
    key: str  # the scheduler id given to upsertJobScheduler
    name: str
    next_at: datetime
    pattern: str | None  # cron expression
    every_ms: int | None
    tz: str | None
    iterations: int | None
    limit: int | None
    end_at: datetime | None
    legacy: bool


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _moment(ms: float | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


async def job_schedulers(
    redis: aioredis.Redis, *, prefix: str, queue: str, limit: int
) -> list[JobScheduler]:
    """The `limit` schedulers that run soonest."""
    await read_state(redis, prefix=prefix, queue=queue)
    return await read_schedulers(redis, QueueKeys(prefix, queue), limit=limit)


async def read_schedulers(
    redis: aioredis.Redis, keys: QueueKeys, *, limit: int
) -> list[JobScheduler]:
    """`job_schedulers` for a queue already checked to exist."""
    schedulers: list[JobScheduler] = []
    async for page in zrange_pages(redis, keys.of("repeat"), limit=limit):
        pipe = redis.pipeline(transaction=False)
        for scheduler_id, _ in page:
            pipe.hmget(keys.of(f"repeat:{scheduler_id}"), *_FIELDS)
        for (scheduler_id, score), fields in zip(page, await pipe.execute(), strict=True):
            name, pattern, every, tz, ic, most, end_date = fields
            schedulers.append(
                JobScheduler(
                    key=scheduler_id,
                    name=name or "",
                    next_at=datetime.fromtimestamp(score / 1000, UTC),
                    pattern=pattern,
                    every_ms=_int(every),
                    tz=tz,
                    iterations=_int(ic),
                    limit=_int(most),
                    end_at=_moment(_int(end_date)),
                    legacy=all(f is None for f in fields),
                )
            )
    return schedulers


async def scheduler_count(redis: aioredis.Redis, *, prefix: str, queue: str) -> int:
    return int(await redis.zcard(QueueKeys(prefix, queue).of("repeat")))
