"""The Slack app: one AsyncWebClient with retry handlers, Bolt's AsyncApp, an aiohttp server
(`/slack/events`, `/healthz`, `/readyz`) or Socket Mode, and the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.authorization.async_single_team_authorization import (
    AsyncSingleTeamAuthorization,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.aio import cancel_and_wait
from bot.engine.recovery import recover_interrupted
from bot.engine.runner import owner_id
from bot.errors import BotError, ConfigError
from bot.metrics import CONTENT_TYPE, SlackErrorCounter, exposition
from bot.rbac import GroupCache
from bot.runtime import Runtime
from bot.slack.door import SlackDoor
from bot.slack.followups import FollowUps
from bot.slack.outbox import OutboxSender
from bot.slack.takeover import tell_in_thread
from bot.store.records import OperationRecord
from bot.store.slack import SLACK_SCOPE
from bot.windows.leader import WindowScheduler
from commands import interactions, ops, queue, window, worker

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
GROUP_REFRESH_S = 300.0
EXPIRY_CHECK_S = 15.0
TAKEOVER_BEATS = 5  # how often a replica looks for operations whose replica died


def slack_client(rt: Runtime, *, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    settings = rt.settings
    if not settings.SLACK_BOT_TOKEN:
        raise ConfigError(["SLACK_BOT_TOKEN: not set"], source="environment")
    client = AsyncWebClient(
        token=settings.SLACK_BOT_TOKEN,
        base_url=settings.SLACK_API_URL or AsyncWebClient.BASE_URL,
        timeout=10,
        # One pool of connections for every call; without it each call opens a new one.
        session=session,
    )
    client.retry_handlers.insert(0, SlackErrorCounter())
    # slack-sdk enables neither by default, and Bolt adds none.
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    return client


@dataclass
class SlackBot:
    rt: Runtime
    client: AsyncWebClient
    app: AsyncApp
    door: SlackDoor
    sender: OutboxSender
    session: aiohttp.ClientSession | None = None
    followups: FollowUps = field(default_factory=FollowUps)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    windows: WindowScheduler | None = None  # `chatops serve` only, not the console

    async def handle(self, request: web.Request) -> web.Response:
        with self.followups.serving():
            bolt_request = await to_bolt_request(request)
            return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        # Ready while the bot can answer Slack: a Redis or store outage is reported in answers.
        return web.json_response({"ok": self.ready}, status=200 if self.ready else 503)

    def web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(EVENTS_PATH, self.handle)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def _every(self, interval_s: float, what: str, job: object) -> None:
        assert callable(job)
        while not self.stop.is_set():
            try:
                await job()
            except (BotError, OSError) as exc:
                logger.warning("slack: %s failed: %s", what, type(exc).__name__)
            except Exception:
                logger.exception("slack: %s crashed", what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), interval_s)

    async def _refresh_groups(self) -> None:
        failed = await self.door.load_groups()
        if failed:  # the cache keeps what it had; a cold one refuses, saying why
            logger.warning("slack: user groups not refreshed: %s", failed)

    async def _take_over(self) -> None:
        """What a dead replica was running: put back, freed, and told in its thread."""
        await recover_interrupted(self.rt, on_recovered=self.tell_takeover)

    async def tell_takeover(self, op: OperationRecord, line: str) -> None:
        await tell_in_thread(self.rt.store, self.door.outbox, op, line)

    async def warm_up(self) -> None:
        """Bolt calls auth.test on the first request, inside the 3-second ack; do it now."""
        try:
            async with asyncio.timeout(10):
                result = await self.client.auth_test()
        except (SlackApiError, OSError, TimeoutError, aiohttp.ClientError) as exc:
            logger.warning("slack: auth.test failed at start (%s); Bolt retries on demand", exc)
            return
        for middleware in self.app._async_middleware_list:  # no public way to seed it
            if isinstance(middleware, AsyncSingleTeamAuthorization):
                middleware.auth_test_result = result

    async def start_http(self, host: str, port: int) -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(self.web_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        return runner, int(bound)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SlackBot]:
        await self.warm_up()
        loops = [
            asyncio.create_task(self.sender.run(self.stop)),
            asyncio.create_task(
                self._every(GROUP_REFRESH_S, "group refresh", self._refresh_groups)
            ),
            asyncio.create_task(
                self._every(EXPIRY_CHECK_S, "approval expiry", self.door.expire_approvals)
            ),
        ]
        if self.windows is not None:
            loops.append(asyncio.create_task(self.windows.run(self.stop)))
            loops.append(
                asyncio.create_task(
                    self._every(self.rt.heartbeat_s * TAKEOVER_BEATS, "takeover", self._take_over)
                )
            )
        self.ready = True
        try:
            yield self
        finally:
            self.ready = False
            # Operations running here stop at their next safe point, putting back what they
            # changed, rather than run on into the orchestrator's SIGKILL.
            self.rt.stopping.set()
            await self.door.finish_follow_ups(timeout_s=30)
            await self.followups.aclose()
            self.stop.set()
            await asyncio.wait(loops, timeout=15)
            with contextlib.suppress(TimeoutError):  # one stuck in a shielded call is left
                async with asyncio.timeout(15):
                    await cancel_and_wait(*loops)
            try:
                await self.sender.run_once()
            except BotError as exc:  # the store is down: what is owed stays owed
                logger.warning("slack: outbox not flushed at stop: %s", exc)
            await self.sender.aclose()
            if self.session is not None:
                await self.session.close()


@contextlib.contextmanager
def _hidden_from_bolt() -> Iterator[None]:
    """AsyncApp's constructor reads SLACK_* variables of its own: a verification token, and,
    with SLACK_CLIENT_ID and SLACK_CLIENT_SECRET set, a whole OAuth flow that keeps
    installations in files. The bot passes what it uses from its configuration; Bolt sees none."""
    hidden = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("SLACK_")}
    try:
        yield
    finally:
        os.environ.update(hidden)


def build_bot(rt: Runtime, *, scope: str = SLACK_SCOPE, source: str = "slack") -> SlackBot:
    """`scope` and `source` are the terminal console's own when it drives the bot: its outbox
    entries are delivered by it alone, and its actions audited as `console`."""
    settings = rt.settings
    if not settings.SLACK_SIGNING_SECRET:
        raise ConfigError(["SLACK_SIGNING_SECRET: not set"], source="environment")
    session = aiohttp.ClientSession()
    client = slack_client(rt, session=session)
    with _hidden_from_bolt():
        app = AsyncApp(
            client=client,
            signing_secret=settings.SLACK_SIGNING_SECRET,
            process_before_response=True,
        )
    door = SlackDoor(rt, client, GroupCache(), session=session, source=source, scope=scope)
    for surface in (queue, worker, ops, window, interactions):
        surface.register(app, door)

    @app.error
    async def handle_error(error: Exception, body: dict[str, object]) -> None:
        logger.error("slack: unhandled %s", type(error).__name__, exc_info=error)

    sender = OutboxSender(
        store=rt.store, client=client, clock=rt.clock, claimer=owner_id(), scope=scope
    )
    door.outbox.wake = sender.wake
    return SlackBot(
        rt=rt,
        client=client,
        app=app,
        door=door,
        sender=sender,
        session=session,
        followups=door.followups,
        windows=(
            WindowScheduler(rt, start_planned=door.start_planned) if scope == SLACK_SCOPE else None
        ),
    )


async def serve_http(bot: SlackBot, *, host: str, port: int) -> None:
    runner, bound = await bot.start_http(host, port)
    logger.warning("chatops serve: listening on http://%s:%d%s", host, bound, EVENTS_PATH)
    try:
        async with bot.running():
            await bot.stop.wait()
    finally:
        await runner.cleanup()


async def serve_socket(bot: SlackBot) -> None:
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    token = bot.rt.settings.SLACK_APP_TOKEN
    if not token:
        raise ConfigError(
            ["SLACK_APP_TOKEN: not set (Socket Mode needs an app-level token)"],
            source="environment",
        )
    handler = AsyncSocketModeHandler(bot.app, app_token=token)
    async with bot.running():
        await handler.connect_async()  # type: ignore[no-untyped-call]
        try:
            await bot.stop.wait()
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
