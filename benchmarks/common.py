"""Shared pieces of the benchmarks: a private Redis, Node fills, the bot's CLI, statistics.

Not a benchmark itself. Every benchmark runs against a `redis-server` of its own, started here
on a free port in a temporary directory without persistence, never the shared 127.0.0.1:6379.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "worker"
WORKER_JS = FIXTURE_DIR / "worker.js"
FILL_JS = Path(__file__).resolve().parent / "fill.js"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

_REDIS_START_S = 10.0
_STOP_S = 15.0


# ---- private Redis ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class PrivateRedis:
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


def _wait_for_ping(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _REDIS_START_S
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(redis.ConnectionError), redis.Redis(port=port) as probe:
            if probe.ping():
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A fresh `redis-server` (no RDB, no AOF) on a free port; stopped and removed at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(5):  # the free port may be taken between the probe and the start
            port = _free_port()
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
                + ["--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"]
                + ["--logfile", str(workdir / "redis.log")],
                stdin=subprocess.DEVNULL,
            )
            if _wait_for_ping(port, proc):
                break
            stop_process(proc)
        else:
            raise RuntimeError(f"could not start redis-server (see {workdir / 'redis.log'})")
        yield PrivateRedis(port=port, proc=proc, workdir=workdir)
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Stop one process we started: `sig`, then SIGKILL if it outlives _STOP_S."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def other_clients(r: redis.Redis) -> int:
    """Connections to the private Redis other than the caller's own."""
    return len(r.client_list()) - 1


# ---- Node ------------------------------------------------------------------------------------


def node_env(url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "REDIS_URL": url,
        "BULLMQ_PREFIX": prefix,
        **extra,
    }


def fill(url: str, prefix: str, queues: Sequence[str], count: int, batch: int = 1000) -> float:
    """`count` jobs in every queue with Node bullmq `addBulk`; returns the seconds it took."""
    started = time.perf_counter()
    done = subprocess.run(
        ["node", str(FILL_JS), "--queues", ",".join(queues), "--count", str(count)]
        + ["--batch", str(batch)],
        env=node_env(url, prefix),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    expected = f"fill:added {count * len(queues)}"
    if done.returncode != 0 or expected not in done.stdout:
        raise RuntimeError(f"fill failed: {done.stdout}{done.stderr}")
    return time.perf_counter() - started


# ---- the bot's CLI ---------------------------------------------------------------------------


def write_config(path: Path, environments: Mapping[str, Mapping[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"environments": dict(environments)}))
    return path


def bot_environ(config: Path, workdir: Path) -> dict[str, str]:
    """A minimal environment for `python -m commands`: its own config, SQLite store and HOME."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "CHATOPS_CONFIG": str(config),
        "CHATOPS_DATABASE_URL": f"sqlite:///{workdir / 'chatops.sqlite3'}",
    }


def chatops_argv(*args: str) -> list[str]:
    return [str(VENV_PYTHON), "-m", "commands", *args]


# ---- numbers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(
            n=len(samples),
            median=statistics.median(samples),
            p95=cuts[94],
            p99=cuts[98],
            max=max(samples),
        )

    def ms(self) -> str:
        return (
            f"median {self.median * 1e3:.2f} ms · p95 {self.p95 * 1e3:.2f} ms · "
            f"p99 {self.p99 * 1e3:.2f} ms · max {self.max * 1e3:.2f} ms (n={self.n})"
        )


async def interleaved(
    calls: dict[str, Callable[[], Awaitable[object]]], rounds: int, warmup: int
) -> dict[str, Summary]:
    """Each call `rounds` times, interleaved (a round calls each once, in a rotating order), so
    that drift in the machine's load hits every case alike."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            await calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            await calls[name]()
            samples[name].append(time.perf_counter() - started)
    return {name: Summary.of(s) for name, s in samples.items()}


def print_log_warnings(name: str, log: Path, most: int = 3) -> None:
    """The warning and error lines a benchmark's child process logged: a few, and how many."""
    lines = log.read_text(errors="replace").splitlines()
    noted = [x for x in lines if any(w in x for w in ("ERROR", "Traceback", "WARN"))]
    if noted:
        print(f"{name}: {len(noted)} warning/error lines, e.g.:")
        for line in noted[:most]:
            print(f"    {line[:220]}")


def time_status_cli(
    env: dict[str, str],
    workdir: Path,
    env_name: str,
    runs: int,
    expected: Callable[[list[dict[str, Any]]], bool],
) -> list[float]:
    """Wall time of `chatops queue status --json`, `runs` times after an untimed first run (it
    creates the SQLite store); RuntimeError when it fails or shows what `expected` refuses."""
    argv = chatops_argv("queue", "status", "--env", env_name, "--json")
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(
            argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=120, check=False
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"chatops failed ({done.returncode}): {done.stdout}{done.stderr}")
        shown = json.loads(done.stdout)["queues"]
        if not expected(shown):
            raise RuntimeError(f"chatops showed unexpected counts: {shown[:2]}")
        if i:
            times.append(elapsed)
    return times


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---- the machine -----------------------------------------------------------------------------


def _node_package_version(name: str) -> str:
    data = json.loads((FIXTURE_DIR / "node_modules" / name / "package.json").read_text())
    return str(data["version"])


def _mem_total_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def machine(r: redis.Redis) -> dict[str, str]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    info = r.info("server")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": f"{_mem_total_mib()} MiB",
        "loadavg (1/5/15 min) at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kernel": platform.release(),
        "redis-server": str(info["redis_version"]),
        "node": node.stdout.strip(),
        "node bullmq": _node_package_version("bullmq"),
        "node ioredis": _node_package_version("ioredis"),
        "python": platform.python_version(),
        "python bullmq": importlib.metadata.version("bullmq"),
        "redis-py": importlib.metadata.version("redis"),
    }


def print_machine(r: redis.Redis) -> dict[str, str]:
    facts = machine(r)
    print("machine: " + " · ".join(f"{k} {v}" for k, v in facts.items()))
    return facts


def dump_json(path: str | None, data: Mapping[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"results written to {path}")
