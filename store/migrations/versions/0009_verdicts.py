"""call_verdicts: every call judged against each rule (issue 17)

One row per rule judged on a call (engine/verdicts.py), unique per (call, rule, key) so a
journal replay writes nothing twice; indexed by time for compliance over a window.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 09:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=32), server_default="", nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("measured", sa.Float(), nullable=True),
        sa.Column("limit", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=16), server_default="", nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("queue", sa.String(length=64), server_default="", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.CheckConstraint("outcome IN ('pass', 'fail', 'not_applicable')",
                           name=op.f("ck_call_verdicts_outcome")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_verdicts")),
    )
    op.create_index("ix_call_verdicts_call_uniqueid_rule_key", "call_verdicts",
                    ["call_uniqueid", "rule", "key"], unique=True)
    op.create_index("ix_call_verdicts_at", "call_verdicts", ["at"])


def downgrade() -> None:
    op.drop_index("ix_call_verdicts_at", table_name="call_verdicts")
    op.drop_index("ix_call_verdicts_call_uniqueid_rule_key", table_name="call_verdicts")
    op.drop_table("call_verdicts")
