"""A terminal Slack: the few Web API methods the bot calls (`bot/slack/manifest.py`
METHODS_CALLED) and its response_urls, served on 127.0.0.1 to the bot running in the same
process, rendering what it receives instead of storing it for a workspace.

* `chat.postMessage` prints a message (a thread reply under its parent), `chat.update` shows the
  new state of one: in a live region while the console follows an action on a terminal (one
  region for every message that changes meanwhile), else its changed lines under its title.
  Buttons are numbered choices.
* `chat.postEphemeral`, response_url posts (and the acks the REPL gets) print as private notes.
* `views.open` / `views.update` keep the modal for the REPL to ask about (`modal_to_show`).
* `auth.test`, `usergroups.users.list` and `users.info` answer as a one-user workspace would.

Only the console's own channel is served. The outbox lives in the bot's database, so a
`chatops serve` sharing that database may hand this process a real Slack message: it is
answered 503 (retried later by whichever sender claims it, never lost or shown here); a message
for an earlier console session is answered `is_archived` (dropped: that session is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from bot.console.render import Choices, input_blocks, message_lines, mrkdwn, plain
from bot.slack.blocks import CANCEL_ACTION
from bot.slack.manifest import METHODS_CALLED

CONSOLE_CHANNEL_PREFIX = "CCONSOLE"
_MESSAGE = Text("┃ ", style="blue")
_PRIVATE = Text("┆ ", style="magenta")


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    seq: int = 0  # the server's answer count when it was posted
    version: int = 0  # updates received
    metadata: dict[str, Any] | None = None  # what the outbox tags its posts with
    shown: list[str] = field(default_factory=list)  # plain lines as last printed

    @property
    def where(self) -> str:
        return f"message:{self.channel}:{self.ts}"

    def has_action(self, action_id: str, value: str | None = None) -> bool:
        return any(
            element.get("action_id") == action_id
            and (value is None or element.get("value") == value)
            for element in _elements(self.blocks)
        )

    def element(self, action_id: str, value: str | None) -> tuple[str, dict[str, Any]] | None:
        for block in self.blocks:
            for element in _block_elements(block):
                if element.get("action_id") == action_id and element.get("value") == value:
                    return str(block.get("block_id", "")), element
        return None


@dataclass
class Modal:
    id: str
    user: str
    view: dict[str, Any]
    updated: bool = False  # replaced by views.update (a loading view is opened, then updated)
    open: bool = True
    shown_hash: str | None = None

    @property
    def ready(self) -> bool:
        """Worth showing: not shown in this version, and not a view the user could only close
        that the bot has not updated yet (its "preparing…" state)."""
        view = self.view
        return (
            self.open
            and self.shown_hash != view.get("hash")
            and bool(self.updated or view.get("submit") or input_blocks(view))
        )


def _block_elements(block: Any) -> list[dict[str, Any]]:
    if not isinstance(block, dict):
        return []
    elements = [e for e in block.get("elements") or [] if isinstance(e, dict)]
    if block.get("type") == "section" and isinstance(block.get("accessory"), dict):
        elements.append(block["accessory"])
    return elements if block.get("type") in ("actions", "section") else []


def _elements(blocks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for block in blocks:
        yield from _block_elements(block)


def _with_block_ids(blocks: Any) -> list[dict[str, Any]]:
    """Blocks as Slack stores them: every block has a block_id (Slack makes one up)."""
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    out = []
    for i, block in enumerate(blocks or []):
        if isinstance(block, dict):
            out.append({"block_id": f"b{i}", **block})
    return out


class Screen:
    """Everything the console prints, in one place: live regions, reprints or plain lines."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console = console
        self.live = live and console.is_terminal
        self.choices = Choices()
        self._region: dict[str, Message] = {}
        self._live: Live | None = None
        self._following = False

    # -- plain output ---------------------------------------------------------------------------

    def note(self, text: str, *, style: str = "dim") -> None:
        self.console.print(Text(text, style=style))

    def _print_lines(self, lines: list[Text], prefix: Text) -> None:
        for line in lines:
            self.console.print(Text.assemble(prefix, line), soft_wrap=False, overflow="fold")

    def private(self, text: str, blocks: Any = None, *, what: str = "only you") -> None:
        """An ephemeral, a response_url answer or an ack: seen by the user alone."""
        where = f"private:{time.monotonic_ns()}"
        lines = message_lines(text, blocks or None, where=where, choices=self.choices)
        self.console.print(Text(f"({what})", style="magenta dim"))
        self._print_lines(lines, _PRIVATE)

    def errors(self, errors: dict[str, Any]) -> None:
        for block_id, message in errors.items():
            self.console.print(Text(f"✘ {block_id}: {message}", style="red"))

    # -- messages -------------------------------------------------------------------------------

    def _lines(self, message: Message) -> list[Text]:
        return message_lines(
            message.text, message.blocks, where=message.where, choices=self.choices
        )

    def posted(self, message: Message) -> None:
        lines = self._lines(message)
        message.shown = [line.plain for line in lines]
        if self._live_region(message):
            return
        self.console.print()
        self._print_lines(lines, _MESSAGE)

    def updated(self, message: Message) -> None:
        lines = self._lines(message)
        before, message.shown = message.shown, [line.plain for line in lines]
        if self._live_region(message):
            return
        # Not followed (plain mode, or at the prompt): what changed, under the message's title.
        changed = [line for line in lines if line.plain not in before]
        if changed:
            title = lines[0].plain if lines else message.ts
            self.console.print(Text(f"↻ {title}", style="blue dim"))
            self._print_lines(changed, _MESSAGE)

    def reply(self, parent: Message | None, text: str, blocks: Any) -> None:
        title = parent.shown[0] if parent and parent.shown else "a message"
        lines = message_lines(text, blocks or None, where="thread", choices=self.choices)
        self.console.print(Text(f"  ↳ in the thread of {title}", style="blue dim"))
        self._print_lines(lines, Text("┃   ", style="blue"))

    def modal_opened(self, view: dict[str, Any]) -> None:
        """A modal not worth asking about yet (a "preparing…" view): one line."""
        body = " ".join(
            line.plain
            for block in view.get("blocks") or []
            if isinstance(block, dict)
            for line in mrkdwn(plain(block.get("text")))
        )
        self.note(f"▸ {plain(view.get('title'))}: {body}".rstrip(": "))

    def modal(self, view: dict[str, Any]) -> None:
        where = f"view:{view.get('id', '')}"
        lines = message_lines("", view.get("blocks") or [], where=where, choices=self.choices)
        buttons = " · ".join(
            label for label in (plain(view.get("submit")), plain(view.get("close"))) if label
        )
        self.console.print(
            Panel(
                Group(*lines),
                title=Text(plain(view.get("title")), style="bold"),
                title_align="left",
                subtitle=Text(buttons, style="dim"),
                subtitle_align="right",
            )
        )

    # -- following an action --------------------------------------------------------------------

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """While the console follows an action: on a terminal, messages that change are shown
        in one live region (everything else prints above it); it stays on screen at the end."""
        self._following = True
        try:
            yield
        finally:
            self._following = False
            live, self._live = self._live, None
            if live is not None:
                live.update(self._render_region(), refresh=True)
                live.stop()
            self._region.clear()

    def _live_region(self, message: Message) -> bool:
        if not (self.live and self._following):
            return False
        self._region[message.where] = message
        if self._live is None:
            self._live = Live(
                console=self.console,
                auto_refresh=False,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="visible",
            )
            self._live.start()
        self._live.update(self._render_region(), refresh=True)
        return True

    def _render_region(self) -> Group:
        rows: list[Text] = []
        for message in self._region.values():
            rows.append(Text())
            rows += [Text.assemble(_MESSAGE, line) for line in self._lines(message)]
        return Group(*rows)


class _Error(Exception):
    def __init__(self, error: str, *, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


class TerminalSlack:
    """The Web API the bot is pointed at (`SLACK_API_URL`), for one user in one channel."""

    def __init__(
        self,
        screen: Screen,
        *,
        token: str,
        channel: str,
        team_id: str = "TCONSOLE",
        bot_user_id: str = "UCHATOPS",
    ) -> None:
        self.screen = screen
        self.channel = channel
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.url = ""
        self.messages: dict[tuple[str, str], Message] = {}
        self.modals: dict[str, Modal] = {}
        self.answers = 0  # messages, ephemerals and responses received (not updates)
        self.last_change = 0.0  # loop time of the last call
        self.changed = asyncio.Event()  # set (and replaced) at every call
        self._token = token
        self._triggers: dict[str, str] = {}  # trigger_id -> user
        self._response_urls: dict[str, str] = {}  # id -> user
        self._ts = itertools.count(1)
        self._views = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._handlers = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "usergroups.users.list": self._group_users,
            "users.info": self._user_info,
            "conversations.list": self._channels,
            "conversations.history": self._history,
            "conversations.replies": self._history,  # replies are printed, not kept
        }
        assert set(self._handlers) == set(METHODS_CALLED), "serve every method the bot calls"

    # -- life -----------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what the REPL uses ---------------------------------------------------------------------

    def new_trigger_id(self, user: str) -> str:
        trigger = f"{next(self._ts)}.{secrets.token_hex(8)}"
        self._triggers[trigger] = user
        return trigger

    def new_response_url(self, user: str) -> str:
        rid = secrets.token_urlsafe(12)
        self._response_urls[rid] = user
        return f"{self.url}/response/{rid}"

    def running(self, *, since: int = 0) -> bool:
        """Whether a message posted after answer number `since` shows an operation still
        running (it has a Cancel button)."""
        return any(m.seq > since and m.has_action(CANCEL_ACTION) for m in self.messages.values())

    def modal_to_show(self) -> Modal | None:
        ready = [modal for modal in self.modals.values() if modal.ready]
        return ready[-1] if ready else None

    def close_modal(self, view_id: str) -> None:
        modal = self.modals.get(view_id)
        if modal is not None:
            modal.open = False

    def replace_modal(self, view_id: str, view: dict[str, Any]) -> None:
        """A view_submission answered `response_action: update`."""
        modal = self.modals.get(view_id)
        if modal is not None:
            modal.view = self._stored_view(view, view_id)
            modal.updated = True

    def _touch(self, *, answer: bool) -> None:
        if answer:
            self.answers += 1
        self.last_change = asyncio.get_running_loop().time()
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    # -- HTTP -----------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        elif request.can_read_body:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
        token = args.pop("token", None)
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
        handler = self._handlers.get(method)
        try:
            if not token:
                raise _Error("not_authed")
            if token != self._token:
                raise _Error("invalid_auth")
            if handler is None:
                raise _Error("unknown_method")
            answer = handler(args)
        except _Error as exc:
            return web.json_response({"ok": False, "error": exc.error}, status=exc.status)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response(
                {"ok": False, "error": "invalid_arguments", "detail": str(exc)}
            )
        return web.json_response({"ok": True, **answer})

    async def _response_url(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self._response_urls:
            return web.Response(status=404, text="no_service")
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return web.Response(status=400, text="invalid_payload")
        if not payload.get("delete_original"):
            what = "to the channel" if payload.get("response_type") == "in_channel" else "only you"
            if payload.get("replace_original"):
                what += ", replacing the previous answer"
            self.screen.private(str(payload.get("text", "")), payload.get("blocks"), what=what)
        self._touch(answer=True)
        return web.Response(text="ok")

    def _check_channel(self, channel: str) -> None:
        if channel == self.channel:
            return
        if channel.startswith(CONSOLE_CHANNEL_PREFIX):
            # An earlier console session's: gone. An error the outbox drops at once, and not
            # `channel_not_found`, which sends it to the command's (dead) response_url instead.
            raise _Error("is_archived")
        raise _Error("service_unavailable", status=503)  # a real Slack channel's: not ours

    # -- methods --------------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://console.invalid/",
            "team": "chatops console",
            "user": "chatops",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "BCONSOLE",
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        self._check_channel(channel)
        text, blocks = str(args.get("text") or ""), _with_block_ids(args.get("blocks"))
        if not text and not blocks:
            raise _Error("no_text")
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        thread_ts = args.get("thread_ts")
        if thread_ts:
            self.screen.reply(self.messages.get((channel, str(thread_ts))), text, blocks)
            self._touch(answer=False)
        else:
            message = Message(channel, ts, text, blocks, seq=self.answers + 1)
            metadata = args.get("metadata")
            message.metadata = metadata if isinstance(metadata, dict) else None
            self.messages[(channel, ts)] = message
            self.screen.posted(message)
            self._touch(answer=True)
        return {"channel": channel, "ts": ts, "message": {"ts": ts, "text": text}}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["ts"])
        self._check_channel(channel)
        message = self.messages.get((channel, ts))
        if message is None:
            raise _Error("message_not_found")
        if args.get("text") is not None:
            message.text = str(args["text"])
        if args.get("blocks") is not None:
            message.blocks = _with_block_ids(args["blocks"])
        message.version += 1
        self.screen.updated(message)
        self._touch(answer=False)
        return {"channel": channel, "ts": ts, "text": message.text}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        self._check_channel(channel)
        text, blocks = str(args.get("text") or ""), _with_block_ids(args.get("blocks"))
        if not text and not blocks:
            raise _Error("no_text")
        self.screen.private(text, blocks)
        self._touch(answer=True)
        return {"message_ts": f"{int(time.time())}.{next(self._ts):06d}"}

    def _stored_view(self, view: Any, view_id: str) -> dict[str, Any]:
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict):
            raise _Error("invalid_arguments")
        return {
            **view,
            "blocks": _with_block_ids(view.get("blocks")),
            "id": view_id,
            "team_id": self.team_id,
            "hash": secrets.token_hex(8),
            "state": {"values": {}},
            "private_metadata": str(view.get("private_metadata") or ""),
            "callback_id": str(view.get("callback_id") or ""),
        }

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._triggers.pop(str(args.get("trigger_id") or ""), None)
        if user is None:
            raise _Error("invalid_trigger_id")
        view_id = f"VCONSOLE{next(self._views)}"
        modal = Modal(view_id, user, self._stored_view(args["view"], view_id))
        self.modals[view_id] = modal
        if not modal.ready:
            self.screen.modal_opened(modal.view)
        self._touch(answer=False)
        return {"view": modal.view}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        modal = self.modals.get(str(args.get("view_id") or ""))
        if modal is None or not modal.open:
            raise _Error("not_found")  # closed by the user meanwhile: a race, as on Slack
        if args.get("hash") and args["hash"] != modal.view["hash"]:
            raise _Error("hash_conflict")
        modal.view = self._stored_view(args["view"], modal.id)
        modal.updated = True
        self._touch(answer=False)
        return {"view": modal.view}

    def _channels(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channels": [{"id": self.channel, "name": "console"}]}

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        self._check_channel(channel)
        kept = sorted(
            (m for (c, _), m in self.messages.items() if c == channel),
            key=lambda m: m.seq,
            reverse=True,
        )
        return {
            "messages": [
                {"ts": m.ts, "text": m.text, **({"metadata": m.metadata} if m.metadata else {})}
                for m in kept
            ]
        }

    def _group_users(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"users": []}  # the console knows no user groups: roles by user id only

    def _user_info(self, args: dict[str, Any]) -> dict[str, Any]:
        # No zone: times typed at the console are read in `windows.timezone`.
        return {"user": {"id": str(args.get("user", "")), "deleted": False, "is_bot": False}}
