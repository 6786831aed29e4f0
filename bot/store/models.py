"""The bot's own tables. The migrations (`migrations/versions/`) mirror them: 0001 the operations
side, 0002 the Slack side. A test compares models and migrations, so change both together (or
autogenerate the next revision)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from bot.store.records import (
    APPROVAL_STATES,
    OPERATION_STATES,
    RESTORE_KINDS,
    STEP_STATES,
    VOTE_DECISIONS,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that only takes aware datetimes and always gives back aware UTC.

    PostgreSQL keeps the zone (timestamptz); SQLite stores text without one, so values are
    converted to UTC on the way in and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only autoincrements an INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Operation(Base):
    __tablename__ = "operations"
    __table_args__ = (
        CheckConstraint(_one_of("state", OPERATION_STATES), name="state"),
        Index("ix_operations_state_heartbeat_at", "state", "heartbeat_at"),
        Index("ix_operations_env_started_at", "env", "started_at"),
        Index("ix_operations_started_at", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    env: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    command: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    current_step: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str | None] = mapped_column(Text)
    validation: Mapped[Any] = mapped_column(JSON, nullable=True)
    owner: Mapped[str] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=false())


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (
        PrimaryKeyConstraint("operation_id", "index"),
        CheckConstraint(_one_of("state", STEP_STATES), name="state"),
    )

    operation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("operations.id", ondelete="CASCADE")
    )
    index: Mapped[int] = mapped_column(Integer, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    output: Mapped[str] = mapped_column(Text, server_default="")
    error: Mapped[str | None] = mapped_column(Text)


class Restore(Base):
    """Recorded before the change it undoes; `restored_at` set once it has been put back."""

    __tablename__ = "restores"
    __table_args__ = (CheckConstraint(_one_of("kind", RESTORE_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("operations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    env: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("env", "worker", "commit"),
        Index("ix_releases_env_worker_deployed_at", "env", "worker", "deployed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(64))
    worker: Mapped[str] = mapped_column(String(255))
    ref: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(Text)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    known_good: Mapped[bool] = mapped_column(Boolean, server_default=false())
    marked_by: Mapped[str | None] = mapped_column(String(255))
    marked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    operation_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("operations.id", ondelete="SET NULL")
    )


class AuditEvent(Base):
    """Append-only. `operation_id` is deliberately not a foreign key: an audit row must always
    be writable, and it outlives whatever it refers to."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    env: Mapped[str | None] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    operation_id: Mapped[str | None] = mapped_column(String(32), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


# -- Slack (revision 0002) ------------------------------------------------------------------


class Approval(Base):
    """A risky operation requested in Slack, waiting for a second person. `operation_id` is not a
    foreign key (like the audit trail's): finishing an approval must always be writable."""

    __tablename__ = "approvals"
    __table_args__ = (
        CheckConstraint(_one_of("state", APPROVAL_STATES), name="state"),
        CheckConstraint("needed >= 0", name="needed"),
        Index("ix_approvals_state_expires_at", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    env: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    command: Mapped[str] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String(255))
    needed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(255))
    message_ts: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    operation_id: Mapped[str | None] = mapped_column(String(32), index=True)
    window_id: Mapped[str | None] = mapped_column(String(16), index=True)


class ApprovalVote(Base):
    """One vote per voter and approval (the primary key)."""

    __tablename__ = "approval_votes"
    __table_args__ = (
        PrimaryKeyConstraint("approval_id", "voter"),
        CheckConstraint(_one_of("decision", VOTE_DECISIONS), name="decision"),
    )

    approval_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("approvals.id", ondelete="CASCADE")
    )
    voter: Mapped[str] = mapped_column(String(255))
    decision: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlackOutbox(Base):
    """Slack calls owed, sent in `id` order per `message_key`. `sent_at` is set once the entry
    is settled (sent, or given up on); `claimed_by`/`claimed_until` is a sender's lease. Only
    senders of the entry's `scope` claim it (`slack`, or one terminal console's own)."""

    __tablename__ = "slack_outbox"
    __table_args__ = (
        Index("ix_slack_outbox_sent_at_message_key_id", "sent_at", "message_key", "id"),
        Index("ix_slack_outbox_message_key_id", "message_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    message_key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scope: Mapped[str] = mapped_column(String(255), server_default="slack")


class SlackMessage(Base):
    """Where a message the bot posted lives, by the key the outbox knows it under."""

    __tablename__ = "slack_messages"

    message_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel: Mapped[str] = mapped_column(String(255))
    ts: Mapped[str | None] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(64))
    # Set instead of `ts` when the message went through a command's response_url.
    response_url: Mapped[str | None] = mapped_column(Text)


class SeenRequest(Base):
    """Requests already handled (replayed signed requests, double clicks), by a key such as a
    hash of the request."""

    __tablename__ = "seen_requests"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class GroupMember(Base):
    """The role cache: Slack user-group members as of the group's last refresh."""

    __tablename__ = "group_members"
    __table_args__ = (PrimaryKeyConstraint("group_id", "user_id"),)

    group_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GroupRefresh(Base):
    """When each group was last refreshed, so a group refreshed empty still counts as loaded;
    its row is also what serialises two refreshes of one group."""

    __tablename__ = "group_refreshes"

    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Incident(Base):
    """What went wrong with a worker, for the post-mortem: every rollback, every failed
    restart. Written once, never changed."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_env_created_at", "env", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))  # rollback, restart failed
    env: Mapped[str] = mapped_column(String(64))
    worker: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(32))
    from_release: Mapped[str | None] = mapped_column(String(255))  # a commit or an image
    to_release: Mapped[str | None] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(Text)
    validation: Mapped[dict[str, Any]] = mapped_column(JSON)
    operation_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("operations.id", ondelete="SET NULL")
    )


class Window(Base):
    """A maintenance window of one environment: announced, reminded, opened (maintenance flag
    set) and closed by the scheduler through its notices."""

    __tablename__ = "windows"
    __table_args__ = (Index("ix_windows_env_starts_at", "env", "starts_at"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    env: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))  # scheduled, open, closed, cancelled
    cancelled_by: Mapped[str | None] = mapped_column(String(255))


class WindowNotice(Base):
    """One thing the scheduler must do for a window, once: claimed by setting `done_at`."""

    __tablename__ = "window_notices"
    __table_args__ = (
        UniqueConstraint("window_id", "kind"),
        Index("ix_window_notices_done_at_due_at", "done_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    window_id: Mapped[str] = mapped_column(String(16), ForeignKey("windows.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # announce, remind:<minutes>, open, close
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))  # sent, skipped, cancelled
    done_by: Mapped[str | None] = mapped_column(String(255))
