"""How the fake answers a call that Slack would refuse."""

from __future__ import annotations

from typing import Any


class SlackError(Exception):
    """An ``{"ok": false, "error": ...}`` answer; with ``violation`` set, the bot misused Slack
    (the message is recorded in ``FakeSlack.violations``)."""

    def __init__(
        self,
        error: str,
        *,
        violation: str | None = None,
        messages: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        status: int = 200,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.violation = violation
        self.messages = messages or []
        self.extra = extra or {}
        self.status = status

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": list(self.messages)}
        return body
