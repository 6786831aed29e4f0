"""Progress events an operation emits; the CLI renders them, Slack will coalesce them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class OperationStarted:
    op_id: str
    kind: str
    env: str
    target: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class StepStarted:
    op_id: str
    index: int
    name: str


@dataclass(frozen=True)
class StepOutput:
    op_id: str
    index: int
    line: str


@dataclass(frozen=True)
class StepFinished:
    op_id: str
    index: int
    name: str
    state: str  # succeeded, failed, cancelled, skipped
    detail: str | None


@dataclass(frozen=True)
class OperationFinished:
    op_id: str
    state: str  # succeeded, failed, cancelled
    summary: str
    validation: dict[str, object]


Event = OperationStarted | StepStarted | StepOutput | StepFinished | OperationFinished
EventSink = Callable[[Event], Awaitable[None]]


async def discard(event: Event) -> None:
    """A sink for callers that do not follow progress."""
