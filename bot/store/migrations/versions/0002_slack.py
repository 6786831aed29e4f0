"""Slack tables: approvals and their votes, the outbox and the messages it posted, seen
requests, the user-group cache.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPROVAL_STATES = ("pending", "approved", "rejected", "expired", "cancelled", "executing", "done")
VOTE_DECISIONS = ("approve", "reject")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("requester", sa.String(255), nullable=False),
        sa.Column("needed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("message_ts", sa.String(64), nullable=True),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("expires_at", aware, nullable=False),
        sa.Column("decided_at", aware, nullable=True),
        sa.Column("operation_id", sa.String(32), nullable=True),
        sa.CheckConstraint(_one_of("state", APPROVAL_STATES), name="ck_approvals_state"),
        sa.CheckConstraint("needed >= 1", name="ck_approvals_needed"),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
    )
    op.create_index("ix_approvals_state_expires_at", "approvals", ["state", "expires_at"])
    op.create_index("ix_approvals_operation_id", "approvals", ["operation_id"])

    op.create_table(
        "approval_votes",
        sa.Column("approval_id", sa.String(32), nullable=False),
        sa.Column("voter", sa.String(255), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("at", aware, nullable=False),
        sa.CheckConstraint(_one_of("decision", VOTE_DECISIONS), name="ck_approval_votes_decision"),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approvals.id"],
            name="fk_approval_votes_approval_id_approvals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("approval_id", "voter", name="pk_approval_votes"),
    )

    op.create_table(
        "slack_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("not_before", aware, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", aware, nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claimed_until", aware, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_slack_outbox"),
    )
    op.create_index(
        "ix_slack_outbox_sent_at_message_key_id", "slack_outbox", ["sent_at", "message_key", "id"]
    )
    op.create_index("ix_slack_outbox_message_key_id", "slack_outbox", ["message_key", "id"])

    op.create_table(
        "slack_messages",
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("ts", sa.String(64), nullable=True),
        sa.Column("thread_ts", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("message_key", name="pk_slack_messages"),
    )

    op.create_table(
        "seen_requests",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("at", aware, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_seen_requests"),
    )
    op.create_index("ix_seen_requests_at", "seen_requests", ["at"])

    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("refreshed_at", aware, nullable=False),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_group_members"),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])

    op.create_table(
        "group_refreshes",
        sa.Column("group_id", sa.String(255), nullable=False),
        sa.Column("refreshed_at", aware, nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_group_refreshes"),
    )


def downgrade() -> None:
    op.drop_table("group_refreshes")
    op.drop_table("group_members")
    op.drop_table("seen_requests")
    op.drop_table("slack_messages")
    op.drop_table("slack_outbox")
    op.drop_table("approval_votes")
    op.drop_table("approvals")
