"""``response_url``s: how Slack lets a bot answer a command or interaction after the ack, and
how Slack shows a command's ack body.

Faithful: JSON posts with ``text``/``blocks``/``attachments``, ``response_type``
(``ephemeral`` by default, or ``in_channel``), ``replace_original``, ``delete_original``,
``thread_ts``; at most 5 uses within 30 minutes, then HTTP 404 ``used_url``/``expired_url``;
blocks validated like a message's (50 at most). Simplified: form-encoded ``payload=`` posts are
refused (Bolt and slack_sdk always send JSON); the answer is ``{"ok": true}`` JSON.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.slack import blockkit
from tests.slack.clock import FakeClock
from tests.slack.errors import SlackError
from tests.slack.messages import MessageStore


def truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


@dataclass
class ResponseUrl:
    id: str
    url: str
    channel: str | None
    user: str | None
    message_ts: str | None
    """The message the interaction came from (what replace/delete_original act on)."""
    is_ephemeral: bool
    issued_at: float
    uses: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)
    last_ephemeral_ts: str | None = None


class ResponseUrls:
    def __init__(self, clock: FakeClock, *, max_uses: int, ttl_s: float) -> None:
        self._clock = clock
        self.max_uses = max_uses
        self.ttl_s = ttl_s
        self._urls: dict[str, ResponseUrl] = {}
        self._ids = itertools.count(1)

    def issue(
        self,
        base_url: str,
        *,
        channel: str | None,
        user: str | None,
        message_ts: str | None,
        is_ephemeral: bool,
    ) -> ResponseUrl:
        rid = f"R{next(self._ids):06d}{secrets.token_hex(4)}"
        ru = ResponseUrl(
            rid,
            f"{base_url}/response/{rid}",
            channel,
            user,
            message_ts,
            is_ephemeral,
            self._clock.now(),
        )
        self._urls[rid] = ru
        return ru

    def get(self, url_or_id: str) -> ResponseUrl | None:
        return self._urls.get(url_or_id.rstrip("/").rsplit("/", 1)[-1])

    def use(self, ru: ResponseUrl, where: str) -> None:
        """Count one use, or refuse as Slack does once the URL is spent or expired."""
        age = self._clock.now() - ru.issued_at
        if age > self.ttl_s:
            raise SlackError(
                "expired_url",
                violation=f"{where}: used {age / 60:.0f} min after issue (> {self.ttl_s / 60:.0f})",
                status=404,
            )
        if ru.uses >= self.max_uses:
            raise SlackError(
                "used_url", violation=f"{where}: used more than {self.max_uses} times", status=404
            )
        ru.uses += 1


def show_response(
    store: MessageStore,
    payload: dict[str, Any],
    *,
    where: str,
    channel: str | None,
    user: str | None,
    message_ts: str | None = None,
    is_ephemeral: bool = False,
    response_url: ResponseUrl | None = None,
) -> None:
    """Validate a response_url post (or a command's ack body, ``response_url=None``) and show it:
    ``delete_original``/``replace_original`` act on the original message or, failing that, on
    this URL's last ephemeral; ``response_type: in_channel`` posts to the channel; otherwise an
    ephemeral for ``user``."""
    if truthy(payload.get("delete_original")):
        _delete_original(store, channel, message_ts, is_ephemeral, response_url)
        return
    response_type = payload.get("response_type", "ephemeral")
    if response_type not in ("ephemeral", "in_channel"):
        raise SlackError(
            "invalid_payload",
            violation=f"{where}: response_type {response_type!r} (ephemeral|in_channel)",
            status=400,
        )
    content: dict[str, Any] = {}
    text = payload.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise SlackError("invalid_payload", violation=f"{where}: text not a string", status=400)
        if len(text) > blockkit.MESSAGE_TEXT_MAX:
            raise SlackError(
                "msg_too_long", violation=f"{where}: text is {len(text)} characters", status=400
            )
        content["text"] = text
    if "blocks" in payload:
        problems = blockkit.validate_message_blocks(payload["blocks"])
        if problems:
            raise SlackError(
                "invalid_blocks",
                violation=f"{where}: invalid blocks: {'; '.join(problems)}",
                messages=problems,
                status=400,
            )
        content["blocks"] = payload["blocks"]
    if "attachments" in payload:
        content["attachments"] = payload["attachments"]
    if not (content.get("text") or content.get("blocks") or content.get("attachments")):
        raise SlackError("no_text", violation=f"{where}: no text or blocks", status=400)
    if channel is None:
        return
    if truthy(payload.get("replace_original")):
        original = _original(store, channel, message_ts, is_ephemeral, response_url)
        if original is not None:
            store.edit(original, content, keep_unsent=False)
            return
    thread_ts = payload.get("thread_ts")
    if response_type == "in_channel":
        store.post(channel, store.bot_message(content), thread_ts)
        return
    source = "ack" if response_url is None else "response_url"
    ephemeral = store.post_ephemeral(channel, user, content, source=source, thread_ts=thread_ts)
    if response_url is not None:
        response_url.last_ephemeral_ts = ephemeral["ts"]


def _original(
    store: MessageStore,
    channel: str,
    message_ts: str | None,
    is_ephemeral: bool,
    response_url: ResponseUrl | None,
) -> dict[str, Any] | None:
    if message_ts and not is_ephemeral:
        message = store.get(channel, message_ts)
        if message is not None:
            return message
    if response_url is not None and response_url.last_ephemeral_ts:
        return store.ephemeral(response_url.last_ephemeral_ts)
    return store.ephemeral(message_ts) if message_ts else None


def _delete_original(
    store: MessageStore,
    channel: str | None,
    message_ts: str | None,
    is_ephemeral: bool,
    response_url: ResponseUrl | None,
) -> None:
    if channel is None:
        return
    original = _original(store, channel, message_ts, is_ephemeral, response_url)
    if original is None:
        return
    if store.is_ephemeral(original):
        store.delete_ephemeral(original)
    else:
        store.delete(channel, original["ts"])
