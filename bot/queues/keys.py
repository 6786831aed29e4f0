"""Names BullMQ 6 gives its Redis keys and connections."""

from __future__ import annotations

import base64
from dataclasses import dataclass

# The low 12 bits of a `delayed` score order jobs due in the same millisecond:
# score = due_at_ms * 0x1000 + counter (BullMQ's getDelayedScore.lua).
DELAYED_SCORE_FACTOR = 0x1000


@dataclass(frozen=True)
class QueueKeys:
    prefix: str
    queue: str

    @property
    def base(self) -> str:
        """`<prefix>:<queue>:`, which job ids are appended to for the job hashes."""
        return f"{self.prefix}:{self.queue}:"

    def of(self, suffix: str) -> str:
        return f"{self.base}{suffix}"

    def job(self, job_id: str) -> str:
        return f"{self.base}{job_id}"

    @property
    def meta(self) -> str:
        return self.of("meta")

    @property
    def events(self) -> str:
        return self.of("events")


def worker_client_name(prefix: str, queue: str) -> str:
    """Node's name for a worker's blocking connection, before the optional `:w:<worker name>`.

    The prefix is the queue's own (not always `bull`) and the queue name is base64-encoded.
    """
    encoded = base64.b64encode(queue.encode()).decode()
    return f"{prefix}:{encoded}"


def delayed_due_ms(score: float) -> int:
    return int(score) // DELAYED_SCORE_FACTOR


def delayed_score_cutoff(due_ms: int) -> int:
    """The highest score of a job due at or before `due_ms` (as BullMQ's promoteDelayedJobs)."""
    return (due_ms + 1) * DELAYED_SCORE_FACTOR - 1
