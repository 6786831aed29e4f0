"""Shared fixtures: real Redis and PostgreSQL, each test under names of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from sqlalchemy import make_url

from tests.canary import DATABASE_PASSWORD

pytest_plugins = ["pytester", "tests.slack.plugin", "tests.leaks"]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Trust authentication ignores the password: it is there as a canary (tests/canary.py).
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", f"postgresql://postgres:{DATABASE_PASSWORD}@127.0.0.1:5432/test"
)


@pytest.fixture
def prefix() -> str:
    """A BullMQ key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[redis.Redis]:
    """A client on the shared Redis; every key under this test's prefix is deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        keys += [k async for k in client.scan_iter(match=f"chatops:{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(*args: str) -> Iterator[int]:
    """A redis-server of the test's own on a free port, for settings the shared one must not get."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="redis-")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    proc = subprocess.Popen(
        [*argv, "--appendonly", "no", "--dir", workdir, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def private_redis_with_password() -> Iterator[tuple[str, str]]:
    password = f"pw-{uuid.uuid4().hex}"
    with redis_server("--requirepass", password) as port:
        yield f"redis://:{password}@127.0.0.1:{port}/0", password


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def run_elsewhere(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine on a loop of its own in another thread (fixtures here are sync, and the
    test's loop must not be replaced)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(make())).result()


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(POSTGRES_URL), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def _private_database() -> Iterator[str]:
    name = f"chatops_test_{uuid.uuid4().hex[:12]}"
    run_elsewhere(lambda: _admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        run_elsewhere(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session's own; its URL."""
    with _private_database() as url:
        yield url


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """An empty PostgreSQL database of this test's own; its URL."""
    with _private_database() as url:
        yield url
