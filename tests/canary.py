"""Canary secrets: values the suite places where the bot reads secrets (the Slack signing
secret, the database password, a worker's environment, a Kubernetes Secret), and a whole-suite
check that none of them ever shows: in a Slack call or response_url post (tests/slack/plugin.py),
a log record of any test (`LeakWatch`, tests/leaks.py), the output of any `chatops` run
(tests/scenarios/conftest.py), or a scenario's store (its SQLite file, every row).

The Slack bot token is not one: it travels in every call's Authorization header by design; it
must still never be in a call's arguments, a log line, an output or the store.
"""

from __future__ import annotations

import logging

SIGNING_SECRET = "signing-canary-5c1e97d2"
DATABASE_PASSWORD = "pg-canary-0b8f4a61"
WORKER_SECRET = "canary-secret-123456"  # the fixture worker's EMAIL_API_KEY (tests/fixtures/pm2)
BOT_TOKEN = "xoxb-test"  # the fake Slack's

CANARIES = (SIGNING_SECRET, DATABASE_PASSWORD, WORKER_SECRET, BOT_TOKEN)


def leaked(text: str) -> list[str]:
    """The canaries found in `text`."""
    return [canary for canary in CANARIES if canary in text]


class LeakWatch(logging.Handler):
    """On the root logger for the whole session: every record any test's code emits (the bot
    in process, the fake Slack, fixtures) is checked once formatted."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" {record.exc_info[1]!r}"
        except Exception:  # a record that cannot be formatted is the logging module's to report
            return
        for canary in leaked(text):
            self.leaks.append(f"{record.name}: {canary!r} in {text[:200]!r}")


def assert_no_leak(text: str, where: str) -> None:
    found = leaked(text)
    assert not found, f"{where} shows canary secret(s) {found}"
