"""recordings and QA reviews (STD-114..119)

Every recorded call gets a row (file path, duration, size, why QA should listen, whether
the month's sample picked it, when retention purged it); every QA review on the scoring
sheet gets one too. New tables only, so the same script runs on SQLite and PostgreSQL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00+00:00
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
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("number", sa.String(length=64), server_default="", nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("bytes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("qa_selected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("qa_reason", sa.String(length=255), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')",
                           name=op.f("ck_recordings_direction")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_recordings_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
    )
    op.create_index("ix_recordings_call_uniqueid", "recordings", ["call_uniqueid"])
    op.create_index("ix_recordings_number_started_at", "recordings", ["number", "started_at"])
    op.create_index("ix_recordings_agent_id_started_at", "recordings",
                    ["agent_id", "started_at"])
    op.create_index("ix_recordings_started_at", "recordings", ["started_at"])

    op.create_table(
        "qa_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("penalties", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("unqualified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"],
            name=op.f("fk_qa_reviews_recording_id_recordings"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_reviews")),
    )
    op.create_index("ix_qa_reviews_recording_id", "qa_reviews", ["recording_id"])
    op.create_index("ix_qa_reviews_at", "qa_reviews", ["at"])


def downgrade() -> None:
    op.drop_table("qa_reviews")
    op.drop_table("recordings")
