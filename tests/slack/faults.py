"""Faults tests inject into the fake: per-method failures (FIFO) and workspace-wide outages."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.slack.clock import FakeClock


@dataclass
class Fault:
    status: int | None
    """HTTP status to answer with; None: HTTP 200 (with ``error``) or a normal answer."""
    error: str | None
    times: int
    latency_s: float
    """Real seconds before answering (what the bot's own timeouts see)."""
    retry_after_s: float | None

    @property
    def answers(self) -> bool:
        """False for a latency-only fault: after the delay the call is handled normally."""
        return self.status is not None or self.error is not None

    def response(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """``(status, body, headers)`` as Slack would send them."""
        headers: dict[str, str] = {}
        if self.status == 429:
            retry_after = 1 if self.retry_after_s is None else self.retry_after_s
            headers["Retry-After"] = str(math.ceil(retry_after))
            return 429, {"ok": False, "error": self.error or "ratelimited"}, headers
        return self.status or 200, {"ok": False, "error": self.error or "fatal_error"}, headers


@dataclass
class _Outage:
    fault: Fault
    until: float | None


class Faults:
    """``take(method)`` hands out the fault the next call of ``method`` must suffer, if any."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._queues: dict[str, deque[Fault]] = {}
        self._outage: _Outage | None = None

    def add(self, method: str, fault: Fault) -> None:
        self._queues.setdefault(method, deque()).append(fault)

    def outage(self, fault: Fault, until: float | None) -> None:
        self._outage = _Outage(fault, until)

    def clear(self) -> None:
        self._queues.clear()
        self._outage = None

    def take(self, method: str) -> Fault | None:
        outage = self._outage
        if outage is not None:
            if outage.until is None or self._clock.now() < outage.until:
                return outage.fault
            self._outage = None
        queue = self._queues.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.popleft()
        return fault
