"""Parsing `systemctl show` and `journalctl` output. The samples follow output of real systemd
(v249–v252 on Debian and Ubuntu, as published in public captures): systemd cannot run on
these test machines, so none was captured here."""

from __future__ import annotations

from bot.targets.systemd_parse import (
    env_file,
    environment,
    environment_files,
    journal_with_cursor,
    parse_show,
    span_ms,
    status_of,
)

SHOW_RUNNING = """\
LoadState=loaded
ActiveState=active
SubState=running
MainPID=2625
NRestarts=2
MemoryCurrent=52736000
TimeoutStopUSec=1min 30s
WorkingDirectory=/srv/worker/current
ActiveEnterTimestampMonotonic=12776356
""" + (
    "ExecStart={ path=/usr/bin/node ; argv[]=/usr/bin/node dist/worker.js ; ignore_errors=no ; "
    "start_time=[Sat 2026-11-28 14:00:00 UTC] ; stop_time=[n/a] ; pid=2625 ; code=(null) ; "
    "status=0/0 }\n"
)

SHOW_MISSING = """\
LoadState=not-found
ActiveState=inactive
SubState=dead
MainPID=0
NRestarts=0
MemoryCurrent=[not set]
TimeoutStopUSec=1min 30s
WorkingDirectory=
ExecStart=
ActiveEnterTimestampMonotonic=0
"""

SHOW_FAILED = SHOW_RUNNING.replace("ActiveState=active", "ActiveState=failed").replace(
    "SubState=running", "SubState=failed"
)

SHOW_ENV = """\
Environment=NODE_ENV=production "GREETING=hello world" REDIS_URL=redis://:pw@r:6379/0
EnvironmentFiles=/etc/worker/worker.env (ignore_errors=no)
EnvironmentFiles=/etc/worker/optional.env (ignore_errors=yes)
"""


def test_a_running_unit_reads_as_online_with_its_numbers() -> None:
    status = status_of("worker.service", parse_show(SHOW_RUNNING), now_monotonic_us=14776356)
    assert status.status == "online"
    assert status.pid == 2625
    assert status.restarts == 2
    assert status.memory_bytes == 52736000
    assert status.kill_timeout_ms == 90_000
    assert status.cwd == "/srv/worker/current"
    assert status.script == "/usr/bin/node dist/worker.js"
    assert status.uptime_s == 2.0


def test_an_unknown_unit_is_missing_and_a_failed_one_errored() -> None:
    missing = status_of("nope.service", parse_show(SHOW_MISSING), now_monotonic_us=None)
    assert missing.status == "missing" and missing.pid is None and missing.memory_bytes is None
    failed = status_of("worker.service", parse_show(SHOW_FAILED), now_monotonic_us=None)
    assert failed.status == "errored" and failed.uptime_s is None


def test_time_spans() -> None:
    assert span_ms("1min 30s") == 90_000
    assert span_ms("90s") == 90_000
    assert span_ms("500ms") == 500
    assert span_ms("1h 2min 3s") == 3_723_000
    assert span_ms("infinity") is None
    assert span_ms("") is None


def test_environment_words_and_files() -> None:
    props = parse_show(SHOW_ENV)
    assert environment(props["Environment"]) == {
        "NODE_ENV": "production",
        "GREETING": "hello world",
        "REDIS_URL": "redis://:pw@r:6379/0",
    }
    assert environment_files(props["EnvironmentFiles"]) == [
        ("/etc/worker/worker.env", False),
        ("/etc/worker/optional.env", True),
    ]
    assert env_file('# c\nexport A=1\nB="two words"\n; x\nC=\n') == {
        "A": "1",
        "B": "two words",
        "C": "",
    }


def test_journal_lines_and_cursor() -> None:
    text = "worker:release v1\nworker:ready\n-- cursor: s=8f0;i=1c2;b=3d;m=4e;t=5f;x=6a\n"
    tail = journal_with_cursor(text)
    assert tail.lines == ["worker:release v1", "worker:ready"]
    assert tail.cursor == "s=8f0;i=1c2;b=3d;m=4e;t=5f;x=6a"
    assert journal_with_cursor("-- No entries --\n").cursor is None
