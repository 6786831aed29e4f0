"""Readiness detection latency after the marker is written: from the moment a restarted worker
prints its readiness marker to the moment the bot's `Target.wait_ready` returns it.

After a restart the bot takes a log cursor, reloads the worker, and waits in
`wait_ready(cfg.ready_regex, since=cursor, ...)` for a log line matching the configured pattern
(here the default, `worker:ready|BullMQ queue ready`); the operator waits on that in Slack.

Targets (`--targets`):

  pm2      the main case. A real pm2 daemon (7.0.4, tests/fixtures/worker/node_modules) in a
           private PM2_HOME (tests/fixtures/pm2.py `pm2_home()`, killed on exit), the app in
           fork mode (pm2's default). `Pm2Target.wait_ready` tails pm2's out log file: one stat
           + read, then `_POLL_S` (0.2 s) of sleep; once a second (`_HEALTH_EVERY_S`) a health
           check, one `pm2 jlist` run inside the same loop, during which the log is not read.
           Before its first read it runs `pm2 jlist` too (the baseline status; the first
           health check comes a period later). Expected bound: 0.2 s + one `pm2 jlist` + a
           few ms.
  systemd  `SystemdTarget.wait_ready`, the bot's real code, against the scripted systemctl and
           journalctl of tests/fixtures/fake_systemd.py (systemd cannot run here). Each poll
           runs `journalctl --after-cursor`, then `systemctl show`, then sleeps `_POLL_S`
           (0.25 s). Expected bound: 0.25 s + one of each call. Only the bot's side is real:
           the fake's binaries are Python scripts (an interpreter start each; real ones are
           C), and the worker's stdout goes straight to a file, with no journald in between.

Both bounds are printed with the calls' durations timed just before the runs (10 each).

The worker is benchmarks/ready_app.js (the fixture worker.js stays as the tests use it): a real
BullMQ Worker on a private redis-server (common.private_redis, never 127.0.0.1:6379) that, once
ready, waits for the harness's go message carrying the wall-clock moment to print the marker,
then stamps (`performance.timeOrigin + performance.now()`, epoch ms, sub-millisecond), prints
`worker:ready` and pushes the stamp to Redis (after the line, so the push is not in the stamp).

One run, as the restart plan does it: `log_cursor()`, `reload()` (pm2 reload / systemctl
restart: the old process exits, a new one starts), t0 = time.time(), the go message
(at = t0 + delay), `wait_ready(...)`, t1 = time.time() when it returns. Checked: the line is
`worker:ready`, it is the log file's last line, the pid is new. Recorded:
  latency  t1 - stamp: the figure.
  offset   stamp - t0: the marker's actual place (later than asked when the new process was
           not ready yet: it prints at once then).
  in file  the log file's mtime - stamp: pm2's relay from the app's stdout pipe to its log
           file. The mtime is floored to the kernel tick (4 ms here, CONFIG_HZ=250; measured:
           writes more than a tick apart get coarse times), so the write lies within 4 ms
           after it: this says the relay is a few ms at most, no more precisely.

Delays (`--delays`, default 0.2,1,3 s after `wait_ready` starts) put the marker at different
phases of the poll loop, so the poll period and the health checks show as a spread. Each round
runs every delay once, in a rotating order, so load drift hits them alike; the targets run one
after the other, each after one untimed warm-up run.

Clocks: the stamp (Node) and t0/t1 (Python `time.time()`) are the same machine's wall clock,
read by two processes: comparable to about 1 ms. As a check each stamp is compared with
`Date.now()` taken just before it (whole ms, so 0..1 ms is expected).

Goal: p99 of the latency <= 1 s per target, all delays together (the operator waits on it).
The code's own bound (poll period + one loop's subprocess calls: 0.3-0.5 s here, with the
load) is printed next to it, with the number of runs above it.

Run by hand from the repository root (30 runs per delay and target: about 8 minutes, pm2 ~4
and systemd ~3.5, a round of 3 delays taking 7-8 s; `--quick`: 2 runs per delay, pm2 only,
about 20 s, `--quick --targets pm2,systemd` about 35 s; a smoke check, not a measurement):

    .venv/bin/python benchmarks/readiness.py [--quick] [--runs N] [--delays 0.2,1,3]
        [--targets pm2,systemd] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import Summary, dump_json, print_machine, private_redis, verdict
from redis.asyncio import Redis

from bot.abc import LogCursor, Target
from bot.config import DEFAULT_READY_PATTERN
from bot.targets import pm2 as pm2_target
from bot.targets import systemd as systemd_target
from tests.fixtures.fake_systemd import define_unit, install, stop_unit
from tests.fixtures.pm2 import pm2_home, tool_path

APP_JS = Path(__file__).resolve().parent / "ready_app.js"
APP = "bench-ready"
UNIT = "bench-ready.service"
READY = re.compile(DEFAULT_READY_PATTERN)
MARKER = b"worker:ready\n"
GOAL_P99_S = 1.0
READY_TIMEOUT_S = 30.0
STAMP_WAIT_S = 10
COST_CALLS = 10
TARGETS = ("pm2", "systemd")


@dataclass(frozen=True)
class Sample:
    delay_s: float  # asked: marker this long after wait_ready starts
    offset_s: float  # got: marker stamp - t0
    latency_s: float  # wait_ready's return - marker stamp
    in_file_s: float  # the log file's mtime - marker stamp (mtime: 4 ms ticks, see above)
    print_s: float  # the console.log call itself
    clock_check_s: float  # marker stamp - Date.now() just before it (whole ms, truncated)
    pid: int


@dataclass
class Bench:
    """One target under test, its keys in the private Redis, and its costs."""

    name: str
    target: Target
    redis: Redis
    prefix: str
    log_file: Callable[[LogCursor], Path]
    start_cursor: LogCursor  # before the app's first marker
    costs: dict[str, Summary] = field(default_factory=dict)
    poll_s: float = 0.0
    last_pid: int | None = None

    @property
    def go_key(self) -> str:
        return f"{self.prefix}:readiness:go"

    @property
    def marks_key(self) -> str:
        return f"{self.prefix}:readiness:marks"

    def bound_s(self, which: str = "median") -> float:
        """The poll period plus one loop's subprocess calls: the most the code should take."""
        return self.poll_s + sum(getattr(c, which) for c in self.costs.values())


def app_env(url: str, prefix: str) -> dict[str, str]:
    return {"REDIS_URL": url, "BULLMQ_PREFIX": prefix, "QUEUE": "bench-ready"}


def last_write(path: Path) -> tuple[float, bytes]:
    """The file's mtime (epoch s) and its last bytes."""
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        f.seek(max(0, st.st_size - len(MARKER)))
        return st.st_mtime_ns / 1e9, f.read()


async def sink(line: str) -> None:
    """Stands in for the plan's ctx.emit (progress lines to Slack): does nothing."""


async def send_go(bench: Bench, at_s: float) -> None:
    await bench.redis.rpush(bench.go_key, json.dumps({"at": at_s * 1000}))


async def one_run(bench: Bench, delay_s: float) -> Sample:
    """As the restart plan does it: log_cursor, reload, wait_ready; the marker at +delay_s."""
    await bench.redis.delete(bench.go_key, bench.marks_key)
    cursor = await bench.target.log_cursor()
    await bench.target.reload(on_line=sink)
    t0 = time.time()
    await send_go(bench, t0 + delay_s)
    line = await bench.target.wait_ready(
        READY, since=cursor, timeout_s=READY_TIMEOUT_S, on_line=sink
    )
    t1 = time.time()
    popped = await bench.redis.blpop([bench.marks_key], timeout=STAMP_WAIT_S)
    if popped is None:
        raise RuntimeError(f"{bench.name}: wait_ready returned {line!r} but no stamp came")
    mark = json.loads(popped[1])
    mtime, tail = await asyncio.to_thread(last_write, bench.log_file(cursor))
    if line != "worker:ready" or tail != MARKER:
        raise RuntimeError(f"{bench.name}: unexpected line {line!r} or log tail {tail!r}")
    if mark["pid"] == bench.last_pid:
        raise RuntimeError(f"{bench.name}: the reload left the same process, pid {mark['pid']}")
    bench.last_pid = mark["pid"]
    stamp = mark["before"] / 1000
    return Sample(
        delay_s=delay_s,
        offset_s=stamp - t0,
        latency_s=t1 - stamp,
        in_file_s=mtime - stamp,
        print_s=(mark["after"] - mark["before"]) / 1000,
        clock_check_s=(mark["before"] - mark["date"]) / 1000,
        pid=mark["pid"],
    )


async def timed(call: Callable[[], Awaitable[object]], n: int) -> Summary:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return Summary.of(samples)


async def first_ready(bench: Bench) -> None:
    """The app's first start: its marker at once, waited for from the start of its log."""
    await send_go(bench, time.time())
    await bench.target.wait_ready(READY, since=bench.start_cursor, timeout_s=READY_TIMEOUT_S)
    popped = await bench.redis.blpop([bench.marks_key], timeout=STAMP_WAIT_S)
    if popped is None:
        raise RuntimeError(f"{bench.name}: the app printed its marker but pushed no stamp")
    bench.last_pid = json.loads(popped[1])["pid"]


def kill_tagged(entry: str) -> None:
    """SIGKILL our processes whose environment holds `entry` (what a cleanup left behind)."""
    needle = entry.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)


@contextlib.asynccontextmanager
async def pm2_bench(url: str, redis: Redis) -> AsyncIterator[Bench]:
    """The app under a private pm2 daemon (fork mode), killed on exit whatever happened."""
    async with pm2_home() as home:
        prefix = "bench-pm2"
        app = {"name": APP, "script": str(APP_JS), "cwd": str(APP_JS.parent)}
        await home.start({**app, "env": app_env(url, prefix)})
        target = home.target(APP)
        bench = Bench(
            "pm2",
            target,
            redis,
            prefix,
            log_file=lambda cursor: Path(cursor.path),
            start_cursor=await home.start_cursor(APP),
            poll_s=pm2_target._POLL_S,
        )
        await first_ready(bench)
        bench.costs = {"pm2 jlist (status())": await timed(target.status, COST_CALLS)}
        yield bench


@contextlib.asynccontextmanager
async def systemd_bench(url: str, redis: Redis) -> AsyncIterator[Bench]:
    """The app as a unit of the scripted systemd; its processes killed on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-systemd-") as tmp:
        state = Path(tmp) / "systemd"
        systemctl, journalctl = install(Path(tmp) / "fake-bin")
        node = shutil.which("node", path=tool_path())
        if node is None:
            raise RuntimeError("node is not installed")
        prefix = "bench-systemd"
        tag = f"BENCH_READINESS_STATE={state}"
        define_unit(
            state,
            UNIT,
            exec=[node, str(APP_JS)],
            cwd=str(APP_JS.parent),
            environment={**app_env(url, prefix), tag.split("=")[0]: str(state)},
            timeout_stop_s=10,
        )
        env = {"FAKE_SYSTEMD_DIR": str(state), "PATH": tool_path()}
        try:
            start = [str(systemctl), "start", UNIT]
            await asyncio.to_thread(subprocess.run, start, env=env, check=True)
            target = systemd_target.SystemdTarget(
                unit=UNIT, systemctl=str(systemctl), journalctl=str(journalctl), env=env
            )
            journal = state / "journal" / f"{UNIT}.log"
            bench = Bench(
                "systemd",
                target,
                redis,
                prefix,
                log_file=lambda _: journal,
                start_cursor=LogCursor(path="", offset=0),  # no cursor: the whole journal
                poll_s=systemd_target._POLL_S,
            )
            await first_ready(bench)
            bench.costs = {
                "systemctl show (status())": await timed(target.status, COST_CALLS),
                "journalctl (log_cursor())": await timed(target.log_cursor, COST_CALLS),
            }
            yield bench
        finally:
            with contextlib.suppress(OSError, ValueError):
                stop_unit(state, UNIT)
            kill_tagged(tag)


async def measure(bench: Bench, delays: Sequence[float], runs: int) -> list[Sample]:
    """One untimed run, then `runs` rounds, each running every delay once in a rotating order."""
    started = time.monotonic()
    await one_run(bench, delays[0])
    samples = []
    for i in range(runs):
        shift = i % len(delays)
        for delay in list(delays[shift:]) + list(delays[:shift]):
            samples.append(await one_run(bench, delay))
        elapsed = time.monotonic() - started
        print(f"{bench.name}: round {i + 1}/{runs} done ({elapsed:.0f} s)", flush=True)
    return samples


def ms(seconds: float, decimals: int = 0) -> str:
    return f"{seconds * 1e3:.{decimals}f} ms"


def report(bench: Bench, samples: Sequence[Sample], delays: Sequence[float]) -> dict[str, Any]:
    costs = " · ".join(
        f"{name}: median {ms(s.median)}, max {ms(s.max)}" for name, s in bench.costs.items()
    )
    print(f"\n{bench.name}: {costs}")
    print(
        f"{bench.name}: expected bound (poll {ms(bench.poll_s)} + those calls) "
        f"{ms(bench.bound_s())} at their medians, {ms(bench.bound_s('max'))} at their maxima"
    )
    per_delay = {}
    for delay in delays:
        mine = [s for s in samples if s.delay_s == delay]
        latency = Summary.of([s.latency_s for s in mine])
        in_file = Summary.of([s.in_file_s for s in mine])
        offsets = sorted(s.offset_s for s in mine)
        print(
            f"{bench.name} delay {delay:g} s, marker at +{offsets[0]:.3f}..+{offsets[-1]:.3f} s: "
            f"latency {latency.ms()}\n    log file mtime - stamp: {in_file.ms()}"
        )
        per_delay[f"{delay:g}"] = {"latency_s": vars(latency), "in_file_s": vars(in_file)}
    overall = Summary.of([s.latency_s for s in samples])
    over = sum(s.latency_s > bench.bound_s("max") for s in samples)
    ok = overall.p99 <= GOAL_P99_S
    checks = sorted(s.clock_check_s for s in samples)
    print(
        f"{bench.name}: stamp - Date.now() {ms(checks[0], 2)}..{ms(checks[-1], 2)} (whole ms "
        f"truncated: expect 0..1 ms); console.log took at most "
        f"{ms(max(s.print_s for s in samples), 2)}\n"
        f"{bench.name} all delays: latency {overall.ms()}\n"
        f"{bench.name}: {over} of {len(samples)} above the bound at maxima\n"
        f"{bench.name}: p99 {ms(overall.p99)} (goal <= {ms(GOAL_P99_S)}) {verdict(ok)}"
    )
    return {
        "pass": ok,
        "poll_s": bench.poll_s,
        "costs_s": {name: vars(s) for name, s in bench.costs.items()},
        "expected_bound_s": {"median": bench.bound_s(), "max": bench.bound_s("max")},
        "latency_s": vars(overall),
        "above_bound": over,
        "per_delay": per_delay,
        "samples": [asdict(s) for s in samples],
    }


BENCHES = {"pm2": pm2_bench, "systemd": systemd_bench}


async def run_all(url: str, args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results: dict[str, Any] = {}
    redis = Redis.from_url(url, decode_responses=True)
    try:
        for name in args.targets:
            async with BENCHES[name](url, redis) as bench:
                samples = await measure(bench, args.delays, args.runs)
            results[name] = report(bench, samples, args.delays)
    finally:
        await redis.aclose()
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 runs per delay, pm2 only")
    parser.add_argument("--runs", type=int, help="timed runs per delay and target (default 30)")
    parser.add_argument("--delays", help="seconds after wait_ready starts (default 0.2,1,3)")
    parser.add_argument("--targets", help=f"comma list of {', '.join(TARGETS)} (default all)")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 30)
    args.delays = [float(d) for d in (args.delays or "0.2,1,3").split(",")]
    args.targets = (args.targets or ("pm2" if args.quick else ",".join(TARGETS))).split(",")
    if args.runs < 2 or any(d < 0 for d in args.delays) or not set(args.targets) <= set(TARGETS):
        parser.error("--runs >= 2, --delays >= 0, --targets among " + ", ".join(TARGETS))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        with private_redis() as pr:
            facts = print_machine(pr.client())
            results = asyncio.run(run_all(pr.url, args))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM (see run_all)
        print("interrupted: pm2 daemon, units and redis-server stopped", file=sys.stderr)
        return 130
    print(f"total {time.monotonic() - started:.0f} s")
    ok = all(r["pass"] for r in results.values())
    print(f"verdict: {verdict(ok)} (p99 <= {ms(GOAL_P99_S)} for {', '.join(results)})")
    dump_json(
        args.out,
        {
            "machine": facts,
            "quick": args.quick,
            "runs": args.runs,
            "delays_s": args.delays,
            "goal_p99_s": GOAL_P99_S,
            "targets": results,
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
