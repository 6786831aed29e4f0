"""A message the bot could not post in its channel (not a member) lives behind the command's
response_url instead: remember that URL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("slack_messages") as batch:
        batch.add_column(sa.Column("response_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("slack_messages") as batch:
        batch.drop_column("response_url")
