"""The bot's own database: operations and their steps, restores, releases and the audit trail
(here), and the Slack side: approvals, the outbox, seen requests, the user-group cache (`slack.py`).

Every method is one short transaction and returns frozen records (`bot/store/records.py`), never
ORM objects. Every free text that goes into a row passes through `bot.redact.redact` first: the
store is the last line of defence against a token or a URL password landing in the database.
A database that cannot be reached raises `StoreUnavailable`, naming it without its password.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from secrets import token_hex
from typing import Any, cast

from sqlalchemy import URL, Select, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from bot.errors import BadInput, UnknownOperation
from bot.redact import redact
from bot.store import migrate
from bot.store.engine import (
    create_engine,
    describe_url,
    is_unavailable,
    normalise_url,
    probe_sqlite,
    unavailable,
)
from bot.store.incidents import IncidentStore
from bot.store.models import AuditEvent, Operation, Release, Restore, Step
from bot.store.records import (
    OPERATION_STATES,
    RESTORE_KINDS,
    STEP_STATES,
    AuditRecord,
    OperationRecord,
    OperationState,
    ReleaseRecord,
    RestoreKind,
    RestoreRecord,
    StepRecord,
    StepState,
)
from bot.store.slack import SlackStore
from bot.store.sql import dml as _dml
from bot.store.windows import WindowStore

logger = logging.getLogger(__name__)

OUTPUT_LIMIT_BYTES = 16 * 1024
"""A step keeps the last this-many bytes of its output."""

_COMMIT = re.compile(r"[0-9a-f]{40}")
_COMMIT_PREFIX = re.compile(r"[0-9a-f]{4,40}")


def new_operation_id() -> str:
    return f"op-{token_hex(5)}"


def tail_bytes(text: str, limit: int = OUTPUT_LIMIT_BYTES) -> str:
    """The end of `text` that fits in `limit` UTF-8 bytes (never half a character)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", errors="ignore")


def interrupted_summary(plan: Sequence[str], current_step: int | None) -> str:
    why = "its process stopped heartbeating"
    if not plan:
        return f"interrupted: {why}"
    if current_step is None:
        return f"interrupted before step 1 of {len(plan)} ({plan[0]}): {why}"
    index = min(max(current_step, 0), len(plan) - 1)
    return f"interrupted at step {index + 1} of {len(plan)} ({plan[index]}): {why}"


class Store(SlackStore, IncidentStore, WindowStore):
    """Open with `await Store.open(url)`, then `await store.upgrade()`; `await store.close()`.

    The operations side is here; approvals, the Slack outbox, seen requests and the user-group
    cache come from `SlackStore` (`bot/store/slack.py`)."""

    def __init__(self, engine: AsyncEngine, url: URL, *, secrets: Iterable[str] = ()) -> None:
        self._engine = engine
        self._url = url
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        own = [url.password] if isinstance(url.password, str) else []
        self._secrets = tuple({*secrets, *own})

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str | URL,
        *,
        secrets: Iterable[str] = (),
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 30.0,
    ) -> Store:
        """Connect (and check the database answers); `postgresql://`, `sqlite:///path` welcome.

        `secrets` are values masked in every stored text, on top of the patterns `redact` knows.
        """
        normalised = normalise_url(url)
        if normalised.get_backend_name() == "sqlite":
            await asyncio.to_thread(probe_sqlite, normalised, timeout_s=connect_timeout_s)
        engine = create_engine(
            normalised, connect_timeout_s=connect_timeout_s, command_timeout_s=command_timeout_s
        )
        store = cls(engine, engine.url, secrets=secrets)
        try:
            await store.ping()
        except BaseException:
            await engine.dispose()
            raise
        return store

    @property
    def url(self) -> str:
        """The database's URL with its password masked."""
        return describe_url(self._url)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        try:
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(exc, self._url) from exc
            raise

    async def upgrade(self) -> None:
        """Migrate to the newest revision; concurrent callers wait for each other."""
        try:
            await migrate.upgrade(self._engine)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(exc, self._url) from exc
            raise

    async def revision(self) -> str | None:
        """The migration revision the database is at (None before the first upgrade)."""
        try:
            return await migrate.current_revision(self._engine)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(exc, self._url) from exc
            raise

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions.begin() as session:
                yield session
        except StatementError as exc:
            if is_unavailable(exc):
                raise unavailable(exc, self._url) from exc
            if isinstance(exc.orig, ValueError) and not isinstance(exc, DBAPIError):
                raise exc.orig from None  # a value our column types refused (a naive datetime)
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(exc, self._url) from exc
            raise

    # -- redaction -------------------------------------------------------------------------

    def _redact(self, value: str) -> str:
        return redact(value, secrets=self._secrets)

    def _redact_optional(self, value: str | None) -> str | None:
        return None if value is None else self._redact(value)

    def _redact_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, Mapping):
            return {
                (self._redact(k) if isinstance(k, str) else k): self._redact_json(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._redact_json(v) for v in value]
        return value

    # -- operations ------------------------------------------------------------------------

    async def create_operation(
        self,
        *,
        kind: str,
        env: str,
        target: str,
        actor: str,
        source: str,
        command: str,
        reason: str | None,
        params: Mapping[str, Any],
        plan: Sequence[str],
        owner: str,
        now: datetime,
        op_id: str | None = None,
    ) -> OperationRecord:
        """Record a `running` operation and its plan's steps (`pending`) before anything runs.

        `op_id` lets the caller choose the id (e.g. to name it in a lock first); by default a new
        `op-` + 10 hex one.
        """
        op_id = op_id or new_operation_id()
        row = Operation(
            id=op_id,
            kind=kind,
            env=env,
            target=target,
            actor=actor,
            source=source,
            command=self._redact(command),
            reason=self._redact_optional(reason),
            params=self._redact_json(dict(params)),
            plan=list(plan),
            state="running",
            current_step=None,
            summary=None,
            validation=None,
            owner=owner,
            heartbeat_at=now,
            started_at=now,
            finished_at=None,
            cancel_requested=False,
        )
        steps = [
            Step(
                operation_id=op_id,
                index=i,
                name=name,
                state="pending",
                started_at=None,
                finished_at=None,
                output="",
                error=None,
            )
            for i, name in enumerate(plan)
        ]
        async with self._transaction() as session:
            session.add(row)
            await session.flush()
            session.add_all(steps)
        logger.debug("operation %s recorded: %s %s in %s by %s", op_id, kind, target, env, actor)
        return _operation_record(row, steps)

    async def heartbeat(self, op_id: str, *, owner: str, now: datetime) -> bool:
        """Renew; False when the operation is no longer running under this owner (claimed)."""
        async with self._transaction() as session:
            count = await _dml(
                session,
                update(Operation)
                .where(
                    Operation.id == op_id,
                    Operation.owner == owner,
                    Operation.state == "running",
                )
                .values(heartbeat_at=now),
            )
            return count == 1

    async def start_step(self, op_id: str, index: int, *, now: datetime) -> None:
        async with self._transaction() as session:
            count = await _dml(
                session,
                update(Step)
                .where(Step.operation_id == op_id, Step.index == index)
                .values(state="running", started_at=now),
            )
            if count != 1:
                raise ValueError(f"operation {op_id} has no step {index}")
            await _dml(
                session, update(Operation).where(Operation.id == op_id).values(current_step=index)
            )

    async def finish_step(
        self,
        op_id: str,
        index: int,
        *,
        state: StepState | str,
        output: str | None = None,
        error: str | None = None,
        now: datetime,
    ) -> None:
        """End a step. `output`, when given, replaces what `append_step_output` collected."""
        if state not in STEP_STATES or state in ("pending", "running"):
            raise ValueError(f"a step cannot finish as {state!r}")
        values: dict[str, Any] = {
            "state": state,
            "finished_at": now,
            "error": self._redact_optional(error),
        }
        if output is not None:
            values["output"] = tail_bytes(self._redact(output))
        async with self._transaction() as session:
            count = await _dml(
                session,
                update(Step)
                .where(Step.operation_id == op_id, Step.index == index)
                .values(**values),
            )
            if count != 1:
                raise ValueError(f"operation {op_id} has no step {index}")

    async def append_step_output(self, op_id: str, index: int, text: str) -> None:
        """Add to a step's output, keeping the last `OUTPUT_LIMIT_BYTES` (16 KiB)."""
        if not text:
            return
        async with self._transaction() as session:
            current = await session.scalar(
                select(Step.output)
                .where(Step.operation_id == op_id, Step.index == index)
                .with_for_update()
            )
            if current is None:
                raise ValueError(f"operation {op_id} has no step {index}")
            # Redact the joined text so that a secret split across two chunks is still caught.
            output = tail_bytes(self._redact(current + text))
            await _dml(
                session,
                update(Step)
                .where(Step.operation_id == op_id, Step.index == index)
                .values(output=output),
            )

    async def finish_operation(
        self,
        op_id: str,
        *,
        state: OperationState | str,
        summary: str,
        validation: Any = None,
        now: datetime,
    ) -> bool:
        """Record the outcome. False when the operation had already ended (e.g. another process
        claimed it as interrupted); the row is then left as it is."""
        if state not in OPERATION_STATES or state == "running":
            raise ValueError(f"an operation cannot finish as {state!r}")
        async with self._transaction() as session:
            count = await _dml(
                session,
                update(Operation)
                .where(Operation.id == op_id, Operation.state == "running")
                .values(
                    state=state,
                    summary=self._redact(summary),
                    validation=self._redact_json(validation),
                    finished_at=now,
                ),
            )
            finished = count == 1
        if finished:
            logger.debug("operation %s %s: %s", op_id, state, self._redact(summary))
        else:
            logger.warning("operation %s had already ended; %s not recorded", op_id, state)
        return finished

    async def request_cancel(self, op_id: str) -> OperationRecord:
        """Ask the running operation to stop at its next checkpoint; UnknownOperation if none."""
        async with self._transaction() as session:
            await _dml(
                session,
                update(Operation)
                .where(Operation.id == op_id, Operation.state == "running")
                .values(cancel_requested=True),
            )
            record = await _load_operation(session, op_id)
        if record is None:
            raise UnknownOperation(op_id)
        return record

    async def cancel_requested(self, op_id: str) -> bool:
        async with self._transaction() as session:
            requested = await session.scalar(
                select(Operation.cancel_requested).where(Operation.id == op_id)
            )
        if requested is None:
            raise UnknownOperation(op_id)
        return requested

    async def get_operation(self, op_id: str) -> OperationRecord | None:
        async with self._transaction() as session:
            return await _load_operation(session, op_id)

    async def list_operations(self, *, limit: int, env: str | None = None) -> list[OperationRecord]:
        """Newest first, each with its steps."""
        query = select(Operation).order_by(Operation.started_at.desc(), Operation.id.desc())
        if env is not None:
            query = query.where(Operation.env == env)
        async with self._transaction() as session:
            rows = (await session.scalars(query.limit(limit))).all()
            steps = await _load_steps(session, [r.id for r in rows])
        return [_operation_record(r, steps[r.id]) for r in rows]

    async def claim_lapsed(
        self, *, now: datetime, lapse_s: float, claimer: str
    ) -> list[OperationRecord]:
        """Mark `interrupted` the running operations whose heartbeat is older than `lapse_s`.

        Each is claimed by a conditional UPDATE, so of two processes claiming at once exactly one
        gets it. The caller puts back the claimed operations' `pending_restores`.
        """
        cutoff = now - timedelta(seconds=lapse_s)
        async with self._transaction() as session:
            candidates = (
                await session.execute(
                    select(Operation.id, Operation.plan, Operation.current_step, Operation.owner)
                    .where(Operation.state == "running", Operation.heartbeat_at < cutoff)
                    .order_by(Operation.started_at)
                )
            ).all()
        claimed: list[str] = []
        for op_id, plan, current_step, owner in candidates:
            summary = interrupted_summary(plan, current_step)
            async with self._transaction() as session:
                count = await _dml(
                    session,
                    update(Operation)
                    .where(
                        Operation.id == op_id,
                        Operation.state == "running",
                        Operation.heartbeat_at < cutoff,
                        Operation.current_step.is_not_distinct_from(current_step),
                    )
                    .values(state="interrupted", summary=summary, finished_at=now),
                )
                if count != 1:
                    continue  # another claimer was first, or it came back to life
                await _dml(
                    session,
                    update(Step)
                    .where(Step.operation_id == op_id, Step.state == "running")
                    .values(
                        state="failed",
                        finished_at=now,
                        error=self._redact(
                            f"interrupted: its process ({owner}) stopped heartbeating; "
                            f"claimed by {claimer}"
                        ),
                    ),
                )
            claimed.append(op_id)
            logger.warning("operation %s claimed by %s: %s", op_id, claimer, summary)
        records = []
        for op_id in claimed:
            record = await self.get_operation(op_id)
            if record is not None:
                records.append(record)
        return records

    # -- restores --------------------------------------------------------------------------

    async def add_restore(
        self, op_id: str, *, kind: RestoreKind | str, env: str, key: str, now: datetime
    ) -> int:
        """Record what to put back should the operation die; call BEFORE making the change."""
        if kind not in RESTORE_KINDS:
            raise ValueError(f"unknown restore kind {kind!r}")
        row = Restore(
            operation_id=op_id, kind=kind, env=env, key=key, created_at=now, restored_at=None
        )
        async with self._transaction() as session:
            session.add(row)
            await session.flush()
            return row.id

    async def mark_restored(self, restore_id: int, *, now: datetime) -> bool:
        """True when it was pending (False: already restored, perhaps by another process)."""
        async with self._transaction() as session:
            count = await _dml(
                session,
                update(Restore)
                .where(Restore.id == restore_id, Restore.restored_at.is_(None))
                .values(restored_at=now),
            )
            return count == 1

    async def pending_restores(self, op_id: str) -> list[RestoreRecord]:
        """Not yet put back, in the order they were recorded."""
        async with self._transaction() as session:
            rows = (
                await session.scalars(
                    select(Restore)
                    .where(Restore.operation_id == op_id, Restore.restored_at.is_(None))
                    .order_by(Restore.id)
                )
            ).all()
        return [_restore_record(r) for r in rows]

    # -- releases --------------------------------------------------------------------------

    async def record_release(
        self,
        *,
        env: str,
        worker: str,
        ref: str,
        commit: str,
        path: str,
        now: datetime,
        operation_id: str | None = None,
    ) -> ReleaseRecord:
        """Record a built release; the same (env, worker, commit) again renews ref, path and
        built_at (its deploy and known-good marks stay)."""
        commit = _full_commit(commit)
        values = {
            "env": env,
            "worker": worker,
            "ref": ref,
            "commit": commit,
            "path": path,
            "built_at": now,
            "known_good": False,
            "operation_id": operation_id,
        }
        key = [Release.env, Release.worker, Release.commit]
        async with self._transaction() as session:
            if self.dialect == "postgresql":
                pg = postgresql.insert(Release).values(values)
                pg = pg.on_conflict_do_update(
                    index_elements=key,
                    set_=_release_upsert_set(pg.excluded),
                )
                await session.execute(pg)
            else:
                lite = sqlite.insert(Release).values(values)
                lite = lite.on_conflict_do_update(
                    index_elements=key,
                    set_=_release_upsert_set(lite.excluded),
                )
                await session.execute(lite)
            row = await session.scalar(_release_query(env, worker).where(Release.commit == commit))
            assert row is not None
            return _release_record(row)

    async def mark_deployed(
        self, env: str, worker: str, commit: str, *, now: datetime
    ) -> ReleaseRecord | None:
        """It is now the running release (None when no such release was recorded)."""
        return await self._update_release(env, worker, commit, deployed_at=now)

    async def mark_known_good(
        self, env: str, worker: str, commit: str, *, by: str, now: datetime
    ) -> ReleaseRecord | None:
        """A rollback may return to it (None when no such release was recorded)."""
        return await self._update_release(
            env, worker, commit, known_good=True, marked_by=by, marked_at=now
        )

    async def _update_release(
        self, env: str, worker: str, commit: str, **values: Any
    ) -> ReleaseRecord | None:
        commit = _full_commit(commit)
        async with self._transaction() as session:
            await _dml(
                session,
                update(Release)
                .where(Release.env == env, Release.worker == worker, Release.commit == commit)
                .values(**values),
            )
            row = await session.scalar(_release_query(env, worker).where(Release.commit == commit))
            return None if row is None else _release_record(row)

    async def releases(self, env: str, worker: str, *, limit: int = 20) -> list[ReleaseRecord]:
        """Newest deployed first; never-deployed builds after them, newest built first."""
        async with self._transaction() as session:
            rows = (
                await session.scalars(_newest_first(_release_query(env, worker)).limit(limit))
            ).all()
        return [_release_record(r) for r in rows]

    async def current_release(self, env: str, worker: str) -> ReleaseRecord | None:
        """The most recently deployed release."""
        query = _newest_first(_release_query(env, worker).where(Release.deployed_at.is_not(None)))
        async with self._transaction() as session:
            row = await session.scalar(query.limit(1))
        return None if row is None else _release_record(row)

    async def last_known_good(
        self, env: str, worker: str, *, exclude_commit: str | None
    ) -> ReleaseRecord | None:
        """The most recently deployed known-good release other than `exclude_commit` (the running
        one): what a rollback returns to."""
        query = _release_query(env, worker).where(Release.known_good.is_(True))
        if exclude_commit is not None:
            query = query.where(Release.commit != exclude_commit.lower())
        async with self._transaction() as session:
            row = await session.scalar(_newest_first(query).limit(1))
        return None if row is None else _release_record(row)

    async def find_release(
        self, env: str, worker: str, ref_or_commit_prefix: str
    ) -> ReleaseRecord | None:
        """By full commit, else by ref (the newest with it), else by a unique commit prefix of at
        least 4 hex digits. An ambiguous prefix is `BadInput` naming the candidates."""
        wanted = ref_or_commit_prefix.strip()
        lowered = wanted.lower()
        base = _release_query(env, worker)
        async with self._transaction() as session:
            if _COMMIT.fullmatch(lowered):
                row = await session.scalar(base.where(Release.commit == lowered))
                if row is not None:
                    return _release_record(row)
            row = await session.scalar(_newest_first(base.where(Release.ref == wanted)).limit(1))
            if row is not None:
                return _release_record(row)
            if not _COMMIT_PREFIX.fullmatch(lowered):
                return None
            rows = (
                await session.scalars(
                    _newest_first(base.where(Release.commit.startswith(lowered))).limit(6)
                )
            ).all()
        if len(rows) > 1:
            shown = ", ".join(r.commit[:12] for r in rows[:5])
            raise BadInput(
                f"commit prefix {wanted!r} matches several releases of {worker} in {env}: {shown}"
            )
        return _release_record(rows[0]) if rows else None

    # -- audit -----------------------------------------------------------------------------

    async def audit(
        self,
        *,
        actor: str,
        source: str,
        kind: str,
        command: str,
        outcome: str,
        env: str | None = None,
        reason: str | None = None,
        duration_ms: int | None = None,
        operation_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        now: datetime,
    ) -> None:
        row = AuditEvent(
            at=now,
            actor=actor,
            source=source,
            env=env,
            command=self._redact(command),
            kind=kind,
            reason=self._redact_optional(reason),
            outcome=self._redact(outcome),
            duration_ms=duration_ms,
            operation_id=operation_id,
            details=self._redact_json(dict(details or {})),
        )
        async with self._transaction() as session:
            session.add(row)

    async def audit_events(
        self, *, limit: int, operation_id: str | None = None
    ) -> list[AuditRecord]:
        """Newest first."""
        query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        if operation_id is not None:
            query = query.where(AuditEvent.operation_id == operation_id)
        async with self._transaction() as session:
            rows = (await session.scalars(query.limit(limit))).all()
        return [_audit_record(r) for r in rows]


# -- queries and conversions ---------------------------------------------------------------


async def _load_steps(session: AsyncSession, op_ids: Sequence[str]) -> dict[str, list[Step]]:
    grouped: dict[str, list[Step]] = defaultdict(list)
    if op_ids:
        rows = await session.scalars(
            select(Step).where(Step.operation_id.in_(op_ids)).order_by(Step.index)
        )
        for step in rows:
            grouped[step.operation_id].append(step)
    return grouped


async def _load_operation(session: AsyncSession, op_id: str) -> OperationRecord | None:
    row = await session.get(Operation, op_id, populate_existing=True)
    if row is None:
        return None
    steps = await _load_steps(session, [op_id])
    return _operation_record(row, steps[op_id])


def _full_commit(commit: str) -> str:
    lowered = commit.strip().lower()
    if not _COMMIT.fullmatch(lowered):
        raise ValueError(f"not a full 40-hex commit: {commit!r}")
    return lowered


def _release_query(env: str, worker: str) -> Select[Release]:
    return select(Release).where(Release.env == env, Release.worker == worker)


def _newest_first(query: Select[Release]) -> Select[Release]:
    # Portable NULLS LAST: deployed ones first, then by date.
    return query.order_by(
        Release.deployed_at.is_(None),
        Release.deployed_at.desc(),
        Release.built_at.desc(),
        Release.id.desc(),
    )


def _release_upsert_set(excluded: ReadOnlyColumnCollection[str, Any]) -> dict[str, Any]:
    """On a rebuild of the same commit: new ref, path and build time; deploy marks stay."""
    return {
        "ref": excluded.ref,
        "path": excluded.path,
        "built_at": excluded.built_at,
        "operation_id": func.coalesce(excluded.operation_id, Release.operation_id),
    }


def _step_record(row: Step) -> StepRecord:
    return StepRecord(
        operation_id=row.operation_id,
        index=row.index,
        name=row.name,
        state=cast(StepState, row.state),
        started_at=row.started_at,
        finished_at=row.finished_at,
        output=row.output,
        error=row.error,
    )


def _operation_record(row: Operation, steps: Iterable[Step]) -> OperationRecord:
    return OperationRecord(
        id=row.id,
        kind=row.kind,
        env=row.env,
        target=row.target,
        actor=row.actor,
        source=row.source,
        command=row.command,
        reason=row.reason,
        params=dict(row.params),
        plan=tuple(row.plan),
        state=cast(OperationState, row.state),
        current_step=row.current_step,
        summary=row.summary,
        validation=row.validation,
        owner=row.owner,
        heartbeat_at=row.heartbeat_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        cancel_requested=row.cancel_requested,
        steps=tuple(_step_record(s) for s in steps),
    )


def _restore_record(row: Restore) -> RestoreRecord:
    return RestoreRecord(
        id=row.id,
        operation_id=row.operation_id,
        kind=cast(RestoreKind, row.kind),
        env=row.env,
        key=row.key,
        created_at=row.created_at,
        restored_at=row.restored_at,
    )


def _release_record(row: Release) -> ReleaseRecord:
    return ReleaseRecord(
        id=row.id,
        env=row.env,
        worker=row.worker,
        ref=row.ref,
        commit=row.commit,
        path=row.path,
        built_at=row.built_at,
        deployed_at=row.deployed_at,
        known_good=row.known_good,
        marked_by=row.marked_by,
        marked_at=row.marked_at,
        operation_id=row.operation_id,
    )


def _audit_record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        source=row.source,
        env=row.env,
        command=row.command,
        kind=row.kind,
        reason=row.reason,
        outcome=row.outcome,
        duration_ms=row.duration_ms,
        operation_id=row.operation_id,
        details=dict(row.details),
    )
