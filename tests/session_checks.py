"""Suite-wide checks that fail the run after every test has passed, with or without xdist.

Under pytest-xdist each worker sees only its own tests, so a worker hands its findings to the
controller (``workeroutput``), which reports them and sets the exit status once for the run.
"""

from __future__ import annotations

import json
from typing import Any

import pytest


class SessionCheck:
    """Findings of one suite-wide check: lines of text, reported under ``title``."""

    def __init__(self, key: str, title: str, advice: str = "") -> None:
        self.key = key
        self.title = title
        self.advice = advice
        self.found: list[str] = []

    def finish(self, session: pytest.Session, lines: list[str]) -> None:
        """Called from ``pytest_sessionfinish`` with what this process found."""
        workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[self.key] = json.dumps(lines)
            return
        self.found.extend(lines)
        if self.found and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def worker_done(self, node: Any) -> None:
        """Called from ``pytest_testnodedown`` on the controller: a worker's findings."""
        output = getattr(node, "workeroutput", None) or {}
        self.found.extend(json.loads(output.get(self.key, "[]")))

    def summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.found:
            return
        terminalreporter.section(self.title, red=True, bold=True)
        for line in self.found[:50]:
            terminalreporter.line(line, red=True)
        if len(self.found) > 50:
            terminalreporter.line(f"... and {len(self.found) - 50} more", red=True)
        if self.advice:
            terminalreporter.line(self.advice, bold=True)
