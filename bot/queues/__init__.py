"""BullMQ 6 queues over Redis: state and counts, pause, failed and delayed jobs, workers, events.

Every function takes the environment's `redis.asyncio.Redis` client (decode_responses=True) and
the queue's key prefix. None of them deletes a job.
"""

from bot.queues.canary import CanaryResult, run_canary
from bot.queues.delayed import (
    DelayedJob,
    DelayedListing,
    PromoteResult,
    delayed_due_counts,
    delayed_jobs,
    promote_jobs,
)
from bot.queues.discovery import prefixes_of_queue
from bot.queues.durations import longest_recent_job_ms
from bot.queues.events import EventTail, QueueEvent
from bot.queues.failed import FailedJob, RetryResult, failed_jobs, retry_failed
from bot.queues.metrics import completed_totals, completions, job_id_counters
from bot.queues.moves import Skipped
from bot.queues.pausing import is_queue_paused, pause_queue, resume_queue
from bot.queues.schedulers import JobScheduler, job_schedulers, scheduler_count
from bot.queues.states import QueueCounts, QueueState, read_state, read_states, states_now
from bot.queues.workers import (
    WorkerConnection,
    WorkerConnections,
    connected_workers,
    connected_workers_of,
)

__all__ = [
    "CanaryResult",
    "DelayedJob",
    "DelayedListing",
    "EventTail",
    "FailedJob",
    "JobScheduler",
    "PromoteResult",
    "QueueCounts",
    "QueueEvent",
    "QueueState",
    "RetryResult",
    "Skipped",
    "WorkerConnection",
    "WorkerConnections",
    "completed_totals",
    "completions",
    "connected_workers",
    "connected_workers_of",
    "delayed_due_counts",
    "delayed_jobs",
    "failed_jobs",
    "is_queue_paused",
    "job_id_counters",
    "job_schedulers",
    "longest_recent_job_ms",
    "pause_queue",
    "prefixes_of_queue",
    "promote_jobs",
    "read_state",
    "read_states",
    "resume_queue",
    "retry_failed",
    "run_canary",
    "scheduler_count",
    "states_now",
]
