"""Initial tables: operations, steps, restores, releases, audit_events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPERATION_STATES = ("running", "succeeded", "failed", "cancelled", "interrupted")
STEP_STATES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
RESTORE_KINDS = ("queue_paused", "flag_off")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "operations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("validation", sa.JSON(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("heartbeat_at", aware, nullable=False),
        sa.Column("started_at", aware, nullable=False),
        sa.Column("finished_at", aware, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint(_one_of("state", OPERATION_STATES), name="ck_operations_state"),
        sa.PrimaryKeyConstraint("id", name="pk_operations"),
    )
    op.create_index("ix_operations_started_at", "operations", ["started_at"])
    op.create_index("ix_operations_env_started_at", "operations", ["env", "started_at"])
    op.create_index("ix_operations_state_heartbeat_at", "operations", ["state", "heartbeat_at"])

    op.create_table(
        "steps",
        sa.Column("operation_id", sa.String(32), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", aware, nullable=True),
        sa.Column("finished_at", aware, nullable=True),
        sa.Column("output", sa.Text(), server_default="", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(_one_of("state", STEP_STATES), name="ck_steps_state"),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name="fk_steps_operation_id_operations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_id", "index", name="pk_steps"),
    )

    op.create_table(
        "restores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("operation_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("restored_at", aware, nullable=True),
        sa.CheckConstraint(_one_of("kind", RESTORE_KINDS), name="ck_restores_kind"),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name="fk_restores_operation_id_operations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_restores"),
    )
    op.create_index("ix_restores_operation_id", "restores", ["operation_id"])

    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(40), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("built_at", aware, nullable=False),
        sa.Column("deployed_at", aware, nullable=True),
        sa.Column("known_good", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("marked_by", sa.String(255), nullable=True),
        sa.Column("marked_at", aware, nullable=True),
        sa.Column("operation_id", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name="fk_releases_operation_id_operations",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
        sa.UniqueConstraint("env", "worker", "commit", name="uq_releases_env_worker_commit"),
    )
    op.create_index(
        "ix_releases_env_worker_deployed_at", "releases", ["env", "worker", "deployed_at"]
    )

    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", aware, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("env", sa.String(64), nullable=True),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("operation_id", sa.String(32), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_operation_id", "audit_events", ["operation_id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("releases")
    op.drop_table("restores")
    op.drop_table("steps")
    op.drop_table("operations")
