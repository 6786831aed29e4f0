"""Small statement helpers shared by the store's modules."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Insert, Update
from sqlalchemy.ext.asyncio import AsyncSession


async def dml(session: AsyncSession, statement: Update | Delete | Insert) -> int:
    """Run an UPDATE, DELETE or INSERT (no ORM session synchronisation); how many rows it
    changed (an INSERT ... ON CONFLICT DO NOTHING that hit a conflict: 0)."""
    if not isinstance(statement, Insert):
        statement = statement.execution_options(synchronize_session=False)
    result = await session.execute(statement)
    return cast("CursorResult[Any]", result).rowcount
