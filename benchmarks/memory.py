"""Memory of a real `chatops serve` process: idle, with 10,000 operations in its store, and while
it runs operations end to end through Slack (issue 6: no growth per operation).

Processes: this one (the harness, with tests/slack FakeSlack in its event loop, rate limits OFF
as in slack_ack.py, and tests/slack SlackDriver signing the requests), a private redis-server
(benchmarks/common.py) and the bot itself, started as the image starts it:

    python -m commands serve --port P --host 127.0.0.1

with SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET / SLACK_API_URL pointing at the fake,
CHATOPS_CONFIG a temporary YAML (one environment `bench`, queue `q`, channel `#ops-bench`, an
operator role from a Slack user group) and CHATOPS_DATABASE_URL a temporary SQLite file. The
bot also runs with PYTHONMALLOCSTATS=1: CPython then prints pymalloc's statistics to stderr each
time it creates a new 1 MiB object arena (and at exit), which the harness reads from the bot's
log to see Python-level memory from outside, without any hook in the bot.

Memory is read from outside only: VmRSS, RssAnon, VmHWM from /proc/<pid>/status, and the
pymalloc figures above (arenas in use, bytes in allocated blocks at the last new arena).

Phases:
  1. empty store: start serve, let it settle (--settle-s, 10 s), sample --samples times 1 s
     apart. Meanwhile the harness seeds a SECOND SQLite file with --seed operations (10,000)
     through the bot's own Store API (create_operation, start_step, finish_step,
     finish_operation, audit: what a finished one-step pause leaves), so the seeding's ~100 s
     overlap the idle phase instead of adding to the run.
  2. stop serve (SIGTERM); start it again on the seeded store; settle and sample; then 3 x
     `/ops history` and 3 x `/queue status q` (each waited for: its response_url answer in the
     fake); settle and sample again.
  3. same process: N operations end to end, `/queue pause q` and `/queue resume q` alternately,
     each: signed slash command -> the modal is opened and its plan filled (views.update) ->
     view_submission -> wait for the final `chat.update` (": succeeded") in the fake. RSS every
     --sample-every operations; slope by least squares (KiB per operation) over the samples
     after --warmup operations.

N defaults to 200, not 1,000: every operation waits for its final progress message, and the
bot's outbox paces Slack (chat.postMessage about one a second per channel, chat.update 40 a
minute per process), so an operation takes 1.5 s (some 3 s) end to end and 1,000 would take
about 25 minutes. Run by hand from the repository root (about 9.5 minutes: seeding 10,000
operations ~95 s, overlapping phase 1; 200 operations ~7 min; `--quick`: 1,000 seeded, 30 end to
end, ~1 minute, a smoke check whose numbers are not measurements). Results: docs/benchmarks.md,
"Memory".

    .venv/bin/python benchmarks/memory.py [--quick] [--ops N] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from common import (
    ROOT,
    VENV_PYTHON,
    bot_environ,
    dump_json,
    print_log_warnings,
    print_machine,
    private_redis,
    verdict,
)

from bot.store import Store
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack

SECRET = "bench-signing-secret"
ENV, PREFIX, QUEUE = "bench", "bench", "q"
CHANNEL, CHANNEL_NAME = "C_BENCH", "ops-bench"
GROUP, USER = "S_BENCH_OPS", "U_BENCH"
SLOPE_GOAL_KIB = 1.0
STORE_GOAL = 0.10  # RSS with the seeded store within 10 % of the empty-store idle figure
READY_S = 60.0
STEP_TIMEOUT_S = 60.0


# ---- reading the bot's memory from outside ---------------------------------------------------


@dataclass(frozen=True)
class Sample:
    label: str
    t_s: float  # since the harness started
    ops: int  # operations run end to end so far (phase 3)
    rss_kib: int
    anon_kib: int
    hwm_kib: int
    arenas: int | None  # pymalloc arenas in use at the last new-arena report
    arena_reports: int  # how many new arenas the process has created so far
    pymalloc_kib: int | None  # bytes in allocated pymalloc blocks at that report


_ARENAS = re.compile(r"^# arenas allocated current\s*=\s*([\d,]+)", re.M)
_BLOCKS = re.compile(r"^# bytes in allocated blocks\s*=\s*([\d,]+)", re.M)


class Bot:
    """One `chatops serve` process and its log (stderr and stdout, PYTHONMALLOCSTATS included)."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self._log_read = 0
        self._arena_reports = 0
        self._arenas: int | None = None
        self._blocks: int | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def _read_mallocstats(self) -> None:
        with self.log.open("rb") as f:
            f.seek(self._log_read)
            chunk = f.read()
        # Only whole reports: up to the last "# bytes in allocated blocks" line seen.
        text = chunk.decode(errors="replace")
        cut = text.rfind("\n# bytes in allocated blocks")
        if cut < 0:
            return
        end = text.find("\n", cut + 1)
        if end < 0:
            return
        text = text[: end + 1]
        self._log_read += len(text.encode(errors="replace"))
        arenas = _ARENAS.findall(text)
        used = _BLOCKS.findall(text)
        self._arena_reports += len(used)
        if arenas:
            self._arenas = int(arenas[-1].replace(",", ""))
        if used:
            self._blocks = int(used[-1].replace(",", ""))

    def sample(self, label: str, t0: float, ops: int = 0) -> Sample:
        st = self.status()
        self._read_mallocstats()
        return Sample(
            label=label,
            t_s=time.monotonic() - t0,
            ops=ops,
            rss_kib=st["VmRSS"],
            anon_kib=st.get("RssAnon", 0),
            hwm_kib=st["VmHWM"],
            arenas=self._arenas,
            arena_reports=self._arena_reports,
            pymalloc_kib=None if self._blocks is None else self._blocks // 1024,
        )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_bot(environ: dict[str, str], workdir: Path, name: str) -> Bot:
    port = _free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(VENV_PYTHON),
            "-m",
            "commands",
            "serve",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            env=environ,
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + READY_S
        while True:
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        break
            await asyncio.sleep(0.2)
    return Bot(proc, port, log)


async def stop_bot(bot: Bot) -> int:
    if bot.proc.returncode is None:
        bot.proc.terminate()
        try:
            await asyncio.wait_for(bot.proc.wait(), 30)
        except TimeoutError:
            bot.proc.kill()
            await bot.proc.wait()
    return bot.proc.returncode or 0


# ---- seeding through the bot's own Store API -------------------------------------------------


async def seed(url: str, count: int) -> float:
    """`count` finished one-step pause/resume operations, each with its audit row."""
    started = time.perf_counter()
    store = await Store.open(url)
    try:
        await store.upgrade()
        for i in range(count):
            kind = "pause" if i % 2 == 0 else "resume"
            now = datetime.now(UTC)
            command = f"/queue {kind} {QUEUE}"
            op = await store.create_operation(
                kind=kind,
                env=ENV,
                target=QUEUE,
                actor=USER,
                source="slack",
                command=command,
                reason=None,
                params={"queue": QUEUE},
                plan=[f"{kind} {QUEUE}"],
                owner="bench-seed",
                now=now,
            )
            await store.start_step(op.id, 0, now=now)
            detail = f"{QUEUE} paused (0 waiting stay queued)" if kind == "pause" else "resumed"
            await store.finish_step(op.id, 0, state="succeeded", output=detail, now=now)
            await store.finish_operation(op.id, state="succeeded", summary=detail, now=now)
            await store.audit(
                actor=USER,
                source="slack",
                kind=kind,
                command=command,
                outcome="succeeded",
                env=ENV,
                duration_ms=5,
                operation_id=op.id,
                now=now,
            )
            if i % 100 == 99:
                await asyncio.sleep(0)  # let the sampling run
    finally:
        await store.close()
    return time.perf_counter() - started


def store_rows(path: Path) -> dict[str, int]:
    """Rows per table of the bot's SQLite file (read-only), and its size."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in db.execute(
                "select name from sqlite_master where type='table' and name not like 'sqlite_%'"
            )
        ]
        out = {t: int(db.execute(f'select count(*) from "{t}"').fetchone()[0]) for t in tables}
    finally:
        db.close()
    out["file_kib"] = path.stat().st_size // 1024
    return out


# ---- driving it through Slack ----------------------------------------------------------------


class Chat:
    def __init__(self, slack: FakeSlack, bot: Bot) -> None:
        self.slack = slack
        self.driver = SlackDriver(bot.events_url, SECRET, slack, user=USER, channel=CHANNEL)
        self._seen = 0  # calls of the fake already looked at

    async def _until(self, predicate: Any, what: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s} s")
            await asyncio.sleep(0.01)

    async def answered(self, command: str, text: str) -> None:
        """A read-only command; waits for its answer through response_url."""
        response = await self.driver.command(command, text)
        if response.status != 200 or response.response_url is None:
            raise RuntimeError(f"{command} {text}: HTTP {response.status}")
        url = response.response_url
        await self._until(lambda: bool(self.slack.responses(url)), f"{command} {text} answer")

    def _final_seen(self, title: str) -> bool:
        calls = self.slack.calls
        found = False
        for call in calls[self._seen :]:
            text = str(call.args.get("text", ""))
            if call.method == "chat.update" and call.ok and text.startswith(f"{title}: "):
                state = text[len(title) + 2 :].split(" ", 1)[0]
                if state == "succeeded":
                    found = True
                elif state != "running":
                    raise RuntimeError(f"operation ended otherwise: {text}")
        self._seen = len(calls)
        return found

    async def operation(self, kind: str) -> None:
        """/queue <kind> q -> modal with the plan -> submit -> the final progress update."""
        response = await self.driver.command("/queue", f"{kind} {QUEUE}")
        if response.status != 200:
            raise RuntimeError(f"/queue {kind}: HTTP {response.status}")

        def filled() -> bool:
            views = self.slack.open_views(USER)
            return bool(views) and "preparing" not in json.dumps(views[-1]["blocks"])

        await self._until(filled, f"/queue {kind}: the plan in the modal")
        view = self.slack.open_views(USER)[-1]
        submitted = await self.driver.view_submission(view)
        if submitted.status != 200:
            raise RuntimeError(f"view_submission: HTTP {submitted.status}")
        title = f"{kind} {QUEUE} in {ENV}"
        seen = False

        def final() -> bool:
            nonlocal seen
            seen = seen or self._final_seen(title)
            return seen

        await self._until(final, f"/queue {kind}: the final progress message")
        self.slack.calls.clear()  # the fake's own record stays small
        self._seen = 0


# ---- numbers ---------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx if sxx else float("nan")


def show(s: Sample) -> str:
    arenas = "?" if s.arenas is None else str(s.arenas)
    blocks_kib = "?" if s.pymalloc_kib is None else f"{s.pymalloc_kib / 1024:.1f} MiB"
    return (
        f"  {s.label:22} t={s.t_s:6.1f}s ops={s.ops:5}  VmRSS {s.rss_kib / 1024:7.2f} MiB"
        f"  RssAnon {s.anon_kib / 1024:7.2f} MiB  VmHWM {s.hwm_kib / 1024:7.2f} MiB"
        f"  pymalloc: {s.arena_reports} new arenas so far, {arenas} in use, {blocks_kib}"
        " in blocks at the last"
    )


def med(samples: list[Sample], attr: str = "rss_kib") -> float:
    return float(statistics.median(getattr(s, attr) for s in samples))


# ---- the run ---------------------------------------------------------------------------------


def write_config(path: Path, redis_url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "environments": {
                    ENV: {
                        "redis_url": redis_url,
                        "prefix": PREFIX,
                        "queues": [QUEUE],
                        "channel": f"#{CHANNEL_NAME}",
                    }
                },
                "roles": {"operator": {"groups": [GROUP]}},
                "permissions": {"operator": {ENV: ["status", "pause", "resume", "history"]}},
            }
        )
    )
    return path


async def idle(
    bot: Bot, label: str, t0: float, settle_s: float, samples: int, ops: int = 0
) -> list[Sample]:
    await asyncio.sleep(settle_s)
    out: list[Sample] = []
    for i in range(samples):
        if i:
            await asyncio.sleep(1.0)
        out.append(bot.sample(label, t0, ops))
        print(show(out[-1]), flush=True)
    return out


async def bench(args: argparse.Namespace) -> int:
    quick = args.quick
    n_ops = args.ops if args.ops is not None else (30 if quick else 200)
    n_seed = args.seed if args.seed is not None else (1000 if quick else 10_000)
    every = args.sample_every if args.sample_every is not None else (5 if quick else 20)
    warmup = args.warmup if args.warmup is not None else (10 if quick else 40)
    settle_s = 3.0 if quick else args.settle_s
    n_samples = 3 if quick else args.samples
    t0 = time.monotonic()
    result: dict[str, Any] = {
        "params": {
            "ops": n_ops,
            "seed": n_seed,
            "sample_every": every,
            "warmup": warmup,
            "settle_s": settle_s,
            "samples": n_samples,
            "quick": quick,
        }
    }
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        workdir = Path(tmp)
        r = redis_server.client()
        facts = print_machine(r)
        for package in ("slack_bolt", "slack_sdk", "aiohttp", "SQLAlchemy", "aiosqlite"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                facts[package] = importlib.metadata.version(package)
        result["machine"] = facts
        r.hset(f"{PREFIX}:{QUEUE}:meta", mapping={"opts.maxLenEvents": "10000"})  # it exists
        slack = FakeSlack()
        slack.limiter.enabled = False
        await slack.start()
        slack.add_channel(CHANNEL, name=CHANNEL_NAME)
        slack.usergroups = {GROUP: [USER]}
        config = write_config(workdir / "chatops.yml", redis_server.url)
        empty_db = workdir / "empty.sqlite3"
        seeded_db = workdir / "seeded.sqlite3"
        base = {
            **bot_environ(config, workdir),
            "PYTHONPATH": str(ROOT),
            "PYTHONMALLOCSTATS": "1",
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
        }
        bots: list[Bot] = []
        try:
            # -- 1. empty store, idle; the seeded store is filled meanwhile --------------------
            print(f"phase 1: serve on an empty store; seeding {n_seed} operations alongside")
            env1 = {**base, "CHATOPS_DATABASE_URL": f"sqlite:///{empty_db}"}
            bot = await start_bot(env1, workdir, "serve-empty")
            bots.append(bot)
            started = bot.sample("started", t0)
            print(show(started))
            seeding = asyncio.create_task(seed(f"sqlite:///{seeded_db}", n_seed))
            empty = await idle(bot, "idle, empty store", t0, settle_s, n_samples)
            seed_s = await seeding
            print(f"  seeded {n_seed} operations in {seed_s:.1f} s: {store_rows(seeded_db)}")
            empty += await idle(bot, "idle, empty store", t0, 0.0, 2)  # after the seeding too
            code = await stop_bot(bot)
            print(f"  serve stopped (exit {code})")

            # -- 2. the seeded store -------------------------------------------------------------
            print(f"phase 2: serve on the store with {n_seed} finished operations")
            env2 = {**base, "CHATOPS_DATABASE_URL": f"sqlite:///{seeded_db}"}
            bot = await start_bot(env2, workdir, "serve-seeded")
            bots.append(bot)
            full = await idle(bot, "idle, seeded store", t0, settle_s, n_samples)
            chat = Chat(slack, bot)
            for _ in range(3):
                await chat.answered("/ops", "history")
                await chat.answered("/queue", f"status {QUEUE}")
            queried = await idle(bot, "after history/status", t0, settle_s / 2, n_samples)

            # -- 3. operations end to end --------------------------------------------------------
            print(f"phase 3: {n_ops} operations end to end (pause / resume {QUEUE})")
            run: list[Sample] = [bot.sample("ops", t0, 0)]
            print(show(run[-1]), flush=True)
            op_started = time.monotonic()
            durations: list[float] = []
            for i in range(n_ops):
                t = time.perf_counter()
                await chat.operation("pause" if i % 2 == 0 else "resume")
                durations.append(time.perf_counter() - t)
                if (i + 1) % every == 0 or i + 1 == n_ops:
                    run.append(bot.sample("ops", t0, i + 1))
                    print(show(run[-1]), flush=True)
            ops_s = time.monotonic() - op_started
            after = await idle(bot, "idle after the ops", t0, settle_s, n_samples, n_ops)
            rows = store_rows(seeded_db)
            code = await stop_bot(bot)
            bot._read_mallocstats()
            print(f"  serve stopped (exit {code}); store: {rows}")
        finally:
            for b in bots:
                await stop_bot(b)
            await slack.stop()
            for b in bots:
                print_log_warnings(b.log.name, b.log, most=5)

    # -- the figures -------------------------------------------------------------------------
    fitted = [s for s in run if s.ops >= warmup]
    kib_per_op = slope([(s.ops, s.rss_kib) for s in fitted])
    anon_per_op = slope([(s.ops, s.anon_kib) for s in fitted])
    per100 = [s for s in fitted if s.ops % 100 == 0]
    kib_per_op_100 = slope([(s.ops, s.rss_kib) for s in per100]) if len(per100) > 1 else None
    idle_empty = med(empty)
    idle_full = med(full)
    ratio = idle_full / idle_empty
    total_kib = run[-1].rss_kib - run[0].rss_kib
    new_arenas = run[-1].arena_reports - run[0].arena_reports
    print()
    print(
        f"idle, empty store: VmRSS median {idle_empty / 1024:.2f} MiB (n={len(empty)}, "
        f"{min(s.rss_kib for s in empty) / 1024:.2f}-{max(s.rss_kib for s in empty) / 1024:.2f})"
    )
    print(
        f"idle, {n_seed} operations in the store: VmRSS median {idle_full / 1024:.2f} MiB; "
        f"ratio {ratio:.3f} (goal within {1 + STORE_GOAL:.2f})  {verdict(ratio <= 1 + STORE_GOAL)}"
    )
    print(f"after 3 x /ops history + 3 x /queue status: VmRSS median {med(queried) / 1024:.2f} MiB")
    print(
        f"{n_ops} operations end to end in {ops_s:.1f} s "
        f"(median {statistics.median(durations):.2f} s each, max {max(durations):.2f} s): "
        f"VmRSS {run[0].rss_kib / 1024:.2f} -> {run[-1].rss_kib / 1024:.2f} MiB "
        f"({total_kib:+d} KiB)"
    )
    print(
        f"slope after {warmup} operations (least squares over {len(fitted)} samples): "
        f"VmRSS {kib_per_op:+.3f} KiB/operation, RssAnon {anon_per_op:+.3f} "
        f"(goal < {SLOPE_GOAL_KIB:g})  {verdict(kib_per_op < SLOPE_GOAL_KIB)}"
        + (f"; every 100 only: {kib_per_op_100:+.3f}" if kib_per_op_100 is not None else "")
    )
    print(f"new pymalloc arenas during the operations: {new_arenas}")
    print(f"idle after the operations: VmRSS median {med(after) / 1024:.2f} MiB")
    result.update(
        {
            "seed_s": seed_s,
            "ops_s": ops_s,
            "op_durations_s": durations,
            "samples": [asdict(s) for s in [started, *empty, *full, *queried, *run, *after]],
            "idle_empty_kib": idle_empty,
            "idle_seeded_kib": idle_full,
            "seeded_ratio": ratio,
            "after_queries_kib": med(queried),
            "kib_per_op": kib_per_op,
            "anon_kib_per_op": anon_per_op,
            "kib_per_op_every_100": kib_per_op_100,
            "total_kib": total_kib,
            "new_arenas": new_arenas,
            "store_rows": rows,
        }
    )
    dump_json(args.out, result)
    return 0 if ratio <= 1 + STORE_GOAL and kib_per_op < SLOPE_GOAL_KIB else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 seeded, 30 ops: smoke only")
    parser.add_argument("--ops", type=int, help="operations end to end (200; quick 30)")
    parser.add_argument("--seed", type=int, help="operations seeded (10,000; quick 1,000)")
    parser.add_argument("--sample-every", type=int, help="operations between samples (20; quick 5)")
    parser.add_argument("--warmup", type=int, help="ops left out of the slope (40; quick 10)")
    parser.add_argument("--settle-s", type=float, default=10.0, help="idle before sampling")
    parser.add_argument("--samples", type=int, default=5, help="idle samples, 1 s apart")
    parser.add_argument("--out", help="write the results as JSON too")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
