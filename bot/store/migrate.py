"""Running the Alembic migrations from code, one process at a time.

No `alembic.ini` is needed: the `Config` is built here and points at this package's
`migrations/` directory. The migrations run on a connection this module opens, after taking a
lock that serialises concurrent upgrades: a PostgreSQL transaction-level advisory lock, or on
SQLite `BEGIN IMMEDIATE` (the database's write lock). The whole upgrade is one transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # alembic is imported where it is used: every command opens the store
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# pg_advisory_xact_lock key: "chatops" in ASCII, shared by every process running migrations.
ADVISORY_LOCK_KEY = 0x63686174_6F7073


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def lock_for_migrations(connection: Connection) -> None:
    """Begin the migration transaction holding a lock that other upgraders wait on."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    lock_for_migrations(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def known_head() -> str:
    """The newest revision, from the migration files' names (`NNNN_what.py` holds revision
    NNNN; a test checks this against Alembic's own reading of them)."""
    versions = (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max(path.name.split("_", 1)[0] for path in versions)


async def _is_at(engine: AsyncEngine, revision: str) -> bool:
    async with engine.connect() as connection:
        try:
            found = await connection.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:  # no such table yet (or no database: the upgrade will say so)
            return False
        return list(found.scalars()) == [revision]


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    # Already there (every command but the first after a release): no Alembic at all.
    if revision == "head" and await _is_at(engine, known_head()):
        return
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade, revision)
        await connection.commit()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current)
