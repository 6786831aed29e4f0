"""Queue state: paused flag, BullMQ version and job counts, for many queues in one round trip.

The counts are exactly BullMQ 6's `getJobCounts()` (its getCounts-1.lua): LLEN of the `wait`
and `active` lists, ZCARD of the `delayed`, `prioritized`, `waiting-children`, `failed` and
`completed` sorted sets. They are read inside one MULTI/EXEC, so they form one consistent
snapshot as the Lua script's do, but without running a script that may write: getCounts pops a
legacy "0:" marker off `wait`, which is emulated here read-only.

A queue is refused rather than read as zeros when its keys are missing (almost always a wrong
prefix), and when a BullMQ 5 (or older) wrote it, since v5 pauses by renaming `wait` to `paused`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bot.errors import QueueNotFound, UnsupportedQueue
from bot.metrics import observe_queue
from bot.queues.discovery import discover_prefixes
from bot.queues.keys import QueueKeys

_SORTED_SET_STATES = ("delayed", "prioritized", "waiting-children", "failed", "completed")
# Keys any BullMQ queue that ever held a job has, even without `meta`: `id` (the job counter),
# `events` (the stream every add writes to), `repeat` (job schedulers).
_PRESENCE_KEYS = ("meta", "id", "events", "repeat")
_VERSION = re.compile(r"^bullmq:(\d+)\.")
_FIRST_SUPPORTED_MAJOR = 6


@dataclass(frozen=True)
class QueueCounts:
    waiting: int
    active: int
    delayed: int
    prioritized: int
    waiting_children: int
    failed: int
    completed: int

    def as_dict(self) -> dict[str, int]:
        """Field name to count, as the CLI's `--json` and the operation records show them."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def as_job_counts(self) -> dict[str, int]:
        """The same mapping, keys and values as Node's `queue.getJobCounts()` without arguments."""
        return {
            "active": self.active,
            "completed": self.completed,
            "delayed": self.delayed,
            "failed": self.failed,
            "prioritized": self.prioritized,
            "waiting": self.waiting,
            "waiting-children": self.waiting_children,
        }


@dataclass(frozen=True)
class QueueState:
    name: str
    paused: bool
    version: str  # meta.version such as "bullmq:6.7.0"; "" when only workers or Python wrote it
    counts: QueueCounts

    def summary(self) -> str:
        """One line for a plan: what is in the queue before the operation touches it."""
        c = self.counts
        parts = [f"{c.waiting:,} waiting", f"{c.active:,} active", f"{c.delayed:,} delayed"]
        parts += [
            f"{n:,} {label}"
            for n, label in (
                (c.prioritized, "prioritized"),
                (c.waiting_children, "waiting-children"),
                (c.failed, "failed"),
            )
            if n
        ]
        return f"{self.name}: {', '.join(parts)}" + (" (paused)" if self.paused else "")


def states_now(states: Sequence[QueueState], *, shown: int = 5) -> tuple[str, ...]:
    """Plan lines with the queues' counts as read when the plan was made; past `shown` queues,
    the totals and the queues that hold jobs, busiest first."""
    if len(states) <= shown:
        return tuple(f"now {state.summary()}" for state in states)
    busy = sorted(
        (s for s in states if s.counts.waiting or s.counts.active or s.counts.delayed),
        key=lambda s: -(s.counts.waiting + s.counts.active + s.counts.delayed),
    )
    total = sum(s.counts.waiting for s in states), sum(s.counts.active for s in states)
    lines = [f"now {len(states)} queues: {total[0]:,} waiting, {total[1]:,} active in all"]
    lines += [f"now {state.summary()}" for state in busy[:shown]]
    if len(busy) > shown:
        lines.append(f"and {len(busy) - shown} more queues holding jobs")
    return tuple(lines)


def _queue_commands(pipe: Any, keys: QueueKeys) -> None:
    pipe.hmget(keys.meta, "paused", "version")
    pipe.exists(*(keys.of(s) for s in _PRESENCE_KEYS))
    pipe.exists(keys.of("paused"))
    pipe.llen(keys.of("wait"))
    pipe.lindex(keys.of("wait"), -1)
    pipe.llen(keys.of("active"))
    for state in _SORTED_SET_STATES:
        pipe.zcard(keys.of(state))


def _waiting(length: int, last: str | None) -> int:
    # A v4-era "0:<delay>" marker at the tail of `wait` is not a job (getCounts-1.lua).
    if last is not None and last.startswith("0:"):
        return length - 1 if length > 1 else 0
    return length


def _check_version(queue: str, version: str, has_v5_paused_list: bool) -> None:
    if has_v5_paused_list:
        raise UnsupportedQueue(queue, version=version or "BullMQ 5 or older (a paused list exists)")
    if not version:
        return
    match = _VERSION.match(version)
    if match is None or int(match.group(1)) < _FIRST_SUPPORTED_MAJOR:
        raise UnsupportedQueue(queue, version=version)


async def read_states(
    redis: aioredis.Redis, *, prefix: str, queues: Sequence[str]
) -> list[QueueState]:
    """State of every queue, in the order given. QueueNotFound or UnsupportedQueue otherwise."""
    if not queues:
        return []
    pipe = redis.pipeline(transaction=True)
    for queue in queues:
        _queue_commands(pipe, QueueKeys(prefix, queue))
    replies = await pipe.execute()
    width = len(replies) // len(queues)
    states = []
    for i, queue in enumerate(queues):
        part = replies[i * width : (i + 1) * width]
        (paused, version), present, v5_paused, wait_len, wait_last, active, *sets = part
        delayed, prioritized, waiting_children, failed, completed = (int(n) for n in sets)
        counts = QueueCounts(
            waiting=_waiting(int(wait_len), wait_last),
            active=int(active),
            delayed=delayed,
            prioritized=prioritized,
            waiting_children=waiting_children,
            failed=failed,
            completed=completed,
        )
        if not present and not any(counts.as_job_counts().values()) and not v5_paused:
            raise QueueNotFound(
                queue, prefix=prefix, prefixes_found=await discover_prefixes(redis, queue)
            )
        _check_version(queue, version or "", bool(v5_paused))
        states.append(
            QueueState(name=queue, paused=paused is not None, version=version or "", counts=counts)
        )
        observe_queue(prefix, queue, counts.as_job_counts())
    return states


async def read_state(redis: aioredis.Redis, *, prefix: str, queue: str) -> QueueState:
    (state,) = await read_states(redis, prefix=prefix, queues=[queue])
    return state
