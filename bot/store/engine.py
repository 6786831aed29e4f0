"""Connection URLs and the async engine: async drivers, timeouts, SQLite pragmas, safe messages."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.errors import ConfigError, StoreUnavailable
from bot.redact import redact, safe_url

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def normalise_url(url: str | URL) -> URL:
    """`postgresql://` and `sqlite:///` become their async drivers (asyncpg, aiosqlite)."""
    if isinstance(url, str):
        raw = url
        try:
            url = make_url(raw)
        except sa_exc.ArgumentError:
            raise ConfigError(
                [f"database URL {redact(safe_url(raw))!r} is not a URL"], source="database URL"
            ) from None
    drivername = _ASYNC_DRIVERS.get(url.drivername)
    if drivername is None:
        raise ConfigError(
            [
                f"database URL {describe_url(url)!r}: unsupported driver {url.drivername!r}; "
                "use postgresql://... or sqlite:///path"
            ],
            source="database URL",
        )
    return url.set(drivername=drivername)


def describe_url(url: URL) -> str:
    """The URL fit for a message: host, port and database (or file), never a password."""
    return redact(safe_url(url.render_as_string(hide_password=True)))


def create_engine(
    url: str | URL,
    *,
    connect_timeout_s: float = 10.0,
    command_timeout_s: float = 30.0,
    **engine_kw: Any,
) -> AsyncEngine:
    """An async engine with deadlines on connecting, on statements and on SQLite's locks."""
    url = normalise_url(url)
    connect_args: dict[str, Any]
    if url.get_backend_name() == "postgresql":
        connect_args = {
            "timeout": connect_timeout_s,
            "command_timeout": command_timeout_s,
            "server_settings": {"application_name": "bullmq-chatops"},
        }
    else:
        # How long a writer waits for another process's write lock before "database is locked".
        connect_args = {"timeout": command_timeout_s}
    if "poolclass" not in engine_kw:
        engine_kw.setdefault("pool_timeout", command_timeout_s)
    engine = create_async_engine(url, connect_args=connect_args, pool_pre_ping=True, **engine_kw)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def probe_sqlite(url: URL, *, timeout_s: float = 10.0) -> None:
    """Open a SQLite database file once, synchronously (run it in a thread).

    SQLite creates a missing file but not its directory; either failure becomes
    `StoreUnavailable` here, before aiosqlite's failed-connect path, which leaves its worker
    thread to report to an event loop that may be gone by then.
    """
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    uri = database.startswith("file:")
    if not uri and not Path(database).parent.is_dir():
        raise StoreUnavailable(
            f"the bot's database {describe_url(url)} is unavailable: "
            f"directory {Path(database).parent} does not exist"
        )
    try:
        connection = sqlite3.connect(database, timeout=timeout_s, uri=uri)
        try:
            connection.execute("SELECT 1")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise unavailable(exc, url) from exc


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Same referential behaviour as PostgreSQL; readers not blocked by the writer.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached or used, rather than a bad statement."""
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return not isinstance(
            exc,
            sa_exc.IntegrityError
            | sa_exc.ProgrammingError
            | sa_exc.DataError
            | sa_exc.NotSupportedError,
        )
    return False


def unavailable(exc: BaseException, url: URL) -> StoreUnavailable:
    """A `StoreUnavailable` naming the database (never its password) and the driver's reason."""
    cause: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        cause = exc.orig
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return StoreUnavailable(
        f"the bot's database {describe_url(url)} is unavailable: {redact(reason)}"
    )
