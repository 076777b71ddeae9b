"""tickets and ticket_history: tickets on a working-day calendar (issue 19)

A ticket keeps its facts (logged, replied, handled, followed up, resolved, the
escalation level reached) and its links (call, caller number, agent, recording); the
clocks and the escalation steps are derived from them by engine/tickets.py. ``version``
is the optimistic lock of concurrent updates. ``ticket_history`` is every change.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 12:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_tickets_{name}"))


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=48), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("priority", sa.String(length=8), server_default="normal", nullable=False),
        sa.Column("status", sa.String(length=24), server_default="open", nullable=False),
        sa.Column("owner_kind", sa.String(length=16), server_default="agent", nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=True),
        sa.Column("caller_number", sa.String(length=64), server_default="", nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("recording_id", sa.Integer(), nullable=True),
        sa.Column("customer_name", sa.String(length=100), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("opened_at", when, nullable=False),
        sa.Column("replied_at", when, nullable=True),
        sa.Column("handled_at", when, nullable=True),
        sa.Column("followed_up_at", when, nullable=True),
        sa.Column("resolved_at", when, nullable=True),
        sa.Column("test_since", when, nullable=True),
        sa.Column("promised_at", when, nullable=True),
        sa.Column("closed_at", when, nullable=True),
        sa.Column("escalation_level", sa.Integer(), server_default=sa.text("0"),
                  nullable=False),
        sa.Column("followup_task_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("updated_at", when, nullable=False),
        _one_of("type", ("enquiry", "back_office", "complaint_simple", "complaint_complex",
                         "suggestion", "fault"), "type"),
        _one_of("status", ("open", "in_progress", "awaiting_test", "resolved",
                           "awaiting_confirmation", "closed"), "status"),
        _one_of("priority", ("low", "normal", "high", "urgent"), "priority"),
        _one_of("owner_kind", ("agent", "team", "back_office"), "owner_kind"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("number", name=op.f("uq_tickets_number")),
    )
    op.create_index("ix_tickets_status_opened_at", "tickets", ["status", "opened_at"])
    op.create_index("ix_tickets_owner_id", "tickets", ["owner_id"])
    op.create_index("ix_tickets_caller_number", "tickets", ["caller_number"])
    op.create_index("ix_tickets_call_uniqueid", "tickets", ["call_uniqueid"])
    op.create_table(
        "ticket_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=24), nullable=True),
        sa.Column("to_status", sa.String(length=24), nullable=True),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE",
                                name=op.f("fk_ticket_history_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_history")),
    )
    op.create_index("ix_ticket_history_ticket_id_at", "ticket_history", ["ticket_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_history_ticket_id_at", table_name="ticket_history")
    op.drop_table("ticket_history")
    op.drop_index("ix_tickets_call_uniqueid", table_name="tickets")
    op.drop_index("ix_tickets_caller_number", table_name="tickets")
    op.drop_index("ix_tickets_owner_id", table_name="tickets")
    op.drop_index("ix_tickets_status_opened_at", table_name="tickets")
    op.drop_table("tickets")
