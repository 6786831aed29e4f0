"""The bot's own database (operations, steps, restores, releases, audit), SQLAlchemy + Alembic."""

from bot.store.records import (
    AuditRecord,
    OperationRecord,
    OperationState,
    ReleaseRecord,
    RestoreKind,
    RestoreRecord,
    StepRecord,
    StepState,
)
from bot.store.store import OUTPUT_LIMIT_BYTES, Store

__all__ = [
    "OUTPUT_LIMIT_BYTES",
    "AuditRecord",
    "OperationRecord",
    "OperationState",
    "ReleaseRecord",
    "RestoreKind",
    "RestoreRecord",
    "StepRecord",
    "StepState",
    "Store",
]
