"""every ending Asterisk can report: offer results, pbx failures, legs (issue 13)

A phone that answers an offer with 486 Busy made the call-record writes fail the old
``ck_call_offers_result`` and lost the records: the offer results now take every result
the call machine gives (busy, declined, unavailable, forwarded, pbx_failure). Calls gain
``ending`` (how they ended, for people) and ``incomplete_reason`` (why Asterisk's facts
for the end are missing); ``released_by`` takes ``pbx`` and ``outcome`` takes
``fallback`` and ``pbx_failure``; each answered offer keeps ``left_at``, when that agent's
part of the call ended (a transfer moves the caller to another agent's leg).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 10:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_OUTCOMES = ("answered", "abandoned", "short_abandon", "callback", "ivr_handled",
                "no_answer", "busy", "failed", "silent", "quiet_line", "noisy_line",
                "nuisance", "harassing", "wrong_number")
NEW_OUTCOMES = ("answered", "abandoned", "short_abandon", "callback", "ivr_handled",
                "fallback", "no_answer", "busy", "failed", "pbx_failure", "silent",
                "quiet_line", "noisy_line", "nuisance", "harassing", "wrong_number")
OLD_RELEASED = ("caller", "agent", "system")
NEW_RELEASED = ("caller", "agent", "system", "pbx")
OLD_RESULTS = ("answered", "no_answer", "caller_gone", "failed")
NEW_RESULTS = ("answered", "no_answer", "busy", "declined", "unavailable", "forwarded",
               "caller_gone", "pbx_failure", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _swap(outcomes: tuple[str, ...], released: tuple[str, ...],
          results: tuple[str, ...]) -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_constraint(op.f("ck_calls_outcome"), type_="check")
        batch.drop_constraint(op.f("ck_calls_released_by"), type_="check")
        batch.create_check_constraint("outcome", _in("outcome", outcomes))
        batch.create_check_constraint("released_by", _in("released_by", released))
    with op.batch_alter_table("call_offers") as batch:
        batch.drop_constraint(op.f("ck_call_offers_result"), type_="check")
        batch.create_check_constraint("result", _in("result", results))


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("ending", sa.String(length=24), nullable=True))
        batch.add_column(sa.Column("incomplete_reason", sa.String(length=200), nullable=True))
    with op.batch_alter_table("call_offers") as batch:
        batch.add_column(sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))
    _swap(NEW_OUTCOMES, NEW_RELEASED, NEW_RESULTS)


def downgrade() -> None:
    op.execute("UPDATE call_offers SET result = 'failed' WHERE result NOT IN "
               f"({', '.join(repr(v) for v in OLD_RESULTS)})")
    op.execute("UPDATE calls SET released_by = NULL WHERE released_by = 'pbx'")
    op.execute("UPDATE calls SET outcome = 'failed' WHERE outcome IN ('fallback', "
               "'pbx_failure')")
    _swap(OLD_OUTCOMES, OLD_RELEASED, OLD_RESULTS)
    with op.batch_alter_table("call_offers") as batch:
        batch.drop_column("left_at")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("incomplete_reason")
        batch.drop_column("ending")
