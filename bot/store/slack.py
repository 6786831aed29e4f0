"""The store's Slack side: approvals, the outbox, seen requests and the user-group cache.

`SlackStore` is a mixin that `bot.store.Store` inherits (use `Store`, never this class alone); the
rules are the same as in `store.py`: one short transaction per method, frozen records out, free
text and JSON redacted on the way in, `now` passed in by the caller (the store never reads the
clock), an unreachable database raised as `StoreUnavailable`.

Races between processes (two replicas, two clicks) are settled by the database, never by a read
in Python followed by a write: a conditional UPDATE that only one writer can win, or a row lock
taken by the transaction's first statement (an UPDATE, which on SQLite also takes the database's
write lock) before the rows it guards are read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from secrets import token_hex
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, case, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.errors import BadInput
from bot.store.models import (
    Approval,
    ApprovalVote,
    Base,
    GroupMember,
    GroupRefresh,
    SeenRequest,
    SlackMessage,
    SlackOutbox,
)
from bot.store.records import (
    VOTE_DECISIONS,
    ApprovalRecord,
    ApprovalState,
    ApprovalVoteRecord,
    OutboxEntry,
    SlackMessageRecord,
    VoteDecision,
    VoteOutcome,
    VoteRefusal,
)
from bot.store.sql import dml

logger = logging.getLogger(__name__)

SLACK_SCOPE = "slack"  # the outbox entries any `chatops serve` delivers

FINISHED_APPROVAL_STATES: tuple[ApprovalState, ...] = ("done", "cancelled")
"""What `finish_approval` may move an `executing` approval to."""


class UnknownApproval(BadInput):
    def __init__(self, approval_id: str) -> None:
        super().__init__(f"no approval {approval_id!r}")
        self.approval_id = approval_id


# The start of `slack_retry`'s error for a try that may have reached Slack (no answer came).
UNCERTAIN = "no answer: "


def new_approval_id() -> str:
    return f"ap-{token_hex(5)}"


def _require_aware(*values: datetime) -> None:
    """The check `UTCDateTime` makes, for datetimes compared in Python before reaching a row."""
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store; use UTC")


class SlackStore:
    if TYPE_CHECKING:
        # Provided by `Store`.
        @property
        def dialect(self) -> str: ...

        def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]: ...

        def _redact(self, value: str) -> str: ...

        def _redact_json(self, value: Any) -> Any: ...

    def _insert(self, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that knows ON CONFLICT (both dialects spell it the same)."""
        if self.dialect == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    # -- approvals -------------------------------------------------------------------------

    async def create_approval(
        self,
        *,
        kind: str,
        env: str,
        target: str,
        request: Mapping[str, Any],
        command: str,
        requester: str,
        needed: int,
        channel: str,
        now: datetime,
        expires_at: datetime,
        window_id: str | None = None,
    ) -> ApprovalRecord:
        """Record a `pending` approval (id `ap-` + 10 hex), before its Slack message is posted.

        `request` and `command` are redacted like everything else the store keeps: the request
        that comes back (and runs once approved) is the stored one. Planned for a window, it may
        need no approver: it is then `approved` from the start and waits for the window.
        """
        _require_aware(now, expires_at)
        if needed < (0 if window_id else 1):
            raise ValueError(f"an approval needs at least 1 approver, not {needed}")
        if expires_at <= now:
            raise ValueError("an approval must expire after it is created")
        row = Approval(
            id=new_approval_id(),
            kind=kind,
            env=env,
            target=target,
            request=self._redact_json(dict(request)),
            command=self._redact(command),
            requester=requester,
            needed=needed,
            state="pending" if needed else "approved",
            channel=channel,
            message_ts=None,
            created_at=now,
            expires_at=expires_at,
            decided_at=None if needed else now,
            operation_id=None,
            window_id=window_id,
        )
        async with self._transaction() as session:
            session.add(row)
        logger.debug(
            "approval %s requested by %s: %s %s in %s", row.id, requester, kind, target, env
        )
        return _approval_record(row, [])

    async def set_approval_message(self, approval_id: str, *, channel: str, ts: str) -> None:
        """Where the approval's request message was posted; UnknownApproval if there is none."""
        async with self._transaction() as session:
            count = await dml(
                session,
                update(Approval)
                .where(Approval.id == approval_id)
                .values(channel=channel, message_ts=ts),
            )
        if count != 1:
            raise UnknownApproval(approval_id)

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        async with self._transaction() as session:
            return await _load_approval(session, approval_id)

    async def vote(
        self, approval_id: str, *, voter: str, decision: VoteDecision | str, now: datetime
    ) -> VoteOutcome:
        """Count `voter`'s vote, or refuse it (see `VoteOutcome`); UnknownApproval if none.

        The first statement locks the approval's row, so votes on one approval are counted one
        at a time: of two concurrent votes that each could decide it, one decides it and the
        other finds it decided (`not_pending`). A vote at or after `expires_at` marks a pending
        approval `expired` and is refused. A reject decides at once; approvals decide when they
        reach `needed`.
        """
        if decision not in VOTE_DECISIONS:
            raise ValueError(f"unknown vote {decision!r}")
        _require_aware(now)
        reason: VoteRefusal | None = None
        decided = False
        async with self._transaction() as session:
            locked = await dml(
                session,
                update(Approval).where(Approval.id == approval_id).values(state=Approval.state),
            )
            if locked != 1:
                raise UnknownApproval(approval_id)
            current = await _load_approval(session, approval_id)
            assert current is not None
            if current.state == "expired":
                reason = "expired"
            elif current.state != "pending":
                reason = "not_pending"
            elif now >= current.expires_at:
                await _set_state(session, approval_id, "pending", "expired", decided_at=now)
                reason = "expired"
            elif voter == current.requester:
                reason = "own_request"
            elif any(v.voter == voter for v in current.votes):
                reason = "already_voted"
            else:
                session.add(
                    ApprovalVote(approval_id=approval_id, voter=voter, decision=decision, at=now)
                )
                await session.flush()
                approvals = len(current.approvers) + (1 if decision == "approve" else 0)
                if decision == "reject":
                    decided = await _set_state(
                        session, approval_id, "pending", "rejected", decided_at=now
                    )
                elif approvals >= current.needed:
                    decided = await _set_state(
                        session, approval_id, "pending", "approved", decided_at=now
                    )
            record = await _load_approval(session, approval_id)
        assert record is not None
        if reason is None:
            logger.debug(
                "approval %s: %s by %s (now %s)", approval_id, decision, voter, record.state
            )
        else:
            logger.debug("approval %s: %s by %s refused: %s", approval_id, decision, voter, reason)
        return VoteOutcome(accepted=reason is None, reason=reason, approval=record, decided=decided)

    async def claim_execution(self, approval_id: str, *, now: datetime) -> bool:
        """`approved` → `executing`: True for exactly one caller, who then runs the request."""
        async with self._transaction() as session:
            claimed = await _set_state(session, approval_id, "approved", "executing")
        if claimed:
            logger.debug("approval %s executing since %s", approval_id, now.isoformat())
        return claimed

    async def finish_approval(
        self,
        approval_id: str,
        *,
        operation_id: str | None,
        state: ApprovalState | str = "done",
    ) -> bool:
        """`executing` → `done` (or `cancelled`, when the request never ran), naming the operation
        that ran it. False when the approval was not executing (the row is left as it is)."""
        if state not in FINISHED_APPROVAL_STATES:
            raise ValueError(f"an approval cannot finish as {state!r}")
        async with self._transaction() as session:
            count = await dml(
                session,
                update(Approval)
                .where(Approval.id == approval_id, Approval.state == "executing")
                .values(state=state, operation_id=operation_id),
            )
        return count == 1

    async def expire_due(self, *, now: datetime) -> list[ApprovalRecord]:
        """Mark `expired` the pending approvals whose `expires_at` has come; each is returned to
        exactly one caller (of several processes expiring at once), oldest deadline first."""
        async with self._transaction() as session:
            due = (
                await session.scalars(
                    select(Approval.id)
                    .where(Approval.state == "pending", Approval.expires_at <= now)
                    .order_by(Approval.expires_at, Approval.id)
                )
            ).all()
        if not due:
            return []
        records: list[ApprovalRecord] = []
        async with self._transaction() as session:
            for approval_id in due:
                count = await dml(
                    session,
                    update(Approval)
                    .where(
                        Approval.id == approval_id,
                        Approval.state == "pending",
                        Approval.expires_at <= now,
                    )
                    .values(state="expired", decided_at=now),
                )
                if count == 1:
                    record = await _load_approval(session, approval_id)
                    assert record is not None
                    records.append(record)
        return records

    async def planned_for(self, window_id: str) -> list[ApprovalRecord]:
        """The operations planned for a window, in the order they were requested."""
        async with self._transaction() as session:
            rows = (
                await session.scalars(
                    select(Approval)
                    .where(Approval.window_id == window_id)
                    .order_by(Approval.created_at, Approval.id)
                )
            ).all()
            votes = await _load_votes(session, [r.id for r in rows])
            return [_approval_record(r, votes[r.id]) for r in rows]

    async def end_planned(
        self, window_id: str, *, state: ApprovalState, now: datetime
    ) -> list[ApprovalRecord]:
        """A window closed or was cancelled: its planned operations that never started (pending,
        or approved and unclaimed) become `state`; each is returned to exactly one caller."""
        ended: list[ApprovalRecord] = []
        for planned in await self.planned_for(window_id):
            if planned.state not in ("pending", "approved"):
                continue
            async with self._transaction() as session:
                if await _set_state(session, planned.id, planned.state, state, decided_at=now):
                    record = await _load_approval(session, planned.id)
                    assert record is not None
                    ended.append(record)
        return ended

    async def cancel_approval(self, approval_id: str, *, by: str, now: datetime) -> bool:
        """`pending` → `cancelled`; False when it was no longer pending (or is unknown). Who may
        cancel is the caller's rule; `by` goes to the log (audit it with `Store.audit`)."""
        async with self._transaction() as session:
            cancelled = await _set_state(
                session, approval_id, "pending", "cancelled", decided_at=now
            )
        if cancelled:
            logger.debug("approval %s cancelled by %s", approval_id, by)
        return cancelled

    # -- outbox ----------------------------------------------------------------------------

    async def enqueue_slack(
        self,
        *,
        message_key: str,
        method: str,
        args: Mapping[str, Any],
        now: datetime,
        coalesce: bool = False,
        once: bool = False,
        scope: str = SLACK_SCOPE,
    ) -> int:
        """Owe Slack a call (due at once); its id. `args` are redacted before they are stored.

        With `coalesce`, when the newest entry of `message_key` is an unsent, unclaimed call of
        the same `method`, its args are replaced in place (same id, same place in the order, same
        `not_before`) instead of adding an entry: a burst of updates costs one call. An entry a
        sender has claimed is never changed (its old args may be on the wire).

        With `once`, an entry of `message_key` and `method` already stored (sent or not) is kept
        and its id returned: a writer that does not know whether its first try was stored (the
        database went away before it answered) tries again without owing the call twice.
        """
        stored = self._redact_json(dict(args))
        if once:
            async with self._transaction() as session:
                first = await session.scalar(
                    select(SlackOutbox.id)
                    .where(SlackOutbox.message_key == message_key, SlackOutbox.method == method)
                    .order_by(SlackOutbox.id)
                    .limit(1)
                )
            if first is not None:
                return int(first)
        if coalesce:
            async with self._transaction() as session:
                newest = (
                    await session.execute(
                        select(SlackOutbox.id, SlackOutbox.method)
                        .where(SlackOutbox.message_key == message_key)
                        .order_by(SlackOutbox.id.desc())
                        .limit(1)
                    )
                ).first()
            if newest is not None and newest.method == method:
                later = aliased(SlackOutbox)
                async with self._transaction() as session:
                    count = await dml(
                        session,
                        update(SlackOutbox)
                        .where(
                            SlackOutbox.id == newest.id,
                            SlackOutbox.sent_at.is_(None),
                            SlackOutbox.claimed_by.is_(None),
                            ~exists().where(later.message_key == message_key, later.id > newest.id),
                        )
                        .values(args=stored),
                    )
                if count == 1:
                    return int(newest.id)
        row = SlackOutbox(
            message_key=message_key,
            method=method,
            args=stored,
            created_at=now,
            not_before=now,
            attempts=0,
            last_error=None,
            sent_at=None,
            claimed_by=None,
            claimed_until=None,
            scope=scope,
        )
        async with self._transaction() as session:
            session.add(row)
            await session.flush()
            return row.id

    async def claim_slack(
        self,
        *,
        now: datetime,
        limit: int,
        claimer: str,
        lease_s: float,
        scope: str = SLACK_SCOPE,
    ) -> list[OutboxEntry]:
        """Claim up to `limit` due entries for `lease_s` seconds, oldest first.

        Only the oldest unsent entry of each `message_key` can be claimed, and only when it is
        due (`not_before` <= now) and not leased to another sender (never claimed, released by
        `slack_retry`, its lease over, or left leased to `claimer` by a round of its own that an
        error cut short): a message's calls go out one at a time, in order. Each
        claim is a conditional UPDATE, so two senders never hold the same entry. An entry whose
        lease runs out before `slack_sent`, or whose last try ended in a timeout (its error starts
        with `UNCERTAIN`), comes back `uncertain`: its call may have reached Slack (the sender
        looks before posting again), as does one left leased to `claimer`. Only entries of `scope`
        are claimed.
        """
        heads = (
            select(func.min(SlackOutbox.id).label("id"))
            .where(SlackOutbox.sent_at.is_(None))
            .group_by(SlackOutbox.message_key)
            .subquery()
        )
        async with self._transaction() as session:
            rows = (
                await session.execute(
                    select(SlackOutbox.id, SlackOutbox.claimed_by, SlackOutbox.last_error)
                    .join(heads, heads.c.id == SlackOutbox.id)
                    .where(
                        SlackOutbox.scope == scope,
                        SlackOutbox.not_before <= now,
                        _claimable(now, claimer),
                    )
                    .order_by(SlackOutbox.id)
                    .limit(limit)
                )
            ).all()
        if not rows:
            return []
        candidates = [entry_id for entry_id, _, _ in rows]
        # A lease that ran out unsettled (`slack_retry` and `slack_sent` clear or end it), or a
        # try whose answer never came (a timeout: Slack may have taken it).
        uncertain = {
            entry_id
            for entry_id, claimed_by, last_error in rows
            if claimed_by is not None or (last_error or "").startswith(UNCERTAIN)
        }
        until = now + timedelta(seconds=lease_s)
        earlier = aliased(SlackOutbox)
        claimed: list[int] = []
        async with self._transaction() as session:
            for entry_id in candidates:
                count = await dml(
                    session,
                    update(SlackOutbox)
                    .where(
                        SlackOutbox.id == entry_id,
                        SlackOutbox.sent_at.is_(None),
                        _claimable(now, claimer),
                        ~exists().where(
                            earlier.message_key == SlackOutbox.message_key,
                            earlier.id < SlackOutbox.id,
                            earlier.sent_at.is_(None),
                        ),
                    )
                    .values(claimed_by=claimer, claimed_until=until),
                )
                if count == 1:
                    claimed.append(entry_id)
            if not claimed:
                return []
            # Read after claiming: the args as they are now (a coalesced update included).
            entries = (
                await session.scalars(
                    select(SlackOutbox)
                    .where(SlackOutbox.id.in_(claimed))
                    .order_by(SlackOutbox.id)
                    .execution_options(populate_existing=True)
                )
            ).all()
            return [
                dataclasses.replace(_outbox_entry(e), uncertain=e.id in uncertain) for e in entries
            ]

    async def end_slack_leases(self, process: str, *, now: datetime) -> int:
        """End the leases of every sender of `process` (a dead one's, found by a takeover): its
        entries may be claimed at once, as `uncertain`, rather than a lease later."""
        async with self._transaction() as session:
            return await dml(
                session,
                update(SlackOutbox)
                .where(
                    SlackOutbox.sent_at.is_(None),
                    SlackOutbox.claimed_until > now,
                    SlackOutbox.claimed_by.startswith(f"{process}:", autoescape=True),
                )
                .values(claimed_until=now),
            )

    async def slack_sent(self, entry_id: int, *, result: Any, now: datetime) -> bool:
        """Settle an entry: sent (or given up on, `result` saying why), the next of its message
        may go. False when it was already settled (the first result stays)."""
        async with self._transaction() as session:
            count = await dml(
                session,
                update(SlackOutbox)
                .where(SlackOutbox.id == entry_id, SlackOutbox.sent_at.is_(None))
                .values(sent_at=now, result=self._redact_json(result)),
            )
        return count == 1

    async def slack_retry(
        self, entry_id: int, *, not_before: datetime, error: str, now: datetime
    ) -> bool:
        """Not sent this time: try again from `not_before`, the claim released (attempts + 1).
        Its message's later entries keep waiting behind it. False when it was already settled."""
        async with self._transaction() as session:
            count = await dml(
                session,
                update(SlackOutbox)
                .where(SlackOutbox.id == entry_id, SlackOutbox.sent_at.is_(None))
                .values(
                    attempts=SlackOutbox.attempts + 1,
                    last_error=self._redact(error),
                    not_before=not_before,
                    claimed_by=None,
                    claimed_until=None,
                ),
            )
        if count == 1:
            logger.debug(
                "outbox entry %s retried at %s after %s",
                entry_id,
                now.isoformat(),
                self._redact(error),
            )
        return count == 1

    async def slack_calls_since(
        self, *, method: str, since: datetime, scope: str = SLACK_SCOPE
    ) -> int:
        """How many `method` entries of `scope` were settled since `since`, by every sender:
        what a budget shared by the bot's replicas counts against."""
        async with self._transaction() as session:
            count: int | None = await session.scalar(
                select(func.count(SlackOutbox.id)).where(
                    SlackOutbox.sent_at >= since,
                    SlackOutbox.method == method,
                    SlackOutbox.scope == scope,
                )
            )
        return int(count or 0)

    async def next_slack_due(self, *, scope: str = SLACK_SCOPE) -> datetime | None:
        """When the earliest unsent entry of `scope` may next be claimed (its `not_before`, or
        the end of its lease); None when nothing is pending. What an idle sender sleeps until."""
        ready_at = case(
            (
                SlackOutbox.claimed_until.is_not(None)
                & (SlackOutbox.claimed_until > SlackOutbox.not_before),
                SlackOutbox.claimed_until,
            ),
            else_=SlackOutbox.not_before,
        )
        async with self._transaction() as session:
            due: datetime | None = await session.scalar(
                select(func.min(ready_at)).where(
                    SlackOutbox.sent_at.is_(None), SlackOutbox.scope == scope
                )
            )
        return due

    async def pending_slack(self, *, limit: int) -> list[OutboxEntry]:
        """Unsent entries, oldest first (for diagnostics)."""
        async with self._transaction() as session:
            rows = (
                await session.scalars(
                    select(SlackOutbox)
                    .where(SlackOutbox.sent_at.is_(None))
                    .order_by(SlackOutbox.id)
                    .limit(limit)
                )
            ).all()
        return [_outbox_entry(r) for r in rows]

    async def forget_slack_sent_before(self, *, before: datetime) -> int:
        """Delete entries settled before `before`; how many (cleanup)."""
        async with self._transaction() as session:
            return await dml(
                session,
                delete(SlackOutbox).where(
                    SlackOutbox.sent_at.is_not(None), SlackOutbox.sent_at < before
                ),
            )

    async def slack_message(self, message_key: str) -> SlackMessageRecord | None:
        async with self._transaction() as session:
            row = await session.get(SlackMessage, message_key, populate_existing=True)
            return None if row is None else _slack_message_record(row)

    async def set_slack_message(
        self,
        message_key: str,
        *,
        channel: str,
        ts: str | None,
        thread_ts: str | None = None,
        response_url: str | None = None,
    ) -> None:
        """Record (or replace) where the message known as `message_key` lives."""
        values = {
            "message_key": message_key,
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "response_url": response_url,
        }
        statement = self._insert(SlackMessage).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[SlackMessage.message_key],
            set_={
                "channel": statement.excluded.channel,
                "ts": statement.excluded.ts,
                "thread_ts": statement.excluded.thread_ts,
                "response_url": statement.excluded.response_url,
            },
        )
        async with self._transaction() as session:
            await dml(session, statement)

    # -- seen requests ---------------------------------------------------------------------

    async def remember_request(self, key: str, *, now: datetime) -> bool:
        """True the first time `key` is seen (run the request), False ever after (a replay, a
        double click), however many processes ask at once."""
        statement = (
            self._insert(SeenRequest)
            .values(key=key, at=now)
            .on_conflict_do_nothing(index_elements=[SeenRequest.key])
        )
        async with self._transaction() as session:
            return await dml(session, statement) == 1

    async def forget_requests_before(self, *, before: datetime) -> int:
        """Forget requests seen before `before`; how many (cleanup)."""
        async with self._transaction() as session:
            return await dml(session, delete(SeenRequest).where(SeenRequest.at < before))

    # -- user-group cache ------------------------------------------------------------------

    async def replace_group_members(
        self, group_id: str, users: Iterable[str], *, now: datetime
    ) -> bool:
        """Make `users` the group's members as of `now`, atomically (readers see the old list or
        the new one). False, and nothing changed, when a refresh newer than `now` is stored."""
        members = sorted(set(users))
        upsert = self._insert(GroupRefresh).values(group_id=group_id, refreshed_at=now)
        upsert = upsert.on_conflict_do_update(
            index_elements=[GroupRefresh.group_id],
            set_={"refreshed_at": upsert.excluded.refreshed_at},
            where=GroupRefresh.refreshed_at <= upsert.excluded.refreshed_at,
        )
        async with self._transaction() as session:
            # First: this row's lock serialises two refreshes of the group.
            if await dml(session, upsert) != 1:
                return False
            await dml(session, delete(GroupMember).where(GroupMember.group_id == group_id))
            if members:
                await session.execute(
                    insert(GroupMember),
                    [{"group_id": group_id, "user_id": u, "refreshed_at": now} for u in members],
                )
        return True

    async def groups_of(self, user_id: str) -> set[str]:
        async with self._transaction() as session:
            rows = await session.scalars(
                select(GroupMember.group_id).where(GroupMember.user_id == user_id)
            )
            return set(rows)

    async def group_members(self, group_id: str) -> frozenset[str]:
        """The group's members as of its last refresh (empty if never refreshed)."""
        async with self._transaction() as session:
            rows = await session.scalars(
                select(GroupMember.user_id).where(GroupMember.group_id == group_id)
            )
            return frozenset(rows)

    async def groups_refreshed_at(self, group_id: str) -> datetime | None:
        """When the group was last refreshed (None: never), even if it was refreshed empty."""
        async with self._transaction() as session:
            return await session.scalar(
                select(GroupRefresh.refreshed_at).where(GroupRefresh.group_id == group_id)
            )


# -- queries and conversions ---------------------------------------------------------------


def _unleased(now: datetime) -> ColumnElement[bool]:
    return or_(SlackOutbox.claimed_until.is_(None), SlackOutbox.claimed_until <= now)


def _claimable(now: datetime, claimer: str) -> ColumnElement[bool]:
    """Unleased, or leased to `claimer` itself: a sender runs one round at a time, so its own
    lease can only be left over from a round an error cut short (the store going away between
    a Slack call and `slack_sent`); waiting out the lease would hold the message back a minute."""
    return or_(_unleased(now), SlackOutbox.claimed_by == claimer)


async def _set_state(
    session: AsyncSession,
    approval_id: str,
    old: ApprovalState,
    new: ApprovalState,
    **values: Any,
) -> bool:
    """`old` → `new`, only if it is still `old`: True for the one caller that moved it."""
    count = await dml(
        session,
        update(Approval)
        .where(Approval.id == approval_id, Approval.state == old)
        .values(state=new, **values),
    )
    return count == 1


async def _load_votes(
    session: AsyncSession, approval_ids: Sequence[str]
) -> dict[str, list[ApprovalVote]]:
    grouped: dict[str, list[ApprovalVote]] = defaultdict(list)
    if approval_ids:
        rows = await session.scalars(
            select(ApprovalVote)
            .where(ApprovalVote.approval_id.in_(approval_ids))
            .order_by(ApprovalVote.at, ApprovalVote.voter)
            .execution_options(populate_existing=True)
        )
        for vote in rows:
            grouped[vote.approval_id].append(vote)
    return grouped


async def _load_approval(session: AsyncSession, approval_id: str) -> ApprovalRecord | None:
    row = await session.get(Approval, approval_id, populate_existing=True)
    if row is None:
        return None
    votes = await _load_votes(session, [approval_id])
    return _approval_record(row, votes[approval_id])


def _vote_record(row: ApprovalVote) -> ApprovalVoteRecord:
    return ApprovalVoteRecord(
        approval_id=row.approval_id,
        voter=row.voter,
        decision=cast(VoteDecision, row.decision),
        at=row.at,
    )


def _approval_record(row: Approval, votes: Iterable[ApprovalVote]) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id,
        kind=row.kind,
        env=row.env,
        target=row.target,
        request=dict(row.request),
        command=row.command,
        requester=row.requester,
        needed=row.needed,
        state=cast(ApprovalState, row.state),
        channel=row.channel,
        message_ts=row.message_ts,
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        operation_id=row.operation_id,
        votes=tuple(_vote_record(v) for v in votes),
        window_id=row.window_id,
    )


def _outbox_entry(row: SlackOutbox) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        message_key=row.message_key,
        method=row.method,
        args=dict(row.args),
        created_at=row.created_at,
        not_before=row.not_before,
        attempts=row.attempts,
        last_error=row.last_error,
        sent_at=row.sent_at,
        result=row.result,
        claimed_by=row.claimed_by,
        claimed_until=row.claimed_until,
    )


def _slack_message_record(row: SlackMessage) -> SlackMessageRecord:
    return SlackMessageRecord(
        message_key=row.message_key,
        channel=row.channel,
        ts=row.ts,
        thread_ts=row.thread_ts,
        response_url=row.response_url,
    )
