"""The store's maintenance windows: a mixin of `bot.store.Store` (use `Store`), same rules as
`store.py` (one short transaction per method, frozen records out, text redacted on the way in).

Each window has one notice row per thing the scheduler must do (announce, each reminder, open,
close). A notice is done by one conditional UPDATE (`done_at IS NULL`), so of two schedulers
running at once exactly one does it.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import BadInput
from bot.store.models import Approval, Window, WindowNotice
from bot.store.records import NoticeRecord, WindowRecord
from bot.store.sql import dml

ANNOUNCE, OPEN, CLOSE = "announce", "open", "close"
REMIND = "remind:"


class WindowStore:
    if TYPE_CHECKING:
        # Provided by `Store`.
        def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]: ...

        def _redact(self, value: str) -> str: ...

        def _redact_json(self, value: Any) -> Any: ...

    async def create_window(
        self,
        *,
        env: str,
        starts_at: datetime,
        ends_at: datetime,
        reason: str,
        timezone: str,
        channel: str | None,
        created_by: str,
        reminders_min: tuple[int, ...],
        now: datetime,
    ) -> WindowRecord:
        """A scheduled window and its notices: the announcement now, each reminder that is
        still ahead, the opening and the closing."""
        row = Window(
            id=f"w-{secrets.token_hex(3)}",
            env=env,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=self._redact(reason),
            timezone=timezone,
            channel=channel,
            created_by=created_by,
            created_at=now,
            state="scheduled",
        )
        async with self._transaction() as session:
            session.add(row)
            await session.flush()
            for kind, due in _notices(starts_at, ends_at, reminders_min, now):
                session.add(WindowNotice(window_id=row.id, kind=kind, due_at=due))
        return _window_record(row)

    async def reschedule_window(
        self,
        window_id: str,
        *,
        starts_at: datetime,
        ends_at: datetime,
        reminders_min: tuple[int, ...],
        now: datetime,
    ) -> WindowRecord:
        """Move a scheduled window: its reminders, opening and closing not done yet are
        replaced by those of the new times (the announcement stays, to be updated in place);
        the approvals of operations planned for it now last until its new end."""
        async with self._transaction() as session:
            row = await session.get(Window, window_id)
            if row is None:
                raise BadInput(f"no window {window_id!r}; see chatops window list")
            if row.state != "scheduled":
                raise BadInput(
                    f"window {window_id} is {row.state}: only a window not open yet can move"
                )
            row.starts_at, row.ends_at = starts_at, ends_at
            await dml(
                session,
                delete(WindowNotice).where(
                    WindowNotice.window_id == window_id,
                    WindowNotice.done_at.is_(None),
                    WindowNotice.kind != ANNOUNCE,
                ),
            )
            for kind, due in _notices(starts_at, ends_at, reminders_min, now)[1:]:
                session.add(WindowNotice(window_id=window_id, kind=kind, due_at=due))
            await dml(
                session,
                update(Approval)
                .where(Approval.window_id == window_id, Approval.state.in_(("pending", "approved")))
                .values(expires_at=ends_at),
            )
            return _window_record(row)

    async def window(self, window_id: str) -> WindowRecord | None:
        async with self._transaction() as session:
            row = await session.get(Window, window_id)
            return _window_record(row) if row else None

    async def windows(
        self, *, env: str | None = None, since: datetime | None = None
    ) -> list[WindowRecord]:
        """Windows ending after `since` (all when None), soonest first."""
        query = select(Window).order_by(Window.starts_at, Window.id)
        if env is not None:
            query = query.where(Window.env == env)
        if since is not None:
            query = query.where(Window.ends_at >= since)
        async with self._transaction() as session:
            return [_window_record(r) for r in (await session.scalars(query)).all()]

    async def cancel_window(self, window_id: str, *, by: str, now: datetime) -> WindowRecord:
        """Cancel a scheduled or open window: its notices not yet done are dropped.
        Returns the window as it was (its state says whether it was open)."""
        async with self._transaction() as session:
            row = await session.get(Window, window_id)
            if row is None:
                raise BadInput(f"no window {window_id!r}; see chatops window list")
            before = _window_record(row)
            if row.state not in ("scheduled", "open"):
                raise BadInput(f"window {window_id} is already {row.state}")
            row.state = "cancelled"
            row.cancelled_by = by
            await dml(
                session,
                update(WindowNotice)
                .where(WindowNotice.window_id == window_id, WindowNotice.done_at.is_(None))
                .values(done_at=now, outcome="cancelled", done_by=by),
            )
        return before

    async def due_notices(self, *, now: datetime) -> list[NoticeRecord]:
        """Notices not done whose time has come, oldest first."""
        async with self._transaction() as session:
            rows = (
                await session.execute(
                    select(WindowNotice, Window)
                    .join(Window, Window.id == WindowNotice.window_id)
                    .where(WindowNotice.done_at.is_(None), WindowNotice.due_at <= now)
                    .order_by(WindowNotice.due_at, WindowNotice.id)
                )
            ).all()
        return [NoticeRecord(n.id, _window_record(w), n.kind, n.due_at) for n, w in rows]

    async def next_notice_due(self) -> datetime | None:
        """When the next notice not done is due; what the scheduler sleeps until."""
        async with self._transaction() as session:
            due: datetime | None = await session.scalar(
                select(WindowNotice.due_at)
                .where(WindowNotice.done_at.is_(None))
                .order_by(WindowNotice.due_at)
                .limit(1)
            )
        return due

    async def claim_notice(
        self, notice_id: int, *, by: str, now: datetime, outcome: str = "sent"
    ) -> bool:
        """Mark the notice done; False when someone else already did (do nothing then)."""
        async with self._transaction() as session:
            done = await dml(
                session,
                update(WindowNotice)
                .where(WindowNotice.id == notice_id, WindowNotice.done_at.is_(None))
                .values(done_at=now, outcome=outcome, done_by=by),
            )
        return done == 1

    async def set_window_state(self, window_id: str, state: str) -> None:
        async with self._transaction() as session:
            await dml(session, update(Window).where(Window.id == window_id).values(state=state))

    async def notices_of(self, window_id: str) -> list[tuple[str, str | None]]:
        """(kind, outcome) of each notice, in due order: what `window show` lists."""
        async with self._transaction() as session:
            rows = (
                await session.execute(
                    select(WindowNotice.kind, WindowNotice.outcome)
                    .where(WindowNotice.window_id == window_id)
                    .order_by(WindowNotice.due_at, WindowNotice.id)
                )
            ).all()
        return [(kind, outcome) for kind, outcome in rows]


def _notices(
    starts_at: datetime, ends_at: datetime, reminders_min: tuple[int, ...], now: datetime
) -> list[tuple[str, datetime]]:
    """The announcement now, each reminder still ahead, the opening and the closing."""
    # Announced first, even for a window that starts now (or started a moment ago).
    notices = [(ANNOUNCE, min(now, starts_at))]
    for minutes in sorted(set(reminders_min), reverse=True):
        due = starts_at - timedelta(minutes=minutes)
        if due > now:
            notices.append((f"{REMIND}{minutes}", due))
    return [*notices, (OPEN, starts_at), (CLOSE, ends_at)]


def _window_record(row: Window) -> WindowRecord:
    return WindowRecord(
        id=row.id,
        env=row.env,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        reason=row.reason,
        timezone=row.timezone,
        channel=row.channel,
        created_by=row.created_by,
        created_at=row.created_at,
        state=row.state,
        cancelled_by=row.cancelled_by,
    )
