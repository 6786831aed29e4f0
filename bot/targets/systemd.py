"""One worker as a systemd unit, through `systemctl` and `journalctl` (argv lists, no shell).

Readiness is read from the unit's journal after the cursor taken before the restart, polled
with `--after-cursor` so no line is read twice or missed; a unit that fails or restarts while
the bot waits is reported at once. The unit's environment is its `Environment=` plus the files
named by `EnvironmentFiles=`: names for env-check, values only to mask them in output.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Mapping

from bot.abc import LineSink, LogCursor, WorkerStatus
from bot.errors import CommandFailed, OperationFailed
from bot.process import Completed, run
from bot.redact import redact
from bot.targets.pm2 import secret_env_values
from bot.targets.systemd_parse import (
    SHOW_PROPERTIES,
    env_file,
    environment,
    environment_files,
    journal_with_cursor,
    parse_show,
    status_of,
)

_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_POLL_S = 0.25
_STOP_TIMEOUT_MS = 90_000  # systemd's DefaultTimeoutStopSec


class SystemdTarget:
    def __init__(
        self,
        *,
        unit: str,
        systemctl: str = "systemctl",
        journalctl: str = "journalctl",
        env: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.name = unit
        self._systemctl = systemctl
        self._journalctl = journalctl
        self._timeout_s = timeout_s
        self._env = {"PATH": _DEFAULT_PATH, "HOME": os.path.expanduser("~"), **(env or {})}

    async def status(self) -> WorkerStatus:
        props = await self._show(*SHOW_PROPERTIES)
        return status_of(self.name, props, now_monotonic_us=time.monotonic_ns() // 1000)

    async def log_cursor(self) -> LogCursor:
        done = await self._journal("-n", "1", "--show-cursor")
        return LogCursor(path=journal_with_cursor(done.output).cursor or "", offset=0)

    async def reload(self, *, on_line: LineSink | None = None) -> None:
        status = await self.status()
        if status.status == "missing":
            raise OperationFailed(f"systemd has no unit {self.name!r}")
        grace_s = (status.kill_timeout_ms or _STOP_TIMEOUT_MS) / 1000
        await self._run(self._systemctl, "restart", self.name, timeout_s=self._timeout_s + grace_s)

    async def wait_ready(
        self,
        pattern: re.Pattern[str],
        *,
        since: LogCursor,
        timeout_s: float,
        on_line: LineSink | None = None,
    ) -> str:
        secrets = secret_env_values(await self._environment())
        baseline = await self.status()
        cursor = since.path
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    after = ("--after-cursor", cursor) if cursor else ()
                    tail = journal_with_cursor(await self._all_lines(*after, "--show-cursor"))
                    cursor = tail.cursor or cursor
                    for line in tail.lines:
                        shown = redact(line, secrets=secrets)
                        if on_line is not None:
                            await on_line(shown)
                        if pattern.search(line):
                            return shown
                    now = await self.status()
                    if now.status == "errored" or now.restarts > baseline.restarts:
                        raise OperationFailed(
                            f"{self.name} {now.status} ({now.restarts} restart(s)) before "
                            f"/{pattern.pattern}/ appeared in its journal"
                        )
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise OperationFailed(
                f"{self.name} did not log /{pattern.pattern}/ within {timeout_s:g} s"
            ) from None

    async def logs(self, *, lines: int) -> list[str]:
        secrets = secret_env_values(await self._environment())
        done = await self._journal("-n", str(lines))
        return [redact(line, secrets=secrets) for line in done.output.splitlines()]

    async def env_keys(self) -> frozenset[str]:
        return frozenset(await self._environment())

    async def read_text(self, path: str) -> str | None:
        try:
            return await asyncio.to_thread(_read, path)
        except FileNotFoundError:
            return None

    async def env_value(self, name: str) -> str | None:
        return (await self._environment()).get(name)

    async def _environment(self) -> dict[str, str]:
        props = await self._show("Environment", "EnvironmentFiles")
        merged: dict[str, str] = {}
        # systemd applies EnvironmentFile= after Environment=: its values win.
        merged.update(environment(props.get("Environment", "")))
        for path, ignore_errors in environment_files(props.get("EnvironmentFiles", "")):
            try:
                text = await asyncio.to_thread(_read, path)
            except OSError as exc:
                if ignore_errors:
                    continue
                raise OperationFailed(
                    f"{self.name}: cannot read its EnvironmentFile {path}: {exc.strerror}"
                ) from None
            merged.update(env_file(text))
        return merged

    async def _show(self, *properties: str) -> dict[str, str]:
        done = await self._run(self._systemctl, "show", self.name, "-p", ",".join(properties))
        return parse_show(done.output)

    async def _all_lines(self, *args: str) -> str:
        """Journal output, every line of it (a run keeps only the last few hundred)."""
        lines: list[str] = []

        async def keep(line: str) -> None:
            lines.append(line)

        await self._journal(*args, on_line=keep)
        return "\n".join(lines)

    async def _journal(self, *args: str, on_line: LineSink | None = None) -> Completed:
        return await self._run(
            self._journalctl, "-u", self.name, "-o", "cat", "--no-pager", *args, on_line=on_line
        )

    async def _run(
        self, *argv: str, timeout_s: float | None = None, on_line: LineSink | None = None
    ) -> Completed:
        try:
            return await run(
                list(argv),
                env=self._env,
                timeout_s=timeout_s or self._timeout_s,
                on_line=on_line,
            )
        except CommandFailed as exc:
            raise CommandFailed(
                os.path.basename(argv[0]), f"{' '.join(argv[1:])} failed for {self.name}: {exc}"
            ) from exc


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()
