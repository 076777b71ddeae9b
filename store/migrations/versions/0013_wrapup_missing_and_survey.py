"""calls.wrapup_missing and survey_answers (issue 18: wrap-up in ACW, post-call survey)

``calls.wrapup_missing`` flags a call whose ACW ended without the wrap-up form when the
Policy lets the agent go on (``outbound.wrapup_missing_inbound`` = flag).
``survey_answers`` holds one row per survey question of a call: the score 1-5, or no
score when the caller did not answer (``how``: hangup, timeout, invalid).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("wrapup_missing", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
    op.create_table(
        "survey_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("queue", sa.String(length=64), server_default="", nullable=False),
        sa.Column("question", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_answers")),
    )
    op.create_index("ix_survey_answers_call_uniqueid", "survey_answers", ["call_uniqueid"])
    op.create_index("ix_survey_answers_at", "survey_answers", ["at"])


def downgrade() -> None:
    op.drop_index("ix_survey_answers_at", table_name="survey_answers")
    op.drop_index("ix_survey_answers_call_uniqueid", table_name="survey_answers")
    op.drop_table("survey_answers")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("wrapup_missing")
