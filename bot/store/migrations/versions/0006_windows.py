"""Maintenance windows and their notices; incident releases wide enough for image references.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "windows",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cancelled_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_windows"),
    )
    op.create_index("ix_windows_env_starts_at", "windows", ["env", "starts_at"])
    op.create_table(
        "window_notices",
        sa.Column("id", _BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("window_id", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("done_by", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["windows.id"],
            name="fk_window_notices_window_id_windows",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_window_notices"),
        sa.UniqueConstraint("window_id", "kind", name="uq_window_notices_window_id_kind"),
    )
    op.create_index("ix_window_notices_done_at_due_at", "window_notices", ["done_at", "due_at"])
    with op.batch_alter_table("incidents") as batch:
        for column in ("from_release", "to_release"):
            batch.alter_column(
                column, existing_type=sa.String(40), type_=sa.String(255), existing_nullable=True
            )


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        for column in ("from_release", "to_release"):
            batch.alter_column(
                column, existing_type=sa.String(255), type_=sa.String(40), existing_nullable=True
            )
    op.drop_index("ix_window_notices_done_at_due_at", table_name="window_notices")
    op.drop_table("window_notices")
    op.drop_index("ix_windows_env_starts_at", table_name="windows")
    op.drop_table("windows")
