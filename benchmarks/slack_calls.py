"""Slack calls made for one operation's progress: 10 steps printing 5,000 log lines in all.

A plan of `--steps` steps (bot.engine.plan `Plan`/`Step`), each step's action printing
`--lines` lines through `ctx.emit`, paced evenly over `--step-s` seconds (each line is due at
`start + k * step_s / lines`; if emitting falls behind, the next line goes at once), runs through
the real engine on a running bot: `open_runtime` (temporary SQLite store, a private
redis-server for the operation's lock) -> `build_bot` -> `running()` (the outbox sender loop)
-> `bot.door.run_operation(plan, origin=..., command=..., reason=None)`, whose sink is the
real `SlackProgress`. The bot talks over HTTP to tests/slack FakeSlack with its rate limits ON
at their defaults (tiers per minute t2 20, t3 50, t4 100; chat.postMessage 1 a second per
channel, bursts of 4; HTTP 429 with Retry-After beyond them). After the operation returns, the
harness waits until the outbox holds no unsent entry (bounded by `--drain-timeout-s`).

Reported: calls per method as the fake received them (chat.postMessage top-level vs thread
replies, chat.update), 429s per method (goal: none), wall time (operation, then until the
outbox is empty), chat.update per minute (average, and the most in any 60 s window; the bot's
budget is about 40 a minute, Slack's tier 3 is 50), the outbox's own rows (entries, retries and
their reasons, updates coalesced), and whether the thread holds every line once and in order.

Run by hand from the repository root (about 2 minutes, most of it the outbox catching up with
the thread replies; `--quick`: 2 steps x 200 lines, about 10 s, a smoke check). Results and
findings: docs/benchmarks.md, "Slack door".

    .venv/bin/python benchmarks/slack_calls.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import inspect
import logging
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from common import bot_environ, dump_json, print_machine, private_redis, verdict

from bot.engine.context import StepContext
from bot.engine.plan import Plan, Step
from bot.runtime import open_runtime
from bot.slack.app import build_bot
from bot.slack.door import Origin
from bot.slack.outbox import UpdateBudget
from bot.slack.progress import LIVE_UPDATE_EVERY_S, THREAD_BATCH_EVERY_S, THREAD_TEXT_MAX
from tests.slack.fake_slack import Call, FakeSlack

ENV = "bench"
PREFIX = "bench"
CHANNEL, CHANNEL_NAME = "C_BENCH", "ops-bench"
USER = "U_BENCH"
UPDATE_BUDGET_PER_MIN = 40
TIER3_PER_MIN = 50
LINE_RE = re.compile(r"step (\d+)/\d+ line (\d+)/\d+")


# ---- the operation ---------------------------------------------------------------------------


@dataclass
class StepTiming:
    index: int
    emitted: int = 0
    took_s: float = 0.0
    emit_s: list[float] = field(default_factory=list)  # time inside each ctx.emit


def make_plan(steps: int, lines: int, step_s: float, timings: list[StepTiming]) -> Plan:
    def action_for(index: int) -> Any:
        timing = StepTiming(index)
        timings.append(timing)

        async def action(ctx: StepContext) -> str:
            started = time.monotonic()
            for k in range(lines):
                delay = started + k * step_s / lines - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                line = (
                    f"2026-11-28T12:00:{k % 60:02d}.{k % 1000:03d}Z INFO worker[4242]: "
                    f"step {index + 1}/{steps} line {k + 1}/{lines}: job {index * lines + k} "
                    f"done in {3 + k % 37} ms"
                )
                before = time.monotonic()
                await ctx.emit(line)
                timing.emit_s.append(time.monotonic() - before)
                timing.emitted += 1
            timing.took_s = time.monotonic() - started
            return f"{lines} lines in {timing.took_s:.1f} s"

        return action

    return Plan(
        kind="bench",
        env=ENV,
        target="sla",
        steps=tuple(
            Step(f"print {lines} log lines ({i + 1} of {steps})", action_for(i), timeout_s=600)
            for i in range(steps)
        ),
        locks=("queue:sla",),
        details=(f"{steps * lines} log lines in all",),
    )


# ---- what the fake saw -----------------------------------------------------------------------


def _kind(call: Call) -> str:
    if call.method == "chat.postMessage":
        return (
            "chat.postMessage (thread reply)"
            if call.args.get("thread_ts")
            else ("chat.postMessage (top-level)")
        )
    return call.method


@dataclass
class MethodCount:
    accepted: int = 0
    rate_limited: int = 0  # HTTP 429
    other_errors: Counter[str] = field(default_factory=Counter)


def per_method(calls: list[Call]) -> dict[str, MethodCount]:
    out: dict[str, MethodCount] = {}
    for call in calls:
        entry = out.setdefault(_kind(call), MethodCount())
        if call.status == 429:
            entry.rate_limited += 1
        elif call.ok:
            entry.accepted += 1
        else:
            entry.other_errors[call.error or f"HTTP {call.status}"] += 1
    return out


def max_in_window(times: list[float], window_s: float = 60.0) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def timeline(calls: list[Call], t0: float, bucket_s: float) -> list[str]:
    buckets: dict[int, Counter[str]] = {}
    short = {
        "chat.postMessage (thread reply)": "reply",
        "chat.postMessage (top-level)": "post",
        "chat.update": "update",
    }
    for call in calls:
        name = short.get(_kind(call))
        if name is None:
            continue
        slot = buckets.setdefault(int((call.time - t0) // bucket_s), Counter())
        slot[name + (" 429" if call.status == 429 else "")] += 1
    return [
        f"{slot * bucket_s:5.0f}-{(slot + 1) * bucket_s:<4.0f}s "
        + ", ".join(f"{k} {v}" for k, v in sorted(buckets[slot].items()))
        for slot in sorted(buckets)
    ]


def thread_check(replies: list[dict[str, Any]], expected: int) -> dict[str, int]:
    """Lines found in the thread: distinct, duplicated, missing, and replies out of order."""
    seen: Counter[tuple[int, int]] = Counter()
    firsts: list[tuple[int, int]] = []
    for reply in replies:
        found = [(int(s), int(n)) for s, n in LINE_RE.findall(reply.get("text", ""))]
        seen.update(found)
        if found:
            firsts.append(found[0])
    out_of_order = sum(1 for a, b in zip(firsts, firsts[1:], strict=False) if b < a)
    return {
        "replies": len(replies),
        "distinct_lines": len(seen),
        "duplicated_lines": sum(c - 1 for c in seen.values() if c > 1),
        "missing_lines": expected - len(seen),
        "replies_out_of_order": out_of_order,
    }


def outbox_rows(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "select method, json_extract(args, '$.thread_of') is not null, count(*),"
            " sum(attempts), sum(attempts > 0) from slack_outbox group by 1, 2 order by 1, 2"
        ).fetchall()
        errors = con.execute(
            "select method, json_extract(args, '$.thread_of') is not null, last_error, count(*)"
            " from slack_outbox where last_error is not null group by 1, 2, 3 order by 4 desc"
        ).fetchall()
        unsent = con.execute("select count(*) from slack_outbox where sent_at is null").fetchone()
    finally:
        con.close()

    def name(method: str, thread: int) -> str:
        return f"{method} (thread reply)" if thread else method

    return {
        "entries": {
            name(m, t): {"rows": n, "retries": int(a or 0), "rows_retried": int(r or 0)}
            for m, t, n, a, r in rows
        },
        "last_errors": [
            {"method": name(m, t), "last_error": e, "rows": n} for m, t, e, n in errors
        ],
        "unsent": int(unsent[0]),
    }


# ---- the run ---------------------------------------------------------------------------------


@dataclass
class Result:
    steps: int
    lines_per_step: int
    step_s: float
    op_state: str | None
    op_s: float
    until_empty_s: float | None
    step_took_s: list[float]
    emit_ms_p50: float
    emit_ms_max: float
    calls: dict[str, dict[str, Any]]
    rate_limited_total: int
    rate_limit_violations: list[str]
    updates_ok: int
    update_per_min_avg: float
    update_per_min_max_60s: int
    update_span_s: float
    update_enqueues: int
    update_at_s: list[float]  # when each chat.update was accepted, from the operation's start
    last_reply_at_s: float
    outbox: dict[str, Any]
    thread: dict[str, int]
    final_text: str
    timeline: list[str]


async def run(args: argparse.Namespace, workdir: Path, redis_url: str) -> Result:
    steps, lines, step_s = (2, 200, 1.0) if args.quick else (args.steps, args.lines, args.step_s)
    config = workdir / "chatops.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "environments": {
                    ENV: {
                        "redis_url": redis_url,
                        "prefix": PREFIX,
                        "queues": ["sla"],
                        "channel": f"#{CHANNEL_NAME}",
                    }
                }
            }
        )
    )
    logging.getLogger("tests.slack.fake_slack").setLevel(logging.ERROR)  # violations: counted
    timings: list[StepTiming] = []
    plan = make_plan(steps, lines, step_s, timings)
    async with FakeSlack() as slack:  # rate limits on, default tiers
        slack.add_channel(CHANNEL, name=CHANNEL_NAME)
        environ = {
            **bot_environ(config, workdir),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": "bench-signing-secret",
            "SLACK_API_URL": slack.api_url,
        }
        async with open_runtime(environ) as rt:
            bot = build_bot(rt)
            async with bot.running():
                origin = Origin(USER, CHANNEL, CHANNEL_NAME, None)
                t0_fake = slack.clock.now()
                started = time.perf_counter()
                op_id = await bot.door.run_operation(
                    plan,
                    origin=origin,
                    command=f"/bench print {steps * lines} lines",
                    reason=None,
                )
                op_s = time.perf_counter() - started
                print(f"operation {op_id} returned after {op_s:.1f} s; waiting for the outbox")
                until_empty: float | None = None
                while time.perf_counter() - started < op_s + args.drain_timeout_s:
                    if not await rt.store.pending_slack(limit=1):
                        until_empty = time.perf_counter() - started
                        break
                    await asyncio.sleep(0.2)
                op = await rt.store.get_operation(op_id) if op_id else None
                op_state = op.state if op is not None else None
            calls = list(slack.calls)
            message = (slack.messages(CHANNEL) or [{}])[0]
            replies = slack.thread(CHANNEL, message["ts"]) if "ts" in message else []
            violations = [v for v in slack.violations if "rate limited" in v]
    outbox = await asyncio.to_thread(outbox_rows, workdir / "chatops.sqlite3")
    counts = per_method(calls)
    update_times = sorted(c.time for c in calls if c.method == "chat.update" and c.ok)
    span = (update_times[-1] - update_times[0]) if len(update_times) > 1 else 0.0
    emits = sorted(x for t in timings for x in t.emit_s)
    return Result(
        steps=steps,
        lines_per_step=lines,
        step_s=step_s,
        op_state=op_state,
        op_s=op_s,
        until_empty_s=until_empty,
        step_took_s=[t.took_s for t in timings],
        emit_ms_p50=emits[len(emits) // 2] * 1e3 if emits else 0.0,
        emit_ms_max=emits[-1] * 1e3 if emits else 0.0,
        calls={
            k: {**asdict(v), "other_errors": dict(v.other_errors)}
            for k, v in sorted(counts.items())
        },
        rate_limited_total=sum(v.rate_limited for v in counts.values()),
        rate_limit_violations=violations[:5],
        updates_ok=len(update_times),
        update_per_min_avg=len(update_times) / span * 60 if span else 0.0,
        update_per_min_max_60s=max_in_window(update_times),
        update_span_s=span,
        update_enqueues=steps * lines + 2 * steps + 1,
        update_at_s=[t - t0_fake for t in update_times],
        last_reply_at_s=max(
            (c.time - t0_fake for c in calls if c.ok and c.args.get("thread_ts")), default=0.0
        ),
        outbox=outbox,
        thread=thread_check(replies, steps * lines),
        final_text=str(message.get("text", "")),
        timeline=timeline(calls, t0_fake, args.timeline_s),
    )


def report(r: Result) -> bool:
    print(
        f"\n{r.steps} steps x {r.lines_per_step} lines, each step paced over {r.step_s:g} s; "
        f"operation {r.op_state}, final message: {r.final_text!r}"
    )
    print(
        f"steps took {min(r.step_took_s):.2f}-{max(r.step_took_s):.2f} s "
        f"(ctx.emit median {r.emit_ms_p50:.2f} ms, max {r.emit_ms_max:.1f} ms)"
    )
    empty = "NOT EMPTY" if r.until_empty_s is None else f"{r.until_empty_s:.1f} s"
    print(f"wall: operation {r.op_s:.1f} s; outbox empty after {empty} (from the start)")
    print("calls received by the fake Slack (accepted / HTTP 429 / other errors):")
    for name, c in r.calls.items():
        print(f"  {name:34} {c['accepted']:5} / {c['rate_limited']:4} / {c['other_errors'] or 0}")
    print(
        f"chat.update: {r.updates_ok} accepted over {r.update_span_s:.0f} s = "
        f"{r.update_per_min_avg:.1f}/min on average, at most {r.update_per_min_max_60s} in any "
        f"60 s (budget {UPDATE_BUDGET_PER_MIN}/min, tier 3 {TIER3_PER_MIN}/min); "
        f"{r.update_enqueues} updates enqueued by the progress sink"
    )
    print(
        "chat.update accepted at "
        + ", ".join(f"{t:.1f}" for t in r.update_at_s)
        + f" s; the last thread reply at {r.last_reply_at_s:.1f} s (fake clock, from the start)"
    )
    print("outbox rows (rows, retries, rows retried):")
    for name, e in r.outbox["entries"].items():
        print(f"  {name:34} {e['rows']:5} {e['retries']:5} {e['rows_retried']:5}")
    for e in r.outbox["last_errors"]:
        print(f"  last_error {e['method']}: {e['last_error']!r} on {e['rows']} rows")
    t = r.thread
    print(
        f"thread: {t['replies']} replies, {t['distinct_lines']} distinct lines, "
        f"{t['missing_lines']} missing, {t['duplicated_lines']} duplicated, "
        f"{t['replies_out_of_order']} replies out of order"
    )
    print("timeline (fake clock from the operation's start):")
    for line in r.timeline:
        print(f"  {line}")
    for v in r.rate_limit_violations:
        print(f"  fake: {v}")
    ok = r.rate_limited_total == 0
    print(f"\n429s: {r.rate_limited_total} (goal 0) {verdict(ok)}")
    return ok


async def bench(args: argparse.Namespace) -> int:
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        facts = print_machine(redis_server.client())
        for package in ("slack_bolt", "slack_sdk", "aiohttp"):
            facts[package] = importlib.metadata.version(package)
        print(
            f"progress: live update every {LIVE_UPDATE_EVERY_S:g} s, thread batch "
            f"{THREAD_TEXT_MAX} characters or {THREAD_BATCH_EVERY_S:g} s; update budget "
            f"{inspect.signature(UpdateBudget).parameters['per_minute'].default:g}/min"
        )
        result = await run(args, Path(tmp), redis_server.url)
    ok = report(result)
    dump_json(args.out, {"machine": facts, "result": asdict(result)})
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 steps x 200 lines: smoke only")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lines", type=int, default=500, help="lines per step (500)")
    parser.add_argument("--step-s", type=float, default=1.5, help="seconds per step's lines")
    parser.add_argument("--drain-timeout-s", type=float, default=480.0)
    parser.add_argument("--timeline-s", type=float, default=15.0, help="timeline bucket")
    parser.add_argument("--out", help="write the results as JSON too")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
