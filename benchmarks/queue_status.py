"""Latency of `chatops queue status`: `bot.queues.read_states`, one pipelined round trip.

Cases, all filled first on one private `redis-server` with Node bullmq's own `addBulk`
(batches of 1,000, see fill.js), so every key is exactly what a real producer writes:

  one-1k        one queue holding 1,000 waiting jobs
  one-1000k     one queue holding 1,000,000 waiting jobs  goal: median <= 1.5x one-1k, < 10 ms
  many-200x100  200 queues of 100 waiting jobs, one call    goal: median < 100 ms

`read_states` is called through one client made by `bot.runtime.redis_client`
(decode_responses=True, as the bot's own): `--warmup` untimed rounds, then `--calls` timed
rounds. The two single-queue cases and a PING (the bare round trip) are interleaved, a round
calling each once in a rotating order, so drift in the load of the shared machine hits them
alike; the 200-queue case is timed on its own afterwards. Reported: median, p95, p99, max.
Then the whole CLI, `chatops queue status --env <case> --json`, is timed `--cli-runs` times
per case (process start, imports, config, SQLite store and recovery included), after one
untimed run that creates the store.

Run by hand from the repository root (under a minute, most of it the 1M-job fill; `--quick`:
100,000 jobs instead of 1,000,000, 50 calls and one CLI run per case, about 10 s):

    .venv/bin/python benchmarks/queue_status.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from common import (
    PrivateRedis,
    Summary,
    bot_environ,
    dump_json,
    fill,
    interleaved,
    print_machine,
    private_redis,
    time_status_cli,
    verdict,
    write_config,
)
from redis.asyncio import Redis

from bot.queues import QueueState, read_states
from bot.runtime import redis_client

PREFIX = "bench"
RATIO_GOAL = 1.5
BIG_GOAL_S = 0.010
MANY_GOAL_S = 0.100
PING = "PING"


@dataclass(frozen=True)
class Case:
    name: str  # also the environment name in the CLI's config
    queues: tuple[str, ...]
    jobs_per_queue: int


@dataclass(frozen=True)
class CaseResult:
    case: Case
    fill_s: float
    read_states: Summary
    cli_s: list[float]


def cases(quick: bool) -> list[Case]:
    big = 100_000 if quick else 1_000_000
    return [
        Case("one-1k", ("q1k",), 1_000),
        Case(f"one-{big // 1000}k", (f"q{big // 1000}k",), big),
        Case("many-200x100", tuple(f"q{i:03d}" for i in range(200)), 100),
    ]


def _check_counts(case: Case, states: Sequence[QueueState]) -> None:
    wrong = [s.name for s in states if s.counts.waiting != case.jobs_per_queue]
    if len(states) != len(case.queues) or wrong:
        raise RuntimeError(f"{case.name}: unexpected waiting counts in {wrong[:5]}")


def server_usec(url: str) -> int:
    """Microseconds Redis spent executing commands so far (INFO commandstats, INFO left out)."""
    with redis.Redis.from_url(url) as r:
        stats = r.info("commandstats")
    return sum(int(v["usec"]) for name, v in stats.items() if name != "cmdstat_info")


def _status_call(client: Redis, case: Case) -> Callable[[], Awaitable[object]]:
    async def status() -> object:
        return await read_states(client, prefix=PREFIX, queues=case.queues)

    return status


async def measure(url: str, cases: Sequence[Case], rounds: int, warmup: int) -> dict[str, Summary]:
    """read_states latency of every case, and PING, through one client made as the bot's.

    The single-queue cases and PING are interleaved with one another; a many-queue case runs
    on its own afterwards, so that its ~30 ms of client CPU per call (and the garbage it
    leaves) does not land on the sub-millisecond calls that follow it.
    """
    client = redis_client(url)
    try:
        for case in cases:
            _check_counts(case, await read_states(client, prefix=PREFIX, queues=case.queues))
        single = {c.name: _status_call(client, c) for c in cases if len(c.queues) == 1}
        results = await interleaved({**single, PING: client.ping}, rounds, warmup)
        for case in cases:
            if len(case.queues) > 1:
                before = server_usec(url)
                results |= await interleaved(
                    {case.name: _status_call(client, case)}, rounds, warmup
                )
                per_call_ms = (server_usec(url) - before) / (rounds + warmup) / 1e3
                print(f"{case.name}: Redis spent {per_call_ms:.2f} ms per call (commandstats)")
        return results
    finally:
        await client.aclose()


def time_cli(env: dict[str, str], workdir: Path, case: Case, runs: int) -> list[float]:
    return time_status_cli(
        env,
        workdir,
        case.name,
        runs,
        lambda shown: (
            len(shown) == len(case.queues) and shown[0]["counts"]["waiting"] == case.jobs_per_queue
        ),
    )


def fill_all(pr: PrivateRedis, cases: Sequence[Case]) -> dict[str, float]:
    seconds = {}
    for case in cases:
        batch = min(1000, case.jobs_per_queue)
        seconds[case.name] = fill(pr.url, PREFIX, case.queues, case.jobs_per_queue, batch=batch)
        total = case.jobs_per_queue * len(case.queues)
        print(f"{case.name}: filled {total:,} jobs in {seconds[case.name]:.1f} s", flush=True)
    return seconds


def report(results: Sequence[CaseResult], ping: Summary) -> dict[str, Any]:
    small, big, many = results
    ratio = big.read_states.median / small.read_states.median
    big_ok = big.read_states.median < BIG_GOAL_S
    many_ok = many.read_states.median < MANY_GOAL_S
    for r in results:
        cli = ", ".join(f"{t:.2f} s" for t in r.cli_s)
        print(f"{r.case.name:>13}: read_states {r.read_states.ms()}; CLI {cli}")
    print(f"{PING:>13}: {ping.ms()}")
    print(
        f"{big.case.name} / {small.case.name} median ratio {ratio:.2f} "
        f"(goal <= {RATIO_GOAL}) {verdict(ratio <= RATIO_GOAL)}\n"
        f"{big.case.name} median {big.read_states.median * 1e3:.2f} ms "
        f"(goal < {BIG_GOAL_S * 1e3:.0f} ms) {verdict(big_ok)}\n"
        f"{many.case.name} median {many.read_states.median * 1e3:.2f} ms "
        f"(goal < {MANY_GOAL_S * 1e3:.0f} ms) {verdict(many_ok)}"
    )
    return {
        "ratio": ratio,
        "ping_s": vars(ping),
        "cases": [
            {
                "name": r.case.name,
                "queues": len(r.case.queues),
                "jobs_per_queue": r.case.jobs_per_queue,
                "fill_s": r.fill_s,
                "read_states_s": vars(r.read_states),
                "cli_s": r.cli_s,
            }
            for r in results
        ],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k jobs, 50 calls, 1 CLI run")
    parser.add_argument("--calls", type=int, help="timed calls per case (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    parser.add_argument("--cli-runs", type=int, help="timed CLI runs per case (default 3)")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.calls = args.calls or (50 if args.quick else 200)
    args.cli_runs = args.cli_runs or (1 if args.quick else 3)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    the_cases = cases(args.quick)
    with private_redis() as pr, tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        workdir = Path(tmp)
        facts = print_machine(pr.client())
        fill_s = fill_all(pr, the_cases)
        latencies = asyncio.run(measure(pr.url, the_cases, args.calls, args.warmup))
        environments = {
            c.name: {"redis_url": pr.url, "prefix": PREFIX, "queues": list(c.queues)}
            for c in the_cases
        }
        env = bot_environ(write_config(workdir / "chatops.yml", environments), workdir)
        results = [
            CaseResult(
                c, fill_s[c.name], latencies[c.name], time_cli(env, workdir, c, args.cli_runs)
            )
            for c in the_cases
        ]
        data = report(results, latencies[PING])
    print(f"total {time.monotonic() - started:.0f} s")
    dump_json(args.out, {"machine": facts, "quick": args.quick, **data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
