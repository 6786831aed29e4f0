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
