"""Moving jobs out of one sorted set (failed, delayed) one by one, each outcome reported.

Each id is checked to be in the expected state first, so one stale or mistyped id is reported
back with the reason instead of failing the batch. Work is done in small pages: no call reads
or moves more than a page of jobs, whatever the size of the set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import redis.asyncio as aioredis

from bot.queues.bullmq_adapter import BullJob, BullQueue
from bot.queues.keys import QueueKeys
from bot.queues.paging import PAGE_SIZE

_SORTED_SET_STATES = ("failed", "delayed", "completed", "prioritized", "waiting-children")

JobAction = Callable[[BullJob], Awaitable[None]]


class Skipped(NamedTuple):
    job_id: str
    reason: str


@dataclass(frozen=True)
class Moves:
    moved: list[str]
    skipped: list[Skipped]


async def _where(redis: aioredis.Redis, keys: QueueKeys, ids: Sequence[str]) -> list[str | None]:
    """The sorted-set state each job is in, "" for one that exists elsewhere, None for none."""
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.exists(keys.job(job_id))
        for state in _SORTED_SET_STATES:
            pipe.zscore(keys.of(state), job_id)
    replies = await pipe.execute()
    width = 1 + len(_SORTED_SET_STATES)
    found: list[str | None] = []
    for i in range(len(ids)):
        exists, *scores = replies[i * width : (i + 1) * width]
        in_set = [
            s for s, score in zip(_SORTED_SET_STATES, scores, strict=True) if score is not None
        ]
        found.append(in_set[0] if in_set else ("" if exists else None))
    return found


async def move_ids(
    redis: aioredis.Redis,
    bull: BullQueue,
    keys: QueueKeys,
    *,
    state: str,
    ids: Sequence[str],
    action: JobAction,
) -> Moves:
    moves = Moves(moved=[], skipped=[])
    for start in range(0, len(ids), PAGE_SIZE):
        page = list(ids[start : start + PAGE_SIZE])
        eligible = []
        for job_id, where in zip(page, await _where(redis, keys, page), strict=True):
            if where == state:
                eligible.append(job_id)
            elif where is None:
                moves.skipped.append(Skipped(job_id, "no such job"))
            else:
                now = where or "waiting or active"
                moves.skipped.append(Skipped(job_id, f"not {state} (it is {now})"))
        pipe = redis.pipeline(transaction=False)
        for job_id in eligible:
            pipe.hgetall(keys.job(job_id))
        for job_id, job_hash in zip(eligible, await pipe.execute(), strict=True):
            try:
                await action(bull.job(job_id, job_hash))
            except TypeError as err:  # bullmq's report of a job that left the state meanwhile
                moves.skipped.append(Skipped(job_id, f"left {state} meanwhile ({err})"))
            else:
                moves.moved.append(job_id)
    return moves


async def move_by_score(
    redis: aioredis.Redis,
    bull: BullQueue,
    keys: QueueKeys,
    *,
    state: str,
    max_score: int,
    action: JobAction,
) -> Moves:
    """Move every job of `state` scored at most `max_score`, each at most once."""
    moves = Moves(moved=[], skipped=[])
    attempted: set[str] = set()
    left_behind = 0  # jobs at the start of the range that stay there: skip past them
    while True:
        page = await redis.zrangebyscore(
            keys.of(state), "-inf", max_score, start=left_behind, num=PAGE_SIZE
        )
        ids = [str(i) for i in page]
        new = [i for i in ids if i not in attempted]
        if not new:
            return moves
        attempted.update(new)
        done = await move_ids(redis, bull, keys, state=state, ids=new, action=action)
        moves.moved.extend(done.moved)
        moves.skipped.extend(done.skipped)
        left_behind += len(done.skipped) + len(ids) - len(new)
