"""Every store test runs twice: on SQLite (a file of its own) and on PostgreSQL.

PostgreSQL gets one private database per test session (`chatops_test_<hex>`, created on and
dropped from the shared `test` database's server); each test starts with an empty `public`
schema in it. Nothing outside that database is touched.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import make_url

from bot.store import Store

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _run_elsewhere(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine on a loop of its own in another thread (fixtures here are sync, and the
    test's loop must not be replaced)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(make())).result()


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session's own; its URL."""
    name = f"chatops_test_{uuid.uuid4().hex[:12]}"
    _run_elsewhere(lambda: _admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _run_elsewhere(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty_schema(url: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
    try:
        await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chatops.db'}"
    url: str = request.getfixturevalue("pg_database")
    await _empty_schema(url)
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A store on `db_url`, migrated to head."""
    opened = await Store.open(db_url)
    try:
        await opened.upgrade()
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def second_store(store: Store, db_url: str) -> AsyncIterator[Store]:
    """Another store on the same database, as a second process would have."""
    opened = await Store.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()
