"""A fake Slack Web API over real HTTP on 127.0.0.1:0: the one fake in the test suite.

    async with FakeSlack(bot_token="xoxb-test", team_id="T1", bot_user_id="UBOT") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[0]["text"] == "hi"

Faithful to Slack (what a bot would trip over in production):

* ``POST|GET /api/<method>`` for every method in the reference (``shared/slack-api/methods``,
  or ``$SLACK_METHODS_DIR``); any other name answers ``unknown_method``.
* Arguments as Slack reads them: form-encoded or multipart bodies, the query string, and JSON
  bodies only for methods with ``json_input_supported`` (JSON elsewhere is ignored, as Slack
  ignores it, so the call fails for missing arguments). ``blocks``/``attachments``/``view`` may
  be JSON strings (form) or JSON values (JSON body).
* Auth: ``Authorization: Bearer`` or a ``token`` form argument (a token inside a JSON body is
  not read, as on Slack); missing -> ``not_authed``, wrong -> ``invalid_auth``; user-token-only
  methods -> ``not_allowed_token_type``; with ``scopes=`` given, the method's bot scopes are
  checked (``missing_scope`` with ``needed``/``provided``).
* Required arguments -> ``invalid_arguments`` with ``response_metadata.messages`` like Slack's.
* Block Kit limits (``blockkit.py``) -> ``invalid_blocks`` / ``invalid_arguments``.
* Rate limits per tier, and per channel for ``chat.postMessage`` (``limits.py``) -> HTTP 429,
  ``Retry-After``, ``{"ok": false, "error": "ratelimited"}``.
* trigger_ids and views (``views.py``), response_urls (``responses.py``), messages and threads
  (``messages.py``).

Simplified (so nobody relies on it):

* One workspace, one bot token, no Enterprise Grid, no user tokens, no OAuth.
* Channels are not checked unless ``strict_channels=True`` (then they must be in
  ``slack.channels``); the bot may post anywhere except in a known channel added with
  ``is_member=False``: there posts, ephemerals and history answer ``not_in_channel`` (public)
  or ``channel_not_found`` (``is_private`` or ``is_im``), as for a bot without
  ``chat:write.public``.
* ``chat.update`` keeps blocks/attachments the call does not send and replaces those it does;
  ``text`` over 40,000 characters is truncated by ``chat.postMessage`` (warning
  ``message_truncated``) and refused by ``chat.update`` (``msg_too_long``).
* Methods without a behaviour here answer ``{"ok": true}`` after validation.
* Error *codes* match the method reference; Slack's error texts are not reproduced word for word.
* Slack accepts GET or POST for most methods; the fake answers both and records a violation
  only for GET on a method Slack documents as POST.

Every request is in ``slack.calls``; every misuse is a string in ``slack.violations`` *and* the
answer Slack would give. Data lookups that can legitimately fail at run time (``users.info`` of
an unknown user, ``hash_conflict``, updating a view the user closed) are errors, not
violations. Unacknowledged violations fail the test session (``plugin.py``); a test that
provokes them on purpose calls ``slack.expect_violations(...)``/``acknowledge_violations()``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.slack import blockkit
from tests.slack.clock import FakeClock
from tests.slack.errors import SlackError
from tests.slack.faults import Fault, Faults
from tests.slack.limits import RateLimiter
from tests.slack.messages import MessageStore
from tests.slack.methods import MethodSpec, load_methods, methods_dir
from tests.slack.responses import ResponseUrls, show_response, truthy
from tests.slack.socket_mode import SocketModeServer
from tests.slack.views import MAX_STACK, ViewStore

logger = logging.getLogger(__name__)

_INSTANCES: list[FakeSlack] = []


def instances() -> list[FakeSlack]:
    """Every FakeSlack created in this process, for the session-end violation check."""
    return list(_INSTANCES)


@dataclass
class Call:
    """One request the fake received; ``method`` is ``"response_url"`` for response_url posts."""

    method: str
    args: dict[str, Any]
    """As parsed (JSON values decoded, ``token`` removed)."""
    http_method: str
    content_type: str
    time: float
    """On the fake's clock."""
    status: int = 0
    ok: bool | None = None
    error: str | None = None
    response: dict[str, Any] | None = None
    injected: bool = False
    """Answered by ``fail``/``fail_all`` rather than by the fake's Slack behaviour."""


@dataclass
class _Context:
    """Per-request scratch: warnings Slack would add to an ok answer."""

    warnings: list[str] = field(default_factory=list)


Handler = Callable[[MethodSpec, dict[str, Any], _Context], Awaitable[dict[str, Any]]]


class FakeSlack:
    """The fake Slack workspace: an aiohttp server plus the state tests inspect and configure.

    Configure with plain dicts, before or during a test: ``users`` (id -> profile fields, e.g.
    ``{"name": "ana", "tz": "Europe/Lisbon"}``), ``usergroups`` (id -> user ids), ``channels``
    (id -> conversation fields; ``add_channel`` fills the usual ones), ``members`` (channel ->
    user ids); ``limiter`` (``enabled``, ``per_minute``, ``post_message_burst``) and ``clock``.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A1",
        team_domain: str = "fake",
        team_name: str = "Fake Workspace",
        methods_path: Path | None = None,
        clock: FakeClock | None = None,
        scopes: set[str] | None = None,
        strict_channels: bool = False,
        trigger_ttl_s: float = 3.0,
        response_url_max_uses: int = 5,
        response_url_ttl_s: float = 30 * 60.0,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        """The app-level token: only Socket Mode's ``apps.connections.open`` takes it."""
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.methods = load_methods((methods_path or methods_dir()).resolve())
        self.clock = clock or FakeClock()
        self.scopes = scopes
        """Bot scopes granted; None: every method is allowed."""
        self.strict_channels = strict_channels
        self.limiter = RateLimiter()

        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.rate_limited = 0
        """Calls refused by the rate limits (not counting injected 429s)."""
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.created_by = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        """The test (node id) that created this instance, for the session report."""

        self._store = MessageStore(
            self.clock, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id, team_id=team_id
        )
        self._views = ViewStore(
            self.clock, team_id=team_id, app_id=app_id, bot_id=bot_id, trigger_ttl_s=trigger_ttl_s
        )
        self._response_urls = ResponseUrls(
            self.clock, max_uses=response_url_max_uses, ttl_s=response_url_ttl_s
        )
        self._faults = Faults(self.clock)
        self._acknowledged: set[int] = set()
        self._changed = asyncio.Event()
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.list": self._conversations_list,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "apps.connections.open": self._apps_connections_open,
        }
        self.socket_mode = SocketModeServer(self.violate, lambda: self.url, app_id)
        self._app = web.Application()
        self._app.add_routes(
            [
                web.route("*", "/api/{method}", self._handle_api),
                web.route("*", "/response/{id}", self._handle_response_url),
                *self.socket_mode.routes(),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.url = ""
        """``http://127.0.0.1:<port>`` once started."""
        _INSTANCES.append(self)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Self:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        await self.socket_mode.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """Base URL for ``AsyncWebClient(base_url=...)``: ``http://127.0.0.1:<port>/api/``."""
        if not self.url:
            raise RuntimeError("FakeSlack is not started")
        return f"{self.url}/api/"

    # -- violations -----------------------------------------------------------------------------

    def violate(self, message: str) -> None:
        """Record a misuse of Slack (the driver uses it too, for bad or late acks)."""
        logger.warning("fake Slack violation: %s", message)
        self.violations.append(message)

    @property
    def unacknowledged_violations(self) -> list[str]:
        return [v for i, v in enumerate(self.violations) if i not in self._acknowledged]

    def acknowledge_violations(self) -> list[str]:
        """Accept every violation so far (the test provoked them on purpose); returns them."""
        pending = self.unacknowledged_violations
        self._acknowledged.update(range(len(self.violations)))
        return pending

    def expect_violations(self, *substrings: str) -> list[str]:
        """Assert that each substring occurs in some unacknowledged violation, and acknowledge
        the violations matched; others stay pending (and fail the session)."""
        matched: list[str] = []
        for needle in substrings:
            hits = [
                i
                for i, v in enumerate(self.violations)
                if i not in self._acknowledged and needle in v
            ]
            if not hits:
                raise AssertionError(
                    f"no unacknowledged violation contains {needle!r}; "
                    f"pending: {self.unacknowledged_violations!r}"
                )
            self._acknowledged.update(hits)
            matched += [self.violations[i] for i in hits]
        return matched

    # -- state, for tests (copies; changing them changes nothing) ------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def channel_id(self, channel: str) -> str:
        """``#name`` of a known channel -> its ID, as Slack resolves a name in a message call
        (and answers with the ID); anything else as it is."""
        if channel.startswith("#"):
            for info in self.channels.values():
                if info.get("name") == channel[1:]:
                    return str(info["id"])
        return channel

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Current state of each top-level message in ``channel``, oldest first."""
        return self._store.top_level(self.channel_id(channel))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """One message (top-level or reply) in its current state, or None if absent/deleted."""
        found = self._store.get(self.channel_id(channel), ts)
        return copy.deepcopy(found) if found is not None else None

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Replies to the message ``ts`` (without the parent), oldest first."""
        return self._store.replies(self.channel_id(channel), ts)

    def ephemerals(
        self, channel: str | None = None, user: str | None = None
    ) -> list[dict[str, Any]]:
        """Ephemeral messages, oldest first; ``source`` says how each came: ``chat.postEphemeral``,
        ``response_url`` or ``ack`` (a command's ack body)."""
        return self._store.ephemerals(None if channel is None else self.channel_id(channel), user)

    def responses(self, response_url: str) -> list[dict[str, Any]]:
        """JSON payloads posted to a response_url (by URL or id), accepted or not."""
        ru = self._response_urls.get(response_url)
        return copy.deepcopy(ru.posts) if ru else []

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """Every view opened so far, by id, as Slack last returned it (closed ones too)."""
        return copy.deepcopy(self._views.views)

    def open_views(self, user: str | None) -> list[dict[str, Any]]:
        """The user's stack of open modals, root first."""
        return [copy.deepcopy(self._views.views[v]) for v in self._views.stack(user)]

    def is_view_open(self, view_id: str) -> bool:
        return self._views.is_open(view_id)

    def view_user(self, view_id: str) -> str | None:
        return self._views.user_of(view_id)

    # -- setup and Slack's side of interactions ------------------------------------------------

    def add_channel(
        self,
        channel: str,
        *,
        name: str | None = None,
        members: list[str] | None = None,
        **info: Any,
    ) -> None:
        self.channels[channel] = {
            "id": channel,
            "name": name or channel.lower(),
            "is_channel": True,
            "is_private": False,
            "is_archived": False,
            "is_member": True,
            **info,
        }
        if members is not None:
            self.members[channel] = list(members)

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U1",
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> str:
        """A message someone posted (e.g. a parent for the bot's thread replies); its ts.
        ``user=slack.bot_user_id`` makes it the bot's own (so the bot may update it)."""
        message: dict[str, Any] = {"type": "message", "user": user, "text": text}
        if user == self.bot_user_id:
            message = self._store.bot_message({"text": text})
        if blocks is not None:
            message["blocks"] = blocks
        return str(self._store.post(self.channel_id(channel), message, thread_ts)["ts"])

    def new_trigger_id(self, *, user: str | None = None) -> str:
        """A trigger_id as Slack puts in a command/interaction: single use, 3 s to use it."""
        return self._views.new_trigger(user)

    def trigger_issued_at(self, trigger_id: str) -> float | None:
        """When `trigger_id` was issued, on the fake's clock (None: not one of ours)."""
        return self._views.issued_at(trigger_id)

    def response_url_issued_at(self, url_or_id: str) -> float | None:
        """When that response_url was issued, on the fake's clock (None: not one of ours)."""
        ru = self._response_urls.get(url_or_id)
        return None if ru is None else ru.issued_at

    def new_response_url(
        self,
        *,
        channel: str | None = None,
        user: str | None = None,
        message_ts: str | None = None,
        is_ephemeral: bool = False,
    ) -> str:
        """``http://127.0.0.1:<port>/response/<id>``: 5 uses within 30 min of the fake clock.

        ``message_ts`` is the message the interaction came from (what ``replace_original`` and
        ``delete_original`` act on); without it they act on this URL's last ephemeral.
        """
        if not self.url:
            raise RuntimeError("FakeSlack is not started")
        return self._response_urls.issue(
            self.url,
            channel=channel,
            user=user,
            message_ts=message_ts,
            is_ephemeral=is_ephemeral,
        ).url

    def show_ack(self, payload: dict[str, Any], *, where: str, channel: str, user: str) -> None:
        """Show a slash command's ack body as Slack does (driver use)."""
        try:
            show_response(self._store, payload, where=where, channel=channel, user=user)
        except SlackError as e:
            if e.violation:
                self.violate(e.violation)

    def push_view(self, user: str | None, view: dict[str, Any]) -> dict[str, Any]:
        """Push onto the user's stack (a view_submission's ``response_action: push``)."""
        return copy.deepcopy(self._views.push(user, view))

    def replace_view(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        """Same id, new content and hash (a view_submission's ``response_action: update``)."""
        return copy.deepcopy(self._views.replace(view_id, view))

    def close_views(self, view_id: str, *, all_views: bool = False) -> None:
        """The user closed or submitted ``view_id`` (and the views above it);
        ``all_views``: the whole stack (``response_action: clear``, or close with clear)."""
        self._views.close(view_id, all_views=all_views)

    async def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
        """Wait (real time) until ``predicate()`` holds; re-checked after every request."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            recent = [(c.method, c.status, c.error) for c in self.calls[-10:]]
            raise TimeoutError(
                f"condition not met within {timeout_s} s; last calls: {recent}"
            ) from None

    async def wait_for_calls(
        self, method: str, *, count: int = 1, timeout_s: float = 5.0
    ) -> list[Call]:
        """Wait until ``method`` was called ``count`` times (answered); all its calls."""
        await self.wait_until(lambda: len(self.calls_to(method)) >= count, timeout_s=timeout_s)
        return self.calls_to(method)

    # -- fault injection ------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int | None = None,
        error: str | None = None,
        times: int = 1,
        latency_s: float = 0.0,
        retry_after_s: float | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` (or ``"response_url"``) fail; FIFO per method.

        ``status=500|503|...``: that HTTP status; ``status=429``: ``ratelimited`` with
        ``Retry-After: retry_after_s`` (default 1; 0 keeps a retrying client fast); ``error``
        alone: HTTP 200 ``{"ok": false, "error": error}``; ``latency_s`` (real seconds) delays the
        answer (alone: a slow but normal answer). Injected answers are not violations and do not
        count in ``rate_limited``.
        """
        if method != "response_url" and method not in self.methods:
            raise ValueError(f"{method!r} is not a Slack method ({len(self.methods)} known)")
        if status is None and error is None and not latency_s:
            raise ValueError("fail() needs status, error or latency_s")
        if times < 1:
            raise ValueError("times must be >= 1")
        self._faults.add(method, Fault(status, error, times, latency_s, retry_after_s))

    def fail_all(
        self,
        *,
        status: int = 503,
        error: str | None = None,
        until: float | None = None,
        for_s: float | None = None,
    ) -> None:
        """An outage: every request (API and response_url) fails with ``status`` until ``until``
        (fake clock seconds), or for ``for_s`` from now, or until ``recover()``."""
        if for_s is not None:
            until = self.clock.now() + for_s
        self._faults.outage(Fault(status, error, 1, 0.0, None), until)

    def recover(self) -> None:
        """End an outage and drop every queued fault."""
        self._faults.clear()

    async def _injected(self, method: str, call: Call) -> web.Response | None:
        fault = self._faults.take(method)
        if fault is None:
            return None
        if fault.latency_s:
            await asyncio.sleep(fault.latency_s)
        if not fault.answers:
            return None
        call.injected = True
        status, body, headers = fault.response()
        return self._reply(call, body, status=status, headers=headers)

    # -- HTTP: Web API --------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = Call(method, {}, request.method, request.content_type, self.clock.now())
        self.calls.append(call)
        try:
            spec = self.methods.get(method)
            if spec is None:
                raise SlackError(
                    "unknown_method",
                    violation=f"{method}: not a Slack Web API method",
                    extra={"req_method": method},
                )
            ctx = _Context()
            call.args, token = await self._read_args(request, spec, ctx)
            injected = await self._injected(method, call)
            if injected is not None:
                return injected
            self._authenticate(spec, token)
            retry_after = self.limiter.check(spec, call.args.get("channel"), self.clock.now())
            if retry_after is not None:
                self.rate_limited += 1
                self.violate(
                    f"{method}: rate limited (tier {spec.rate_tier}); Retry-After {retry_after} s"
                )
                return self._reply(
                    call,
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(retry_after)},
                )
            self._check_required(spec, call.args)
            handler = self._handlers.get(method, self._generic_ok)
            body = await handler(spec, call.args, ctx)
            if ctx.warnings:
                body["warning"] = ",".join(ctx.warnings)
                body.setdefault("response_metadata", {})["warnings"] = list(ctx.warnings)
            return self._reply(call, body)
        except SlackError as e:
            if e.violation:
                self.violate(e.violation)
            return self._reply(call, e.body(), status=e.status)
        except Exception as e:
            self.violate(f"{method}: the fake itself failed: {type(e).__name__}: {e}")
            logger.exception("fake Slack failed on %s", method)
            return self._reply(call, {"ok": False, "error": "fatal_error"}, status=500)

    async def _read_args(
        self, request: web.Request, spec: MethodSpec, ctx: _Context
    ) -> tuple[dict[str, Any], str | None]:
        method = spec.name
        if request.method not in ("GET", "POST"):
            raise SlackError(
                "invalid_request", violation=f"{method}: HTTP {request.method}", status=405
            )
        if request.method == "GET" and spec.http_method == "POST":
            self.violate(f"{method}: called with GET; Slack documents it as POST")
        token: str | None = None
        if "token" in request.query:
            self.violate(f"{method}: token in the query string (Slack refuses this)")
            token = request.query["token"]
        args: dict[str, Any] = {k: v for k, v in request.query.items() if k != "token"}

        if request.method == "POST" and request.body_exists:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    parsed = json.loads(await request.text())
                except json.JSONDecodeError:
                    raise SlackError("invalid_json", violation=f"{method}: body not JSON") from None
                if not isinstance(parsed, dict):
                    raise SlackError("json_not_object", violation=f"{method}: JSON not an object")
                if request.charset is None:
                    ctx.warnings.append("missing_charset")
                if "token" in parsed:
                    self.violate(f"{method}: token in a JSON body (Slack reads only the header)")
                    parsed.pop("token")
                if spec.json_input_supported:
                    args.update(parsed)
                else:
                    self.violate(
                        f"{method}: JSON body sent, but this method does not accept JSON "
                        "(json_input_supported is not true); Slack ignores the body"
                    )
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key in form:
                    values = [
                        {"filename": v.filename} if isinstance(v, web.FileField) else v
                        for v in form.getall(key)
                    ]
                    args[key] = values[0] if len(values) == 1 else values
                if isinstance(args.get("token"), str):
                    token = args["token"]
            elif await request.read():
                raise SlackError("invalid_post_type", violation=f"{method}: Content-Type {ctype!r}")
        args.pop("token", None)

        authorization = request.headers.get("Authorization")
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else ""
        return args, token

    def _authenticate(self, spec: MethodSpec, token: str | None) -> None:
        method = spec.name
        if not token:
            raise SlackError("not_authed", violation=f"{method}: no token")
        app_level = method == "apps.connections.open"
        if token == (self.bot_token if app_level else self.app_token):
            raise SlackError(
                "not_allowed_token_type",
                violation=f"{method}: takes {'an app-level' if app_level else 'a bot'} token",
            )
        if token != (self.app_token if app_level else self.bot_token):
            raise SlackError("invalid_auth", violation=f"{method}: wrong token")
        if app_level:
            return
        if spec.user_scope_only:
            raise SlackError(
                "not_allowed_token_type", violation=f"{method}: needs a user token, not a bot's"
            )
        if self.scopes is not None and spec.bot_scopes and not spec.bot_scopes & self.scopes:
            raise SlackError(
                "missing_scope",
                violation=f"{method}: needs one of the scopes {sorted(spec.bot_scopes)}",
                extra={
                    "needed": ",".join(sorted(spec.bot_scopes)),
                    "provided": ",".join(sorted(self.scopes)),
                },
            )

    def _check_required(self, spec: MethodSpec, args: dict[str, Any]) -> None:
        missing = sorted(name for name in spec.required if args.get(name) in (None, ""))
        if missing:
            raise SlackError(
                "invalid_arguments",
                violation=f"{spec.name}: missing required {', '.join(missing)}",
                messages=[f"[ERROR] missing required field: {name}" for name in missing],
            )

    def _reply(
        self,
        call: Call,
        body: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        call.status = status
        call.ok = bool(body.get("ok"))
        call.error = body.get("error")
        call.response = body
        headers = dict(headers or {})
        if self.scopes is not None:
            headers["x-oauth-scopes"] = ",".join(sorted(self.scopes))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return web.json_response(body, status=status, headers=headers)

    # -- argument helpers -----------------------------------------------------------------------

    @staticmethod
    def _json_arg(method: str, args: dict[str, Any], name: str, error: str) -> Any:
        value = args.get(name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise SlackError(error, violation=f"{method}: {name} is not JSON") from None
            args[name] = value
        return value

    def _message_content(
        self, method: str, args: dict[str, Any], ctx: _Context, *, truncate: bool
    ) -> dict[str, Any]:
        """The text/blocks/attachments/metadata a message call sent, validated."""
        content: dict[str, Any] = {}
        if args.get("text") is not None:
            content["text"] = str(args["text"])
        blocks = self._json_arg(method, args, "blocks", "invalid_blocks_format")
        attachments = self._json_arg(method, args, "attachments", "invalid_attachments")
        metadata = self._json_arg(method, args, "metadata", "invalid_metadata_format")
        markdown_text = args.get("markdown_text")
        if markdown_text and ("text" in content or blocks):
            raise SlackError(
                "markdown_text_conflict",
                violation=f"{method}: markdown_text together with text or blocks",
            )
        if not (content.get("text") or blocks or attachments or markdown_text):
            raise SlackError("no_text", violation=f"{method}: no text, blocks or attachments")
        if blocks is not None:
            problems = blockkit.validate_message_blocks(blocks)
            if problems:
                raise SlackError(
                    "invalid_blocks",
                    violation=f"{method}: invalid blocks: {'; '.join(problems)}",
                    messages=problems,
                )
            content["blocks"] = blocks
        if attachments is not None:
            if not isinstance(attachments, list):
                raise SlackError("invalid_attachments", violation=f"{method}: attachments")
            if len(attachments) > 100:
                raise SlackError("too_many_attachments", violation=f"{method}: > 100 attachments")
            content["attachments"] = attachments
        if metadata is not None:
            content["metadata"] = metadata
        if markdown_text:
            content["text"] = str(markdown_text)
        text = content.get("text", "")
        if len(text) > blockkit.MESSAGE_TEXT_MAX:
            message = f"{method}: text is {len(text)} characters (> {blockkit.MESSAGE_TEXT_MAX})"
            if not truncate:
                raise SlackError("msg_too_long", violation=message)
            self.violate(message)
            ctx.warnings.append("message_truncated")
            content["text"] = text[: blockkit.MESSAGE_TEXT_MAX]
        return content

    def _check_channel(self, method: str, channel: str) -> None:
        if self.strict_channels and channel not in self.channels:
            raise SlackError("channel_not_found", violation=f"{method}: unknown channel {channel}")
        info = self.channels.get(channel)
        if info is not None and not info.get("is_member", True):
            # Without chat:write.public a bot cannot post where it is not a member; a private
            # channel or a DM it is not in does not exist for it. Slack's answers, not misuse.
            private = info.get("is_private") or info.get("is_im")
            raise SlackError("channel_not_found" if private else "not_in_channel")

    def _message_or_fail(self, method: str, channel: str, ts: str) -> dict[str, Any]:
        message = self._store.get(channel, ts)
        if message is None:
            raise SlackError(
                "message_not_found", violation=f"{method}: no message {ts} in {channel}"
            )
        return message

    def _view_arg(self, spec: MethodSpec, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except json.JSONDecodeError:
                view = None
        if not isinstance(view, dict):
            raise SlackError(
                "invalid_arguments",
                violation=f"{spec.name}: view is not a JSON object",
                messages=["[ERROR] must be an object [json-pointer:/view]"],
            )
        problems = blockkit.validate_view(view)
        if problems:
            too_large = any("larger than" in p for p in problems)
            raise SlackError(
                "view_too_large" if too_large else "invalid_arguments",
                violation=f"{spec.name}: invalid view: {'; '.join(problems)}",
                messages=problems,
            )
        return view

    # -- method behaviours ----------------------------------------------------------------------

    async def _generic_ok(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        return {"ok": True}

    async def _auth_test(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": "bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    async def _chat_post_message(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel = self.channel_id(str(args["channel"]))
        self._check_channel(spec.name, channel)
        content = self._message_content(spec.name, args, ctx, truncate=True)
        thread_ts = args.get("thread_ts") or None
        if thread_ts:
            parent = self._store.get(channel, thread_ts)
            if parent is None:
                self.violate(f"{spec.name}: thread_ts {thread_ts} is not a message in {channel}")
            elif parent.get("thread_ts") not in (None, thread_ts):
                self.violate(
                    f"{spec.name}: thread_ts {thread_ts} is a reply; use its parent "
                    f"{parent['thread_ts']}"
                )
        message = self._store.bot_message(content)
        if truthy(args.get("reply_broadcast")):
            message["reply_broadcast"] = True
        stored = self._store.post(channel, message, thread_ts)
        return {"ok": True, "channel": channel, "ts": stored["ts"], "message": dict(stored)}

    async def _chat_update(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel, ts = self.channel_id(str(args["channel"])), str(args["ts"])
        message = self._message_or_fail(spec.name, channel, ts)
        content = self._message_content(spec.name, args, ctx, truncate=False)
        if message.get("user") != self.bot_user_id:
            raise SlackError(
                "cant_update_message", violation=f"{spec.name}: {ts} was not posted by the bot"
            )
        self._store.edit(message, content, keep_unsent=True)
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message.get("text", ""),
            "message": copy.deepcopy(message),
        }

    async def _chat_delete(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel, ts = self.channel_id(str(args["channel"])), str(args["ts"])
        message = self._message_or_fail(spec.name, channel, ts)
        if message.get("user") != self.bot_user_id:
            raise SlackError(
                "cant_delete_message", violation=f"{spec.name}: {ts} was not posted by the bot"
            )
        self._store.delete(channel, ts)
        return {"ok": True, "channel": channel, "ts": ts}

    async def _chat_post_ephemeral(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel, user = self.channel_id(str(args["channel"])), str(args["user"])
        self._check_channel(spec.name, channel)
        content = self._message_content(spec.name, args, ctx, truncate=True)
        members = self.members.get(channel)
        if members is not None and user not in members:
            raise SlackError("user_not_in_channel")
        ephemeral = self._store.post_ephemeral(
            channel, user, content, source=spec.name, thread_ts=args.get("thread_ts")
        )
        return {"ok": True, "message_ts": ephemeral["ts"]}

    async def _chat_get_permalink(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel, ts = self.channel_id(str(args["channel"])), str(args["message_ts"])
        message = self._store.get(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        archive = f"https://{self.team_domain}.slack.com/archives/{channel}"
        permalink = f"{archive}/p{ts.replace('.', '')}"
        if message.get("thread_ts") not in (None, ts):
            permalink += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": permalink}

    async def _views_open(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        trigger = self._views.exchange(
            spec.name, args.get("trigger_id") or args.get("interactivity_pointer")
        )
        view = self._view_arg(spec, args)
        self._views.check_external_id(spec.name, view, None)
        trigger.used = True
        return {"ok": True, "view": copy.deepcopy(self._views.open(trigger.user, view))}

    async def _views_push(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        trigger = self._views.exchange(
            spec.name, args.get("trigger_id") or args.get("interactivity_pointer")
        )
        view = self._view_arg(spec, args)
        stack = self._views.stack(trigger.user)
        if not stack:
            raise SlackError("not_found", violation=f"{spec.name}: the user has no open modal")
        if len(stack) >= MAX_STACK:
            raise SlackError(
                "push_limit_reached", violation=f"{spec.name}: {MAX_STACK} views already stacked"
            )
        self._views.check_external_id(spec.name, view, None)
        trigger.used = True
        return {"ok": True, "view": copy.deepcopy(self._views.push(trigger.user, view))}

    async def _views_update(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        view_id = args.get("view_id")
        external_id = args.get("external_id")
        if not view_id and not external_id:
            raise SlackError(
                "invalid_arguments",
                violation=f"{spec.name}: needs view_id or external_id",
                messages=["[ERROR] missing required field: view_id"],
            )
        if not view_id:
            view_id = self._views.by_external_id(str(external_id))
        current = self._views.views.get(str(view_id)) if view_id else None
        if current is None:
            raise SlackError(
                "not_found", violation=f"{spec.name}: no view {view_id or external_id}"
            )
        view = self._view_arg(spec, args)
        if not self._views.is_open(current["id"]):
            raise SlackError("not_found")  # the user closed it: a race, not a misuse
        expected = args.get("hash")
        if expected and expected != current["hash"]:
            raise SlackError("hash_conflict")
        self._views.check_external_id(spec.name, view, current["id"])
        return {"ok": True, "view": copy.deepcopy(self._views.replace(current["id"], view))}

    async def _usergroups_users_list(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        group = str(args["usergroup"])
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    async def _users_info(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        user_id = str(args["user"])
        if user_id not in self.users:
            raise SlackError("user_not_found")
        configured = self.users[user_id]
        name = configured.get("name", user_id.lower())
        real_name = configured.get("real_name", name)
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "is_bot": False,
            "is_admin": False,
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "profile": {"real_name": real_name, "display_name": name},
            **configured,
        }
        return {"ok": True, "user": user}

    async def _apps_connections_open(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        return self.socket_mode.open_connection()

    def _channel_or_fail(self, channel: str) -> dict[str, Any]:
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        return self.channels[channel]

    async def _conversations_info(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        info = copy.deepcopy(self._channel_or_fail(str(args["channel"])))
        if truthy(args.get("include_num_members")) and info["id"] in self.members:
            info["num_members"] = len(self.members[info["id"]])
        return {"ok": True, "channel": info}

    async def _conversations_list(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        kinds = set(str(args.get("types") or "public_channel").split(","))
        listed = [
            copy.deepcopy(info)
            for info in self.channels.values()
            if ("private_channel" if info.get("is_private") else "public_channel") in kinds
            and not (truthy(args.get("exclude_archived")) and info.get("is_archived"))
        ]
        page, next_cursor = self._page(spec, args, listed)
        return {"ok": True, "channels": page, "response_metadata": {"next_cursor": next_cursor}}

    async def _conversations_history(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel = str(args["channel"])
        if channel.startswith("#"):
            raise SlackError(
                "channel_not_found", violation=f"{spec.name}: takes an ID, not {channel}"
            )
        self._check_channel(spec.name, channel)
        found = self._store.top_level(channel)
        return self._history(spec, args, list(reversed(found)))  # newest first, as Slack

    async def _conversations_replies(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["ts"])
        parent = self._message_or_fail(spec.name, channel, ts)
        return self._history(spec, args, [parent, *self._store.replies(channel, ts)])

    def _history(
        self, spec: MethodSpec, args: dict[str, Any], found: list[dict[str, Any]]
    ) -> dict[str, Any]:
        oldest = float(args.get("oldest") or 0)
        shown = []
        for message in found:
            if float(message["ts"]) < oldest:
                continue
            message = copy.deepcopy(message)
            if not truthy(args.get("include_all_metadata")):
                message.pop("metadata", None)
            shown.append(message)
        page, next_cursor = self._page(spec, args, shown)
        return {
            "ok": True,
            "messages": page,
            "has_more": bool(next_cursor),
            "response_metadata": {"next_cursor": next_cursor},
        }

    @staticmethod
    def _page(
        spec: MethodSpec, args: dict[str, Any], items: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        try:
            limit = int(args.get("limit") or 100)
            start = int(args.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_cursor", violation=f"{spec.name}: bad cursor") from None
        end = start + limit
        return items[start:end], str(end) if end < len(items) else ""

    async def _conversations_members(
        self, spec: MethodSpec, args: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        channel = str(args["channel"])
        self._channel_or_fail(channel)
        members = self.members.get(channel, [])
        try:
            limit = int(args.get("limit") or 100)
            start = int(args.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_cursor", violation=f"{spec.name}: bad cursor") from None
        end = start + limit
        return {
            "ok": True,
            "members": members[start:end],
            "response_metadata": {"next_cursor": str(end) if end < len(members) else ""},
        }

    # -- HTTP: response_url ---------------------------------------------------------------------

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        raw = await request.text()
        call = Call("response_url", {}, request.method, request.content_type, self.clock.now())
        self.calls.append(call)
        try:
            payload = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            payload = None
        call.args = {"url_id": rid, **(payload if isinstance(payload, dict) else {})}
        injected = await self._injected("response_url", call)
        if injected is not None:
            return injected
        where = f"response_url {rid}"
        ru = self._response_urls.get(rid)
        try:
            if ru is None:
                raise SlackError("no_service", violation=f"{where}: not issued", status=404)
            if isinstance(payload, dict):
                ru.posts.append(payload)
            if request.method != "POST":
                raise SlackError(
                    "invalid_request", violation=f"{where}: HTTP {request.method}", status=405
                )
            self._response_urls.use(ru, where)
            if request.content_type != "application/json" or not isinstance(payload, dict):
                raise SlackError(
                    "invalid_payload",
                    violation=f"{where}: body must be a JSON object (application/json)",
                    status=400,
                )
            show_response(
                self._store,
                payload,
                where=where,
                channel=ru.channel,
                user=ru.user,
                message_ts=ru.message_ts,
                is_ephemeral=ru.is_ephemeral,
                response_url=ru,
            )
        except SlackError as e:
            if e.violation:
                self.violate(e.violation)
            return self._reply(call, e.body(), status=e.status)
        return self._reply(call, {"ok": True})
