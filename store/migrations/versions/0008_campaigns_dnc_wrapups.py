"""campaigns, do_not_call, wrapups; callback_tasks.campaign_id (issue 16, STD-092)

Campaign lists become tasks of the existing dialer (``callback_tasks.campaign_id``,
a plain nullable column: ADD COLUMN on SQLite and PostgreSQL, no table rebuild);
the do-not-call list is one row per normalised number; the wrap-up form of each call
is one row in ``wrapups``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 06:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("agents", sa.JSON(), nullable=False),
        sa.Column("queue", sa.String(length=64), server_default="", nullable=False),
        sa.Column("days", sa.JSON(), nullable=False),
        sa.Column("window_start", sa.String(length=5), nullable=False),
        sa.Column("window_end", sa.String(length=5), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_spacing_min", sa.Float(), nullable=False),
        sa.Column("caller_id_key", sa.String(length=64), server_default="", nullable=False),
        sa.Column("created_by", sa.String(length=64), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f("ck_campaigns_status")),
        sa.CheckConstraint("max_attempts >= 1",
                           name=op.f("ck_campaigns_max_attempts_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    op.create_table(
        "do_not_call",
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("added_by", sa.String(length=64), server_default="", nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_do_not_call")),
    )
    op.create_table(
        "wrapups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("disposition", sa.String(length=32), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("submitted_by", sa.String(length=16), server_default="", nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.agent_id"],
                                name=op.f("fk_wrapups_agent_id_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wrapups")),
    )
    op.create_index("ix_wrapups_call_uniqueid", "wrapups", ["call_uniqueid"])
    op.add_column("callback_tasks", sa.Column("campaign_id", sa.Integer(), nullable=True))
    op.create_index("ix_callback_tasks_campaign_id", "callback_tasks", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_callback_tasks_campaign_id", table_name="callback_tasks")
    op.drop_column("callback_tasks", "campaign_id")
    op.drop_index("ix_wrapups_call_uniqueid", table_name="wrapups")
    op.drop_table("wrapups")
    op.drop_table("do_not_call")
    op.drop_table("campaigns")
