"""Programs started by this process: an audit hook sees every spawn while recording, even of a
process that has already exited; /proc lists the children alive now."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Audit events that start a program (subprocess.Popen covers asyncio's subprocesses too).
_SPAWN_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.fork",
        "os.forkpty",
        "os.system",
        "pty.spawn",
    }
)
_recording: list[str] | None = None
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recording is not None and event in _SPAWN_EVENTS:
        _recording.append(f"{event} {args[:2]!r}")


class Spawns:
    def __init__(self) -> None:
        self.started: list[str] = []

    def __enter__(self) -> Spawns:
        global _recording, _hook_installed
        if not _hook_installed:  # an audit hook cannot be removed: install it once, lazily
            sys.addaudithook(_audit)
            _hook_installed = True
        _recording = self.started
        return self

    def __exit__(self, *exc: object) -> None:
        global _recording
        _recording = None

    @staticmethod
    def children() -> set[int]:
        """Process ids of this process's children (of all its threads)."""
        pids: set[int] = set()
        for path in Path("/proc/self/task").glob("*/children"):
            try:
                pids.update(int(p) for p in path.read_text().split())
            except OSError:  # the thread ended meanwhile
                continue
        return pids
