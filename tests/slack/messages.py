"""Channel messages, thread replies and ephemeral messages, as the fake workspace holds them.

Faithful: ``ts`` values are unique and increasing, derived from the fake clock
(``"1700000000.000123"``); a parent gets ``thread_ts``, ``reply_count``, ``reply_users`` and
``latest_reply`` when replied to; edits add ``edited``. Simplified: no reactions, files, pins,
reply_broadcast copies in the channel, or message history limits.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.slack.clock import FakeClock

CONTENT_KEYS = ("text", "blocks", "attachments")


class MessageStore:
    def __init__(
        self, clock: FakeClock, *, bot_user_id: str, bot_id: str, app_id: str, team_id: str
    ) -> None:
        self._clock = clock
        self._bot = {
            "type": "message",
            "subtype": "bot_message",
            "user": bot_user_id,
            "bot_id": bot_id,
            "app_id": app_id,
            "team": team_id,
        }
        self._channels: dict[str, dict[str, dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._last_ts_us = 0

    def next_ts(self) -> str:
        now_us = int(self._clock.now() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def bot_message(self, content: dict[str, Any]) -> dict[str, Any]:
        return {**self._bot, "text": "", **content}

    # channel messages (the returned dicts are live; tests get copies through FakeSlack)

    def post(
        self, channel: str, message: dict[str, Any], thread_ts: str | None = None
    ) -> dict[str, Any]:
        ts = self.next_ts()
        stored = {**message, "ts": ts}
        if thread_ts:
            stored["thread_ts"] = thread_ts
            parent = self.get(channel, thread_ts)
            if parent is not None:
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                users = parent.setdefault("reply_users", [])
                if stored.get("user") not in users:
                    users.append(stored.get("user"))
                parent["latest_reply"] = ts
        self._channels.setdefault(channel, {})[ts] = stored
        return stored

    def get(self, channel: str, ts: str) -> dict[str, Any] | None:
        return self._channels.get(channel, {}).get(ts)

    def delete(self, channel: str, ts: str) -> bool:
        return self._channels.get(channel, {}).pop(ts, None) is not None

    def edit(self, message: dict[str, Any], content: dict[str, Any], *, keep_unsent: bool) -> None:
        """``keep_unsent``: chat.update keeps what the call did not send; response_url's
        replace_original replaces the whole content."""
        if not keep_unsent:
            for key in CONTENT_KEYS:
                message.pop(key, None)
            message["text"] = ""
        message.update(content)
        if not self.is_ephemeral(message):
            message["edited"] = {"user": self._bot["user"], "ts": self.next_ts()}

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(m)
            for m in self._channels.get(channel, {}).values()
            if m.get("thread_ts") in (None, m["ts"])
        ]

    def replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(m)
            for m in self._channels.get(channel, {}).values()
            if m.get("thread_ts") == ts and m["ts"] != ts
        ]

    # ephemerals

    def post_ephemeral(
        self,
        channel: str,
        user: str | None,
        content: dict[str, Any],
        *,
        source: str,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        ephemeral = {
            "channel": channel,
            "user": user,
            "ts": self.next_ts(),
            "thread_ts": thread_ts,
            "source": source,
            "text": "",
            **content,
        }
        self._ephemerals.append(ephemeral)
        return ephemeral

    def ephemeral(self, ts: str | None) -> dict[str, Any] | None:
        return next((e for e in self._ephemerals if e["ts"] == ts), None)

    def is_ephemeral(self, message: dict[str, Any]) -> bool:
        return any(e is message for e in self._ephemerals)

    def delete_ephemeral(self, ephemeral: dict[str, Any]) -> None:
        self._ephemerals.remove(ephemeral)

    def ephemerals(self, channel: str | None, user: str | None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(e)
            for e in self._ephemerals
            if (channel is None or e["channel"] == channel) and (user is None or e["user"] == user)
        ]
