"""What a running step may use: the environment, its Redis, the store, and progress output."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from bot.clock import Clock
from bot.config import EnvironmentConfig
from bot.engine.events import EventSink, StepOutput
from bot.redact import redact
from bot.store import Store


@dataclass
class StepContext:
    op_id: str
    env_name: str
    env: EnvironmentConfig
    redis: redis.Redis
    store: Store
    clock: Clock
    actor: str
    sink: EventSink
    secrets: tuple[str, ...] = ()
    kind: str = ""  # the plan's, for metrics
    step_index: int = 0
    step_started_s: float = 0.0  # the clock's monotonic time the current step started
    # Facts steps hand to later steps and to the outcome (counts, commit, ready line...).
    results: dict[str, Any] = field(default_factory=dict)
    # Shown to the user as the operation's validation results.
    validation: dict[str, Any] = field(default_factory=dict)
    # Closed when the operation ends, whichever way (event tails, extra connections).
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    # What this run noted to put back and has not put back yet (restore id: kind, key): known
    # here too, so that it can be put back while the store cannot be read.
    unrestored: dict[int, tuple[str, str]] = field(default_factory=dict)
    # How each step that ended ended (index: state), known even when the store is not.
    steps_ended: dict[int, str] = field(default_factory=dict)
    _output: list[str] = field(default_factory=list)

    async def emit(self, line: str) -> None:
        line = redact(line, secrets=self.secrets)
        self._output.append(line)
        await self.sink(StepOutput(self.op_id, self.step_index, line))

    def take_output(self) -> str:
        text = "\n".join(self._output)
        self._output.clear()
        return text

    async def record_restore(self, kind: str, key: str) -> int:
        """Note, before changing it, what must be put back if this operation dies."""
        restore_id = await self.store.add_restore(
            self.op_id, kind=kind, env=self.env_name, key=key, now=self.clock.now()
        )
        self.unrestored[restore_id] = (kind, key)
        return restore_id

    async def restored(self, restore_id: int) -> None:
        self.unrestored.pop(restore_id, None)
        await self.store.mark_restored(restore_id, now=self.clock.now())
