"""`chatops worker duplicates` against a real PostgreSQL standing in for the worker's database:
counts what the runbook asks about, and never writes, whatever query is configured."""

from __future__ import annotations

import json

import asyncpg
from sqlalchemy import make_url

from tests.conftest import asyncpg_dsn
from tests.scenarios.conftest import Scenario

PASSWORD = "worker-db-canary-pw"  # trust auth ignores it; it must never be shown


async def _seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE notification_token (notification_token text, created_at timestamptz)"
        )
        rows = [("tok-a", "1 hour"), ("tok-a", "2 hours"), ("tok-a", "3 hours")]
        rows += [("tok-b", "10 minutes"), ("tok-b", "20 minutes"), ("tok-c", "1 hour")]
        rows += [("tok-old", "3 days"), ("tok-old", "4 days")]  # outside the window
        for token, ago in rows:
            await conn.execute(
                "INSERT INTO notification_token VALUES ($1, now() - $2::text::interval)",
                token,
                ago,
            )
    finally:
        await conn.close()


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notification_token"))
    finally:
        await conn.close()


def _configure(scenario: Scenario, database_url: str, **duplicates: object) -> None:
    scenario.configure(
        workers={
            "notification": {
                "app": "worker",
                "pm2_home": str(scenario.tmp / "no-pm2"),  # not used: the URL is configured
                "duplicates": {"database_url": database_url, **duplicates},
            }
        }
    )


async def test_duplicates_are_counted_within_the_window_and_nothing_is_written(
    scenario: Scenario, fresh_pg_database: str
):
    dsn = asyncpg_dsn(fresh_pg_database)
    await _seed(dsn)
    url = make_url(dsn).set(password=PASSWORD).render_as_string(hide_password=False)
    _configure(scenario, url)

    args = ("worker", "duplicates", "notification", "--env", "test")
    result = await scenario.chatops(*args, "--json")
    assert result.code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checked"] is True
    assert report["values"] == 2 and report["extra_rows"] == 3
    assert report["top"] == [["tok-a", 3], ["tok-b", 2]]
    wider = await scenario.json(*args, "--hours", "200")
    assert wider["values"] == 3

    text = await scenario.chatops(*args)
    assert "2 value(s) seen more than once in the last 24 h, 3 extra row(s)" in text.stdout
    for output in (result.output, text.output, json.dumps(wider)):
        assert PASSWORD not in output
    assert await _count(dsn) == 8


async def test_a_query_that_tries_to_write_is_refused_by_the_database(
    scenario: Scenario, fresh_pg_database: str
):
    dsn = asyncpg_dsn(fresh_pg_database)
    await _seed(dsn)
    _configure(
        scenario,
        dsn,
        query="DELETE FROM notification_token RETURNING notification_token, 1",
    )
    result = await scenario.chatops("worker", "duplicates", "notification", "--env", "test")
    assert result.code != 0
    assert "tries to write; this check only reads" in result.output
    assert await _count(dsn) == 8


async def test_a_database_without_the_table_is_reported_not_failed(
    scenario: Scenario, fresh_pg_database: str
):
    _configure(scenario, asyncpg_dsn(fresh_pg_database))
    report = await scenario.json("worker", "duplicates", "notification", "--env", "test")
    assert report["checked"] is False
    assert report["reason"].startswith("no table notification_token in postgresql://")
