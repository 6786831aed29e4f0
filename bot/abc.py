"""The narrow interfaces between the engine and the world it acts on."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

LineSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class WorkerStatus:
    """What a process manager says of one worker app. Never carries its environment."""

    name: str
    status: str  # online, stopping, stopped, errored, launching, or missing
    pid: int | None
    restarts: int
    unstable_restarts: int
    uptime_s: float | None
    memory_bytes: int | None
    kill_timeout_ms: int | None
    exec_mode: str | None
    script: str | None
    cwd: str | None


@dataclass(frozen=True)
class LogCursor:
    """Where a worker's log stood before an action, so readiness is read from what follows."""

    path: str
    offset: int


class Target(Protocol):
    """One worker app under a process manager (pm2 now; systemd and Kubernetes later)."""

    name: str

    async def status(self) -> WorkerStatus: ...

    async def log_cursor(self) -> LogCursor: ...

    async def reload(self, *, on_line: LineSink | None = None) -> None:
        """Restart the app with its own saved environment (never the caller's)."""
        ...

    async def wait_ready(
        self,
        pattern: re.Pattern[str],
        *,
        since: LogCursor,
        timeout_s: float,
        on_line: LineSink | None = None,
    ) -> str:
        """The first log line after `since` that matches; OperationFailed on timeout."""
        ...

    async def logs(self, *, lines: int) -> list[str]:
        """The last `lines` lines of the app's output, secrets redacted."""
        ...

    async def env_keys(self) -> frozenset[str]:
        """The names (never the values) of the environment the app gets on its next reload."""
        ...

    async def read_text(self, path: str) -> str | None:
        """A small file on the app's host (its .env.example); None when it does not exist."""
        ...

    async def env_value(self, name: str) -> str | None:
        """One value of that environment, for the bot's own use (a database URL to connect
        to): never shown, logged or stored."""
        ...
