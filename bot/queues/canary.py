"""A canary job: proof that a worker processes jobs when no real traffic can show it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bot.queues.bullmq_adapter import open_queue
from bot.queues.keys import QueueKeys


@dataclass(frozen=True)
class CanaryResult:
    job_id: str
    state: str  # completed, failed, or pending (not finished within the timeout)
    detail: str | None


async def run_canary(
    redis: aioredis.Redis,
    *,
    prefix: str,
    queue: str,
    name: str,
    data: Mapping[str, Any],
    timeout_s: float,
    poll_interval_s: float = 0.2,
) -> CanaryResult:
    """Add one job and wait for the worker to finish it; the job itself is left as BullMQ keeps
    finished jobs (nothing here deletes one)."""
    async with open_queue(redis, prefix=prefix, queue=queue) as bull:
        job_id = await bull.add(name, {**data, "chatopsCanary": True})
    job_key = QueueKeys(prefix, queue).job(job_id)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                finished_on, failed_reason = await redis.hmget(
                    job_key, ["finishedOn", "failedReason"]
                )
                if finished_on:
                    if failed_reason:
                        return CanaryResult(job_id, "failed", str(failed_reason).splitlines()[0])
                    return CanaryResult(job_id, "completed", None)
                await asyncio.sleep(poll_interval_s)
    except TimeoutError:
        return CanaryResult(job_id, "pending", f"not finished within {timeout_s:g} s")
