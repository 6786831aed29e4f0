"""The bot's own database (operations, steps, restores, releases, audit; approvals, the Slack
outbox, seen requests, the user-group cache), SQLAlchemy + Alembic."""

from bot.store.records import (
    ApprovalRecord,
    ApprovalState,
    ApprovalVoteRecord,
    AuditRecord,
    OperationRecord,
    OperationState,
    OutboxEntry,
    ReleaseRecord,
    RestoreKind,
    RestoreRecord,
    SlackMessageRecord,
    StepRecord,
    StepState,
    VoteDecision,
    VoteOutcome,
    VoteRefusal,
)
from bot.store.slack import UnknownApproval
from bot.store.store import OUTPUT_LIMIT_BYTES, Store

__all__ = [
    "OUTPUT_LIMIT_BYTES",
    "ApprovalRecord",
    "ApprovalState",
    "ApprovalVoteRecord",
    "AuditRecord",
    "OperationRecord",
    "OperationState",
    "OutboxEntry",
    "ReleaseRecord",
    "RestoreKind",
    "RestoreRecord",
    "SlackMessageRecord",
    "StepRecord",
    "StepState",
    "Store",
    "UnknownApproval",
    "VoteDecision",
    "VoteOutcome",
    "VoteRefusal",
]
