"""Property test of the `chatops` command line: whatever arguments it is given, it answers with an
exit code of 0, 1 or 2 and a message, never a traceback; it starts no program and changes
nothing (Redis keys, the store's rows). Run in process through typer's runner, against the
shared Redis under this test's prefix and a store of its own.

Left out: what runs a server or changes state by design when typed right (`serve`, `console`,
`db upgrade`, `window schedule|reschedule|cancel`, `ops cancel`, `lock release`, `worker
mark-good`), and `--yes` (without it, and without a terminal, an operation is refused after its
plan is shown). No worker is configured, so worker commands stop at the name.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import typer.main
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commands.cli import app
from tests.conftest import REDIS_URL
from tests.fuzz.processes import Spawns

_COMMAND = typer.main.get_command(app)
_EXCLUDED = {
    "serve",
    "console",
    "db",
    "window schedule",
    "window reschedule",
    "window cancel",
    "ops cancel",
    "lock release",
    "worker mark-good",
}
PATHS = sorted(
    path
    for name, group in _COMMAND.commands.items()  # type: ignore[attr-defined]
    for path in (
        [f"{name} {sub}" for sub in group.commands] if hasattr(group, "commands") else [name]
    )
    if path not in _EXCLUDED and path.split()[0] not in _EXCLUDED
)
WORDS = [
    "test",
    "sla",
    "other",
    "all",
    "notification",
    "op-0123456789",
    "w-0a1b2c",
    "--env",
    "--json",
    "--help",
    "0",
    "-1",
    "1e309",
    "nan",
    "2026-13-45T25:61",
    "Europe/Atlantis",
    "../../etc/passwd",
    "$(touch /tmp/pwned)",
    "; rm -rf /",
    "`id`",
    "a\x00b",
    "\u202e",
    "x" * 300,
    "",
]
TARGETS = ["sla", "other", "all", "test", "op-0123456789", "w-0a1b2c", "notification"]
words = st.one_of(st.sampled_from(WORDS), st.text(max_size=20))


def _command(path: str) -> Any:
    found: Any = _COMMAND
    for name in path.split():
        found = found.commands[name]  # type: ignore[attr-defined]
    return found


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    """Mostly what the command takes (its arguments, some of its options with values), so that
    most examples get past typer's parsing into the bot's own checks; sometimes noise."""
    path = draw(st.sampled_from(PATHS))
    argv = path.split()
    for param in _command(path).params:
        if param.param_type_name == "argument":
            count = 1 if param.nargs == 1 else draw(st.integers(0, 2))
            if param.required or draw(st.booleans()):
                argv += [draw(st.sampled_from(TARGETS) | words) for _ in range(max(count, 1))]
        elif param.param_type_name == "option" and "--yes" not in param.opts:
            if param.name == "env":
                argv += draw(st.sampled_from([["--env", "test"], ["--env", "test"], ["-e", "x"]]))
            elif draw(st.integers(0, 3)) == 0:
                argv.append(param.opts[0])
                if not param.is_flag:
                    argv.append(draw(words | st.integers(-5, 10**6).map(str)))
    if draw(st.integers(0, 4)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(words))
    return argv


@pytest.fixture
def cli_env(tmp_path: Path, prefix: str) -> Iterator[dict[str, str]]:
    config = {
        "environments": {
            "test": {"redis_url": REDIS_URL, "prefix": prefix, "queues": ["sla", "other"]}
        }
    }
    path = tmp_path / "chatops.yml"
    path.write_text(yaml.safe_dump(config))
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    for queue in ("sla", "other"):
        client.hset(f"{prefix}:{queue}:meta", mapping={"opts.maxLenEvents": "10000"})
        client.rpush(f"{prefix}:{queue}:wait", "1", "2")
    env = {
        "CHATOPS_CONFIG": str(path),
        "CHATOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'chatops.sqlite3'}",
        "HOME": str(tmp_path),
        "NO_COLOR": "1",
    }
    try:
        yield env
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()


def _redis_state(prefix: str) -> dict[str, object]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return {key: client.dump(key) for key in sorted(client.scan_iter(match=f"{prefix}*"))}
    finally:
        client.close()


def _store_rows(env: dict[str, str]) -> dict[str, int]:
    path = env["CHATOPS_DATABASE_URL"].removeprefix("sqlite:///")
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect(path)
    try:
        tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'")]
        counts = {t: db.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
    finally:
        db.close()
    counts.pop("alembic_version", None)
    return counts


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=argvs())
def test_any_arguments_get_an_answer_and_change_nothing(
    argv: list[str], cli_env: dict[str, str], prefix: str
) -> None:
    redis_before, rows_before = _redis_state(prefix), _store_rows(cli_env)
    runner = CliRunner()
    with Spawns() as spawns:
        result = runner.invoke(app, argv, env=cli_env, catch_exceptions=True)
    shown = f"chatops {argv!r} -> {result.exit_code}:\n{result.output}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(shown) from result.exception
    assert result.exit_code in (0, 1, 2), shown
    assert "Traceback" not in result.output, shown
    assert spawns.started == [], shown
    assert _redis_state(prefix) == redis_before, shown
    rows = _store_rows(cli_env)
    # The first run creates the store; what it holds stays as it was (no operation, no audit).
    assert {t: n for t, n in rows.items() if n} == {t: n for t, n in rows_before.items() if n}, (
        shown
    )
