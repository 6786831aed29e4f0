"""Every Slack message the bot owes goes through a persistent outbox, so the final state of an
operation reaches Slack after minutes of 429/5xx and after a restart, and is sent once.

Writers enqueue (`Outbox`); one sender per process claims due entries from the store, sends
them in order per message, and retries what Slack did not take. `chat.update` is tier 3 (about
50 a minute for the whole workspace): a shared budget keeps the bot under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.aio import first_of
from bot.clock import Clock
from bot.errors import BotError
from bot.metrics import SLACK_ERRORS
from bot.store import Store
from bot.store.slack import SLACK_SCOPE, UNCERTAIN

logger = logging.getLogger(__name__)

POST = "chat.postMessage"
UPDATE = "chat.update"
EPHEMERAL = "chat.postEphemeral"
RESPONSE_URL = "response_url"
HISTORY = "conversations.history"
REPLIES = "conversations.replies"
CHANNELS = "conversations.list"
# Each post carries its outbox entry in Slack's message metadata, so a post whose sender died
# between Slack's answer and the store's record is found in the channel instead of sent twice.
EVENT_TYPE = "chatops_outbox"

# Errors that no retry can fix: the entry is dropped (and logged) instead of blocking its message.
_PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "message_not_found",
    "cant_update_message",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "no_text",
    "invalid_auth",
    "account_inactive",
    "user_not_in_channel",
}
NOT_A_MEMBER = {"not_in_channel", "channel_not_found"}
_LEASE_S = 60.0
POST_EVERY_S = 1.1  # Slack allows about one chat.postMessage a second per channel
_MAX_BACKOFF_S = 60.0


class Outbox:
    """What writers call: each method stores one entry; the sender does the rest."""

    def __init__(self, store: Store, clock: Clock, *, scope: str = SLACK_SCOPE) -> None:
        self._store = store
        self._clock = clock
        self.scope = scope
        # The sender of this process, told at once of each new entry (else it finds it on its
        # next look at the store).
        self.wake: Callable[[], None] = lambda: None

    async def post(
        self,
        key: str,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        fallback_url: str | None = None,
        once: bool = False,
    ) -> None:
        """A new message; where the bot is not in the channel, `fallback_url` (a command's
        response_url) carries it instead, with its final state only (5 uses per URL). With
        `once`, nothing is added when message `key` is already owed or sent."""
        args: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
        if fallback_url:
            args["fallback_url"] = fallback_url
        await self._enqueue(
            message_key=key,
            method=POST,
            args=args,
            now=self._clock.now(),
            once=once,
            scope=self.scope,
        )

    async def update(
        self,
        key: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        delay_s: float = 0.0,
        final: bool = False,
    ) -> None:
        """The newest state of message `key`; an unsent older update of it is replaced."""
        await self._enqueue(
            message_key=key,
            method=UPDATE,
            args={"text": text, "blocks": blocks, "delay_s": delay_s, "final": final},
            now=self._clock.now(),
            coalesce=True,
            scope=self.scope,
        )

    async def reply(self, parent_key: str, key: str, *, text: str) -> None:
        """A reply in the thread of message `parent_key`."""
        await self._enqueue(
            message_key=key,
            method=POST,
            args={"thread_of": parent_key, "text": text},
            now=self._clock.now(),
            scope=self.scope,
        )

    async def ephemeral(
        self, key: str, *, channel: str, user: str, text: str, fallback_url: str | None = None
    ) -> None:
        """A message only `user` sees; where the bot is not in the channel (a DM, a private
        channel), `fallback_url` (the response_url of what the user did) carries it instead."""
        args: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if fallback_url:
            args["fallback_url"] = fallback_url
        await self._enqueue(
            message_key=key,
            method=EPHEMERAL,
            args=args,
            now=self._clock.now(),
            scope=self.scope,
        )

    async def _enqueue(self, **entry: Any) -> None:
        await self._store.enqueue_slack(**entry)
        self.wake()


class UpdateBudget:
    """A token bucket shared by every message this process updates. Across replicas the sender
    also counts the updates every replica sent in the last minute (`OutboxSender._update`)."""

    def __init__(self, clock: Clock, *, per_minute: float = 40.0) -> None:
        self._clock = clock
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, per_minute / 4)
        self._tokens = self._capacity
        self._at = clock.monotonic()

    def take(self) -> float:
        """0 when a call may go now (and counts it); else seconds until one may."""
        now = self._clock.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate


class OutboxSender:
    def __init__(
        self,
        *,
        store: Store,
        client: AsyncWebClient,
        clock: Clock,
        claimer: str,
        budget: UpdateBudget | None = None,
        session: aiohttp.ClientSession | None = None,
        scope: str = SLACK_SCOPE,
    ) -> None:
        self._store = store
        self._client = client
        self._clock = clock
        self._claimer = claimer
        self.scope = scope
        self._budget = budget or UpdateBudget(clock)
        self._session = session
        self._last_update: dict[str, float] = {}
        self._next_post: dict[str, float] = {}
        self._slots: dict[int, float] = {}  # entry id -> the time its post may go
        self._channel_ids: dict[str, str] = {}  # "#name" -> ID
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """A new entry is waiting: look at once (what `Outbox.wake` calls in this process)."""
        self._woken.set()

    async def run(self, stop: asyncio.Event, *, idle_s: float = 2.0) -> None:
        """Send until `stop`. Idle, it sleeps until the next entry is due, a writer of this
        process wakes it, or `idle_s` passes (entries of another replica's writers)."""
        while not stop.is_set():
            self._woken.clear()
            try:
                sent = await self.run_once()
                pause = 0.0 if sent else await self._until_due(idle_s)
            except BotError:
                logger.warning("outbox: store unreachable; retrying")
                pause = idle_s
            if pause > 0:
                await first_of(stop, self._woken, timeout_s=pause)

    async def _until_due(self, idle_s: float) -> float:
        due = await self._store.next_slack_due(scope=self.scope)
        if due is None:
            return idle_s
        return min(idle_s, max(0.0, (due - self._clock.now()).total_seconds()) + 0.01)

    async def run_once(self, *, limit: int = 20) -> int:
        entries = await self._store.claim_slack(
            now=self._clock.now(),
            limit=limit,
            claimer=self._claimer,
            lease_s=_LEASE_S,
            scope=self.scope,
        )
        for entry in entries:
            await self._send(entry)
        return len(entries)

    async def _send(self, entry: Any) -> None:
        args = dict(entry.args)
        try:
            if entry.method == UPDATE:
                await self._update(entry, args)
            elif entry.method == POST:
                await self._post(entry, args)
            elif entry.method == RESPONSE_URL:
                await self._respond(entry, args)
            elif entry.method == EPHEMERAL:
                await self._ephemeral(entry, args)
            else:
                response = await self._client.api_call(entry.method, json=args)
                await self._store.slack_sent(
                    entry.id, result={"ok": response.get("ok")}, now=self._clock.now()
                )
        except _Later as later:
            await self._retry(entry, later.delay_s, later.reason)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "unknown"))
            if exc.response.status_code == 200:  # ok: false; HTTP failures are counted by
                SLACK_ERRORS.labels(entry.method, error).inc()  # the client (metrics.py)
            if exc.response.status_code == 429:
                retry_after = float(exc.response.headers.get("Retry-After", 5) or 5)
                await self._retry(entry, retry_after, "ratelimited")
            elif error in _PERMANENT:
                logger.error(
                    "outbox: %s for %s dropped: %s", entry.method, entry.message_key, error
                )
                await self._store.slack_sent(
                    entry.id, result={"ok": False, "error": error}, now=self._clock.now()
                )
            else:
                await self._retry(entry, self._backoff(entry), error)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # No answer to a post: Slack may have taken it; the next try looks first.
            mark = UNCERTAIN if entry.method == POST else ""
            await self._retry(entry, self._backoff(entry), f"{mark}{type(exc).__name__}")

    async def _post(self, entry: Any, args: dict[str, Any]) -> None:
        parent_key = args.pop("thread_of", None)
        fallback_url = args.pop("fallback_url", None)
        if parent_key is not None:
            parent = await self._store.slack_message(parent_key)
            if parent is None or (parent.ts is None and parent.response_url is None):
                raise _Later(1.0, "thread parent not posted yet")
            if parent.response_url:
                # No thread under a response_url answer: the output stays in `chatops ops show`.
                await self._store.slack_sent(
                    entry.id, result={"skipped": "no thread"}, now=self._clock.now()
                )
                return
            args["channel"], args["thread_ts"] = parent.channel, parent.ts
        # Looked for before the channel's pace can send it back to wait (which forgets that it
        # was uncertain): once looked for and not found, it is sent when its turn comes.
        if entry.uncertain and await self._found_posted(entry, args):
            return
        # Each post takes the channel's next free slot; one that must wait keeps its slot, so
        # it is tried once more, at its turn, not at every round.
        channel = str(args["channel"])
        now = self._clock.monotonic()
        slot = self._slots.pop(entry.id, None)
        if slot is None:
            slot = max(now, self._next_post.get(channel, now))
            self._next_post[channel] = slot + POST_EVERY_S
        if slot > now + 0.05:
            self._slots[entry.id] = slot
            raise _Later(slot - now, "channel pace")
        args["metadata"] = {
            "event_type": EVENT_TYPE,
            "event_payload": {"entry": str(entry.id), "key": entry.message_key},
        }
        try:
            response = await self._client.api_call(POST, json=args)
        except SlackApiError as exc:
            if fallback_url and exc.response.get("error") in NOT_A_MEMBER:
                await self._post_via_url(entry, args, fallback_url)
                return
            raise
        ts = str(response["ts"])
        channel = str(response.get("channel") or args["channel"])
        if parent_key is None:
            await self._store.set_slack_message(entry.message_key, channel=channel, ts=ts)
        await self._store.slack_sent(
            entry.id, result={"ts": ts, "channel": channel}, now=self._clock.now()
        )

    async def _found_posted(self, entry: Any, args: dict[str, Any]) -> bool:
        """Whether an earlier try of this post reached Slack (then it is settled, not sent).
        Unable to look (no scope, Slack failing), it is sent again and that is logged."""
        try:
            channel = await self._channel_id(str(args["channel"]))
            ts = await self._find_entry(entry, channel, args.get("thread_ts"))
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.warning(
                "outbox: cannot tell whether %s reached Slack before (%s); sending it again",
                entry.message_key,
                _error_of(exc),
            )
            return False
        if ts is None:
            return False
        if not args.get("thread_ts"):
            await self._store.set_slack_message(entry.message_key, channel=channel, ts=ts)
        result = {"ts": ts, "channel": channel, "found": True}
        await self._store.slack_sent(entry.id, result=result, now=self._clock.now())
        logger.info("outbox: %s had reached Slack already (%s)", entry.message_key, ts)
        return True

    async def _find_entry(self, entry: Any, channel: str, thread_ts: object) -> str | None:
        """The ts of the message carrying this entry: among the channel's newest 200 (it was
        claimed a lease ago), or in the thread, whose replies come oldest first. No `oldest`
        bound: Slack's clock and ours need not agree."""
        query: dict[str, Any] = {"channel": channel, "include_all_metadata": "true", "limit": 200}
        method, pages = HISTORY, 1
        if thread_ts:
            method, pages, query["ts"] = REPLIES, 10, str(thread_ts)
        for _ in range(pages):
            response = await self._client.api_call(method, http_verb="GET", params=query)
            for message in response.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == EVENT_TYPE and payload.get("entry") == str(
                    entry.id
                ):
                    return str(message["ts"])
            query["cursor"] = (response.get("response_metadata") or {}).get("next_cursor")
            if not query["cursor"]:
                break
        return None

    async def _channel_id(self, channel: str) -> str:
        """Reading a channel takes its ID; the configuration may name it (`#ops`)."""
        if not channel.startswith("#"):
            return channel
        if channel not in self._channel_ids:
            cursor = ""
            for _ in range(20):  # 20 pages of 200 channels
                response = await self._client.api_call(
                    CHANNELS,
                    http_verb="GET",
                    params={
                        "types": "public_channel,private_channel",
                        "exclude_archived": "true",
                        "limit": 200,
                        "cursor": cursor,
                    },
                )
                for found in response.get("channels") or []:
                    self._channel_ids[f"#{found.get('name')}"] = str(found["id"])
                cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
                if channel in self._channel_ids or not cursor:
                    break
        return self._channel_ids.get(channel, channel)

    async def _post_via_url(self, entry: Any, args: dict[str, Any], url: str) -> None:
        payload = {"response_type": "in_channel", "text": args["text"], "blocks": args["blocks"]}
        await self._post_url(entry, url, payload)
        await self._store.set_slack_message(
            entry.message_key, channel=str(args["channel"]), ts=None, response_url=url
        )
        await self._store.slack_sent(
            entry.id, result={"via": "response_url"}, now=self._clock.now()
        )

    async def _update(self, entry: Any, args: dict[str, Any]) -> None:
        message = await self._store.slack_message(entry.message_key)
        final = bool(args.pop("final", False))
        if message is not None and message.response_url:
            if final:
                payload = {"replace_original": True, "text": args["text"], "blocks": args["blocks"]}
                await self._post_url(entry, message.response_url, payload)
            await self._store.slack_sent(
                entry.id, result={"via": "response_url"}, now=self._clock.now()
            )
            return
        if message is None or message.ts is None:
            raise _Later(1.0, "message not posted yet")
        # At most one update every `delay_s` per message (0 for a step change), within the budget.
        delay_s = float(args.pop("delay_s", 0.0))
        since = self._clock.monotonic() - self._last_update.get(entry.message_key, -1e9)
        if since < delay_s:
            raise _Later(delay_s - since, "throttled")
        wait = self._budget.take()
        if wait:
            raise _Later(wait, "update budget")
        # chat.update is tier 3 for the whole workspace: every replica's updates count. Asked
        # only once this process's own bucket lets the update go, so a wait costs no query.
        minute_ago = self._clock.now() - timedelta(seconds=60)
        sent = await self._store.slack_calls_since(
            method=UPDATE, since=minute_ago, scope=self.scope
        )
        if sent >= self._budget.per_minute:
            raise _Later(60.0 / self._budget.per_minute, "update budget (all replicas)")
        args.update(channel=message.channel, ts=message.ts)
        await self._client.api_call(UPDATE, json=args)
        if final:  # no throttle to keep for a message in its final state (nor its memory)
            self._last_update.pop(entry.message_key, None)
        else:
            self._last_update[entry.message_key] = self._clock.monotonic()
        await self._store.slack_sent(entry.id, result={"ts": message.ts}, now=self._clock.now())

    async def _ephemeral(self, entry: Any, args: dict[str, Any]) -> None:
        fallback_url = args.pop("fallback_url", None)
        try:
            response = await self._client.api_call(EPHEMERAL, json=args)
        except SlackApiError as exc:
            if fallback_url and exc.response.get("error") in NOT_A_MEMBER:
                payload = {"response_type": "ephemeral", "replace_original": False}
                ok = await self._post_url(entry, fallback_url, {**payload, "text": args["text"]})
                await self._store.slack_sent(
                    entry.id, result={"via": "response_url", "ok": ok}, now=self._clock.now()
                )
                return
            raise
        await self._store.slack_sent(
            entry.id, result={"ok": response.get("ok")}, now=self._clock.now()
        )

    async def _respond(self, entry: Any, args: dict[str, Any]) -> None:
        ok = await self._post_url(entry, args["url"], args["payload"])
        await self._store.slack_sent(entry.id, result={"ok": ok}, now=self._clock.now())

    async def _post_url(self, entry: Any, url: str, payload: dict[str, Any]) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            url, json=payload, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            if response.status == 429 or response.status >= 500:
                raise _Later(self._backoff(entry), f"HTTP {response.status}")
            return response.status < 400

    async def _retry(self, entry: Any, delay_s: float, reason: str) -> None:
        await self._store.slack_retry(
            entry.id,
            not_before=self._clock.now() + timedelta(seconds=delay_s),
            error=reason,
            now=self._clock.now(),
        )

    @staticmethod
    def _backoff(entry: Any) -> float:
        return float(min(_MAX_BACKOFF_S, 2 ** min(int(entry.attempts), 6)))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Later(Exception):
    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


def _error_of(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown"))
    return type(exc).__name__
