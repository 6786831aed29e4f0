"""Reading what `systemctl show` and `journalctl` print. Pure functions, unit-tested on output
captured from real systemd (v252, Debian 12), kept apart from the commands that produce it.

`systemctl show UNIT -p A,B` prints `A=value` lines; a property it does not know is printed
empty. `Environment=` is a space-separated list of `KEY=value` words, a word containing spaces
double-quoted with C-style escapes; `EnvironmentFiles=` is `PATH (ignore_errors=yes|no)`, one
per line when there are several. Times such as `TimeoutStopUSec` read `1min 30s`, `90s`,
`500ms` or `infinity`; an unset number reads `[not set]` or 2^64-1.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from bot.abc import WorkerStatus

_UNSET = {"", "[not set]", "18446744073709551615", "infinity"}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)\b")
_SPAN_MS = {
    "us": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "min": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}
_STATES = {
    "active": "online",
    "reloading": "online",
    "activating": "launching",
    "deactivating": "stopping",
    "inactive": "stopped",
    "failed": "errored",
}
_CURSOR = re.compile(r"^-- cursor: (\S+)\s*$")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")

SHOW_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "NRestarts",
    "MemoryCurrent",
    "TimeoutStopUSec",
    "WorkingDirectory",
    "ExecStart",
    "ActiveEnterTimestampMonotonic",
)


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output as a dict; a repeated key (EnvironmentFiles) joined by newlines."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if not eq or not key or not key.isidentifier():
            continue
        props[key] = f"{props[key]}\n{value}" if key in props else value
    return props


def span_ms(value: str) -> int | None:
    """`1min 30s` -> 90000; None when unset or infinite."""
    value = value.strip()
    if value in _UNSET:
        return None
    parts = _SPAN.findall(value)
    if not parts:
        return None
    return int(sum(float(n) * _SPAN_MS[unit] for n, unit in parts))


def number(value: str | None) -> int | None:
    if value is None or value.strip() in _UNSET or not value.strip().isdigit():
        return None
    return int(value.strip())


def status_of(name: str, props: dict[str, str], *, now_monotonic_us: int | None) -> WorkerStatus:
    loaded = props.get("LoadState", "")
    if loaded in ("not-found", ""):
        state = "missing"
    else:
        state = _STATES.get(props.get("ActiveState", ""), props.get("ActiveState") or "unknown")
    pid = number(props.get("MainPID"))
    entered = number(props.get("ActiveEnterTimestampMonotonic"))
    uptime = None
    if state == "online" and entered and now_monotonic_us and now_monotonic_us >= entered:
        uptime = (now_monotonic_us - entered) / 1e6
    return WorkerStatus(
        name=name,
        status=state,
        pid=pid or None,
        restarts=number(props.get("NRestarts")) or 0,
        unstable_restarts=0,
        uptime_s=uptime,
        memory_bytes=number(props.get("MemoryCurrent")),
        kill_timeout_ms=span_ms(props.get("TimeoutStopUSec", "")),
        exec_mode="systemd",
        script=_exec_path(props.get("ExecStart", "")),
        cwd=props.get("WorkingDirectory") or None,
    )


def _exec_path(value: str) -> str | None:
    # `{ path=/usr/bin/node ; argv[]=/usr/bin/node dist/worker.js ; ... }`
    match = re.search(r"argv\[\]=([^;]+)", value)
    return match.group(1).strip() if match else None


def environment(value: str) -> dict[str, str]:
    """`Environment=` as KEY -> value (the values only for the bot's own use)."""
    result: dict[str, str] = {}
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    for word in words:
        key, eq, val = word.partition("=")
        if eq and key:
            result[key] = val
    return result


def environment_files(value: str) -> list[tuple[str, bool]]:
    """`EnvironmentFiles=` as (path, ignore_errors) pairs."""
    files = []
    for line in value.splitlines():
        line = line.strip()
        if not line:
            continue
        path, _, flags = line.partition(" (")
        files.append((path.strip(), "ignore_errors=yes" in flags))
    return files


def env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile's assignments (`KEY=value`, `export` allowed, quotes removed)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith(("#", ";")):
            continue
        match = _ENV_LINE.match(line)
        if match:
            raw = match.group(2).strip()
            if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
                raw = raw[1:-1]
            result[match.group(1)] = raw
    return result


@dataclass(frozen=True)
class JournalTail:
    lines: list[str]
    cursor: str | None


def journal_with_cursor(text: str) -> JournalTail:
    """`journalctl -o cat --show-cursor` output: the messages, and the trailing cursor."""
    lines = text.splitlines()
    cursor = None
    if lines and (match := _CURSOR.match(lines[-1])):
        cursor = match.group(1)
        lines = lines[:-1]
    return JournalTail(lines=lines, cursor=cursor)
