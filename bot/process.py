"""Run a program as an argv list with a deadline, streaming its output lines.

No shell is ever involved: user text can only ever be one argv element. On timeout or
cancellation the whole process group is killed, so a hung build leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.abc import LineSink
from bot.errors import CommandFailed

DEFAULT_TIMEOUT_S = 120.0
_KEEP_LINES = 400


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    lines: tuple[str, ...]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


async def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_line: LineSink | None = None,
    check: bool = True,
) -> Completed:
    """Run `argv` with exactly `env` (never the caller's environment implicitly).

    Raises `CommandFailed` on timeout, on a missing program, or (with `check`) on a non-zero exit.
    """
    if not argv:
        raise ValueError("empty argv")
    name = os.path.basename(argv[0])
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            # pm2 jlist prints one line of several KiB per app: the default 64 KiB is too small.
            limit=16 * 1024 * 1024,
        )
    except FileNotFoundError as exc:
        raise CommandFailed(name, "program not found") from exc
    except NotADirectoryError as exc:
        raise CommandFailed(name, f"working directory {cwd} does not exist") from exc
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout

    async def pump() -> None:
        while raw := await stdout.readline():
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            if len(lines) > _KEEP_LINES:
                del lines[0]
            if on_line is not None:
                await on_line(line)
        await proc.wait()

    try:
        async with asyncio.timeout(timeout_s):
            await pump()
    except TimeoutError as exc:
        await _kill_group(proc)
        raise CommandFailed(name, f"timed out after {timeout_s:g}s") from exc
    except BaseException:
        await asyncio.shield(_kill_group(proc))
        raise
    code = proc.returncode if proc.returncode is not None else -1
    if check and code != 0:
        tail = "; ".join(lines[-3:])
        raise CommandFailed(name, f"exited {code}" + (f": {tail}" if tail else ""))
    return Completed(tuple(argv), code, tuple(lines))


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await proc.wait()
