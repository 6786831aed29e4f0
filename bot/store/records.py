"""What the store hands out: frozen snapshots of rows, never ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

OperationState = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]
StepState = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
RestoreKind = Literal["queue_paused", "flag_off"]

OPERATION_STATES: tuple[OperationState, ...] = (
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "interrupted",
)
STEP_STATES: tuple[StepState, ...] = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
)
RESTORE_KINDS: tuple[RestoreKind, ...] = ("queue_paused", "flag_off")


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of an operation's plan; `index` counts from 0 (people read `index + 1`)."""

    operation_id: str
    index: int
    name: str
    state: StepState
    started_at: datetime | None
    finished_at: datetime | None
    output: str
    error: str | None


@dataclass(frozen=True, slots=True)
class OperationRecord:
    id: str
    kind: str
    env: str
    target: str
    actor: str
    source: str
    command: str
    reason: str | None
    params: dict[str, Any]
    plan: tuple[str, ...]
    state: OperationState
    current_step: int | None
    summary: str | None
    validation: dict[str, Any] | list[Any] | None
    owner: str
    heartbeat_at: datetime
    started_at: datetime
    finished_at: datetime | None
    cancel_requested: bool
    steps: tuple[StepRecord, ...]


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    """Something an operation changed that must be put back if the operation dies."""

    id: int
    operation_id: str
    kind: RestoreKind
    env: str
    key: str
    created_at: datetime
    restored_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    id: int
    env: str
    worker: str
    ref: str
    commit: str
    path: str
    built_at: datetime
    deployed_at: datetime | None
    known_good: bool
    marked_by: str | None
    marked_at: datetime | None
    operation_id: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    source: str
    env: str | None
    command: str
    kind: str
    reason: str | None
    outcome: str
    duration_ms: int | None
    operation_id: str | None
    details: dict[str, Any]


# -- Slack: approvals, outbox ---------------------------------------------------------------

ApprovalState = Literal[
    "pending", "approved", "rejected", "expired", "cancelled", "executing", "done"
]
VoteDecision = Literal["approve", "reject"]
VoteRefusal = Literal["own_request", "already_voted", "not_pending", "expired"]

APPROVAL_STATES: tuple[ApprovalState, ...] = (
    "pending",
    "approved",
    "rejected",
    "expired",
    "cancelled",
    "executing",
    "done",
)
VOTE_DECISIONS: tuple[VoteDecision, ...] = ("approve", "reject")


@dataclass(frozen=True, slots=True)
class ApprovalVoteRecord:
    approval_id: str
    voter: str
    decision: VoteDecision
    at: datetime


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A risky operation requested in Slack, waiting for (or past) a second person's approval.

    `pending` → `approved` | `rejected` | `expired` | `cancelled`; `approved` → `executing` (claimed
    exactly once) → `done`. `request` is the parsed request the bot runs once approved. One
    planned for a maintenance window (`window_id`) runs when the window is open, expires when it
    closes, and may need no approver at all (`needed` 0: approved from the start).
    """

    id: str
    kind: str
    env: str
    target: str
    request: dict[str, Any]
    command: str
    requester: str
    needed: int
    state: ApprovalState
    channel: str
    message_ts: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    operation_id: str | None
    votes: tuple[ApprovalVoteRecord, ...]
    window_id: str | None = None

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who approved, in the order they voted."""
        return tuple(v.voter for v in self.votes if v.decision == "approve")


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """What a vote did. Refused (`accepted` False) with a `reason`:

    - `own_request`: the requester cannot vote on their own request;
    - `already_voted`: one vote per voter;
    - `not_pending`: already decided (`approval.state` says how);
    - `expired`: the approval is expired (perhaps marked so by this very vote).

    `decided` is True for the one vote that moved the approval to `approved` or `rejected`.
    """

    accepted: bool
    reason: VoteRefusal | None
    approval: ApprovalRecord
    decided: bool = False


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One Slack call owed. `sent_at` set once it is settled (sent, or given up on)."""

    id: int
    message_key: str
    method: str
    args: dict[str, Any]
    created_at: datetime
    not_before: datetime
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    result: Any
    claimed_by: str | None
    claimed_until: datetime | None
    # Claimed before by a sender that never settled it (it died, or outlived its lease): that
    # call may have reached Slack. A post checks the channel before it is sent again.
    uncertain: bool = False


@dataclass(frozen=True, slots=True)
class SlackMessageRecord:
    """Where the Slack message known as `message_key` lives (`ts` None until it is posted)."""

    message_key: str
    channel: str
    ts: str | None
    thread_ts: str | None
    response_url: str | None = None


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    created_at: datetime
    kind: str
    env: str
    worker: str
    actor: str
    outcome: str
    from_release: str | None
    to_release: str | None
    summary: str
    validation: dict[str, Any]
    operation_id: str | None


@dataclass(frozen=True, slots=True)
class WindowRecord:
    id: str
    env: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    timezone: str
    channel: str | None
    created_by: str
    created_at: datetime
    state: str  # scheduled, open, closed, cancelled
    cancelled_by: str | None


@dataclass(frozen=True, slots=True)
class NoticeRecord:
    id: int
    window: WindowRecord
    kind: str  # announce, remind:<minutes>, open, close
    due_at: datetime
