"""Ack latency of the Slack door: signed slash commands against the bot and against a bare Bolt app.

Four processes on one machine (plus a private redis-server), as in production where Slack is
remote:

  client  (this process)   signs slash commands exactly as tests/slack/driver.py does (v0 HMAC
                           over ``v0:<timestamp>:<body>``, form fields as Slack sends them) and
                           POSTs them with aiohttp to ``/slack/events``; each latency runs from
                           just before the POST to the complete HTTP answer (the ack), with
                           ``time.perf_counter()``.
  fake    (--serve fake)   tests/slack FakeSlack (Web API and response_urls over HTTP) with its
                           rate limits OFF (``slack.limiter.enabled = False``), so the bot's
                           background calls (response_url answers, views.open, views.update)
                           are never refused or delayed by it; it also issues each command's
                           trigger_id and response_url (fetched in batches just before use, the
                           same way for both apps).
  bot     (--serve bot)    the real bot: ``open_runtime`` (temporary SQLite store, the private
                           Redis) -> ``build_bot`` -> ``SlackBot.start_http("127.0.0.1", 0)`` ->
                           ``running()``, logging configured as ``chatops serve`` does.
  bare    (--serve bare)   a bare Bolt ``AsyncApp`` (same signing secret; Bolt's default
                           ``process_before_response=False``, where the bot answers as soon as
                           its handler returns) whose /queue, /worker and /ops
                           handlers only ``await ack()``, served by the bot's own code
                           (``SlackBot.start_http``/``handle``: ``to_bolt_request`` ->
                           ``async_dispatch`` -> ``to_aiohttp_response``), its auth.test answered
                           by the same FakeSlack and cached by the same ``SlackBot.warm_up``.
  modal   (--serve modal)  the bare app, whose handlers ack and then open the bot's own
                           "preparing the plan" view, in Bolt's documented way (``await ack()``
                           then ``await client.views_open(trigger_id=..., view=...)``): a plain
                           Bolt app that opens the modal at once, as the issue asks of a
                           mutating command. Run for ``pause`` only, as a reference for its
                           ratio (not a lower bound: Bolt gives each request a new client).

Commands: ``/queue status sla`` (read-only: acks at once, answers through response_url later)
and ``/queue pause sla`` (acks, then views.open "preparing the plan", the plan read from Redis,
views.update). Every request comes from its own user (all in the operators' user group), so one
user's modal never replaces another's.

Loads, per command:
  c=50, c=10   closed loop: that many requests in flight (aiohttp connection pool of the same
               size, keep-alive), ``--rounds`` rounds of ``--requests`` per app, the apps
               taking turns to go first. Goal: pooled p99(bot) <= 1.3 x p99(bare). For pause,
               also p99(modal) / p99(bare): what opening the modal at once costs plain Bolt.
  50/s         context, no goal: open loop, one request every 20 ms whatever the answers,
               ``--paced-rounds`` rounds of ``--paced-requests`` per app, alternated.
After each round the harness reads how many of the bot's background tasks (``FollowUps.pending()``:
answers and modals) and asyncio tasks are still pending, then waits until none is (bounded), so
rounds never overlap. Per round: p50/p99/max, pending tasks, how long the background work ran on
after the last ack, CPU of each process (in all, and up to the last ack: what the acks competed
with), the servers' garbage-collector pauses (timed by ``gc.callbacks`` inside each server), the
fake's calls by method and outcome, and how long after its command was sent each modal opened
(views.open) and each answer arrived (response_url), from the fake's record of when it issued
the trigger_id and response_url, less the time they waited in the client before their command.

Run by hand from the repository root (about 5 minutes; ``--quick``: 200 requests, 1 round per
load, about 25 s, a smoke check whose numbers are not measurements). Results and findings:
docs/benchmarks.md, "Slack door".

    .venv/bin/python benchmarks/slack_ack.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import hmac
import importlib.metadata
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml
from aiohttp import web
from common import (
    ROOT,
    VENV_PYTHON,
    Summary,
    bot_environ,
    dump_json,
    print_log_warnings,
    print_machine,
    private_redis,
    stop_process,
    verdict,
)

SECRET = "bench-signing-secret"
TEAM, TEAM_DOMAIN, APP_ID = "T1", "fake", "A1"
CHANNEL, CHANNEL_NAME = "C_BENCH", "ops-bench"
GROUP = "S_BENCH_OPS"
PREFIX = "bench"
ENV = "bench"
RATIO_GOAL = 1.3
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("/queue", "status sla"),
    "pause": ("/queue", "pause sla"),
}
# The apps each command is sent to; "modal" opens a modal, which only pause does in the bot.
APPS: dict[str, tuple[str, ...]] = {"status": ("bot", "bare"), "pause": ("bot", "bare", "modal")}
HERE = Path(__file__).resolve()
BACKGROUND_WAIT_S = 300.0
READY_S = 60.0


def user_id(i: int) -> str:
    return f"UB{i:05d}"


@dataclass(frozen=True)
class Load:
    name: str
    concurrency: int | None  # closed loop: requests in flight
    rate: float | None  # open loop: requests per second
    requests: int
    rounds: int
    goal: bool  # the ratio goal applies


# ---- the servers (child processes) -----------------------------------------------------------


class GcTimer:
    """Pauses of the cyclic garbage collector in this process, per generation, since last read."""

    def __init__(self) -> None:
        self._started = 0.0
        self._stats: dict[int, list[float]] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        entry = self._stats.setdefault(int(info["generation"]), [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] = max(entry[1], took)
        entry[2] += took

    def take(self) -> dict[str, dict[str, float]]:
        out = {
            str(g): {"count": c, "max_ms": m * 1e3, "total_ms": t * 1e3}
            for g, (c, m, t) in sorted(self._stats.items())
        }
        self._stats = {}
        return out


async def _control_site(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def _server_control(background: Any) -> web.Application:
    """``/pending`` (background tasks in flight) and ``/gc`` (GC pauses since the last read)."""
    timer = GcTimer()

    async def pending(request: web.Request) -> web.Response:
        return web.json_response({"background": background(), "tasks": len(asyncio.all_tasks())})

    async def gc_pauses(request: web.Request) -> web.Response:
        return web.json_response(timer.take())

    control = web.Application()
    control.router.add_get("/pending", pending)
    control.router.add_get("/gc", gc_pauses)
    return control


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _ready(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def serve_fake(users: int) -> None:
    from tests.slack.fake_slack import FakeSlack

    logging.basicConfig(level=logging.ERROR)  # each violation is a warning: counted, not printed
    stop = _stop_on_sigterm()
    slack = FakeSlack()
    slack.limiter.enabled = False  # the bot's background calls must never be refused here
    await slack.start()
    slack.add_channel(CHANNEL, name=CHANNEL_NAME)
    slack.usergroups = {GROUP: [user_id(i) for i in range(users)]}

    async def issue(request: web.Request) -> web.Response:
        wanted = await request.json()
        pairs = [
            [slack.new_trigger_id(user=u), slack.new_response_url(channel=CHANNEL, user=u)]
            for u in wanted["users"]
        ]
        return web.json_response(pairs)

    async def stats(request: web.Request) -> web.Response:
        # The calls answered since the last read, by method and outcome; then forgotten, so the
        # fake's memory stays flat over the run.
        counts: Counter[str] = Counter()
        # From the issue of a command's trigger_id to its views.open, and of its response_url
        # to the answer posted there, keyed by what the client knows them by.
        modal_ages: list[tuple[str, float]] = []
        answer_ages: list[tuple[str, float]] = []
        for call in slack.calls:
            outcome = "ok" if call.ok else (call.error or f"HTTP {call.status}")
            counts[f"{call.method} {outcome}"] += 1
            if call.method == "views.open":
                trigger_id = str(call.args.get("trigger_id", ""))
                issued = slack.trigger_issued_at(trigger_id)
                if issued is not None:
                    modal_ages.append((trigger_id, call.time - issued))
            elif call.method == "response_url":
                url_id = str(call.args.get("url_id", ""))
                issued = slack.response_url_issued_at(url_id)
                if issued is not None:
                    answer_ages.append((url_id, call.time - issued))
        slack.calls.clear()
        return web.json_response(
            {
                "calls": dict(counts),
                "modal_ages": modal_ages,
                "answer_ages": answer_ages,
                "rate_limited": slack.rate_limited,
                "violations": len(slack.violations),
                "violation_samples": slack.violations[-3:],
            }
        )

    control = web.Application()
    control.router.add_post("/issue", issue)
    control.router.add_get("/stats", stats)
    runner, url = await _control_site(control)
    _ready(api_url=slack.api_url, token=slack.bot_token, control=url)
    await stop.wait()
    await runner.cleanup()
    await slack.stop()


async def serve_bot() -> None:
    from bot.config import BotSettings
    from bot.logs import configure_logging
    from bot.runtime import open_runtime
    from bot.slack.app import build_bot

    environ = dict(os.environ)
    configure_logging(BotSettings.from_environ(environ), level=logging.INFO)  # as chatops serve
    stop = _stop_on_sigterm()
    profile_to = environ.get("BENCH_PROFILE")  # a path: where the bot's cProfile stats go
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    async with open_runtime(environ) as rt:
        bot = build_bot(rt)
        gc.freeze()  # as chatops serve does after start-up
        runner, port = await bot.start_http("127.0.0.1", 0)
        try:
            async with bot.running():
                control = _server_control(bot.followups.pending)
                crunner, curl = await _control_site(control)
                _ready(events=f"http://127.0.0.1:{port}/slack/events", control=curl)
                await stop.wait()
                await crunner.cleanup()
        finally:
            await runner.cleanup()
            if profiler is not None and profile_to:
                profiler.disable()
                profiler.dump_stats(profile_to)


async def serve_bare(*, open_modal: bool) -> None:
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncRateLimitErrorRetryHandler,
        AsyncServerErrorRetryHandler,
    )
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.config import BotSettings
    from bot.logs import configure_logging
    from bot.slack.app import SlackBot
    from bot.slack.blocks import loading_view

    environ = dict(os.environ)
    configure_logging(BotSettings.from_environ(environ), level=logging.INFO)
    stop = _stop_on_sigterm()
    client = AsyncWebClient(  # as bot.slack.app.slack_client makes it
        token=environ["SLACK_BOT_TOKEN"], base_url=environ["SLACK_API_URL"], timeout=10
    )
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    app = AsyncApp(
        client=client, signing_secret=environ["SLACK_SIGNING_SECRET"], process_before_response=False
    )

    async def just_ack(ack: AsyncAck) -> None:
        await ack()

    async def ack_and_open(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        metadata = {  # the bot's fields, of the same sizes
            k: body.get(k, "") for k in ("command", "text", "user_id", "channel_id", "channel_name")
        }
        metadata.update(env=ENV, response_url=body.get("response_url", ""))
        view = loading_view(f"{body.get('command', '')[1:]} pause", metadata)
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    for command in ("/queue", "/worker", "/ops"):
        app.command(command)(ack_and_open if open_modal else just_ack)
    # The bot's own serving code around the bare app: handle(), web_app(), start_http() and
    # warm_up() use only `client` and `app`.
    shell = SlackBot(rt=None, client=client, app=app, door=None, sender=None)  # type: ignore[arg-type]
    await shell.warm_up()
    runner, port = await shell.start_http("127.0.0.1", 0)
    crunner, curl = await _control_site(_server_control(lambda: 0))
    _ready(events=f"http://127.0.0.1:{port}/slack/events", control=curl)
    await stop.wait()
    await crunner.cleanup()
    await runner.cleanup()


# ---- starting and stopping them -------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[str]
    info: dict[str, Any]
    log: Path

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def start_child(name: str, args: Sequence[str], env: dict[str, str], workdir: Path) -> Child:
    log = workdir / f"{name}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(VENV_PYTHON), str(HERE), "--serve", name, *args],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_S)
    line = proc.stdout.readline() if ready else ""  # the child's first line; "" if it died
    if not line:
        stop_process(proc)
        raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
    return Child(name, proc, json.loads(line), log)


def start_fake(base: dict[str, str], workdir: Path, users: int) -> tuple[Child, dict[str, str]]:
    """The fake Slack, and the environment that points the bot and the bare app at it."""
    fake = start_child("fake", ["--users", str(users)], base, workdir)
    slack_env = {
        **base,
        "SLACK_BOT_TOKEN": fake.info["token"],
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.info["api_url"],
    }
    return fake, slack_env


def write_bot_config(path: Path, redis_url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "environments": {
                    ENV: {
                        "redis_url": redis_url,
                        "prefix": PREFIX,
                        "queues": ["sla"],
                        "channel": f"#{CHANNEL_NAME}",
                    }
                },
                "roles": {"operator": {"groups": [GROUP]}},
                "permissions": {"operator": {ENV: ["status", "pause", "resume"]}},
            }
        )
    )
    return path


# ---- the client ------------------------------------------------------------------------------


def signed(body: bytes) -> dict[str, str]:
    """Headers as Slack sends them (tests/slack/driver.py `_signed`), on real wall-clock time."""
    timestamp = str(int(time.time()))
    digest = hmac.new(
        SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def command_body(command: str, text: str, user: str, trigger_id: str, response_url: str) -> bytes:
    fields = [
        ("token", "fake-verification-token"),
        ("team_id", TEAM),
        ("team_domain", TEAM_DOMAIN),
        ("channel_id", CHANNEL),
        ("channel_name", CHANNEL_NAME),
        ("user_id", user),
        ("user_name", user.lower()),
        ("command", command),
        ("text", text),
        ("api_app_id", APP_ID),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id),
    ]
    return urlencode(fields).encode()


@dataclass
class Fired:
    latencies_s: list[float]
    statuses: Counter[str]
    behind_s: float = 0.0  # open loop: how late the client sent its last request
    # trigger_id and response_url id -> how long they waited in the client's pool between their
    # issue and their command
    held_s: dict[str, float] = field(default_factory=dict)


async def fire(events_url: str, fake_control: str, command: str, text: str, load: Load) -> Fired:
    """`load.requests` signed commands, closed or open loop; the latency of each ack."""
    n = load.requests
    fired = Fired([], Counter())
    pool: list[tuple[str, str, str]] = []
    issued_at: dict[str, float] = {}
    next_index = 0
    refill = asyncio.Lock()
    batch = load.concurrency or max(10, int((load.rate or 50) / 5))
    connector = aiohttp.TCPConnector(limit=load.concurrency or 100)
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession() as control,
    ):

        async def take() -> tuple[str, str, str] | None:
            """The next request's user, trigger_id and response_url, issued just before use."""
            nonlocal next_index
            async with refill:
                if not pool:
                    if next_index >= n:
                        return None
                    upto = min(n, next_index + batch)
                    users = [user_id(i) for i in range(next_index, upto)]
                    next_index = upto
                    async with control.post(f"{fake_control}/issue", json={"users": users}) as r:
                        pairs = await r.json()
                    pool.extend((u, t, url) for u, (t, url) in zip(users, pairs, strict=True))
                    issued_at.update((t, time.perf_counter()) for t, _ in pairs)
                    pool.reverse()
                return pool.pop()

        async def send(item: tuple[str, str, str]) -> None:
            user, trigger_id, response_url = item
            body = command_body(command, text, user, trigger_id, response_url)
            headers = signed(body)
            started = time.perf_counter()
            held = started - issued_at.pop(trigger_id)
            fired.held_s[trigger_id] = fired.held_s[response_url.rsplit("/", 1)[-1]] = held
            try:
                async with session.post(events_url, data=body, headers=headers) as resp:
                    await resp.read()
                    elapsed = time.perf_counter() - started
                    fired.statuses[str(resp.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                elapsed = time.perf_counter() - started
                fired.statuses[type(exc).__name__] += 1
            fired.latencies_s.append(elapsed)

        if load.rate is None:

            async def worker() -> None:
                while (item := await take()) is not None:
                    await send(item)

            await asyncio.gather(*(worker() for _ in range(load.concurrency or 1)))
        else:

            async def one() -> None:
                item = await take()
                if item is not None:
                    await send(item)

            tasks: list[asyncio.Task[None]] = []
            started = time.perf_counter()
            for i in range(n):
                delay = started + i / load.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    fired.behind_s = max(fired.behind_s, -delay)
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
    return fired


@dataclass
class RoundResult:
    command: str
    load: str
    app: str
    round: int
    latencies_s: list[float]
    statuses: dict[str, int]
    wall_s: float
    behind_s: float
    pending_background: int
    pending_tasks: int
    background_done_s: float | None
    server_cpu_s: float
    server_burst_cpu_s: float  # up to the last ack: what the acks competed with
    fake_cpu_s: float
    fake_burst_cpu_s: float
    client_cpu_s: float
    gc: dict[str, dict[str, float]] = field(default_factory=dict)
    fake_calls: dict[str, int] = field(default_factory=dict)
    modal_ages_s: list[float] = field(default_factory=list)  # command sent -> views.open
    answer_ages_s: list[float] = field(default_factory=list)  # command sent -> response_url

    @property
    def summary(self) -> Summary:
        return Summary.of(self.latencies_s)


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        return await resp.json()


async def run_round(
    *, app: str, server: Child, fake: Child, command_name: str, load: Load, index: int
) -> RoundResult:
    command, text = COMMANDS[command_name]
    control_url = server.info["control"]
    async with aiohttp.ClientSession() as control:
        await get_json(control, f"{control_url}/gc")  # forget the pauses before this round
        cpu0 = (server.cpu_s(), fake.cpu_s(), time.process_time())
        started = time.perf_counter()
        fired = await fire(server.info["events"], fake.info["control"], command, text, load)
        last_ack = time.perf_counter()
        burst_cpu_s = server.cpu_s() - cpu0[0]
        fake_burst_cpu_s = fake.cpu_s() - cpu0[1]
        pending = await get_json(control, f"{control_url}/pending")
        done_after: float | None = 0.0
        state = pending
        while state["background"] > 0:
            if time.perf_counter() - last_ack > BACKGROUND_WAIT_S:
                done_after = None
                break
            await asyncio.sleep(0.05)
            state = await get_json(control, f"{control_url}/pending")
            done_after = time.perf_counter() - last_ack
        cpu1 = (server.cpu_s(), fake.cpu_s(), time.process_time())
        gc_pauses = await get_json(control, f"{control_url}/gc")
        await asyncio.sleep(0.2)  # the last answers reach the fake's counters
        stats = await get_json(control, f"{fake.info['control']}/stats")
    return RoundResult(
        command=command_name,
        load=load.name,
        app=app,
        round=index,
        latencies_s=fired.latencies_s,
        statuses=dict(fired.statuses),
        wall_s=last_ack - started,
        behind_s=fired.behind_s,
        pending_background=pending["background"],
        pending_tasks=pending["tasks"],
        background_done_s=done_after,
        server_cpu_s=cpu1[0] - cpu0[0],
        server_burst_cpu_s=burst_cpu_s,
        fake_cpu_s=cpu1[1] - cpu0[1],
        fake_burst_cpu_s=fake_burst_cpu_s,
        client_cpu_s=cpu1[2] - cpu0[2],
        gc=gc_pauses,
        fake_calls=stats["calls"],
        # from the command's POST: less the time its trigger_id waited in the client's pool
        modal_ages_s=[age - fired.held_s.get(t, 0.0) for t, age in stats["modal_ages"]],
        answer_ages_s=[age - fired.held_s.get(u, 0.0) for u, age in stats["answer_ages"]],
    )


async def warm_up(servers: Mapping[str, Child], fake: Child) -> None:
    """Untimed: 100 of each command to each app, 10 in flight."""
    print("warm-up (untimed): 100 of each command to each app, 10 in flight")
    warm = Load("warm", 10, None, 100, 1, goal=False)
    for command in COMMANDS:
        for name in APPS[command]:
            await run_round(
                app=name, server=servers[name], fake=fake, command_name=command, load=warm, index=0
            )


def _summary(samples: list[float]) -> dict[str, float] | None:
    return asdict(Summary.of(samples)) if len(samples) >= 2 else None


def describe(r: RoundResult) -> str:
    s = r.summary
    done = "not done" if r.background_done_s is None else f"{r.background_done_s:.2f} s"
    calls = ", ".join(f"{k} {v}" for k, v in sorted(r.fake_calls.items())) or "none"
    for what, samples in (
        ("modal opened (views.open)", r.modal_ages_s),
        ("answered (response_url)", r.answer_ages_s),
    ):
        if len(samples) >= 2:
            ages = Summary.of(samples)
            calls += (
                f"\n      {what} after the command was sent: p50 {ages.median * 1e3:.0f} ms,"
                f" p99 {ages.p99 * 1e3:.0f} ms, max {ages.max * 1e3:.0f} ms"
            )
    bad = {k: v for k, v in r.statuses.items() if k != "200"}
    gen2 = r.gc.get("2", {"count": 0, "max_ms": 0.0, "total_ms": 0.0})
    behind = f", client up to {r.behind_s * 1e3:.0f} ms behind schedule" if r.behind_s else ""
    return (
        f"  {r.command:6} {r.load:5} {r.app:5} round {r.round}: "
        f"p50 {s.median * 1e3:6.2f} ms · p99 {s.p99 * 1e3:6.2f} ms · max {s.max * 1e3:6.2f} ms"
        f" (n={s.n}{', NOT 200: ' + str(bad) if bad else ''}) · {r.wall_s:.1f} s,"
        f" {s.n / r.wall_s:.0f} req/s{behind}\n"
        f"      pending at the last ack: {r.pending_background} background tasks"
        f" ({r.pending_tasks} asyncio tasks), done {done} later ·"
        f" CPU server {r.server_cpu_s:.1f} s ({r.server_cpu_s / s.n * 1e3:.2f} ms/req;"
        f" up to the last ack {r.server_burst_cpu_s / s.n * 1e3:.2f} ms/req,"
        f" {r.server_burst_cpu_s / r.wall_s:.0%} busy),"
        f" fake {r.fake_cpu_s:.1f} s ({r.fake_burst_cpu_s / r.wall_s:.0%} busy up to the last"
        f" ack), client {r.client_cpu_s:.1f} s ·"
        f" server GC gen2 {gen2['count']:.0f}× max {gen2['max_ms']:.0f} ms\n"
        f"      fake calls: {calls}"
    )


@dataclass
class Verdict:
    command: str
    load: str
    bot: Summary
    bare: Summary
    ratio_p99: float
    ratio_p50: float
    round_ratios_p99: list[float]
    goal: bool
    ok: bool
    modal: Summary | None = None  # the bare app that also opens the modal (pause)


def verdicts(results: list[RoundResult], loads: Sequence[Load]) -> list[Verdict]:
    out: list[Verdict] = []
    for command in COMMANDS:
        for load in loads:
            mine = [r for r in results if (r.command, r.load) == (command, load.name)]
            bot = sorted((r for r in mine if r.app == "bot"), key=lambda r: r.round)
            bare = sorted((r for r in mine if r.app == "bare"), key=lambda r: r.round)
            modal = [x for r in mine if r.app == "modal" for x in r.latencies_s]
            if not bot or not bare:
                continue
            sb = Summary.of([x for r in bot for x in r.latencies_s])
            sa = Summary.of([x for r in bare for x in r.latencies_s])
            per_round = [b.summary.p99 / a.summary.p99 for b, a in zip(bot, bare, strict=True)]
            ratio = sb.p99 / sa.p99
            out.append(
                Verdict(
                    command=command,
                    load=load.name,
                    bot=sb,
                    bare=sa,
                    ratio_p99=ratio,
                    ratio_p50=sb.median / sa.median,
                    round_ratios_p99=per_round,
                    goal=load.goal,
                    ok=ratio <= RATIO_GOAL or not load.goal,
                    modal=Summary.of(modal) if modal else None,
                )
            )
    return out


def loads_for(args: argparse.Namespace) -> list[Load]:
    n = 200 if args.quick else args.requests
    rounds = 1 if args.quick else args.rounds
    paced_n = 200 if args.quick else args.paced_requests
    paced_rounds = 1 if args.quick else args.paced_rounds
    loads = [
        Load("c=50", 50, None, n, rounds, goal=True),
        Load("c=10", 10, None, n, rounds, goal=True),
        Load(f"{args.rate:g}/s", None, args.rate, paced_n, paced_rounds, goal=False),
    ]
    return [
        x for x in loads if not args.loads or (x.name if x.rate is None else "paced") in args.loads
    ]


async def bench(args: argparse.Namespace) -> int:
    loads = loads_for(args)
    users = max(max(load.requests for load in loads), 100)
    results: list[RoundResult] = []
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        workdir = Path(tmp)
        r = redis_server.client()
        facts = print_machine(r)
        for package in ("slack_bolt", "slack_sdk", "aiohttp"):
            facts[package] = importlib.metadata.version(package)
        print(" · ".join(f"{p} {facts[p]}" for p in ("slack_bolt", "slack_sdk", "aiohttp")))
        r.hset(f"{PREFIX}:sla:meta", mapping={"opts.maxLenEvents": "10000"})  # the queue exists
        config = write_bot_config(workdir / "chatops.yml", redis_server.url)
        base = {**bot_environ(config, workdir), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        children: list[Child] = []
        try:
            fake, slack_env = start_fake(base, workdir, users)
            children.append(fake)
            if os.environ.get("BENCH_PROFILE"):
                slack_env["BENCH_PROFILE"] = os.environ["BENCH_PROFILE"]
            names = ("bot", "bare", "modal")
            servers = {name: start_child(name, [], slack_env, workdir) for name in names}
            children += servers.values()
            print(
                f"fake Slack pid {fake.proc.pid} (rate limits off), "
                + ", ".join(f"{n} pid {servers[n].proc.pid}" for n in names)
                + "; loads: "
                + "; ".join(f"{x.name}: {x.rounds} x {x.requests} per app" for x in loads)
            )
            await warm_up(servers, fake)
            for command in args.commands or COMMANDS:
                for load in loads:
                    apps = APPS[command]
                    for index in range(1, load.rounds + 1):
                        turn = (index - 1) % len(apps)  # each app goes first in turn
                        for name in apps[turn:] + apps[:turn]:
                            result = await run_round(
                                app=name,
                                server=servers[name],
                                fake=fake,
                                command_name=command,
                                load=load,
                                index=index,
                            )
                            results.append(result)
                            print(describe(result), flush=True)
        finally:
            for child in reversed(children):
                stop_process(child.proc)
            for child in children:
                print_log_warnings(f"{child.name} log", child.log)
    print()
    rows = verdicts(results, loads)
    for v in rows:
        goal = f"(goal <= {RATIO_GOAL}) {verdict(v.ok)}" if v.goal else "(context, no goal)"
        print(
            f"{v.command:6} {v.load:5} bot  {v.bot.ms()}\n"
            f"{'':12} bare {v.bare.ms()}\n"
            f"{'':12} p99 bot/bare {v.ratio_p99:.2f}, per round "
            f"{', '.join(f'{x:.2f}' for x in v.round_ratios_p99)}; p50 bot/bare "
            f"{v.ratio_p50:.2f}  {goal}"
        )
        if v.modal is not None:
            print(
                f"{'':12} modal {v.modal.ms()}\n"
                f"{'':12} p99 modal/bare {v.modal.p99 / v.bare.p99:.2f} (plain Bolt opening the"
                f" modal at once), bot/modal {v.bot.p99 / v.modal.p99:.2f}"
            )
    dump_json(
        args.out,
        {
            "machine": facts,
            "loads": [asdict(x) for x in loads],
            "rounds_detail": [
                {
                    **{
                        k: v
                        for k, v in asdict(res).items()
                        if k not in ("latencies_s", "modal_ages_s", "answer_ages_s")
                    },
                    "summary": asdict(res.summary),
                    "modal_ages": _summary(res.modal_ages_s),
                    "answer_ages": _summary(res.answer_ages_s),
                }
                for res in results
            ],
            "verdicts": [asdict(v) for v in rows],
        },
    )
    return 0 if all(v.ok for v in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 requests, 1 round: smoke only")
    parser.add_argument("--requests", type=int, default=2000, help="per closed-loop round")
    parser.add_argument("--rounds", type=int, default=5, help="closed-loop rounds per app (5)")
    parser.add_argument("--rate", type=float, default=50.0, help="open-loop requests/s (50)")
    parser.add_argument("--paced-requests", type=int, default=1000, help="per open-loop round")
    parser.add_argument("--paced-rounds", type=int, default=2, help="open-loop rounds per app")
    parser.add_argument("--out", help="write the results as JSON too")
    parser.add_argument(
        "--commands", nargs="+", choices=tuple(COMMANDS), help="only these commands (all)"
    )
    parser.add_argument(
        "--loads", nargs="+", choices=("c=50", "c=10", "paced"), help="only these loads (all)"
    )
    parser.add_argument("--serve", choices=("fake", "bot", "bare", "modal"), help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=2000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve == "fake":
        asyncio.run(serve_fake(args.users))
        return 0
    if args.serve == "bot":
        asyncio.run(serve_bot())
        return 0
    if args.serve in ("bare", "modal"):
        asyncio.run(serve_bare(open_modal=args.serve == "modal"))
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
