"""The store's incident log: a mixin of `bot.store.Store` (use `Store`), same rules as
`store.py` (one short transaction per method, frozen records out, text redacted on the way in)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import Incident
from bot.store.records import IncidentRecord


class IncidentStore:
    if TYPE_CHECKING:
        # Provided by `Store`.
        def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]: ...

        def _redact(self, value: str) -> str: ...

        def _redact_json(self, value: Any) -> Any: ...

    async def record_incident(
        self,
        *,
        kind: str,
        env: str,
        worker: str,
        actor: str,
        outcome: str,
        summary: str,
        validation: dict[str, Any],
        now: datetime,
        from_release: str | None = None,
        to_release: str | None = None,
        operation_id: str | None = None,
    ) -> IncidentRecord:
        row = Incident(
            created_at=now,
            kind=kind,
            env=env,
            worker=worker,
            actor=actor,
            outcome=outcome,
            from_release=from_release,
            to_release=to_release,
            summary=self._redact(summary),
            validation=self._redact_json(validation),
            operation_id=operation_id,
        )
        async with self._transaction() as session:
            session.add(row)
            await session.flush()
            return _record(row)

    async def incidents(self, *, limit: int = 20, env: str | None = None) -> list[IncidentRecord]:
        """Newest first."""
        query = select(Incident).order_by(Incident.created_at.desc(), Incident.id.desc())
        if env is not None:
            query = query.where(Incident.env == env)
        async with self._transaction() as session:
            rows = (await session.scalars(query.limit(limit))).all()
        return [_record(r) for r in rows]


def _record(row: Incident) -> IncidentRecord:
    return IncidentRecord(
        id=row.id,
        created_at=row.created_at,
        kind=row.kind,
        env=row.env,
        worker=row.worker,
        actor=row.actor,
        outcome=row.outcome,
        from_release=row.from_release,
        to_release=row.to_release,
        summary=row.summary,
        validation=dict(row.validation),
        operation_id=row.operation_id,
    )
