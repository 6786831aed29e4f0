"""How long jobs take to run, from the timestamps BullMQ keeps on finished jobs."""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.queues.keys import QueueKeys
from bot.queues.paging import zrange_pages

RECENT_JOBS = 100


async def longest_recent_job_ms(
    redis: aioredis.Redis, *, prefix: str, queue: str, recent: int = RECENT_JOBS
) -> int | None:
    """The longest run (finishedOn - processedOn) among the `recent` latest completed and the
    `recent` latest failed jobs; None when no finished job is left to measure (workers that
    remove jobs on completion keep none)."""
    keys = QueueKeys(prefix, queue)
    longest: int | None = None
    for state in ("completed", "failed"):
        async for page in zrange_pages(redis, keys.of(state), limit=recent, highest_first=True):
            pipe = redis.pipeline(transaction=False)
            for job_id, _ in page:
                pipe.hmget(keys.job(job_id), "processedOn", "finishedOn")
            for processed_on, finished_on in await pipe.execute():
                if processed_on and finished_on:
                    run_ms = int(finished_on) - int(processed_on)
                    longest = run_ms if longest is None else max(longest, run_ms)
    return longest
