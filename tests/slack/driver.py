"""Plays Slack's side of the bot's HTTP endpoint: slash commands and interactions.

    driver = SlackDriver("http://127.0.0.1:<port>/slack/events", SIGNING_SECRET, slack)
    response = await driver.command("/queue", "drain sla", user="U1", channel="C1")
    assert response.status == 200 and response.elapsed_s < 3

Faithful to Slack:

* Bodies are ``application/x-www-form-urlencoded`` exactly as Slack sends them: slash commands as
  flat fields (``token``, ``team_id``, ``team_domain``, ``channel_id``, ``channel_name``,
  ``user_id``, ``user_name``, ``command``, ``text``, ``api_app_id``, ``is_enterprise_install``,
  ``response_url``, ``trigger_id``), interactions as one ``payload`` field holding JSON.
* Signed with v0 HMAC-SHA256 over ``v0:<timestamp>:<body>`` (``X-Slack-Signature``,
  ``X-Slack-Request-Timestamp``), on real wall-clock time, since that is what Bolt checks.
* Each command/interaction gets a fresh ``trigger_id`` (3 s, single use) and, where Slack gives
  one, a ``response_url`` from the FakeSlack.
* A button click is built from the element the bot actually posted (found by ``action_id`` in
  the stored message or view): clicking a button that is not there fails the test.
* The bot's HTTP answer is the ack: not 200, or later than 3 s, is a violation (Slack shows the
  user an error). A command's ack body is shown as Slack shows it (ephemeral unless
  ``response_type: in_channel``); a view_submission's ``response_action`` (``errors``,
  ``update``, ``push``, ``clear``, or an empty body to close) is applied to the fake's views.

Simplified: no Enterprise Grid fields, no ``X-Slack-Retry-Num`` redelivery, no Events API, no
``view_submission`` ``response_urls`` (only for modals with conversation inputs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import aiohttp

from tests.slack import blockkit
from tests.slack.fake_slack import FakeSlack

ACK_DEADLINE_S = 3.0
STALE_BY_S = 6 * 60
Signature = Literal["valid", "bad", "missing"]


@dataclass(frozen=True)
class SignedRequest:
    """Exactly what was sent, for ``driver.replay``."""

    url: str
    body: bytes
    headers: dict[str, str]
    what: str


@dataclass(frozen=True)
class DriverResponse:
    status: int
    body: Any
    """Parsed JSON if the bot answered JSON, else the text ("" for an empty ack)."""
    elapsed_s: float
    """Real seconds until the bot's complete HTTP answer (the ack)."""
    trigger_id: str | None
    response_url: str | None
    request: SignedRequest

    @property
    def json(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise AssertionError(f"the bot answered {self.body!r}, not a JSON object")
        return self.body


class SlackDriver:
    """Sends signed requests to the bot as Slack would, and applies its acks to ``slack``."""

    def __init__(
        self,
        url: str,
        signing_secret: str,
        slack: FakeSlack,
        *,
        user: str = "U1",
        channel: str = "C1",
        verification_token: str = "fake-verification-token",
        http_timeout_s: float = 10.0,
        socket_mode: bool = False,
    ) -> None:
        """With ``socket_mode``, requests go as Socket Mode envelopes over the fake's WebSocket
        (``url`` and the signing are unused; the connection is what Slack trusts)."""
        self.socket_mode = socket_mode
        self.url = url
        self.signing_secret = signing_secret
        self.slack = slack
        self.user = user
        self.channel = channel
        self.verification_token = verification_token
        self.http_timeout_s = http_timeout_s
        self.last_request: SignedRequest | None = None

    # -- slash commands -------------------------------------------------------------------------

    async def command(
        self,
        command: str,
        text: str = "",
        *,
        user: str | None = None,
        channel: str | None = None,
        channel_name: str | None = None,
        team_id: str | None = None,
        signature: Signature = "valid",
        stale: bool = False,
    ) -> DriverResponse:
        """``await driver.command("/queue", "drain sla")`` or ``command("/queue drain sla")``."""
        if not text and " " in command:
            command, text = command.split(" ", 1)
        user = user or self.user
        channel = channel or self.channel
        trigger_id = self.slack.new_trigger_id(user=user)
        response_url = self.slack.new_response_url(channel=channel, user=user)
        fields = [
            ("token", self.verification_token),
            ("team_id", team_id or self.slack.team_id),
            ("team_domain", self.slack.team_domain),
            ("channel_id", channel),
            ("channel_name", channel_name or self._channel_name(channel)),
            ("user_id", user),
            ("user_name", self._user_name(user)),
            ("command", command),
            ("text", text),
            ("api_app_id", self.slack.app_id),
            ("is_enterprise_install", "false"),
            ("response_url", response_url),
            ("trigger_id", trigger_id),
        ]
        what = f"{command} {text}".strip()
        response = await self._deliver(
            urlencode(fields).encode(), what, signature, stale, trigger_id, response_url
        )
        if self._checked(response, signature, stale) and response.body not in ("", None):
            payload = response.body if isinstance(response.body, dict) else {"text": response.body}
            self.slack.show_ack(payload, where=f"ack of {what}", channel=channel, user=user)
        return response

    async def command_confirmed(
        self, command: str, text: str, *, user: str | None = None, timeout_s: float = 20
    ) -> DriverResponse:
        """The slash command, then its confirmation modal submitted as it is, once the bot has
        filled it with the plan: what an operator does for an environment that is not
        protected. Returns the submission's response."""
        user = user or self.user
        await self.command(command, text, user=user)

        def plan() -> dict[str, Any] | None:
            views = self.slack.open_views(user)
            filled = views and "preparing" not in json.dumps(views[-1]["blocks"])
            return views[-1] if filled else None

        await self.slack.wait_until(lambda: plan() is not None, timeout_s=timeout_s)
        view = plan()
        assert view is not None
        return await self.view_submission(view, user=user)

    # -- interactions ---------------------------------------------------------------------------

    async def block_action(
        self,
        action_id: str,
        value: str | list[str] | None = None,
        *,
        user: str | None = None,
        channel: str | None = None,
        message_ts: str | None = None,
        block_id: str | None = None,
        container: dict[str, Any] | None = None,
        view: dict[str, Any] | str | None = None,
        action: dict[str, Any] | None = None,
        signature: Signature = "valid",
        stale: bool = False,
    ) -> DriverResponse:
        """A click (or selection) on ``action_id``.

        With ``message_ts`` (a message or ephemeral in ``channel``) or ``view`` (a view dict or
        id), the element is looked up there and the action built from it; ``value`` then picks
        the option of a select/overflow/radio (list for multi-selects and checkboxes) or is
        checked against the button's value. Without either, the action is built from the
        arguments (or taken whole from ``action``).
        """
        user = user or self.user
        trigger_id = self.slack.new_trigger_id(user=user)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": self.slack.app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id,
            "team": {"id": self.slack.team_id, "domain": self.slack.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
        }
        blocks: list[dict[str, Any]] | None = None
        response_url: str | None = None
        if view is not None:
            stored = self._view(view)
            blocks = stored.get("blocks")
            payload["container"] = {"type": "view", "view_id": stored["id"]}
            payload["view"] = stored
        else:
            channel = channel or self.channel
            payload["channel"] = {"id": channel, "name": self._channel_name(channel)}
            is_ephemeral = False
            if message_ts is not None:
                message = self.slack.message(channel, message_ts)
                if message is None:
                    message = next(
                        (e for e in self.slack.ephemerals(channel, user) if e["ts"] == message_ts),
                        None,
                    )
                    is_ephemeral = message is not None
                if message is None:
                    raise AssertionError(f"no message {message_ts} in {channel} for {user}")
                blocks = message.get("blocks") or []
                if not is_ephemeral:
                    payload["message"] = message
            payload["container"] = container or {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": is_ephemeral,
            }
            response_url = self.slack.new_response_url(
                channel=channel, user=user, message_ts=message_ts, is_ephemeral=is_ephemeral
            )
            payload["response_url"] = response_url
        if action is None:
            action = self._action(action_id, value, block_id, blocks)
        payload["actions"] = [action]
        body = urlencode({"payload": json.dumps(payload)}).encode()
        response = await self._deliver(
            body, f"block_actions {action_id}", signature, stale, trigger_id, response_url
        )
        self._checked(response, signature, stale)
        return response

    async def view_submission(
        self,
        view: dict[str, Any] | str,
        *,
        user: str | None = None,
        values: dict[str, dict[str, dict[str, Any]]] | None = None,
        signature: Signature = "valid",
        stale: bool = False,
    ) -> DriverResponse:
        """Submit an open modal (its current version in the fake) with ``state.values``:
        ``{block_id: {action_id: {"type": "plain_text_input", "value": "..."}}}``."""
        stored = self._view(view)
        if not self.slack.is_view_open(stored["id"]):
            raise AssertionError(f"view {stored['id']} is not open; a user cannot submit it")
        user = user or self.slack.view_user(stored["id"]) or self.user
        values = values or {}
        inputs = blockkit.input_block_ids(stored)
        for block_id, actions in values.items():
            if block_id not in inputs:
                raise AssertionError(f"{block_id!r} is not an input block of the view: {inputs}")
            for action_id in actions:
                if action_id != inputs[block_id]:
                    raise AssertionError(
                        f"input block {block_id!r} holds action_id {inputs[block_id]!r}, "
                        f"not {action_id!r}"
                    )
        trigger_id = self.slack.new_trigger_id(user=user)
        payload = {
            "type": "view_submission",
            "team": {"id": self.slack.team_id, "domain": self.slack.team_domain},
            "user": self._user(user),
            "api_app_id": self.slack.app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id,
            "view": {**stored, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        what = f"view_submission {stored.get('callback_id') or stored['id']}"
        response = await self._deliver(body, what, signature, stale, trigger_id, None)
        if self._checked(response, signature, stale):
            self._apply_view_response(stored, user, response.body, what)
        return response

    async def view_closed(
        self,
        view: dict[str, Any] | str,
        *,
        user: str | None = None,
        is_cleared: bool = False,
        signature: Signature = "valid",
        stale: bool = False,
    ) -> DriverResponse | None:
        """The user closes the modal (``is_cleared``: the whole stack). Slack tells the bot only
        if the view set ``notify_on_close``; otherwise nothing is sent and this returns None."""
        stored = self._view(view)
        user = user or self.slack.view_user(stored["id"]) or self.user
        self.slack.close_views(stored["id"], all_views=is_cleared)
        if not stored.get("notify_on_close"):
            return None
        payload = {
            "type": "view_closed",
            "team": {"id": self.slack.team_id, "domain": self.slack.team_domain},
            "user": self._user(user),
            "api_app_id": self.slack.app_id,
            "token": self.verification_token,
            "view": stored,
            "is_cleared": is_cleared,
            "is_enterprise_install": False,
            "enterprise": None,
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        what = f"view_closed {stored.get('callback_id') or stored['id']}"
        response = await self._deliver(body, what, signature, stale, None, None)
        self._checked(response, signature, stale)
        return response

    async def replay(self, request: SignedRequest) -> DriverResponse:
        """Send exactly the same bytes and headers again (an attacker's replay)."""
        return await self._send(request, trigger_id=None, response_url=None)

    # -- internals ------------------------------------------------------------------------------

    def _user(self, user: str) -> dict[str, Any]:
        name = self._user_name(user)
        return {"id": user, "username": name, "name": name, "team_id": self.slack.team_id}

    def _user_name(self, user: str) -> str:
        return str(self.slack.users.get(user, {}).get("name", user.lower()))

    def _channel_name(self, channel: str) -> str:
        return str(self.slack.channels.get(channel, {}).get("name", channel.lower()))

    def _view(self, view: dict[str, Any] | str) -> dict[str, Any]:
        view_id = view if isinstance(view, str) else view.get("id")
        views = self.slack.views
        if not isinstance(view_id, str) or view_id not in views:
            raise AssertionError(f"unknown view {view_id!r}; pass a view the fake returned")
        return views[view_id]

    @staticmethod
    def _action(
        action_id: str,
        value: str | list[str] | None,
        block_id: str | None,
        blocks: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        action_ts = f"{time.time():.6f}"
        if blocks is None:
            action: dict[str, Any] = {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id or "b0",
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "action_ts": action_ts,
            }
            if value is not None:
                action["value"] = value
            return action
        found = [
            (i, block, element)
            for i, (block, element) in enumerate(blockkit.iter_elements(blocks))
            if element.get("action_id") == action_id
            and (block_id is None or block.get("block_id") == block_id)
        ]
        if not found:
            present = [e.get("action_id") for _, e in blockkit.iter_elements(blocks)]
            raise AssertionError(f"no element {action_id!r} to act on; present: {present}")
        i, block, element = found[0]
        kind = element["type"]
        action = {
            "type": kind,
            "action_id": action_id,
            "block_id": block.get("block_id") or f"b{i}",
            "action_ts": action_ts,
        }
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options += group.get("options") or []
        if kind in ("button", "workflow_button"):
            action["text"] = element.get("text")
            if "value" in element:
                action["value"] = element["value"]
            if "style" in element:
                action["style"] = element["style"]
            if value is not None and value != element.get("value"):
                raise AssertionError(
                    f"button {action_id!r} carries value {element.get('value')!r}, not {value!r}"
                )
        elif kind in ("static_select", "overflow", "radio_buttons"):
            option = next((o for o in options if o.get("value") == value), None)
            if option is None:
                raise AssertionError(f"{action_id!r} has no option {value!r}")
            action["selected_option"] = option
        elif kind in ("multi_static_select", "checkboxes"):
            wanted = [value] if isinstance(value, str) else list(value or [])
            chosen = [o for o in options if o.get("value") in wanted]
            if len(chosen) != len(wanted):
                raise AssertionError(f"{action_id!r} lacks some of the options {wanted!r}")
            action["selected_options"] = chosen
        elif kind == "users_select":
            action["selected_user"] = value
        elif kind == "conversations_select":
            action["selected_conversation"] = value
        elif kind == "channels_select":
            action["selected_channel"] = value
        elif kind == "datepicker":
            action["selected_date"] = value
        else:
            action["value"] = value
        return action

    def _signed(self, body: bytes, what: str, signature: Signature, stale: bool) -> SignedRequest:
        timestamp = str(int(time.time()) - (STALE_BY_S if stale else 0))
        secret = self.signing_secret if signature == "valid" else "not-the-signing-secret"
        digest = hmac.new(
            secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": timestamp,
        }
        if signature != "missing":
            headers["X-Slack-Signature"] = f"v0={digest}"
        return SignedRequest(self.url, body, headers, what)

    async def _deliver(
        self,
        body: bytes,
        what: str,
        signature: Signature,
        stale: bool,
        trigger_id: str | None,
        response_url: str | None,
    ) -> DriverResponse:
        request = self._signed(body, what, signature, stale)
        self.last_request = request
        return await self._send(request, trigger_id=trigger_id, response_url=response_url)

    async def _send(
        self, request: SignedRequest, *, trigger_id: str | None, response_url: str | None
    ) -> DriverResponse:
        if self.socket_mode:
            return await self._send_envelope(request, trigger_id, response_url)
        timeout = aiohttp.ClientTimeout(total=self.http_timeout_s)
        started = time.perf_counter()
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(request.url, data=request.body, headers=request.headers) as resp,
        ):
            text = await resp.text()
            elapsed = time.perf_counter() - started
            status = resp.status
        body: Any = text
        if text.startswith("{"):
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                body = text
        return DriverResponse(status, body, elapsed, trigger_id, response_url, request)

    async def _send_envelope(
        self, request: SignedRequest, trigger_id: str | None, response_url: str | None
    ) -> DriverResponse:
        fields = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
        if "payload" in fields:  # an interaction
            kind, payload = "interactive", json.loads(fields["payload"])
        else:
            kind, payload = "slash_commands", fields
        ack, elapsed = await self.slack.socket_mode.send(kind, payload)
        body: Any = ack.get("payload") or ""
        return DriverResponse(200, body, elapsed, trigger_id, response_url, request)

    def _checked(self, response: DriverResponse, signature: Signature, stale: bool) -> bool:
        """For a genuine request, a non-200 or late ack is a violation. True if acked in time."""
        if signature != "valid" or stale:
            return False
        what = response.request.what
        if response.status != 200:
            self.slack.violate(f"{what}: the bot answered HTTP {response.status} (Slack wants 200)")
            return False
        if response.elapsed_s > ACK_DEADLINE_S:
            self.slack.violate(
                f"{what}: acked after {response.elapsed_s:.2f} s; Slack gives up after "
                f"{ACK_DEADLINE_S:.0f} s and shows the user an error"
            )
            return False
        return True

    def _apply_view_response(self, view: dict[str, Any], user: str, body: Any, what: str) -> None:
        view_id = view["id"]
        if body in ("", None):
            self.slack.close_views(view_id)
            return
        if not isinstance(body, dict):
            self.slack.violate(f"{what}: ack body {body!r} is neither empty nor a JSON object")
            return
        action = body.get("response_action")
        if action is None:
            self.slack.close_views(view_id)
        elif action == "errors":
            errors = body.get("errors")
            inputs = blockkit.input_block_ids(view)
            if not isinstance(errors, dict) or not errors:
                self.slack.violate(f"{what}: response_action errors without an errors object")
            else:
                unknown = sorted(set(errors) - set(inputs))
                if unknown:
                    self.slack.violate(
                        f"{what}: errors for {unknown}, which are not input block_ids "
                        f"of the view ({sorted(inputs)})"
                    )
        elif action in ("update", "push"):
            new_view = body.get("view")
            problems = blockkit.validate_view(new_view)
            if problems:
                self.slack.violate(f"{what}: response_action {action}: {'; '.join(problems)}")
            elif not isinstance(new_view, dict):
                pass
            elif action == "update":
                self.slack.replace_view(view_id, new_view)
            elif len(self.slack.open_views(user)) >= 3:
                self.slack.violate(f"{what}: response_action push beyond 3 stacked views")
            else:
                self.slack.push_view(user, new_view)
        elif action == "clear":
            self.slack.close_views(view_id, all_views=True)
        else:
            self.slack.violate(f"{what}: unknown response_action {action!r}")
