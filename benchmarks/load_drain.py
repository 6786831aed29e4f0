"""Slash commands in rising steps while a drain runs: ack latency, and what it costs the drain.

The processes of slack_ack.py (imported, not copied), plus a drain, all on the same two cores:

  client  (this process)   signs slash commands as slack_ack.py does and POSTs them open loop:
                           ``--steps`` rates (25, 50, 100, 200 a second), ``--step-s`` (30 s)
                           each, back to back, one request every 1/rate s whatever the answers,
                           each from its own user; ``--pause-share`` (10 %) of them
                           ``/queue pause sla`` (ack, then views.open and views.update), the rest
                           ``/queue status sla`` (ack, then an answer through response_url).
                           Each latency runs from just before the POST to the complete answer
                           (the ack); client timeout ``--timeout-s`` (10 s). A timed-out, refused
                           or non-200 request counts in the percentiles as at least the timeout.
  fake    (--serve fake)   slack_ack's FakeSlack, rate limits off; it issues every trigger_id and
                           response_url, in batches of rate/5 (at least 10) just before use.
  bot     (--serve bot)    the real bot (``open_runtime`` -> ``build_bot`` -> ``start_http``), on
                           a temporary SQLite store and the private Redis; the operator role may
                           also ``drain``; drain settings ``poll_interval_s``
                           (``--poll-interval-s``, 1 s), ``stall_s: 120``, ``timeout_s: 900``.
  bare    (--serve bare)   slack_ack's bare Bolt app (handlers that only ``await ack()``), served
                           by the bot's own HTTP code: the baseline for the same steps.
  worker                   ``tests/fixtures/worker/worker.js`` started as drain_overhead.py does
                           (``--concurrency`` 10, ``--job-ms`` 5).
  redis-server             a private one (common.private_redis); never the shared 6379.

Every run starts from the same state: the queue's keys are deleted (not FLUSHALL: the bot keeps
its locks in the same Redis) and ``--jobs`` jobs (250,000: about 2.7 minutes alone at the
1,400-1,550 jobs/s seen here, and at least 125 s even at the worker's ceiling of concurrency /
job-ms = 2,000 jobs/s, so the drain outlasts the 4 x 30 s of steps) are added by Node bullmq
``addBulk`` (common.fill). Then the drain is started **from Slack, as an operator
does**: a signed ``/queue drain sla`` (the bot acks, opens its confirmation modal and fills it
with the plan: the harness waits for the fake's ``views.open`` and ``views.update``), then a
signed ``view_submission`` of that modal (callback ``CONFIRM_CALLBACK``, the private_metadata
the bot wrote: the fields ``SlackDoor._prepare`` puts there, built here since the fake's views
are not reachable from this process). So the drain's watch loop and its progress messages run in
the bot's event loop, beside the acks, as in production. Once the bot has set the producer flag
to false the worker is started, and one of:

  A  drain alone            nothing else.
  B  drain + bot steps      the steps hit the bot.
  C  drain + bare steps     the same steps hit the bare app (the bot still runs the drain), so
                            the two apps are compared under the same drain, worker and Redis.

The steps start with the worker and run back to back. A probe (LLEN wait + LLEN active every
0.5 s) sees the queue empty; then the harness waits for the operation to end in the bot's store
(it must have succeeded) and stops the worker. The drain's duration is the worker's own
(drain_overhead.drain_span_s: first ``processedOn`` to last ``finishedOn``, every job completed);
since the drain outlasts the steps, its last part runs without load in every mode, so the
worker's jobs/s in each step's window (``step_s`` windows from the first ``processedOn``, counted
in the ``completed`` set by ``finishedOn``) is compared too, window by window. Runs rotate
A B C / C B A ... (``--runs`` each of A and B, ``--bare-runs`` of C).

Before the runs: an untimed warm-up (slack_ack's: 100 of each command per app, 10 in flight),
then a closed-loop burst per app and command (50 in flight, ``--burst`` requests, no drain,
through slack_ack.run_round, which waits for the follow-ups): each app's ack throughput, and its
CPU per command with the follow-ups, whose inverse bounds what one core can sustain.

Per step: sent, acked (HTTP 200), timeouts, errors, p50/p99/max ack latency (and p99 per
command), how far behind its schedule the client sent, the server's follow-ups (pending at the
start and end of the step, done during it: answers and filled modals the fake received),
whether the drain was still running, gen-2 GC pauses in the server, the fake's calls by method
and outcome, and the CPU of every process (bot, bare, fake, client, worker, redis-server): the
client shares the two cores with the rest, and its CPU is reported beside the servers'.

Goals: p99 ack <= 3 s (Slack's deadline) at every step for the bot, during the drain; the drain
under the bot's steps no slower than 1.10 x the drain alone (ratio of medians). Reported besides:
the step where the bot's p99 crosses 3 s (or "not crossed"; beyond the steps only an estimate from
the burst: above the rate the bot can sustain, an open-loop queue grows without bound), the bare
app's figures, and the drain under the bare app's steps.

Run by hand from the repository root (about 16 minutes with the defaults; ``--quick``: steps 25
and 50 a second of 5 s, 18,000 jobs, 1 run of each, about a minute, a smoke check whose numbers
are not measurements):

    .venv/bin/python benchmarks/load_drain.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import drain_overhead
import redis
import redis.asyncio as aioredis
import yaml
from common import (
    ROOT,
    PrivateRedis,
    Summary,
    bot_environ,
    dump_json,
    fill,
    print_log_warnings,
    print_machine,
    private_redis,
    stop_process,
    verdict,
)
from slack_ack import (
    APP_ID,
    CHANNEL,
    CHANNEL_NAME,
    COMMANDS,
    ENV,
    GROUP,
    PREFIX,
    TEAM,
    TEAM_DOMAIN,
    Child,
    Load,
    RoundResult,
    command_body,
    describe,
    get_json,
    run_round,
    signed,
    start_child,
    start_fake,
    user_id,
    warm_up,
)

from bot.slack.blocks import loading_view
from bot.slack.followups import BUSY_RUNNING

QUEUE = "sla"  # slack_ack's COMMANDS and drain_overhead's worker both use it
FLAG_KEY = f"{PREFIX}:flags:WORKER_ACCEPT_JOBS"
ACK_DEADLINE_S = 3.0  # Slack's
SLOWDOWN_GOAL = 1.10
DRAIN_USER = user_id(0)  # the operator who drains; the load's users start at 1
PROBE_S = 0.5
STALL_S = 120.0
DRAIN_TIMEOUT_S = 900.0
START_S = 30.0  # submission -> producer flag off; queue empty -> operation ended
BACKGROUND_WAIT_S = 300.0
MODES = {"A": "drain alone", "B": "drain + bot steps", "C": "drain + bare steps"}

assert drain_overhead.PREFIX == PREFIX and drain_overhead.QUEUE == QUEUE
assert COMMANDS["status"][1] == f"status {QUEUE}" and COMMANDS["pause"][1] == f"pause {QUEUE}"


@dataclass(frozen=True)
class Settings:
    steps: tuple[float, ...]
    step_s: float
    jobs: int
    concurrency: int
    job_ms: int
    runs: int
    bare_runs: int
    pause_share: float
    timeout_s: float
    burst: int
    poll_interval_s: float
    quick: bool = False

    @property
    def step_requests(self) -> list[int]:
        return [max(2, round(rate * self.step_s)) for rate in self.steps]

    def worker(self) -> drain_overhead.Settings:
        """What drain_overhead's start_worker and drain_span_s read."""
        return drain_overhead.Settings(
            jobs=self.jobs,
            runs=self.runs,
            concurrency=self.concurrency,
            job_ms=self.job_ms,
            poll_interval_s=self.poll_interval_s,
            probe_s=PROBE_S,
            window_s=0.0,
            drain_timeout_s=DRAIN_TIMEOUT_S,
        )


# ---- small helpers ---------------------------------------------------------------------------


def _cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        return drain_overhead.cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


@dataclass
class Procs:
    """Every process on the two cores whose CPU is read: pid by name (None: not running)."""

    pids: dict[str, int | None]

    def cpu(self) -> dict[str, float]:
        out = {name: _cpu_s(pid) for name, pid in self.pids.items()}
        out["client"] = time.process_time()
        return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def _shares(cpu_s: dict[str, float], wall_s: float) -> str:
    parts = [f"{k} {v / wall_s:.0%}" for k, v in cpu_s.items()]
    total = sum(cpu_s.values()) / wall_s
    cores = os.cpu_count() or 1
    return f"{' · '.join(parts)} · all {total:.0%} of one core ({total / cores:.0%} of the {cores})"


def _ms(x: float) -> str:
    return f"{x * 1e3:.0f} ms" if x >= 0.1 else f"{x * 1e3:.1f} ms"


def is_pause(i: int, share: float) -> bool:
    """Spread `share` of the requests evenly: request i is a pause if it crosses a multiple."""
    return int((i + 1) * share) > int(i * share)


# ---- the steps (open loop) -------------------------------------------------------------------


@dataclass
class Step:
    mode: str
    run: int
    app: str
    rate: float
    step_s: float
    sent: int
    statuses: dict[str, int]
    wall_s: float
    behind_p99_s: float
    behind_max_s: float
    issue_max_s: float  # the fake's slowest /issue (trigger_ids, response_urls) round trip
    cpu_s: dict[str, float]
    pending_start: int  # the server's follow-ups not yet done when the step started
    pending_background: int  # ... and when it ended
    pending_tasks: int
    drain_running: bool
    gc: dict[str, dict[str, float]]
    fake_calls: dict[str, int]
    latencies_s: list[float] = field(repr=False)  # failures counted as >= the client timeout
    commands: list[str] = field(repr=False)

    @property
    def acked(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def timeouts(self) -> int:
        return self.statuses.get("timeout", 0)

    @property
    def errors(self) -> int:
        return self.sent - self.acked - self.timeouts

    @property
    def summary(self) -> Summary:
        return Summary.of(self.latencies_s)

    @property
    def followed_up(self) -> int:
        """Follow-ups the fake saw end during the step: answers through response_url and
        modals filled with their plan (views.open is the first half of a pause's)."""
        return sum(
            n
            for call, n in self.fake_calls.items()
            if call.startswith(("response_url ", "views.update "))
        )

    def summary_of(self, command: str) -> Summary | None:
        xs = [x for x, c in zip(self.latencies_s, self.commands, strict=True) if c == command]
        return Summary.of(xs) if len(xs) >= 2 else None

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("latencies_s", "commands")}
        data["summary"] = asdict(self.summary)
        for command in COMMANDS:
            s = self.summary_of(command)
            data[f"summary_{command}"] = asdict(s) if s else None
        return data


@dataclass
class Fired:
    latencies_s: list[float]
    commands: list[str]
    statuses: Counter[str]
    behind_s: list[float]
    issue_s: list[float]


async def fire_step(
    session: aiohttp.ClientSession,
    control: aiohttp.ClientSession,
    *,
    events_url: str,
    fake_control: str,
    rate: float,
    n: int,
    first_user: int,
    s: Settings,
) -> Fired:
    """`n` signed commands, one every 1/rate s from now whatever the answers."""
    batch = max(10, int(rate / 5))
    issued: dict[int, asyncio.Task[list[list[str]]]] = {}
    fired = Fired([0.0] * n, [""] * n, Counter(), [0.0] * n, [])

    async def issue(k: int) -> list[list[str]]:
        users = [user_id(first_user + i) for i in range(k * batch, min(n, (k + 1) * batch))]
        started = time.perf_counter()
        async with control.post(f"{fake_control}/issue", json={"users": users}) as resp:
            pairs: list[list[str]] = await resp.json()
        fired.issue_s.append(time.perf_counter() - started)
        return pairs

    def ensure(k: int) -> None:
        if k * batch < n and k not in issued:
            issued[k] = asyncio.create_task(issue(k))

    async def send(i: int, due: float) -> None:
        k = i // batch
        trigger_id, response_url = (await issued[k])[i - k * batch]
        name = "pause" if is_pause(i, s.pause_share) else "status"
        command, text = COMMANDS[name]
        user = user_id(first_user + i)
        body = command_body(command, text, user, trigger_id, response_url)
        headers = signed(body)
        started = time.perf_counter()
        try:
            async with session.post(events_url, data=body, headers=headers) as resp:
                await resp.read()
                status = str(resp.status)
        except TimeoutError:
            status = "timeout"
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        elapsed = time.perf_counter() - started
        fired.latencies_s[i] = elapsed if status == "200" else max(elapsed, s.timeout_s)
        fired.commands[i] = name
        fired.statuses[status] += 1
        fired.behind_s[i] = max(0.0, started - due)

    tasks: list[asyncio.Task[None]] = []
    ensure(0)
    started = time.perf_counter()
    for i in range(n):
        if i % batch == 0:
            ensure(i // batch + 1)  # the next batch's triggers, about batch/rate s before use
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, due)))
    await asyncio.gather(*tasks)
    return fired


async def run_steps(
    *,
    mode: str,
    run: int,
    app: str,
    server: Child,
    fake: Child,
    procs: Procs,
    probe: asyncio.Task[float],
    s: Settings,
) -> list[Step]:
    steps: list[Step] = []
    connector = aiohttp.TCPConnector(limit=0)  # Slack does not cap its connections either
    timeout = aiohttp.ClientTimeout(total=s.timeout_s)
    control_url = server.info["control"]
    first_user = 1
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession() as control,
    ):
        for rate, n in zip(s.steps, s.step_requests, strict=True):
            await get_json(control, f"{control_url}/gc")  # forget the pauses before this step
            pending_start = (await get_json(control, f"{control_url}/pending"))["background"]
            await get_json(control, f"{fake.info['control']}/stats")  # and the fake's calls
            cpu0 = procs.cpu()
            t0 = time.perf_counter()
            fired = await fire_step(
                session,
                control,
                events_url=server.info["events"],
                fake_control=fake.info["control"],
                rate=rate,
                n=n,
                first_user=first_user,
                s=s,
            )
            wall = time.perf_counter() - t0
            cpu = _delta(procs.cpu(), cpu0)
            running = not probe.done()
            pending = await get_json(control, f"{control_url}/pending")
            gc_pauses = await get_json(control, f"{control_url}/gc")
            stats = await get_json(control, f"{fake.info['control']}/stats")
            first_user += n
            behind = sorted(fired.behind_s)
            step = Step(
                mode=mode,
                run=run,
                app=app,
                rate=rate,
                step_s=s.step_s,
                sent=n,
                statuses=dict(fired.statuses),
                wall_s=wall,
                behind_p99_s=statistics.quantiles(behind, n=100, method="inclusive")[98],
                behind_max_s=behind[-1],
                issue_max_s=max(fired.issue_s),
                cpu_s=cpu,
                pending_start=pending_start,
                pending_background=pending["background"],
                pending_tasks=pending["tasks"],
                drain_running=running,
                gc=gc_pauses,
                fake_calls=stats["calls"],
                latencies_s=fired.latencies_s,
                commands=fired.commands,
            )
            steps.append(step)
            print(describe_step(step), flush=True)
    return steps


def describe_step(st: Step) -> str:
    sm = st.summary
    by_command = " · ".join(
        f"{c} p99 {_ms(x.p99)}" for c in COMMANDS if (x := st.summary_of(c)) is not None
    )
    gen2 = st.gc.get("2", {"count": 0, "max_ms": 0.0})
    calls = ", ".join(f"{k} {v}" for k, v in sorted(st.fake_calls.items())) or "none"
    bad = {k: v for k, v in st.statuses.items() if k != "200"}
    return (
        f"    {st.app:4} {st.rate:5g}/s: sent {st.sent}, acked {st.acked}, timeouts "
        f"{st.timeouts}, errors {st.errors}{' ' + str(bad) if bad else ''} · p50 {_ms(sm.median)}"
        f" · p99 {_ms(sm.p99)} · max {_ms(sm.max)} ({by_command}) · {st.acked / st.wall_s:.1f}"
        f" acks/s · client behind schedule p99 {_ms(st.behind_p99_s)}, max "
        f"{_ms(st.behind_max_s)} (slowest trigger_id issue {_ms(st.issue_max_s)})\n"
        f"        CPU: {_shares(st.cpu_s, st.wall_s)}\n"
        f"        follow-ups: {st.pending_start} pending at the start, {st.followed_up} done "
        f"({st.followed_up / st.wall_s:.0f}/s), {st.pending_background} pending at the end "
        f"(= {st.pending_background / st.rate:.1f} s of commands; {st.pending_tasks} asyncio "
        f"tasks) · drain still running: "
        f"{'yes' if st.drain_running else 'NO'} · server GC gen2 {gen2['count']:.0f}x, max "
        f"{gen2['max_ms']:.0f} ms\n"
        f"        fake calls: {calls}"
    )


# ---- the drain, from Slack -------------------------------------------------------------------


async def _issue(control: aiohttp.ClientSession, fake: Child, user: str) -> tuple[str, str]:
    async with control.post(f"{fake.info['control']}/issue", json={"users": [user]}) as resp:
        ((trigger_id, response_url),) = await resp.json()
    return str(trigger_id), str(response_url)


async def _post_signed(
    control: aiohttp.ClientSession, url: str, body: bytes
) -> tuple[int, str, float]:
    started = time.perf_counter()
    async with control.post(url, data=body, headers=signed(body)) as resp:
        text = await resp.text()
        return resp.status, text, time.perf_counter() - started


def view_submission(user: str, trigger_id: str, response_url: str, tag: str) -> bytes:
    """The modal the bot opened for ``/queue drain sla``, submitted: the view carries the
    private_metadata the bot wrote (SlackDoor._prepare's fields) and no input (env not
    protected). Payload fields as tests/slack/driver.py's ``view_submission``."""
    metadata = {
        "command": "queue",
        "text": f"drain {QUEUE}",
        "env": ENV,
        "user": user,
        "channel": CHANNEL,
        "channel_name": CHANNEL_NAME,
        "response_url": response_url,
    }
    view = {
        **loading_view("queue drain", metadata),
        "id": f"VBENCH{tag}",
        "team_id": TEAM,
        "app_id": APP_ID,
        "hash": f"{time.time_ns():x}",
        "state": {"values": {}},
    }
    name = user.lower()
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": TEAM_DOMAIN},
        "user": {"id": user, "username": name, "name": name, "team_id": TEAM},
        "api_app_id": APP_ID,
        "token": "fake-verification-token",
        "trigger_id": trigger_id,
        "view": view,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


@dataclass(frozen=True)
class DrainStart:
    command_ack_s: float
    submit_ack_s: float
    flag_off_s: float  # from the submission's ack to the producer flag false
    fake_calls: dict[str, int]


async def start_drain(bot: Child, fake: Child, r: redis.Redis, store: Path, tag: str) -> DrainStart:
    calls: Counter[str] = Counter()
    async with aiohttp.ClientSession() as control:
        await get_json(control, f"{fake.info['control']}/stats")  # forget earlier calls
        trigger_id, response_url = await _issue(control, fake, DRAIN_USER)
        body = command_body("/queue", f"drain {QUEUE}", DRAIN_USER, trigger_id, response_url)
        status, text, command_ack = await _post_signed(control, bot.info["events"], body)
        if status != 200:
            raise RuntimeError(f"/queue drain {QUEUE}: HTTP {status} {text[:300]}")
        deadline = time.monotonic() + START_S
        while not (calls["views.open ok"] and calls["views.update ok"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the drain's confirmation modal was not filled: {dict(calls)}")
            await asyncio.sleep(0.1)
            calls.update((await get_json(control, f"{fake.info['control']}/stats"))["calls"])
        trigger_id, _ = await _issue(control, fake, DRAIN_USER)
        body = view_submission(DRAIN_USER, trigger_id, response_url, tag)
        status, text, submit_ack = await _post_signed(control, bot.info["events"], body)
        if status != 200 or text.strip():
            raise RuntimeError(f"the drain's confirmation was not accepted: {status} {text[:300]}")
        submitted = time.monotonic()
        while r.get(FLAG_KEY) != "false":
            if time.monotonic() - submitted > START_S:
                raise RuntimeError(f"the drain did not turn producers off: {last_drain(store)}")
            await asyncio.sleep(0.05)
        flag_off = time.monotonic() - submitted
    return DrainStart(command_ack, submit_ack, flag_off, dict(calls))


def last_drain(store: Path) -> dict[str, Any] | None:
    """The latest drain operation in the bot's SQLite store (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT id, state, summary, started_at, finished_at FROM operations "
            "WHERE kind = 'drain' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    op = dict(zip(("id", "state", "summary", "started_at", "finished_at"), row, strict=True))
    if op["finished_at"]:
        span = dt.datetime.fromisoformat(op["finished_at"]) - dt.datetime.fromisoformat(
            op["started_at"]
        )
        op["wall_s"] = span.total_seconds()
    return op


async def wait_empty(pr: PrivateRedis) -> float:
    """Seconds from now until waiting + active are both 0 (probed every PROBE_S), on a client
    of its own, asynchronous so that a slow reply never holds up the client's sends."""
    started = time.monotonic()
    async with aioredis.Redis(port=pr.port) as r:
        while True:
            pipe = r.pipeline(transaction=False)
            pipe.llen(f"{PREFIX}:{QUEUE}:wait")
            pipe.llen(f"{PREFIX}:{QUEUE}:active")
            if not any(await pipe.execute()):
                return time.monotonic() - started
            if time.monotonic() - started > DRAIN_TIMEOUT_S:
                raise RuntimeError("the queue did not empty")
            await asyncio.sleep(PROBE_S)


async def wait_operation(store: Path) -> dict[str, Any]:
    deadline = time.monotonic() + START_S + 2 * STALL_S
    while True:
        op = last_drain(store)
        if op is not None and op["state"] != "running":
            return op
        if time.monotonic() > deadline:
            raise RuntimeError(f"the drain operation did not end: {op}")
        await asyncio.sleep(0.2)


async def wait_background(server: Child) -> float | None:
    """Seconds until the server's follow-ups are done (None: not within BACKGROUND_WAIT_S)."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as control:
        while (await get_json(control, f"{server.info['control']}/pending"))["background"]:
            if time.monotonic() - started > BACKGROUND_WAIT_S:
                return None
            await asyncio.sleep(0.1)
    return time.monotonic() - started


# ---- one run ---------------------------------------------------------------------------------


def reset_queue(pr: PrivateRedis, r: redis.Redis, jobs: int) -> float:
    """Delete the queue's keys (the bot's own keys live elsewhere) and add `jobs` jobs."""
    keys: list[str] = []
    for k in r.scan_iter(match=f"{PREFIX}:{QUEUE}:*", count=10_000):
        keys.append(k)
        if len(keys) >= 10_000:
            r.unlink(*keys)
            keys.clear()
    if keys:
        r.unlink(*keys)
    took = fill(pr.url, PREFIX, [QUEUE], jobs)
    if r.llen(f"{PREFIX}:{QUEUE}:wait") != jobs:
        raise RuntimeError("the fill did not leave the expected waiting jobs")
    if r.get(FLAG_KEY) == "false":
        raise RuntimeError("the producer flag is still false from an earlier drain")
    return took


def start_worker(pr: PrivateRedis, s: Settings, workdir: Path) -> subprocess.Popen[bytes]:
    return drain_overhead.start_worker(pr, s.worker(), workdir / "worker.log")


@dataclass
class Run:
    mode: str
    index: int
    drain_s: float  # the worker's: first processedOn -> last finishedOn
    observed_s: float  # worker started -> probe saw the queue empty
    loadavg_1m: float
    fill_s: float
    start: DrainStart
    operation: dict[str, Any]
    cpu_s: dict[str, float]  # worker started -> queue empty
    background_done_s: float | None
    steps: list[Step]
    # The worker's jobs/s in the windows the steps cover (step_s each, from the drain's first
    # processedOn), whatever the mode, so that runs compare window by window.
    window_rates: list[float | None] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "steps"}
        data["steps"] = [st.as_json() for st in self.steps]
        return data


async def one_run(
    *,
    mode: str,
    index: int,
    pr: PrivateRedis,
    r: redis.Redis,
    children: dict[str, Child],
    s: Settings,
    workdir: Path,
    store: Path,
) -> Run:
    fill_s = reset_queue(pr, r, s.jobs)
    load = os.getloadavg()[0]
    bot, bare, fake = children["bot"], children["bare"], children["fake"]
    start = await start_drain(bot, fake, r, store, f"{mode}{index}")
    worker = start_worker(pr, s, workdir)
    try:
        procs = Procs(
            {
                "bot": bot.proc.pid,
                "bare": bare.proc.pid,
                "fake": fake.proc.pid,
                "worker": worker.pid,
                "redis": pr.proc.pid,
            }
        )
        cpu0 = procs.cpu()
        probe = asyncio.create_task(wait_empty(pr))
        steps: list[Step] = []
        try:
            if mode in "BC":
                app = "bot" if mode == "B" else "bare"
                steps = await run_steps(
                    mode=mode,
                    run=index,
                    app=app,
                    server=children[app],
                    fake=fake,
                    procs=procs,
                    probe=probe,
                    s=s,
                )
            observed = await probe
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe  # its Redis connection closed before anything is stopped
        cpu = _delta(procs.cpu(), cpu0)
        operation = await wait_operation(store)
    finally:
        stop_process(worker)
    if operation["state"] != "succeeded":
        raise RuntimeError(f"the drain did not succeed: {operation}")
    drain_s = drain_overhead.drain_span_s(r, s.worker())
    rates = window_rates(r, drain_s, s)
    background = await wait_background(children["bot" if mode != "C" else "bare"])
    run = Run(
        mode,
        index,
        drain_s,
        observed,
        load,
        fill_s,
        start,
        operation,
        cpu,
        background,
        steps,
        rates,
    )
    late = [st.rate for st in steps if not st.drain_running]
    print(
        f"  run {index} {mode} ({MODES[mode]}): drain {drain_s:.2f} s (worker's own) · observed "
        f"{observed:.2f} s · bot's operation {operation.get('wall_s', float('nan')):.1f} s "
        f"{operation['state']} · load {load:.2f} · drain started from Slack: command acked in "
        f"{_ms(start.command_ack_s)}, confirmation in {_ms(start.submit_ack_s)}, producers off "
        f"{_ms(start.flag_off_s)} later\n"
        f"      worker jobs/s per step window: "
        f"{', '.join('-' if x is None else f'{x:.0f}' for x in rates)} · "
        f"CPU while draining: {_shares(cpu, observed)}"
        + (f"\n      WARNING: the drain was over before the end of step(s) {late}" if late else ""),
        flush=True,
    )
    return run


def window_rates(r: redis.Redis, drain_s: float, s: Settings) -> list[float | None]:
    """Jobs completed a second in each step's window, counted from the drain's first
    processedOn on the worker's clock (the `completed` set's scores are the finishedOn)."""
    completed = f"{PREFIX}:{QUEUE}:completed"
    last: list[tuple[str, float]] = r.zrange(completed, -1, -1, withscores=True)  # type: ignore[assignment]
    last_ms = last[0][1]
    first_ms = last_ms - drain_s * 1e3
    rates: list[float | None] = []
    for k in range(len(s.steps)):
        lo = first_ms + k * s.step_s * 1e3
        hi = min(lo + s.step_s * 1e3, last_ms)
        done = int(r.zcount(completed, lo, hi))
        rates.append(done / ((hi - lo) / 1e3) if hi - lo >= 1e3 else None)
    return rates


def orders(s: Settings) -> list[tuple[str, int]]:
    """(mode, run index) in the order run: A B C, then C B A, and so on."""
    out: list[tuple[str, int]] = []
    for i in range(max(s.runs, s.bare_runs)):
        modes = [m for m, n in (("A", s.runs), ("B", s.runs), ("C", s.bare_runs)) if i < n]
        out += [(m, i + 1) for m in (modes if i % 2 == 0 else modes[::-1])]
    return out


# ---- the burst (closed loop, no drain) --------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    app: str
    acks_per_s: dict[str, float]  # closed loop, 50 in flight, per command
    cpu_ms: dict[str, float]  # server CPU per command, follow-ups included
    mix_acks_per_s: float
    mix_cpu_ms: float

    @property
    def sustained_per_s(self) -> float:
        """At most this many commands a second on one core, the rest of the machine idle."""
        return 1e3 / self.mix_cpu_ms


def capacity(app: str, rounds: Sequence[RoundResult], share: float) -> Capacity:
    acks = {r.command: r.summary.n / r.wall_s for r in rounds}
    cpu = {r.command: r.server_cpu_s / r.summary.n * 1e3 for r in rounds}
    weights = {"status": 1 - share, "pause": share}
    mix_acks = 1 / sum(w / acks[c] for c, w in weights.items())
    mix_cpu = sum(w * cpu[c] for c, w in weights.items())
    return Capacity(app, acks, cpu, mix_acks, mix_cpu)


# ---- report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pooled:
    app: str
    rate: float
    runs: int
    sent: int
    acked: int
    timeouts: int
    errors: int
    summary: Summary
    p99_by_command: dict[str, float]
    server_busy: float  # share of one core
    client_busy: float
    drain_running: bool  # in every run


def _p99_by_command(steps: Sequence[Step]) -> dict[str, float]:
    out = {}
    for command in COMMANDS:
        xs = [
            x
            for st in steps
            for x, c in zip(st.latencies_s, st.commands, strict=True)
            if c == command
        ]
        if len(xs) >= 2:
            out[command] = Summary.of(xs).p99
    return out


def pooled(runs: Sequence[Run], app: str, s: Settings) -> list[Pooled]:
    out = []
    for rate in s.steps:
        mine = [st for run in runs for st in run.steps if st.app == app and st.rate == rate]
        if not mine:
            continue
        wall = sum(st.wall_s for st in mine)
        out.append(
            Pooled(
                app=app,
                rate=rate,
                runs=len(mine),
                sent=sum(st.sent for st in mine),
                acked=sum(st.acked for st in mine),
                timeouts=sum(st.timeouts for st in mine),
                errors=sum(st.errors for st in mine),
                summary=Summary.of([x for st in mine for x in st.latencies_s]),
                p99_by_command=_p99_by_command(mine),
                server_busy=sum(st.cpu_s[app] for st in mine) / wall,
                client_busy=sum(st.cpu_s["client"] for st in mine) / wall,
                drain_running=all(st.drain_running for st in mine),
            )
        )
    return out


def crossing(rows: Sequence[Pooled], cap: Capacity | None, s: Settings) -> str:
    for row in rows:
        if row.summary.p99 > ACK_DEADLINE_S:
            return f"p99 crosses {ACK_DEADLINE_S:g} s at the {row.rate:g}/s step"
    top = max(s.steps)
    said = f"not crossed at {top:g}/s"
    if cap is None or cap.mix_acks_per_s <= top:
        return said + " (no estimate beyond it: the burst's ack rate is not above the top step)"
    mu = cap.mix_acks_per_s
    # Open loop above the service rate mu: the wait grows by (rate - mu) / mu seconds every
    # second, so p99 (near the step's end) passes the deadline from about mu * (1 + 3 / step_s).
    past = mu * (1 + ACK_DEADLINE_S / s.step_s)
    return (
        f"{said}. Estimate, not measured: in the burst (closed loop, no drain) the bot acked "
        f"this mix at ~{mu:.0f}/s; an open-loop load above its service rate queues without "
        f"bound, so within a {s.step_s:g} s step p99 would pass {ACK_DEADLINE_S:g} s from about "
        f"{past:.0f}/s on, sooner with the drain, the fake and the client on the same cores. "
        f"The answers and modals fall behind earlier: with their follow-ups the bot spends "
        f"{cap.mix_cpu_ms:.2f} ms of CPU a command, ~{cap.sustained_per_s:.0f}/s on one whole "
        f"core at best, and while requests keep coming overdue follow-ups run only "
        f"{BUSY_RUNNING} at a time (see each step's pending follow-ups)"
    )


def report(
    runs: Sequence[Run], caps: dict[str, Capacity], s: Settings
) -> tuple[bool, dict[str, Any]]:
    print()
    rows = {app: pooled(runs, app, s) for app in ("bot", "bare")}
    print(
        "ack latency per step, during the drain (pooled over the runs; failures count as >= "
        f"{s.timeout_s:g} s):"
    )
    for app, mine in rows.items():
        for row in mine:
            sm = row.summary
            print(
                f"  {app:4} {row.rate:5g}/s ({row.runs} run(s), n={row.sent}): p50 "
                f"{_ms(sm.median)} · p99 {_ms(sm.p99)} ("
                + ", ".join(f"{c} {_ms(x)}" for c, x in row.p99_by_command.items())
                + f") · max {_ms(sm.max)} · acked {row.acked}, "
                f"timeouts {row.timeouts}, errors {row.errors} · server {row.server_busy:.0%} of "
                f"a core, client {row.client_busy:.0%}"
                + ("" if row.drain_running else " · the drain had ended in some run")
            )
    bot_rows = rows["bot"]
    step_ok = [row.summary.p99 <= ACK_DEADLINE_S for row in bot_rows]
    ok_steps = bool(bot_rows) and all(step_ok)
    cross = crossing(bot_rows, caps.get("bot"), s) if bot_rows else "no bot steps"
    if bot_rows:
        worst = max(bot_rows, key=lambda row: row.summary.p99)
        print(
            f"bot p99 ack <= {ACK_DEADLINE_S:g} s at every step (goal): worst "
            f"{_ms(worst.summary.p99)} at {worst.rate:g}/s  {verdict(ok_steps)}"
        )
    print(f"where the bot's p99 crosses {ACK_DEADLINE_S:g} s: {cross}")
    for cap in caps.values():
        print(
            f"  {cap.app} burst (50 in flight, no drain): "
            + " · ".join(
                f"{c} {cap.acks_per_s[c]:.0f} acks/s, {cap.cpu_ms[c]:.2f} ms CPU/command"
                for c in cap.acks_per_s
            )
            + f" -> mix {cap.mix_acks_per_s:.0f} acks/s, {cap.mix_cpu_ms:.2f} ms CPU/command "
            f"(CPU alone would allow ~{cap.sustained_per_s:.0f}/s on one whole core)"
        )

    def drains(mode: str) -> list[float]:
        return [run.drain_s for run in runs if run.mode == mode]

    alone, with_bot, with_bare = drains("A"), drains("B"), drains("C")
    ratio_bot = statistics.median(with_bot) / statistics.median(alone) if with_bot else None
    ratio_bare = statistics.median(with_bare) / statistics.median(alone) if with_bare else None
    ok_drain = ratio_bot is not None and ratio_bot <= SLOWDOWN_GOAL
    print(f"drain alone:          {_spread(alone)}")
    if ratio_bot is not None:
        pairs = [b / a for a, b in zip(alone, with_bot, strict=False)]
        print(
            f"drain + bot steps:    {_spread(with_bot)}\n"
            f"drain slowdown under the bot's steps: {ratio_bot:.3f}x (median / median; pairs "
            f"{', '.join(f'{p:.3f}' for p in pairs)}; goal <= {SLOWDOWN_GOAL:.2f}) "
            f"{verdict(ok_drain)}"
        )
    if ratio_bare is not None:
        print(
            f"drain + bare steps:   {_spread(with_bare)}\n"
            f"drain slowdown under the bare app's steps (context): {ratio_bare:.3f}x"
        )
    windows = per_window(runs, s)
    print("the worker's jobs/s in each step's window (median of the runs; slowdown vs alone):")
    for rate, by_mode in zip(s.steps, windows, strict=True):
        base = by_mode.get("A")
        parts = []
        for mode, label in (("A", "alone"), ("B", "bot steps"), ("C", "bare steps")):
            x = by_mode.get(mode)
            if x is None:
                continue
            slower = f" ({base / x:.3f}x)" if base and mode != "A" else ""
            parts.append(f"{label} {x:.0f}{slower}")
        print(f"  {rate:5g}/s window: " + " · ".join(parts))
    print(
        "note: the client (this process) shares the two cores with the servers, the fake, the "
        "worker and Redis; its CPU is in every step's line"
    )
    data = {
        "pooled": {
            app: [{**asdict(row), "summary": asdict(row.summary)} for row in mine]
            for app, mine in rows.items()
        },
        "crossing": cross,
        "capacity": {
            app: {**asdict(cap), "sustained_per_s": cap.sustained_per_s}
            for app, cap in caps.items()
        },
        "drain_s": {"alone": alone, "bot_steps": with_bot, "bare_steps": with_bare},
        "window_jobs_per_s": [
            {"rate": rate, **by_mode} for rate, by_mode in zip(s.steps, windows, strict=True)
        ],
        "slowdown_bot": ratio_bot,
        "slowdown_bare": ratio_bare,
        "verdicts": {"p99_every_step": ok_steps, "drain_slowdown": ok_drain},
    }
    return ok_steps and ok_drain, data


def per_window(runs: Sequence[Run], s: Settings) -> list[dict[str, float]]:
    """Per step window, the median over each mode's runs of the worker's jobs/s."""
    out: list[dict[str, float]] = []
    for k in range(len(s.steps)):
        by_mode: dict[str, float] = {}
        for mode in MODES:
            xs = [x for run in runs if run.mode == mode and (x := run.window_rates[k]) is not None]
            if xs:
                by_mode[mode] = statistics.median(xs)
        out.append(by_mode)
    return out


def _spread(xs: Sequence[float]) -> str:
    if not xs:
        return "none"
    return f"median {statistics.median(xs):.2f} s (runs {', '.join(f'{x:.2f}' for x in xs)})"


# ---- main ------------------------------------------------------------------------------------


def write_config(path: Path, redis_url: str, s: Settings) -> Path:
    """slack_ack's configuration, plus `drain` for the operators and the drain's settings."""
    path.write_text(
        yaml.safe_dump(
            {
                "environments": {
                    ENV: {
                        "redis_url": redis_url,
                        "prefix": PREFIX,
                        "queues": [QUEUE],
                        "channel": f"#{CHANNEL_NAME}",
                        "drain": {
                            "stall_s": STALL_S,
                            "timeout_s": DRAIN_TIMEOUT_S,
                            "poll_interval_s": s.poll_interval_s,
                        },
                    }
                },
                "roles": {"operator": {"groups": [GROUP]}},
                "permissions": {"operator": {ENV: ["status", "pause", "resume", "drain"]}},
            }
        )
    )
    return path


async def bench(s: Settings, out: str | None) -> int:
    begun = time.monotonic()
    users = max(1 + sum(s.step_requests), s.burst, 100) + 10
    runs: list[Run] = []
    caps: dict[str, Capacity] = {}
    bursts: list[RoundResult] = []
    with private_redis() as pr, tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        r = pr.client()
        facts = print_machine(r)
        for package in ("slack_bolt", "slack_sdk", "aiohttp"):
            facts[package] = importlib.metadata.version(package)
        print(" · ".join(f"{p} {facts[p]}" for p in ("slack_bolt", "slack_sdk", "aiohttp")))
        print(f"settings: {asdict(s)}", flush=True)
        if s.quick:
            print("--quick: a smoke check; its numbers are not measurements")
        r.hset(f"{PREFIX}:{QUEUE}:meta", mapping={"opts.maxLenEvents": "10000"})  # for warm-up
        config = write_config(workdir / "chatops.yml", pr.url, s)
        base = {**bot_environ(config, workdir), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        store = workdir / "chatops.sqlite3"
        started: list[Child] = []
        try:
            fake, slack_env = start_fake(base, workdir, users)
            started.append(fake)
            for name in ("bot", "bare"):
                started.append(start_child(name, [], slack_env, workdir))
            children = {c.name: c for c in started}
            print(
                f"fake Slack pid {fake.proc.pid} (rate limits off, {users} users), bot pid "
                f"{children['bot'].proc.pid}, bare pid {children['bare'].proc.pid}; "
                f"private redis-server pid {pr.proc.pid}"
            )
            await warm_up(children, fake)
            print(f"burst (closed loop, 50 in flight, {s.burst} per command and app, no drain):")
            burst = Load("burst", 50, None, s.burst, 1, goal=False)
            for name in ("bot", "bare"):
                mine = []
                for command in COMMANDS:
                    res = await run_round(
                        app=name,
                        server=children[name],
                        fake=fake,
                        command_name=command,
                        load=burst,
                        index=1,
                    )
                    print(describe(res), flush=True)
                    mine.append(res)
                bursts += mine
                caps[name] = capacity(name, mine, s.pause_share)
            print(
                f"runs ({', '.join(f'{m}: {MODES[m]}' for m in MODES)}): "
                + " ".join(f"{m}{i}" for m, i in orders(s)),
                flush=True,
            )
            for mode, index in orders(s):
                run = await one_run(
                    mode=mode,
                    index=index,
                    pr=pr,
                    r=r,
                    children=children,
                    s=s,
                    workdir=workdir,
                    store=store,
                )
                runs.append(run)
        finally:
            for child in reversed(started):
                stop_process(child.proc)
            for child in started:
                print_log_warnings(f"{child.name} log", child.log)
            r.close()
    ok, data = report(runs, caps, s)
    print(f"total {time.monotonic() - begun:.0f} s")
    dump_json(
        out,
        {
            "machine": facts,
            "settings": asdict(s),
            "bursts": [
                {
                    **{k: v for k, v in asdict(res).items() if k != "latencies_s"},
                    "summary": asdict(res.summary),
                }
                for res in bursts
            ],
            "runs": [run.as_json() for run in runs],
            **data,
        },
    )
    return 0 if ok else 1


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, str | None]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="steps 25,50 of 5 s, 18,000 jobs, 1 run each"
    )
    parser.add_argument("--steps", help="requests/s per step, rising (default 25,50,100,200)")
    parser.add_argument("--step-s", type=float, help="seconds per step (default 30)")
    parser.add_argument("--jobs", type=int, help="jobs per drain (default 250,000)")
    parser.add_argument("--concurrency", type=int, default=10, help="worker CONCURRENCY (10)")
    parser.add_argument("--job-ms", type=int, default=5, help="worker JOB_MS (5)")
    parser.add_argument("--runs", type=int, help="runs of A and of B (default 2)")
    parser.add_argument("--bare-runs", type=int, help="runs of C, bare app steps (default 1)")
    parser.add_argument("--pause-share", type=float, default=0.1, help="share of pauses (0.1)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="client timeout (10)")
    parser.add_argument("--burst", type=int, help="closed-loop requests per command (2,000)")
    parser.add_argument("--poll-interval-s", type=float, default=1.0, help="the drain's poll")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    q = args.quick
    steps = tuple(float(x) for x in (args.steps or ("25,50" if q else "25,50,100,200")).split(","))
    settings = Settings(
        steps=steps,
        step_s=args.step_s or (5.0 if q else 30.0),
        jobs=args.jobs or (18_000 if q else 250_000),
        concurrency=args.concurrency,
        job_ms=args.job_ms,
        runs=args.runs if args.runs is not None else (1 if q else 2),
        bare_runs=args.bare_runs if args.bare_runs is not None else 1,
        pause_share=args.pause_share,
        timeout_s=args.timeout_s,
        burst=args.burst or (200 if q else 2000),
        poll_interval_s=args.poll_interval_s,
        quick=q,
    )
    if settings.runs < 1 or not 0 <= settings.pause_share <= 1:
        parser.error("--runs must be at least 1 and --pause-share within 0..1")
    return settings, args.out


async def bench_until_stopped(s: Settings, out: str | None) -> int:
    """SIGTERM cancels the run as Ctrl-C does, so every process started is stopped."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await bench(s, out)


def main(argv: Sequence[str] | None = None) -> int:
    s, out = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        return asyncio.run(bench_until_stopped(s, out))
    return 130


if __name__ == "__main__":
    sys.exit(main())
