"""journal_applied: the journal records that are in the database (issue 14)

Every record goes to a local journal before the database (store/journal.py); the
record's row and its ``journal_applied`` row are written in one transaction, so a
journal replayed after a crash applies each record exactly once, insert-type records
(agent states, alarms) too. Rows are deleted once their journal file is.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 10:00:00+00:00
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
    op.create_table(
        "journal_applied",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("journal", sa.String(length=32), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_applied")),
    )
    op.create_index("ix_journal_applied_journal_segment", "journal_applied",
                    ["journal", "segment"])


def downgrade() -> None:
    op.drop_index("ix_journal_applied_journal_segment", table_name="journal_applied")
    op.drop_table("journal_applied")
