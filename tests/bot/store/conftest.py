"""Every store test runs twice: on SQLite (a file of its own) and on PostgreSQL.

PostgreSQL gets one private database per test session (`chatops_test_<hex>`, created on and
dropped from the shared `test` database's server); each test starts with an empty `public`
schema in it. Nothing outside that database is touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.store import Store
from tests.conftest import asyncpg_dsn

BACKENDS = ["sqlite", "postgresql"]


async def _empty_schema(url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
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
