"""An operation as data: ordered steps with a name, an action and a timeout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.engine.context import StepContext

StepAction = Callable[["StepContext"], Coroutine[Any, Any, str | None]]
FailureHook = Callable[["StepContext"], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    name: str
    action: StepAction
    timeout_s: float
    # A step that changes a process (a reload) must not be interrupted half-way; a cancel
    # request waits for it to finish and takes effect before the next step.
    cancellable: bool = True


@dataclass(frozen=True)
class Plan:
    kind: str
    env: str
    target: str
    steps: tuple[Step, ...]
    locks: tuple[str, ...]  # resources: "queue:sla", "worker:notification"
    details: tuple[str, ...] = ()  # what the plan will act on, shown before it runs
    mutating: bool = True
    on_failure: FailureHook | None = None
    params: dict[str, object] = field(default_factory=dict)

    def describe(self) -> list[str]:
        lines = [f"{self.kind} {self.target} in {self.env}"]
        lines += [f"  {d}" for d in self.details]
        lines += [f"  {i}. {step.name}" for i, step in enumerate(self.steps, 1)]
        return lines
