"""50 queues x 20,000 jobs: `/queue status all` latency, and a drain of all of them.

One private `redis-server`; `--queues` queues (q00, q01, ...) each filled with `--jobs` waiting
jobs by Node bullmq `addBulk` in batches of 1,000 (fill.js): 1,000,000 jobs by default.

Status of all queues, on the first fill:

  in process    `bot.service.queue_states(rt, env, None)`, the function both `chatops queue
                status` (queue omitted or `all`) and Slack's `/queue status all` call (one
                MULTI/EXEC of 11 reads per queue through `bot.queues.read_states`), over the
                client `bot.runtime` makes for the environment (`open_runtime`, temporary
                SQLite store). Interleaved with it, in a rotating order: Slack's whole answer,
                `bot.slack.views.query_answer` for `/queue status all` (the same read plus the
                rendering into blocks), the rendering alone (the same function with
                `service.queue_states` replaced by one returning the states already read), and
                a PING. `--warmup` untimed rounds, then `--calls` timed ones: median, p95, p99,
                max.                  goal: queue_states median < 100 ms and p99 < 250 ms
  Slack blocks  the answer is checked against Block Kit (at most 50 blocks, each block valid
                by slack_sdk's own `validate_json`, so a section's text within 3,000
                characters), and for completeness: the table's header and a row for every
                queue must be in it.     goals: fits Block Kit; shows every queue
  CLI           `chatops queue status --env bench --json` (no queue: all of them), one
                untimed run, then `--cli-runs` timed ones (process start, imports, config,
                SQLite store and recovery included), every queue's count checked.
                                         goal: every run < 2 s

Drain of all queues. `--bot-mode all` (default): one `chatops queue drain all --env bench
--yes`, one operation watching every queue. For comparison, one `chatops queue drain qNN` per
queue: `concurrent` starts all of them at once, as a shell `&` loop would (they share the
producer flag: the last one out turns it back on); `sequential` runs them one after the other,
as a `for` loop would. The environment's drain settings: `poll_interval_s`
`--poll-interval-s` (1 s, the default), `timeout_s` 900, `stall_s` 600 (the first drain
watches a full queue while the others start and during the load window). Every run starts
from a flushed server and a fresh fill; runs alternate A B A B (`--runs` each):

  A  worker alone   `--worker-procs` fixture workers (`tests/fixtures/worker/worker.js`, QUEUES
                    = every queue, comma separated, one BullMQ Worker per queue at
                    `--concurrency`, `--job-ms`) empty every queue; a probe (LLEN wait + LLEN
                    active of every queue and GET of the producer flag, one pipelined round
                    trip every `--probe-s`) sees them empty.
  B  with the bot   the drains are started first. Once every one is in its watch step ("▶ 3.
                    wait until" in its output: producers are off), the bot's own load is measured
                    (below); then the same workers and the same probe are started, and the run
                    ends when every queue is empty and every drain has exited.

The compared figure is the workers' own drain time: the earliest `processedOn` (among each
queue's first 2 x concurrency completed jobs) to the highest `completed` score of any queue
(the last `finishedOn`), both stamped by the workers, so neither the probe's period nor the
drains' start-up enters it. Goal: median(B) / median(A) <= 1.05. Reported too: the time from
the workers' start to the probe seeing every queue empty (A, B) and to the last drain exiting
with "qNN drained in" (B), the time the drains took to start, and when the probe first saw the
producer flag back on and how many jobs were left then (the drains share one flag).

Every run checks that every job completed exactly once, per queue: `completed` = `--jobs`,
`failed` = 0, nothing waiting, active, delayed or prioritized, the job id counter = `--jobs`
(nothing added), and the fixture's per-job run counter (`<prefix>:<queue>:fixture:runs`, one
HINCRBY per processing) holds `--jobs` entries, each 1. Goal: all of it, in every run.

The bot's load while watching (B runs; no goal, the figures are reported): with every drain
watching, the queues full and no worker yet, 1 s of settling, then over `--window-s`: the Redis
commands per second (`INFO commandstats` deltas; only the drains and this harness, whose INFO
is left out, use the server) and the drains' CPU (sum of /proc/<pid>/stat utime + stime). And
the drains' CPU, summed (`os.wait4` rusage at each exit, /proc/<pid>/stat before): in all;
before the workers' start (start-up, steps 1-2, the load window); from then until the probe
first saw each drain's own queue empty ("watching", also as a share of a core over the time
until every queue was empty); and after that (its last poll, step 4, the store, the exit; in
sequential mode also the whole of each drain started after its queue was already empty).

Run by hand from the repository root. `--quick` (50 x 1,000 jobs, 1 run each, 50 calls, 1 CLI
run, a 10 s window) is a smoke check, not a measurement. A full run (1,000,000 jobs, 2 runs
each) was estimated at 12-15 minutes on 2 shared cores with 50 drain processes (their start
alone took 25-70 s); with `drain all` there is one. `--jobs 10000` takes about half as long:

    .venv/bin/python benchmarks/many_queues.py [--quick] [--jobs N] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import redis
from common import (
    FIXTURE_DIR,
    WORKER_JS,
    PrivateRedis,
    Summary,
    bot_environ,
    chatops_argv,
    dump_json,
    fill,
    interleaved,
    node_env,
    other_clients,
    print_machine,
    private_redis,
    stop_process,
    time_status_cli,
    verdict,
    write_config,
)
from slack_sdk.models.blocks import Block

from bot import service
from bot.queues import QueueState
from bot.runtime import open_runtime
from bot.slack.blocks import MAX_MESSAGE_BLOCKS
from bot.slack.views import query_answer
from commands.grammar import parse

PREFIX = "bench"
ENV = "bench"
FLAG_KEY = f"{PREFIX}:flags:WORKER_ACCEPT_JOBS"
STATUS_MEDIAN_GOAL_S = 0.100
STATUS_P99_GOAL_S = 0.250
CLI_GOAL_S = 2.0
RATIO_GOAL = 1.05
STALL_S = 600  # the first drain watches while the other 49 start, then the load window
# The drain's watch step started, as the CLI prints it when stdout is not a terminal (the plan
# printed first lists the same step indented, without the mark).
WATCHING = "\u25b6 3. wait until"
_READY_S = 300.0  # for 50 drains to start on 2 shared cores
_EXIT_S = 120.0  # for the drains to exit once their queues are empty (or interrupted)
_CLK_TCK = os.sysconf("SC_CLK_TCK")
STATUS_CALL = "queue_states"
SLACK_CALL = "slack answer"
RENDER_CALL = "rendering alone"
PING = "PING"


@dataclass(frozen=True)
class Settings:
    queues: int
    jobs: int
    runs: int
    calls: int
    warmup: int
    cli_runs: int
    concurrency: int
    job_ms: int
    worker_procs: int
    bot_mode: str
    poll_interval_s: float
    probe_s: float
    window_s: float
    drain_timeout_s: float

    @property
    def names(self) -> tuple[str, ...]:
        width = max(2, len(str(self.queues - 1)))
        return tuple(f"q{i:0{width}d}" for i in range(self.queues))


# ---- processes -------------------------------------------------------------------------------


@dataclass
class Bot:
    """One `chatops queue drain <queue|all>` process."""

    queue: str
    proc: subprocess.Popen[bytes]
    out: Path
    started: float
    cpu_at_workers: float | None = None  # CPU seconds when the workers started
    cpu_at_empty: float | None = None  # when the probe first saw its queue empty
    exited: float | None = None
    code: int | None = None
    cpu_s: float | None = None

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def watching(self) -> bool:
        return WATCHING in self.output()

    def reap(self) -> bool:
        """True once the process has exited; reaped with wait4 to read its own rusage."""
        if self.exited is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if not pid:
            return False
        self.exited = time.monotonic()
        self.code = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return True

    @property
    def drained(self) -> bool:
        said = " drained in " if self.queue == "all" else f"{self.queue} drained in"
        return self.code == 0 and said in self.output()


class Processes:
    """Every process the harness starts, stopped at the end whatever happens."""

    def __init__(self) -> None:
        self.workers: list[subprocess.Popen[bytes]] = []
        self.bots: list[Bot] = []

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop_process(proc)
        self.workers.clear()

    def stop_bots(self) -> None:
        """SIGINT to every drain still running (the CLI puts back what it changed), then wait."""
        running = [b for b in self.bots if not b.reap()]
        for bot in running:
            bot.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + _EXIT_S
        while any(not b.reap() for b in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for bot in running:
            if bot.exited is None:
                stop_process(bot.proc, signal.SIGKILL)
        self.bots.clear()

    def check_workers(self) -> None:
        """Raise if a worker died: the queues would never drain."""
        for proc in self.workers:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited ({proc.returncode}); see worker*.log")

    def stop_all(self) -> None:
        self.stop_bots()
        self.stop_workers()


@contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def start_workers(pr: PrivateRedis, s: Settings, procs: Processes, workdir: Path) -> None:
    names = s.names
    for i in range(s.worker_procs):
        env = node_env(
            pr.url,
            PREFIX,
            QUEUES=",".join(names[i :: s.worker_procs]),
            CONCURRENCY=str(s.concurrency),
            JOB_MS=str(s.job_ms),
            WORKER_NAME=f"bench{i}",
        )
        with (workdir / f"worker{i}.log").open("ab") as log:
            procs.workers.append(
                subprocess.Popen(
                    ["node", str(WORKER_JS)], env=env, cwd=FIXTURE_DIR, stdout=log, stderr=log
                )
            )


def start_bot(queue: str, env: dict[str, str], workdir: Path, tag: str, procs: Processes) -> Bot:
    argv = chatops_argv("queue", "drain", queue, "--env", ENV, "--yes")
    out = workdir / f"bot-{tag}-{queue}.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=f, stderr=f
        )
    bot = Bot(queue, proc, out, time.monotonic())
    procs.bots.append(bot)
    return bot


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def wait_watching(bots: Sequence[Bot], timeout_s: float = _READY_S) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(bots)
    while waiting:
        for bot in [b for b in waiting if b.reap()]:
            raise RuntimeError(f"drain of {bot.queue} exited early ({bot.code}):\n{bot.output()}")
        waiting = [b for b in waiting if not b.watching()]
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} drain(s) not watching after {timeout_s:.0f} s")
        time.sleep(0.1)


# ---- the queues ------------------------------------------------------------------------------


def key(queue: str, suffix: str) -> str:
    return f"{PREFIX}:{queue}:{suffix}"


def prepare(pr: PrivateRedis, r: redis.Redis, s: Settings, jobs: int) -> float:
    """The same starting state for every run: an empty server, then `jobs` in every queue."""
    if other_clients(r):
        raise RuntimeError(f"another client is connected to the private Redis: {r.client_list()}")
    r.flushall()
    seconds = fill(pr.url, PREFIX, s.names, jobs, batch=min(1000, jobs))
    pipe = r.pipeline(transaction=False)
    for q in s.names:
        pipe.llen(key(q, "wait"))
    if any(n != jobs for n in pipe.execute()):
        raise RuntimeError("the fill did not leave the expected waiting jobs")
    return seconds


def remaining(r: redis.Redis, s: Settings) -> tuple[dict[str, int], str | None]:
    """(jobs waiting or active, per queue; the producer flag), in one round trip."""
    pipe = r.pipeline(transaction=False)
    for q in s.names:
        pipe.llen(key(q, "wait"))
        pipe.llen(key(q, "active"))
    pipe.get(FLAG_KEY)
    *lengths, flag = pipe.execute()
    per_queue = [a + b for a, b in zip(lengths[0::2], lengths[1::2], strict=True)]
    return dict(zip(s.names, per_queue, strict=True)), flag


def exactly_once(r: redis.Redis, s: Settings) -> list[str]:
    """What is wrong with the finished run; empty when every job completed exactly once."""
    problems = []
    for q in s.names:
        pipe = r.pipeline(transaction=False)
        pipe.zcard(key(q, "completed"))
        pipe.zcard(key(q, "failed"))
        pipe.llen(key(q, "wait"))
        pipe.llen(key(q, "active"))
        pipe.zcard(key(q, "delayed"))
        pipe.zcard(key(q, "prioritized"))
        pipe.get(key(q, "id"))
        pipe.hvals(key(q, "fixture:runs"))
        completed, failed, wait, active, delayed, prioritized, ids, runs = pipe.execute()
        left = wait + active + delayed + prioritized
        ran_twice = sum(1 for n in runs if n != "1")
        got = (completed, failed, left, int(ids or 0), len(runs), ran_twice)
        if got != (s.jobs, 0, 0, s.jobs, s.jobs, 0):
            problems.append(
                f"{q}: completed {completed}, failed {failed}, left {left}, ids {ids}, "
                f"ran {len(runs)}, ran more than once {ran_twice}"
            )
    return problems


def drain_span_s(r: redis.Redis, s: Settings) -> float:
    """Earliest processedOn to latest finishedOn over all queues, in the workers' own clock."""
    pipe = r.pipeline(transaction=False)
    for q in s.names:
        pipe.zrange(key(q, "completed"), 0, 2 * s.concurrency)
        pipe.zrange(key(q, "completed"), -1, -1, withscores=True)
    replies = pipe.execute()
    finished_ms = max(float(last[0][1]) for last in replies[1::2])
    pipe = r.pipeline(transaction=False)
    for q, ids in zip(s.names, replies[0::2], strict=True):
        for job_id in ids:
            pipe.hget(key(q, job_id), "processedOn")
    started_ms = min(int(v) for v in pipe.execute())
    return (finished_ms - started_ms) / 1000


# ---- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockCheck:
    blocks: int
    section_chars: list[int]
    valid: bool
    error: str
    header_shown: bool
    queues_shown: int
    first_shown: str | None

    @property
    def fits(self) -> bool:
        return self.valid and self.blocks <= MAX_MESSAGE_BLOCKS

    def complete(self, queues: int) -> bool:
        return self.header_shown and self.queues_shown == queues


def check_blocks(answer: dict[str, Any], names: Sequence[str]) -> BlockCheck:
    blocks = answer["blocks"]
    error = ""
    try:
        for b in blocks:
            parsed = Block.parse(b)
            if parsed is None:
                raise ValueError(f"not a block: {b}")
            parsed.validate_json()
    except Exception as exc:  # slack_sdk raises SlackObjectFormationError and others
        error = f"{type(exc).__name__}: {exc}"
    texts = [b.get("text", {}).get("text", "") for b in blocks]
    rows = {line.split(" ", 1)[0].strip("`…") for t in texts for line in t.splitlines()}
    shown = [q for q in names if q in rows]
    return BlockCheck(
        blocks=len(blocks),
        section_chars=[len(t) for t in texts],
        valid=not error,
        error=error,
        header_shown=any(
            line.lstrip("`").startswith("queue ") for t in texts for line in t.splitlines()
        ),
        queues_shown=len(shown),
        first_shown=shown[0] if shown else None,
    )


async def measure_status(
    environ: dict[str, str], s: Settings
) -> tuple[dict[str, Summary], BlockCheck, dict[str, Any]]:
    parsed = parse("queue", f"status all --env {ENV}")
    async with open_runtime(environ) as rt:
        states = await service.queue_states(rt, ENV, None)
        wrong = [x.name for x in states if x.counts.waiting != s.jobs]
        if len(states) != s.queues or wrong:
            raise RuntimeError(f"unexpected waiting counts in {wrong[:5]}")
        answer = await query_answer(rt, parsed, ENV)
        check = check_blocks(answer, s.names)

        async def read_all() -> list[QueueState]:
            return await service.queue_states(rt, ENV, None)

        async def already_read(_rt: object, _env: str, _queue: str | None) -> list[QueueState]:
            return states

        async def render_only() -> object:
            with mock.patch.object(service, "queue_states", already_read):
                return await query_answer(rt, parsed, ENV)

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            STATUS_CALL: read_all,
            SLACK_CALL: lambda: query_answer(rt, parsed, ENV),
            RENDER_CALL: render_only,
            PING: rt.redis_for(ENV).ping,
        }
        return await interleaved(calls, s.calls, s.warmup), check, answer


def time_cli(env: dict[str, str], workdir: Path, s: Settings) -> list[float]:
    return time_status_cli(
        env,
        workdir,
        ENV,
        s.cli_runs,
        lambda shown: (
            len(shown) == s.queues and all(q["counts"]["waiting"] == s.jobs for q in shown)
        ),
    )


@dataclass(frozen=True)
class Load:
    bots: int
    window_s: float
    commands: int
    per_command: dict[str, int]
    cpu_s: float

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.window_s

    def text(self) -> str:
        return (
            f"{self.bots} drain(s) watching, no worker: {self.commands_per_s:.1f} commands/s, "
            f"CPU {self.cpu_s:.2f} s over {self.window_s:g} s "
            f"({self.cpu_s / self.window_s:.1%} of a core)"
        )


# ---- drain runs ------------------------------------------------------------------------------


@dataclass
class Run:
    mode: str  # "A" workers alone, "B" with the drains
    fill_s: float
    loadavg_1m: float
    drain_s: float = 0.0  # first processedOn -> last finishedOn, stamped by the workers
    emptied_s: float = 0.0  # workers started -> probe saw every queue empty
    problems: list[str] = field(default_factory=list)
    # B only
    reported_s: float | None = None  # workers started -> the last drain exited
    bots_ready_s: float | None = None  # first drain started -> every drain watching
    end_to_end_s: float | None = None  # first drain started -> the last drain exited
    drained: int | None = None  # drains that exited 0 saying "<queue> drained in"
    failed_bots: list[str] = field(default_factory=list)
    bot_cpu_s: float | None = None  # sum over the drains: start-up to exit
    bot_start_cpu_s: float | None = None  # the same until the workers' start
    bot_drain_cpu_s: float | None = None  # the same from then until its queue was empty
    bot_finish_cpu_s: float | None = None  # the rest: to its exit (sequential: the later
    # drains, started after the workers, count here whole unless their queue still held jobs)
    load: Load | None = None  # every drain watching, before the workers start
    flag_on_s: float | None = None  # workers started -> the probe first saw the flag "true"
    flag_on_left: tuple[int, int] | None = None  # (jobs, queues) left at that moment
    final_flag: str | None = None

    def text(self) -> str:
        line = (
            f"drain {self.drain_s:.2f} s · emptied {self.emptied_s:.2f} s · fill "
            f"{self.fill_s:.1f} s · load {self.loadavg_1m:.2f}"
        )
        if self.mode == "B":
            line += (
                f"\n    drains: {self.drained}/{len(self.failed_bots) + (self.drained or 0)} "
                f"said drained; the drains launched first all watching "
                f"{self.bots_ready_s:.1f} s after the first started; last exit "
                f"{self.reported_s:.2f} s after the workers' start "
                f"({(self.reported_s or 0) - self.emptied_s:.2f} s after the probe saw every "
                f"queue empty, {self.end_to_end_s:.1f} s after the first drain started)"
                f"\n    drains' CPU: {self.bot_cpu_s:.1f} s in all: {self.bot_start_cpu_s:.1f} s "
                f"before the workers' start; {self.bot_drain_cpu_s:.2f} s watching until each "
                f"one's queue was empty ({(self.bot_drain_cpu_s or 0) / self.emptied_s:.1%} of "
                f"a core over the {self.emptied_s:.1f} s); {self.bot_finish_cpu_s:.2f} s after"
            )
            if self.load is not None:
                line += f"\n    {self.load.text()}"
            if self.flag_on_s is not None and self.flag_on_left is not None:
                jobs, queues = self.flag_on_left
                line += (
                    f"\n    producer flag first seen back on {self.flag_on_s:.2f} s after the "
                    f"workers' start, with {jobs} job(s) in {queues} queue(s) still to drain; "
                    f"final flag {self.final_flag}"
                )
        if self.problems:
            line += f"\n    NOT EXACTLY ONCE: {'; '.join(self.problems[:5])}"
        return line


def run_alone(
    pr: PrivateRedis, r: redis.Redis, s: Settings, workdir: Path, procs: Processes
) -> Run:
    run = Run("A", prepare(pr, r, s, s.jobs), os.getloadavg()[0])
    started = time.monotonic()
    start_workers(pr, s, procs, workdir)
    deadline = started + s.drain_timeout_s
    while sum(remaining(r, s)[0].values()):
        procs.check_workers()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the queues did not drain within {s.drain_timeout_s:.0f} s")
        time.sleep(s.probe_s)
    run.emptied_s = time.monotonic() - started
    procs.stop_workers()
    run.drain_s = drain_span_s(r, s)
    run.problems = exactly_once(r, s)
    return run


def _cpu_now(bot: Bot) -> float:
    """The drain's CPU seconds so far: its rusage once reaped, else /proc/<pid>/stat."""
    if bot.reap():
        return bot.cpu_s or 0.0
    try:
        return cpu_seconds(bot.proc.pid)
    except FileNotFoundError:  # exited between the two calls
        bot.reap()
        return bot.cpu_s or 0.0


def run_with_bot(
    pr: PrivateRedis,
    r: redis.Redis,
    s: Settings,
    env: dict[str, str],
    workdir: Path,
    tag: str,
    procs: Processes,
) -> Run:
    run = Run("B", prepare(pr, r, s, s.jobs), os.getloadavg()[0])
    pending = list(s.names)
    first_started = time.monotonic()
    if s.bot_mode == "all":
        launch, pending = ["all"], []
    else:
        launch = list(pending) if s.bot_mode == "concurrent" else pending[:1]
        del pending[: len(launch)]
    bots = [start_bot(q, env, workdir, tag, procs) for q in launch]
    wait_watching(bots)
    run.bots_ready_s = time.monotonic() - first_started
    if s.window_s > 0:
        run.load = watch_load(r, s, bots)
    for bot in bots:
        bot.cpu_at_workers = _cpu_now(bot)
    started = time.monotonic()
    start_workers(pr, s, procs, workdir)
    deadline = started + s.drain_timeout_s + _EXIT_S
    emptied: float | None = None
    left = dict.fromkeys(s.names, s.jobs)
    next_probe = started
    while True:
        now = time.monotonic()
        if now >= next_probe:
            next_probe = now + s.probe_s
            procs.check_workers()
            left, flag = remaining(r, s)
            jobs = sum(left.values())
            for bot in bots:
                own = jobs if bot.queue == "all" else left[bot.queue]
                if bot.cpu_at_empty is None and not own:
                    bot.cpu_at_empty = _cpu_now(bot)
            if emptied is None and jobs == 0:
                emptied = now
            if run.flag_on_s is None and flag == "true":
                run.flag_on_s = now - started
                run.flag_on_left = (jobs, sum(1 for n in left.values() if n))
        if s.bot_mode == "sequential" and pending and all(b.reap() for b in bots):
            bots.append(start_bot(pending.pop(0), env, workdir, tag, procs))
            bots[-1].cpu_at_workers = 0.0  # it starts after the workers: all its CPU counts
            if not left[bots[-1].queue]:  # nothing to watch: its CPU is all start and finish
                bots[-1].cpu_at_empty = 0.0
        if emptied is not None and not pending and all(b.reap() for b in bots):
            break
        if now > deadline:
            raise RuntimeError(f"not drained within {s.drain_timeout_s + _EXIT_S:.0f} s")
        time.sleep(0.05)
    procs.stop_workers()
    procs.bots.clear()  # all reaped
    run.emptied_s = emptied - started
    last_exit = max(b.exited or 0.0 for b in bots)
    run.reported_s = last_exit - started
    run.end_to_end_s = last_exit - first_started
    run.drained = sum(1 for b in bots if b.drained)
    run.failed_bots = [f"{b.queue} ({b.code})" for b in bots if not b.drained]
    run.bot_cpu_s = sum(b.cpu_s or 0.0 for b in bots)
    for b in bots:  # exited before the probe saw its queue empty: it watched until its exit
        b.cpu_at_empty = b.cpu_s if b.cpu_at_empty is None else b.cpu_at_empty
    run.bot_start_cpu_s = sum(b.cpu_at_workers or 0.0 for b in bots)
    run.bot_drain_cpu_s = sum((b.cpu_at_empty or 0.0) - (b.cpu_at_workers or 0.0) for b in bots)
    run.bot_finish_cpu_s = run.bot_cpu_s - run.bot_start_cpu_s - run.bot_drain_cpu_s
    run.final_flag = r.get(FLAG_KEY)  # type: ignore[assignment]
    run.drain_s = drain_span_s(r, s)
    run.problems = exactly_once(r, s)
    for b in bots:
        if not b.drained:
            print(f"drain of {b.queue} exited {b.code}:\n{b.output()[-2000:]}", flush=True)
    return run


def alternate(
    pr: PrivateRedis,
    r: redis.Redis,
    s: Settings,
    env: dict[str, str],
    workdir: Path,
    procs: Processes,
) -> list[Run]:
    runs = []
    for i in range(s.runs):
        for mode in "AB":
            if mode == "A":
                run = run_alone(pr, r, s, workdir, procs)
            else:
                run = run_with_bot(pr, r, s, env, workdir, str(i), procs)
            print(f"run {i + 1} {mode}: {run.text()}", flush=True)
            runs.append(run)
    return runs


# ---- the bot's own load ----------------------------------------------------------------------


def _command_calls(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def watch_load(r: redis.Redis, s: Settings, bots: Sequence[Bot]) -> Load:
    """Commands and CPU of the drains' watch loops alone: every drain watching, the queues
    still full, no worker yet. Only the drains and this harness (INFO, left out) use Redis."""
    time.sleep(1.0)
    calls, cpu = _command_calls(r), sum(cpu_seconds(b.proc.pid) for b in bots)
    time.sleep(s.window_s)
    calls_after, cpu_after = _command_calls(r), sum(cpu_seconds(b.proc.pid) for b in bots)
    delta = {
        name: n - calls.get(name, 0)
        for name, n in calls_after.items()
        if name != "info" and n != calls.get(name, 0)
    }
    return Load(len(bots), s.window_s, sum(delta.values()), delta, cpu_after - cpu)


# ---- report ----------------------------------------------------------------------------------


def environment(pr: PrivateRedis, s: Settings, drain: dict[str, float]) -> dict[str, Any]:
    return {"redis_url": pr.url, "prefix": PREFIX, "queues": list(s.names), "drain": drain}


def report_status(
    s: Settings, latencies: dict[str, Summary], check: BlockCheck, cli_s: Sequence[float]
) -> dict[str, Any]:
    status = latencies[STATUS_CALL]
    median_ok = status.median < STATUS_MEDIAN_GOAL_S
    p99_ok = status.p99 < STATUS_P99_GOAL_S
    cli_ok = max(cli_s) < CLI_GOAL_S
    complete = check.complete(s.queues)
    for name, summary in latencies.items():
        print(f"{name:>16}: {summary.ms()}")
    print(
        f"CLI `chatops queue status --env {ENV} --json`: "
        f"{', '.join(f'{t:.2f} s' for t in cli_s)}\n"
        f"Slack answer: {check.blocks} blocks, section texts {check.section_chars} characters; "
        f"Block Kit {'valid' if check.valid else 'INVALID: ' + check.error}; header "
        f"{'shown' if check.header_shown else 'CUT'}; {check.queues_shown}/{s.queues} queues "
        f"shown (first shown: {check.first_shown})\n"
        f"queue_states median {status.median * 1e3:.2f} ms (goal < "
        f"{STATUS_MEDIAN_GOAL_S * 1e3:.0f} ms) {verdict(median_ok)}\n"
        f"queue_states p99 {status.p99 * 1e3:.2f} ms (goal < {STATUS_P99_GOAL_S * 1e3:.0f} ms) "
        f"{verdict(p99_ok)}\n"
        f"CLI slowest run {max(cli_s):.2f} s (goal < {CLI_GOAL_S:g} s) {verdict(cli_ok)}\n"
        f"Slack answer fits Block Kit (<= {MAX_MESSAGE_BLOCKS} blocks, each valid) "
        f"{verdict(check.fits)}\n"
        f"Slack answer shows the header and all {s.queues} queues {verdict(complete)}",
        flush=True,
    )
    return {
        "latency_s": {name: vars(x) for name, x in latencies.items()},
        "cli_s": list(cli_s),
        "slack_blocks": asdict(check),
        "verdicts": {
            "status_median": median_ok,
            "status_p99": p99_ok,
            "cli": cli_ok,
            "slack_fits": check.fits,
            "slack_complete": complete,
        },
    }


def report_drain(runs: Sequence[Run], s: Settings) -> dict[str, Any]:
    alone = [r.drain_s for r in runs if r.mode == "A"]
    bot = [r.drain_s for r in runs if r.mode == "B"]
    ratio = statistics.median(bot) / statistics.median(alone)
    pairs = [b / a for a, b in zip(alone, bot, strict=True)]
    once = all(not r.problems for r in runs)
    said = all(not r.failed_bots for r in runs if r.mode == "B")
    lag = [(r.reported_s or 0) - r.emptied_s for r in runs if r.mode == "B"]
    print(
        f"workers alone: median {statistics.median(alone):.2f} s ({_spread(alone)})\n"
        f"with the drains ({s.bot_mode}): median {statistics.median(bot):.2f} s "
        f"({_spread(bot)})\n"
        f"ratio of medians {ratio:.3f} (goal <= {RATIO_GOAL}) {verdict(ratio <= RATIO_GOAL)}; "
        f"per pair {', '.join(f'{p:.3f}' for p in pairs)}\n"
        f"last drain's exit after every queue was empty: {_spread(lag)}\n"
        f"every job completed exactly once, none failed, in every run {verdict(once)}\n"
        f"every drain said its queue drained {verdict(said)}",
        flush=True,
    )
    for run in runs:
        if run.load is not None:
            print(f"  commands in the load window: {run.load.per_command}")
    return {
        "runs": [asdict(r) for r in runs],
        "median_alone_s": statistics.median(alone),
        "median_with_bot_s": statistics.median(bot),
        "ratio": ratio,
        "pair_ratios": pairs,
        "bot_load": [
            {**asdict(r.load), "commands_per_s": r.load.commands_per_s}
            for r in runs
            if r.load is not None
        ],
        "verdicts": {"ratio": ratio <= RATIO_GOAL, "exactly_once": once, "all_drained": said},
    }


def _spread(xs: Sequence[float]) -> str:
    return f"min {min(xs):.2f} · max {max(xs):.2f} · runs {', '.join(f'{x:.2f}' for x in xs)}"


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, str | None, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="50 x 1,000 jobs, 1 run each, 50 calls, 10 s window"
    )
    parser.add_argument("--queues", type=int, default=50, help="queues (default 50)")
    parser.add_argument("--jobs", type=int, help="jobs per queue (default 20,000)")
    parser.add_argument("--runs", type=int, help="drain runs of each mode (default 2)")
    parser.add_argument("--calls", type=int, help="timed status calls (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed status calls first")
    parser.add_argument("--cli-runs", type=int, help="timed CLI runs (default 3)")
    parser.add_argument("--concurrency", type=int, default=50, help="worker CONCURRENCY")
    parser.add_argument("--job-ms", type=int, default=0, help="worker JOB_MS")
    parser.add_argument("--worker-procs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--bot-mode",
        choices=("all", "concurrent", "sequential"),
        default="all",
        help="one drain per queue, all at once or one after the other",
    )
    parser.add_argument("--poll-interval-s", type=float, default=1.0, help="the drains' poll")
    parser.add_argument("--probe-s", type=float, default=0.5, help="the probe's period")
    parser.add_argument("--window-s", type=float, help="bot load window (default 30)")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("--keep", help="work in this directory and keep it (logs, outputs)")
    args = parser.parse_args(argv)
    settings = Settings(
        queues=args.queues,
        jobs=args.jobs or (1_000 if args.quick else 20_000),
        runs=args.runs or (1 if args.quick else 2),
        calls=args.calls or (50 if args.quick else 200),
        warmup=args.warmup,
        cli_runs=args.cli_runs or (1 if args.quick else 3),
        concurrency=args.concurrency,
        job_ms=args.job_ms,
        worker_procs=args.worker_procs,
        bot_mode=args.bot_mode,
        poll_interval_s=args.poll_interval_s,
        probe_s=args.probe_s,
        window_s=args.window_s or (10.0 if args.quick else 30.0),
        drain_timeout_s=900.0,
    )
    return settings, args.out, args.keep


def main(argv: Sequence[str] | None = None) -> int:
    s, out, keep = parse_args(argv)
    started = time.monotonic()
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
    with (
        private_redis() as pr,
        nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="bench-many-") as tmp,
        processes() as procs,
    ):
        workdir = Path(tmp)
        r = pr.client()
        facts = print_machine(r)
        print(f"settings: {asdict(s)}", flush=True)
        drain = {
            "stall_s": STALL_S,
            "timeout_s": s.drain_timeout_s,
            "poll_interval_s": s.poll_interval_s,
        }
        config = write_config(workdir / "chatops.yml", {ENV: environment(pr, s, drain)})
        env = bot_environ(config, workdir)
        fill_s = prepare(pr, r, s, s.jobs)
        print(f"filled {s.queues} x {s.jobs:,} jobs in {fill_s:.1f} s", flush=True)
        latencies, check, answer = asyncio.run(measure_status(env, s))
        cli_s = time_cli(env, workdir, s)
        status = report_status(s, latencies, check, cli_s)
        runs = alternate(pr, r, s, env, workdir, procs)
        drained = report_drain(runs, s)
        r.close()
    print(f"total {time.monotonic() - started:.0f} s")
    dump_json(
        out,
        {
            "machine": facts,
            "settings": asdict(s),
            "status_fill_s": fill_s,
            "status": status,
            "slack_answer": answer,
            "drain": drained,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
