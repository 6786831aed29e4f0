"""pytest plugin: the ``fake_slack`` fixture and a session-end check of Slack violations.

Register it once for the whole suite in ``tests/conftest.py`` (a ``pytest_sessionfinish`` hook
in a non-root conftest would not see the whole session):

    pytest_plugins = ["tests.slack.plugin"]

At session end every FakeSlack created during the run is checked: violations (misuses of the
Slack API, late or failed acks, rate limits hit) that no test acknowledged with
``slack.expect_violations(...)`` / ``slack.acknowledge_violations()`` are listed and the run
exits non-zero even if every test passed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from tests.session_checks import SessionCheck
from tests.slack.fake_slack import FakeSlack, instances

_CHECK = SessionCheck(
    "fake_slack_violations",
    "unacknowledged fake Slack violations",
    "Fix the bot, or acknowledge in the test with slack.expect_violations(...).",
)


def unacknowledged_report(fakes: Iterable[FakeSlack]) -> list[str]:
    """One line per unacknowledged violation, naming the test that created the FakeSlack."""
    lines: list[str] = []
    for fake in fakes:
        for violation in fake.unacknowledged_violations:
            lines.append(f"{fake.created_by or '<outside a test>'}: {violation}")
    return lines


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A started FakeSlack (bot token ``xoxb-test``, team ``T1``, bot user ``UBOT``)."""
    async with FakeSlack() as slack:
        yield slack


def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    _CHECK.finish(session, unacknowledged_report(instances()))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    _CHECK.worker_done(node)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    _CHECK.summary(terminalreporter)
