"""What the bot's watching costs a drain: `chatops queue drain` vs the Node worker alone.

Every run starts from the same state: the private `redis-server` is flushed and the queue is
filled with `--jobs` jobs by Node bullmq `addBulk` in batches of 1,000 (fill.js). Then one of:

  A  worker alone   the fixture worker (`tests/fixtures/worker/worker.js`, `--concurrency`,
                    `--job-ms`) empties the queue; a minimal probe (LLEN wait + LLEN active, one
                    pipelined round trip every `--probe-s`) sees it empty.
  B  with the bot   `python -m commands queue drain sla --env bench --yes` is started first; once
                    it has turned the producer flag off (its watch loop starts right after), the
                    same worker is started, and the same probe runs.

Runs alternate A B A B ... (`--runs` each). The figure compared is the worker's own drain time:
from the first job's `processedOn` to the last job's `finishedOn` (the highest score of the
`completed` set), both stamped by the worker, so neither the probe's period nor the bot's
start-up enters it. Goal: median(B) / median(A) <= 1.05. The time from starting the worker to
the probe seeing the queue empty is reported too.

Then the bot's own load while watching, measured apart so that no worker shares the counters:
the bot drains a static queue (1,000 waiting jobs, no worker, `stall_s` large, `timeout_s` just
past the window, so it times out and exits by itself). Over `--window-s` seconds of its watch
loop: the Redis commands it sent (`INFO commandstats` deltas on the private instance, which only
the bot and this harness use; the harness's own INFO is left out) and its CPU seconds (utime +
stime from /proc/<pid>/stat). The bot's total CPU for each B run comes from `os.wait4`.

Run by hand from the repository root (about 5 minutes; `--quick`: 20,000 jobs, 2 runs each and
a 10 s window, about 1 minute):

    .venv/bin/python benchmarks/drain_overhead.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from common import (
    FIXTURE_DIR,
    WORKER_JS,
    PrivateRedis,
    bot_environ,
    chatops_argv,
    dump_json,
    fill,
    node_env,
    other_clients,
    print_machine,
    private_redis,
    stop_process,
    verdict,
    write_config,
)

PREFIX = "bench"
QUEUE = "sla"
ENV = "bench"
FLAG_KEY = f"{PREFIX}:flags:WORKER_ACCEPT_JOBS"
RATIO_GOAL = 1.05
STATIC_JOBS = 1_000
_START_S = 30.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Settings:
    jobs: int
    runs: int
    concurrency: int
    job_ms: int
    poll_interval_s: float
    probe_s: float
    window_s: float
    drain_timeout_s: float


@dataclass(frozen=True)
class Run:
    mode: str  # "A" worker alone, "B" with the bot
    drain_s: float  # first processedOn -> last finishedOn, stamped by the worker
    observed_s: float  # worker started -> probe saw waiting + active = 0
    loadavg_1m: float  # at the start of the run
    bot_cpu_s: float | None = None  # the whole `chatops queue drain` process
    bot_watch_cpu_s: float | None = None  # from the worker's start to the bot's exit
    bot_watch_s: float | None = None  # wall time of the same span

    def bot_text(self) -> str:
        if self.bot_cpu_s is None or self.bot_watch_cpu_s is None or self.bot_watch_s is None:
            return ""
        return (
            f" · bot CPU {self.bot_cpu_s:.2f} s in all, {self.bot_watch_cpu_s:.2f} s over the "
            f"{self.bot_watch_s:.1f} s it watched ({self.watch_share:.1%} of a core)"
        )

    @property
    def watch_share(self) -> float:
        return (self.bot_watch_cpu_s or 0.0) / (self.bot_watch_s or 1.0)


@dataclass(frozen=True)
class Load:
    window_s: float
    commands: int
    per_command: dict[str, int]
    cpu_s: float

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.window_s


# ---- processes -------------------------------------------------------------------------------


def _wait_for(what: str, check: Any, timeout_s: float = _START_S, period_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(period_s)


def start_worker(pr: PrivateRedis, s: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = node_env(
        pr.url,
        PREFIX,
        QUEUES=QUEUE,
        CONCURRENCY=str(s.concurrency),
        JOB_MS=str(s.job_ms),
        WORKER_NAME="bench",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["node", str(WORKER_JS)], env=env, cwd=FIXTURE_DIR, stdout=out, stderr=out
        )
    return proc


def start_bot(env: dict[str, str], workdir: Path, tag: str) -> subprocess.Popen[bytes]:
    argv = chatops_argv("queue", "drain", QUEUE, "--env", ENV, "--yes")
    with (workdir / f"bot-{tag}.out").open("wb") as out:
        return subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out)


def wait_bot(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, float]:
    """(exit code, CPU seconds) of the bot, reaped with wait4 to read its own rusage."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"the bot did not exit within {timeout_s:.0f} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


# ---- the queue -------------------------------------------------------------------------------


def key(suffix: str) -> str:
    return f"{PREFIX}:{QUEUE}:{suffix}"


def prepare(pr: PrivateRedis, r: redis.Redis, jobs: int) -> None:
    """The same starting state for every run: an empty server, then `jobs` waiting jobs."""
    if other_clients(r):
        raise RuntimeError(f"another client is connected to the private Redis: {r.client_list()}")
    r.flushall()
    fill(pr.url, PREFIX, [QUEUE], jobs)
    if r.llen(key("wait")) != jobs:
        raise RuntimeError("the fill did not leave the expected waiting jobs")


def probe_until_empty(r: redis.Redis, s: Settings) -> None:
    """Poll waiting + active (getJobCounts' lists) every `probe_s` until both are 0."""
    deadline = time.monotonic() + s.drain_timeout_s
    while time.monotonic() < deadline:
        pipe = r.pipeline(transaction=False)
        pipe.llen(key("wait"))
        pipe.llen(key("active"))
        if sum(pipe.execute()) == 0:
            return
        time.sleep(s.probe_s)
    raise RuntimeError(f"the queue did not drain within {s.drain_timeout_s:.0f} s")


def drain_span_s(r: redis.Redis, s: Settings) -> float:
    """First job's processedOn to last job's finishedOn, in the worker's own clock."""
    if r.zcard(key("completed")) != s.jobs or r.zcard(key("failed")):
        raise RuntimeError("not every job completed")
    first: list[str] = r.zrange(key("completed"), 0, 2 * s.concurrency)  # type: ignore[assignment]
    pipe = r.pipeline(transaction=False)
    for job_id in first:
        pipe.hget(key(job_id), "processedOn")
    started_ms = min(int(v) for v in pipe.execute())
    last: list[tuple[str, float]] = r.zrange(key("completed"), -1, -1, withscores=True)  # type: ignore[assignment]
    finished_ms = last[0][1]
    return (finished_ms - started_ms) / 1000


# ---- one run ---------------------------------------------------------------------------------


def run_alone(pr: PrivateRedis, r: redis.Redis, s: Settings, workdir: Path) -> Run:
    prepare(pr, r, s.jobs)
    load = os.getloadavg()[0]
    started = time.monotonic()
    worker = start_worker(pr, s, workdir / "worker.log")
    try:
        probe_until_empty(r, s)
        observed = time.monotonic() - started
    finally:
        stop_process(worker)
    return Run("A", drain_span_s(r, s), observed, load)


def run_with_bot(
    pr: PrivateRedis, r: redis.Redis, s: Settings, env: dict[str, str], workdir: Path, tag: str
) -> Run:
    prepare(pr, r, s.jobs)
    load = os.getloadavg()[0]
    bot = start_bot(env, workdir, tag)
    worker: subprocess.Popen[bytes] | None = None
    try:
        _wait_for("the bot to turn producers off", lambda: r.get(FLAG_KEY) == "false")
        cpu_before = cpu_seconds(bot.pid)
        started = time.monotonic()
        worker = start_worker(pr, s, workdir / "worker.log")
        probe_until_empty(r, s)
        observed = time.monotonic() - started
        code, cpu = wait_bot(bot, timeout_s=30 + 2 * s.poll_interval_s)
        watched = time.monotonic() - started
    finally:
        stop_process(bot)
        if worker is not None:
            stop_process(worker)
    output = (workdir / f"bot-{tag}.out").read_text()
    if code != 0 or f"{QUEUE} drained in" not in output:
        raise RuntimeError(f"the bot's drain failed ({code}):\n{output}")
    return Run(
        "B",
        drain_span_s(r, s),
        observed,
        load,
        bot_cpu_s=cpu,
        bot_watch_cpu_s=cpu - cpu_before,
        bot_watch_s=watched,
    )


def alternate(
    pr: PrivateRedis, r: redis.Redis, s: Settings, env: dict[str, str], workdir: Path
) -> list[Run]:
    runs = []
    for i in range(s.runs):
        for mode in "AB":
            run = (
                run_alone(pr, r, s, workdir)
                if mode == "A"
                else run_with_bot(pr, r, s, env, workdir, str(i))
            )
            print(
                f"run {i + 1} {mode}: drain {run.drain_s:.2f} s · observed "
                f"{run.observed_s:.2f} s · load {run.loadavg_1m:.2f}{run.bot_text()}",
                flush=True,
            )
            runs.append(run)
    return runs


# ---- the bot's own load ----------------------------------------------------------------------


def _command_calls(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def bot_load(pr: PrivateRedis, r: redis.Redis, s: Settings, workdir: Path) -> Load:
    """Commands and CPU of the bot's watch loop alone, on a static queue with no worker."""
    prepare(pr, r, STATIC_JOBS)
    settle_s = 1.0
    drain = {
        "stall_s": 3600,
        "timeout_s": settle_s + s.window_s + 2,
        "poll_interval_s": s.poll_interval_s,
    }
    config = write_config(workdir / "static.yml", {ENV: environment(pr, drain)})
    bot = start_bot(bot_environ(config, workdir), workdir, "static")
    try:
        _wait_for("the bot to turn producers off", lambda: r.get(FLAG_KEY) == "false")
        time.sleep(settle_s)
        calls, cpu = _command_calls(r), cpu_seconds(bot.pid)
        time.sleep(s.window_s)
        calls_after, cpu_after = _command_calls(r), cpu_seconds(bot.pid)
        wait_bot(bot, timeout_s=30)
    finally:
        stop_process(bot)
    delta = {
        name: n - calls.get(name, 0)
        for name, n in calls_after.items()
        if name != "info" and n != calls.get(name, 0)
    }
    return Load(s.window_s, sum(delta.values()), delta, cpu_after - cpu)


# ---- report ----------------------------------------------------------------------------------


def environment(pr: PrivateRedis, drain: dict[str, float]) -> dict[str, Any]:
    return {"redis_url": pr.url, "prefix": PREFIX, "queues": [QUEUE], "drain": drain}


def report(runs: Sequence[Run], load: Load, s: Settings) -> dict[str, Any]:
    alone = [r.drain_s for r in runs if r.mode == "A"]
    bot = [r.drain_s for r in runs if r.mode == "B"]
    ratio = statistics.median(bot) / statistics.median(alone)
    pairs = [b / a for a, b in zip(alone, bot, strict=True)]
    shares = [f"{r.watch_share:.1%}" for r in runs if r.mode == "B"]
    print(
        f"worker alone: median {statistics.median(alone):.2f} s ({_spread(alone)})\n"
        f"with the bot: median {statistics.median(bot):.2f} s ({_spread(bot)})\n"
        f"ratio of medians {ratio:.3f} (goal <= {RATIO_GOAL}) {verdict(ratio <= RATIO_GOAL)}; "
        f"per pair {', '.join(f'{p:.3f}' for p in pairs)}\n"
        f"bot CPU while watching the drains (B runs): {', '.join(shares)} of a core\n"
        f"bot alone on a static queue (poll {s.poll_interval_s:g} s): {load.commands_per_s:.1f} "
        f"commands/s, CPU {load.cpu_s:.2f} s over {load.window_s:g} s "
        f"({load.cpu_s / load.window_s:.1%} of a core)\n"
        f"  commands in the window: {load.per_command}"
    )
    return {
        "settings": asdict(s),
        "runs": [asdict(r) for r in runs],
        "median_alone_s": statistics.median(alone),
        "median_with_bot_s": statistics.median(bot),
        "ratio": ratio,
        "pair_ratios": pairs,
        "bot_load": {**asdict(load), "commands_per_s": load.commands_per_s},
    }


def _spread(xs: Sequence[float]) -> str:
    return f"min {min(xs):.2f} · max {max(xs):.2f} · runs {', '.join(f'{x:.2f}' for x in xs)}"


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k jobs, 2 runs each, 10 s window")
    parser.add_argument("--jobs", type=int, help="jobs per run (default 100,000)")
    parser.add_argument("--runs", type=int, help="runs of each mode (default 3)")
    parser.add_argument("--concurrency", type=int, default=10, help="worker CONCURRENCY")
    parser.add_argument("--job-ms", type=int, default=1, help="worker JOB_MS")
    parser.add_argument("--poll-interval-s", type=float, default=1.0, help="the drain's poll")
    parser.add_argument("--probe-s", type=float, default=0.5, help="the probe's period")
    parser.add_argument("--window-s", type=float, help="bot load window (default 30)")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    settings = Settings(
        jobs=args.jobs or (20_000 if args.quick else 100_000),
        runs=args.runs or (2 if args.quick else 3),
        concurrency=args.concurrency,
        job_ms=args.job_ms,
        poll_interval_s=args.poll_interval_s,
        probe_s=args.probe_s,
        window_s=args.window_s or (10.0 if args.quick else 30.0),
        drain_timeout_s=600.0,
    )
    return settings, args.out


def main(argv: Sequence[str] | None = None) -> int:
    s, out = parse_args(argv)
    started = time.monotonic()
    with private_redis() as pr, tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        workdir = Path(tmp)
        r = pr.client()
        facts = print_machine(r)
        print(f"settings: {asdict(s)}", flush=True)
        drain = {
            "stall_s": 120,
            "timeout_s": s.drain_timeout_s,
            "poll_interval_s": s.poll_interval_s,
        }
        config = write_config(workdir / "chatops.yml", {ENV: environment(pr, drain)})
        runs = alternate(pr, r, s, bot_environ(config, workdir), workdir)
        load = bot_load(pr, r, s, workdir)
        data = report(runs, load, s)
        r.close()
    print(f"total {time.monotonic() - started:.0f} s")
    dump_json(out, {"machine": facts, **data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
