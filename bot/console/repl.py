"""The console's read-eval-print loop: what the user types goes to the real Slack app as Slack
would send it (signed slash commands, modal submissions, button clicks on `/slack/events`), and
what the bot answers comes back through the terminal Slack (`server.py`).

    code = await run_console(dict(os.environ), env="staging", console=Console())

The bot runs in-process with a per-session random token and signing secret, its Web API pointed
at the terminal server; the user is `console:<os-user>`, given every permission by a role that
exists only in this process's copy of the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import hmac
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, TextIO
from urllib.parse import urlencode

import aiohttp
from rich.console import Console
from rich.text import Text

from bot.config import BotSettings, Config, RoleConfig, load_config
from bot.console.render import input_blocks, plain
from bot.console.server import CONSOLE_CHANNEL_PREFIX, Message, Modal, Screen, TerminalSlack
from bot.engine.recovery import recover_interrupted
from bot.engine.runner import owner_id
from bot.errors import BadInput
from bot.runtime import open_runtime
from bot.slack.app import EVENTS_PATH, build_bot
from bot.slack.blocks import CANCEL_ACTION

SLASH_COMMANDS = ("queue", "worker", "ops")
CHANNEL_NAME = "chatops-console"
ANSWER_TIMEOUT_S = 30.0
QUIET_S = 0.3  # an answer is complete when nothing more arrived for this long
_YES = ("y", "yes")
_HELP = (
    "Type slash commands as in Slack: /queue status, /queue pause sla, /ops help "
    "(the leading / is optional).\n"
    "Modals ask their questions here (answer y to submit); !N clicks the button numbered N; "
    "Ctrl-C stops following an operation (it goes on); quit or Ctrl-D leaves."
)


# ---- who, where, with what rights --------------------------------------------------------------


def console_user() -> str:
    """The Slack user id the console acts as: `console:<os-user>`."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.getuid())
    return f"console:{name}"


def pick_env(config: Config, env: str | None) -> str:
    if env is not None:
        config.env(env)  # UnknownEnvironment names the known ones
        return env
    if len(config.environments) == 1:
        return next(iter(config.environments))
    known = ", ".join(sorted(config.environments))
    raise BadInput(f"several environments; pick one with --env (known: {known})")


def console_config(config: Config, *, user: str, env: str) -> Config:
    """`config` plus a role that grants `user` everything, and `env` mapped to the console's
    channel (as a Slack channel is mapped with `channel:`). Only this process sees it."""
    role = "console"
    while role in config.roles:
        role += "_"
    roles = {**config.roles, role: RoleConfig(users=(user,))}
    permissions = {**config.permissions, role: {"*": ("*",)}}
    environments = {
        name: e.model_copy(update={"channel": f"#{CHANNEL_NAME}"}) if name == env else e
        for name, e in config.environments.items()
    }
    return config.model_copy(
        update={"roles": roles, "permissions": permissions, "environments": environments}
    )


def bot_environ(
    environ: Mapping[str, str], *, token: str, secret: str, api_url: str
) -> dict[str, str]:
    """The bot's environment: the user's, without their Slack settings, plus the session's."""
    kept = {k: v for k, v in environ.items() if not k.startswith("SLACK_")}
    return {
        **kept,
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": secret,
        "SLACK_API_URL": api_url,
    }


# ---- where lines come from ----------------------------------------------------------------------


class Inputs(Protocol):
    interactive: bool  # a person at a terminal (Ctrl-C handled by the console)

    async def ask(self, prompt: str) -> str | None:
        """The next line (without its newline), None at the end of the input."""
        ...


class ScriptedInputs:
    """Lines from a list (tests): each is printed after its prompt, as a transcript."""

    interactive = False

    def __init__(self, lines: Iterable[str], console: Console) -> None:
        self._lines = iter(lines)
        self._console = console

    async def ask(self, prompt: str) -> str | None:
        line = next(self._lines, None)
        if line is not None:
            self._console.print(Text.assemble((prompt, "bold"), line))
        return line


class StreamInputs:
    """Lines from stdin: `input()` with its line editing on a terminal, else read and echoed.

    Each line is read by a daemon thread, so leaving never waits for a blocked read."""

    def __init__(self, console: Console, stream: TextIO | None = None) -> None:
        self._console = console
        self._stream = stream or sys.stdin
        self.interactive = self._stream.isatty()

    async def ask(self, prompt: str) -> str | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()

        def deliver(line: str | None) -> None:
            if not future.done():
                future.set_result(line)

        def read() -> None:
            line: str | None
            try:
                if self.interactive:
                    line = input(prompt)
                else:
                    raw = self._stream.readline()
                    line = raw.rstrip("\n") if raw else None
            except (EOFError, OSError, ValueError):
                line = None
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(deliver, line)

        threading.Thread(target=read, name="console-input", daemon=True).start()
        line = await future
        if line is not None and not self.interactive:
            self._console.print(Text.assemble((prompt, "bold"), line))
        return line


# ---- the session --------------------------------------------------------------------------------


class ConsoleSession:
    """One user typing at the bot: commands, modal answers and clicks, followed to their end."""

    def __init__(
        self,
        *,
        server: TerminalSlack,
        events_url: str,
        signing_secret: str,
        user: str,
        inputs: Inputs,
        http: aiohttp.ClientSession,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self.server = server
        self.screen = server.screen
        self.events_url = events_url
        self.user = user
        self.inputs = inputs
        self.answer_timeout_s = answer_timeout_s
        self._secret = signing_secret.encode()
        self._http = http
        self._following = False
        self._interrupted = asyncio.Event()

    @property
    def user_name(self) -> str:
        return self.user.split(":", 1)[-1]

    async def run(self) -> int:
        with self._ctrl_c():
            while True:
                modal = self.server.modal_to_show()
                if modal is not None:  # one that arrived after its command stopped waiting
                    await self._follow(modal=modal)
                    continue
                line = await self.inputs.ask("chatops> ")
                if line is None and self.inputs.interactive:
                    self.screen.console.print()  # after Ctrl-D, the shell's prompt on a new line
                if line is None or line.strip() in ("quit", "exit"):
                    break
                await self.handle(line.strip())
            if self.server.running():
                self.screen.note(
                    "waiting for the running operation to end; Ctrl-C leaves sooner, interrupting "
                    "it (what it changed is put back, at the latest by the next chatops start)"
                )
                await self._follow(answered=True, mark=0)
        return 0

    async def handle(self, line: str) -> None:
        if not line:
            return
        if line in ("help", "?"):
            self.screen.note(_HELP, style="")
            return
        if line.startswith("!"):
            try:
                number = int(line[1:])
            except ValueError:
                self.screen.note("!N clicks button N (the numbers in [!N …])", style="red")
                return
            await self.click(number)
            return
        await self.command(line)

    # -- what the user does ---------------------------------------------------------------------

    async def command(self, line: str) -> None:
        name, _, text = line.lstrip("/").partition(" ")
        if name not in SLASH_COMMANDS:
            known = ", ".join(f"/{c}" for c in SLASH_COMMANDS)
            self.screen.note(f"unknown command /{name}; known: {known} (help: help)", style="red")
            return
        fields = {
            "token": "console",
            "team_id": self.server.team_id,
            "team_domain": "console",
            "channel_id": self.server.channel,
            "channel_name": CHANNEL_NAME,
            "user_id": self.user,
            "user_name": self.user_name,
            "command": f"/{name}",
            "text": text.strip(),
            "api_app_id": "ACONSOLE",
            "is_enterprise_install": "false",
            "response_url": self.server.new_response_url(self.user),
            "trigger_id": self.server.new_trigger_id(self.user),
        }
        mark = self.server.answers  # an answer may arrive before the ack is read
        ack = await self._send(urlencode(fields).encode(), what=f"/{name}")
        answered = self._show_ack(ack)
        await self._follow(answered=answered, mark=mark)

    async def click(self, number: int) -> None:
        choice = self.screen.choices.get(number)
        if choice is None:
            self.screen.note(f"no button !{number}", style="red")
            return
        kind, _, place = choice.where.partition(":")
        channel, _, ts = place.partition(":")
        message = self.server.messages.get((channel, ts)) if kind == "message" else None
        found = message.element(choice.action_id, choice.value) if message else None
        if message is None or found is None:
            self.screen.note(f"button !{number} ({choice.label}) is no longer there", style="red")
            return
        block_id, element = found
        action: dict[str, Any] = {
            "type": "button",
            "action_id": choice.action_id,
            "block_id": block_id,
            "text": element.get("text"),
            "action_ts": f"{time.time():.6f}",
        }
        for key in ("value", "style"):
            if key in element:
                action[key] = element[key]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(),
            "api_app_id": "ACONSOLE",
            "token": "console",
            "trigger_id": self.server.new_trigger_id(self.user),
            "team": {"id": self.server.team_id, "domain": "console"},
            "enterprise": None,
            "is_enterprise_install": False,
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "channel": {"id": channel, "name": CHANNEL_NAME},
            "message": {
                "type": "message",
                "ts": ts,
                "text": message.text,
                "blocks": message.blocks,
            },
            "response_url": self.server.new_response_url(self.user),
            "state": {"values": {}},
            "actions": [action],
        }
        self.screen.note(f"▸ {choice.label}")
        mark, version = self.server.answers, message.version
        ack = await self._interaction(payload, what=f"button {choice.label}")
        # A click is answered by a new message, a private note, or a change of its message.
        await self._follow(answered=ack is None, mark=mark, watch=(message, version))

    async def _modal(self, modal: Modal) -> int | None:
        """Show a modal and ask about it: its inputs, then submit or close. If it was submitted,
        the count of answers before the submission (what follows it is counted from there)."""
        view = modal.view
        self.screen.modal(view)
        modal.shown_hash = view.get("hash")
        submit = plain(view.get("submit"))
        close = plain(view.get("close")) or "Close"
        if not submit:  # nothing to do but read it and close it
            await self._close(modal)
            return None
        while True:
            values: dict[str, dict[str, dict[str, Any]]] = {}
            for block_id, action_id, kind, label in input_blocks(view):
                typed = await self.inputs.ask(f"{label}: ")
                if typed is None:
                    await self._close(modal)
                    return None
                values[block_id] = {action_id: {"type": kind, "value": typed}}
            answer = await self.inputs.ask(f"{submit}? [y/N] ")
            if answer is None or answer.strip().lower() not in _YES:
                await self._close(modal)
                self.screen.note(f"{close}: the modal is closed, nothing submitted")
                return None
            payload = {
                "type": "view_submission",
                "team": {"id": self.server.team_id, "domain": "console"},
                "user": self._user(),
                "api_app_id": "ACONSOLE",
                "token": "console",
                "trigger_id": self.server.new_trigger_id(self.user),
                "view": {**view, "state": {"values": values}},
                "response_urls": [],
                "is_enterprise_install": False,
                "enterprise": None,
            }
            mark = self.server.answers
            ack = await self._interaction(payload, what=f"{submit} {plain(view.get('title'))}")
            answer_body: dict[str, Any] = ack if isinstance(ack, dict) else {}
            action = answer_body.get("response_action")
            if action == "errors":
                self.screen.errors(dict(answer_body.get("errors") or {}))
                continue  # the modal stays open, as on Slack
            if action in ("update", "push") and isinstance(answer_body.get("view"), dict):
                self.server.replace_modal(modal.id, answer_body["view"])
                return None
            self.server.close_modal(modal.id)
            return None if ack is None else mark

    async def _close(self, modal: Modal) -> None:
        self.server.close_modal(modal.id)
        if modal.view.get("notify_on_close"):
            payload = {
                "type": "view_closed",
                "team": {"id": self.server.team_id, "domain": "console"},
                "user": self._user(),
                "api_app_id": "ACONSOLE",
                "token": "console",
                "view": modal.view,
                "is_cleared": False,
                "is_enterprise_install": False,
                "enterprise": None,
            }
            await self._interaction(payload, what="close")

    # -- following ------------------------------------------------------------------------------

    async def _follow(
        self,
        *,
        answered: bool = False,
        mark: int | None = None,
        modal: Modal | None = None,
        watch: tuple[Message, int] | None = None,
    ) -> None:
        """Show what the bot does after an action until it has answered, nothing runs and it
        has been quiet for a moment; ask about a modal it opens on the way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_timeout_s
        if mark is None:
            mark = self.server.answers
        while True:
            if modal is not None:
                submitted = await self._modal(modal)
                if submitted is None:
                    answered = True
                else:
                    answered, mark = False, submitted
                    deadline = loop.time() + self.answer_timeout_s
            modal = None
            self._interrupted.clear()
            self._following = True
            try:
                with self.screen.following():
                    while modal is None:
                        changed = self.server.changed
                        modal = self.server.modal_to_show()
                        if modal is not None:
                            break
                        answered = (
                            answered
                            or self.server.answers > mark
                            or (watch is not None and watch[0].version > watch[1])
                        )
                        now = loop.time()
                        running = self.server.running(since=mark) or (
                            watch is not None and watch[0].has_action(CANCEL_ACTION)
                        )
                        if answered and not running:
                            if now - self.server.last_change >= QUIET_S:
                                return
                        elif not answered and now >= deadline:
                            self.screen.note(
                                f"no answer after {self.answer_timeout_s:g} s; "
                                "it will show here when it comes"
                            )
                            return
                        if self._interrupted.is_set():
                            self.screen.note(
                                "stopped following; the operation goes on, its buttons stay "
                                "available"
                            )
                            return
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(changed.wait(), QUIET_S)
            finally:
                self._following = False

    @contextlib.contextmanager
    def _ctrl_c(self) -> Iterator[None]:
        """At a terminal, Ctrl-C stops following (the operation goes on), or says how to leave."""
        if not self.inputs.interactive:
            yield
            return
        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            if self._following:
                self._interrupted.set()
            else:
                self.screen.note("\n(quit or Ctrl-D leaves)")

        loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    # -- talking to the bot ---------------------------------------------------------------------

    def _user(self) -> dict[str, str]:
        return {
            "id": self.user,
            "username": self.user_name,
            "name": self.user_name,
            "team_id": self.server.team_id,
        }

    def _show_ack(self, ack: Any) -> bool:
        """Show what the bot put in its ack (Slack shows it to the user alone)."""
        if isinstance(ack, dict) and (ack.get("text") or ack.get("blocks")):
            self.screen.private(str(ack.get("text", "")), ack.get("blocks"))
            return True
        if isinstance(ack, str) and ack:
            self.screen.private(ack)
            return True
        return ack is None  # no ack: nothing more will come

    async def _interaction(self, payload: dict[str, Any], *, what: str) -> Any:
        return await self._send(urlencode({"payload": json.dumps(payload)}).encode(), what=what)

    async def _send(self, body: bytes, *, what: str) -> Any:
        """POST to the bot's /slack/events, signed as Slack signs; the ack, None if it failed."""
        timestamp = str(int(time.time()))
        digest = hmac.new(
            self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={digest}",
        }
        try:
            async with self._http.post(self.events_url, data=body, headers=headers) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.screen.note(f"{what}: the bot did not answer ({type(exc).__name__})", style="red")
            return None
        if status != 200:
            self.screen.note(f"{what}: the bot answered HTTP {status}", style="red")
            return None
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(text)
        return text


# ---- the whole thing ----------------------------------------------------------------------------


async def run_console(
    environ: Mapping[str, str],
    *,
    env: str | None,
    console: Console,
    live: bool = True,
    inputs: Inputs | None = None,
    answer_timeout_s: float = ANSWER_TIMEOUT_S,
) -> int:
    """Run the bot in-process against a terminal Slack and read commands until the input ends."""
    user = console_user()
    token = f"xoxb-console-{secrets.token_hex(16)}"
    signing_secret = secrets.token_hex(32)
    channel = f"{CONSOLE_CHANNEL_PREFIX}{secrets.token_hex(4).upper()}"
    screen = Screen(console, live=live)
    server = TerminalSlack(screen, token=token, channel=channel)
    await server.start()
    try:
        environ = bot_environ(environ, token=token, secret=signing_secret, api_url=server.api_url)
        config = load_config(BotSettings.from_environ(environ), environ)
        env_name = pick_env(config, env)
        config = console_config(config, user=user, env=env_name)
        async with open_runtime(environ, config=config) as rt:
            for line in await recover_interrupted(rt):
                screen.note(f"recovered: {line}", style="yellow")
            bot = build_bot(rt, scope=f"console:{owner_id()}", source="console")
            runner, port = await bot.start_http("127.0.0.1", 0)
            try:
                async with (
                    bot.running(),
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
                ):
                    screen.note(
                        f"chatops console: {env_name} as {user}. /ops help lists the commands, "
                        "help explains this console, quit leaves."
                    )
                    session = ConsoleSession(
                        server=server,
                        events_url=f"http://127.0.0.1:{port}{EVENTS_PATH}",
                        signing_secret=signing_secret,
                        user=user,
                        inputs=inputs or StreamInputs(console),
                        http=http,
                        answer_timeout_s=answer_timeout_s,
                    )
                    return await session.run()
            finally:
                await runner.cleanup()
    finally:
        await server.aclose()
