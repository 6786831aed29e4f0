"""Duplicate notifications after a rollback (the runbook's troubleshooting item): values of the
idempotency-token column seen more than once lately, in the worker's own PostgreSQL.

Only ever reads: the query runs in a READ ONLY transaction with a statement timeout, so even a
configured query that tries to write is refused by PostgreSQL itself. Pruning stays a human
decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.config import DuplicatesConfig
from bot.errors import OperationFailed, Refused
from bot.redact import safe_url

if TYPE_CHECKING:
    import asyncpg

TOP = 10
_SHOWN = 40


@dataclass(frozen=True)
class DuplicateReport:
    database: str  # the URL without its password
    checked: bool
    reason: str | None  # why nothing was checked
    hours: float
    values: int  # distinct values seen more than once
    extra_rows: int  # rows beyond the first of each such value
    top: tuple[tuple[str, int], ...]

    def summary(self) -> str:
        if not self.checked:
            return f"not checked: {self.reason}"
        if not self.values:
            return f"no duplicates in the last {self.hours:g} h ({self.database})"
        return (
            f"{self.values} value(s) seen more than once in the last {self.hours:g} h, "
            f"{self.extra_rows} extra row(s) ({self.database})"
        )


async def find_duplicates(database_url: str, cfg: DuplicatesConfig) -> DuplicateReport:
    shown = safe_url(database_url)
    if urlsplit(database_url).scheme not in ("postgres", "postgresql"):
        raise Refused(f"the duplicates check reads PostgreSQL only, not {shown}")
    import asyncpg  # only this check uses it: not imported by every command

    try:
        conn = await asyncpg.connect(database_url, timeout=cfg.timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise OperationFailed(
            f"the worker's database {shown} is unreachable: {type(exc).__name__}"
        ) from None
    try:
        async with conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = {int(cfg.timeout_s * 1000)}")
            rows = await _rows(conn, cfg)
    except asyncpg.ReadOnlySQLTransactionError:
        raise Refused(
            "the configured duplicates query tries to write; this check only reads"
        ) from None
    except asyncpg.PostgresError as exc:
        raise OperationFailed(f"the duplicates query failed on {shown}: {exc}") from None
    finally:
        await conn.close()
    if rows is None:
        reason = f"no table {cfg.table} in {shown}"
        return DuplicateReport(shown, False, reason, cfg.hours, 0, 0, ())
    counted = [(str(value)[:_SHOWN], int(copies)) for value, copies in rows]
    return DuplicateReport(
        database=shown,
        checked=True,
        reason=None,
        hours=cfg.hours,
        values=len(counted),
        extra_rows=sum(copies - 1 for _, copies in counted),
        top=tuple(counted[:TOP]),
    )


async def _rows(conn: asyncpg.Connection, cfg: DuplicatesConfig) -> list[tuple[object, int]] | None:
    if cfg.query is not None:
        args = (cfg.hours,) if "$1" in cfg.query else ()
        records = await conn.fetch(cfg.query, *args)
        return [(r[0], r[1]) for r in records]
    if await conn.fetchval("SELECT to_regclass($1)::text", cfg.table) is None:
        return None
    # Identifiers are checked against [A-Za-z_][A-Za-z0-9_]* by the configuration.
    records = await conn.fetch(
        f'SELECT "{cfg.column}"::text, count(*) FROM "{cfg.table}" '
        f'WHERE "{cfg.time_column}" > now() - make_interval(secs => $1) '
        "GROUP BY 1 HAVING count(*) > 1 ORDER BY 2 DESC, 1",
        cfg.hours * 3600,
    )
    return [(r[0], r[1]) for r in records]
