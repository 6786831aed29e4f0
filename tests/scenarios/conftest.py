"""End-to-end scenarios: the `chatops` CLI as a user runs it, against real Redis, Node BullMQ
workers, pm2 and git. Each scenario has its own key prefix, config file and SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
import yaml

from tests.canary import assert_no_leak
from tests.conftest import REDIS_URL
from tests.fixtures.pm2 import FIXTURE_DIR, PRODUCER_JS, WORKER_JS, tool_path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


# A drain that holds on until the test lets its queue empty (a worker started when the test
# says): no stall or timeout ends it first, however slow the machine.
HELD_DRAIN = {"stall_s": 120, "timeout_s": 120, "poll_interval_s": 0.2, "producer_grace_s": 0}


@dataclass
class Scenario:
    prefix: str
    tmp: Path
    redis: redis.Redis
    redis_url: str = REDIS_URL
    environments: dict[str, Any] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_config: dict[str, Any] = field(default_factory=dict)  # roles, permissions, approvals

    def __post_init__(self) -> None:
        self.environments["test"] = {
            "redis_url": self.redis_url,
            "prefix": self.prefix,
            "queues": ["sla", "other"],
            "drain": {"stall_s": 6, "timeout_s": 60, "poll_interval_s": 0.2, "producer_grace_s": 0},
        }

    @property
    def env(self) -> dict[str, Any]:
        return dict(self.environments["test"])

    def configure(self, **changes: Any) -> None:
        self.environments["test"].update(changes)

    @property
    def config_path(self) -> Path:
        path = self.tmp / "chatops.yml"
        path.write_text(yaml.safe_dump({"environments": self.environments, **self.extra_config}))
        return path

    def environ(self) -> dict[str, str]:
        return {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{tool_path()}",
            "HOME": str(self.tmp),
            "CHATOPS_CONFIG": str(self.config_path),
            "CHATOPS_DATABASE_URL": f"sqlite:///{self.tmp / 'chatops.sqlite3'}",
            "CHATOPS_HEARTBEAT_S": "0.5",
            **self.extra_env,
        }

    async def spawn(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "commands",
            *args,
            env=self.environ(),
            cwd=self.tmp,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def chatops(self, *args: str, timeout_s: float = 120) -> Result:
        proc = await self.spawn(*args)
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(f"chatops {args} hung:\n{out.decode()}\n{err.decode()}") from None
        result = Result(proc.returncode or 0, out.decode(), err.decode())
        assert_no_leak(result.output, f"chatops {' '.join(args)}")
        return result

    async def json(self, *args: str) -> Any:
        result = await self.chatops(*args, "--json")
        assert result.code == 0, result.output
        return json.loads(result.stdout)

    async def counts(self, queue: str = "sla") -> dict[str, int]:
        data = await self.json("queue", "status", queue, "--env", "test")
        return dict(data["queues"][0]["counts"])

    def node_env(self, **env: str) -> dict[str, str]:
        return {
            "PATH": tool_path(),
            "REDIS_URL": self.redis_url,
            "BULLMQ_PREFIX": self.prefix,
            **env,
        }

    async def produce(self, queue: str, count: int, *flags: str, **env: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(PRODUCER_JS),
            "--queue",
            queue,
            "--count",
            str(count),
            *flags,
            env=self.node_env(**env),
            cwd=FIXTURE_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode()
        return out.decode()

    @contextlib.asynccontextmanager
    async def node_worker(
        self, queues: str = "sla", **env: str
    ) -> AsyncIterator[asyncio.subprocess.Process]:
        """The fixture worker as a plain process (no pm2), stopped with SIGINT at the end."""
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(WORKER_JS),
            env=self.node_env(QUEUES=queues, **env),
            cwd=FIXTURE_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(20):
                while (line := await proc.stdout.readline()) and b"worker:ready" not in line:
                    pass
            yield proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

    async def runs(self, queue: str = "sla") -> dict[str, int]:
        raw = await self.redis.hgetall(f"{self.prefix}:{queue}:fixture:runs")
        return {k: int(v) for k, v in raw.items()}

    async def flag(self) -> str | None:
        value: str | None = await self.redis.get(f"{self.prefix}:flags:WORKER_ACCEPT_JOBS")
        return value


@contextlib.asynccontextmanager
async def scenario_on(
    redis_client: redis.Redis, prefix: str, tmp: Path, redis_url: str = REDIS_URL
) -> AsyncIterator[Scenario]:
    """A scenario on `redis_url` (the shared Redis unless a test runs its own); afterwards, its
    store is searched for canary secrets."""
    # A queue exists once BullMQ has written its meta: create both configured queues.
    for queue in ("sla", "other"):
        await redis_client.hset(f"{prefix}:{queue}:meta", mapping={"opts.maxLenEvents": "10000"})
    yield Scenario(prefix=prefix, tmp=tmp, redis=redis_client, redis_url=redis_url)
    store = tmp / "chatops.sqlite3"
    if store.exists():  # every row the scenario's bot stored: audit, operations, outbox...
        assert_no_leak(store.read_bytes().decode("utf-8", "replace"), "the store")


@pytest.fixture
async def scenario(
    prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> AsyncIterator[Scenario]:
    async with scenario_on(redis_client, prefix, tmp_path) as scenario:
        yield scenario
