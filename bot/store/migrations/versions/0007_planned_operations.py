"""Operations planned for a maintenance window: an approval may belong to a window, and one that
needs no approver (the policy asks for none) waits there already approved.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("window_id", sa.String(16), nullable=True))
        batch.create_index("ix_approvals_window_id", ["window_id"])
        batch.drop_constraint("ck_approvals_needed", type_="check")
        batch.create_check_constraint("ck_approvals_needed", "needed >= 0")


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_constraint("ck_approvals_needed", type_="check")
        batch.create_check_constraint("ck_approvals_needed", "needed >= 1")
        batch.drop_index("ix_approvals_window_id")
        batch.drop_column("window_id")
