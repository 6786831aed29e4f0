"""pytest plugin: the suite-wide check of tests/canary.py. Log records of the whole session and
every fake Slack call's arguments are searched for the canary secrets; a leak fails the run even
if every test passed (registered in tests/conftest.py)."""

from __future__ import annotations

import json
import logging

import pytest

from tests.canary import LeakWatch, leaked
from tests.slack.fake_slack import instances

_WATCH = LeakWatch()
_FOUND: list[str] = []


def pytest_configure(config: object) -> None:
    logging.getLogger().addHandler(_WATCH)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_WATCH)
    _FOUND.extend(_WATCH.leaks)
    for fake in instances():
        for call in fake.calls:
            where = f"{fake.created_by or '<outside a test>'}: Slack {call.method}"
            for canary in leaked(json.dumps(call.args, default=str)):
                _FOUND.append(f"{where}: {canary!r} in its arguments")
    if _FOUND and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FOUND:
        return
    terminalreporter.section("canary secrets leaked", red=True, bold=True)
    for line in _FOUND[:50]:
        terminalreporter.line(line, red=True)
