"""pytest plugin: the suite-wide check of tests/canary.py. Log records of the whole session and
every fake Slack call's arguments are searched for the canary secrets; a leak fails the run even
if every test passed (registered in tests/conftest.py)."""

from __future__ import annotations

import json
import logging

import pytest

from tests.canary import LeakWatch, leaked
from tests.session_checks import SessionCheck
from tests.slack.fake_slack import instances

_WATCH = LeakWatch()
_CHECK = SessionCheck("canary_leaks", "canary secrets leaked")


def pytest_configure(config: object) -> None:
    logging.getLogger().addHandler(_WATCH)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_WATCH)
    found = list(_WATCH.leaks)
    for fake in instances():
        for call in fake.calls:
            where = f"{fake.created_by or '<outside a test>'}: Slack {call.method}"
            for canary in leaked(json.dumps(call.args, default=str)):
                found.append(f"{where}: {canary!r} in its arguments")
    _CHECK.finish(session, found)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    _CHECK.worker_done(node)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    _CHECK.summary(terminalreporter)
