"""Shift leads and managers, customer classes, the tickets' daily check (issue 19)

* ``users.role`` takes the escalation chain's people, ``shift_lead`` and
  ``department_manager`` (STD-137, STD-148; the column grows to 24 characters), and
  ``users.team`` says which team a shift lead leads (the board opens on it);
* ``customers.customer_class`` and ``tickets.customer_class``: the class whose deadline
  table a ticket runs (STD-123), ``standard`` for every existing row;
* ``tickets.escalated_to``: the login the last escalation step assigned the ticket to;
* ``ticket_daily_checks``: one row per working day whose daily check was made (STD-125).

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-07 15:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ROLES = ("agent", "supervisor", "qa", "admin")
NEW_ROLES = (*OLD_ROLES, "shift_lead", "department_manager")


def _roles(values: tuple[str, ...]) -> str:
    return "role IN ({})".format(", ".join(f"'{v}'" for v in values))


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("role", type_="check")
        batch.alter_column("role", type_=sa.String(24), existing_type=sa.String(16),
                           existing_nullable=False)
        batch.add_column(sa.Column("team", sa.String(64), nullable=True))
        batch.create_check_constraint("role", _roles(NEW_ROLES))
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("customer_class", sa.String(16),
                                   server_default="standard", nullable=False))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("escalated_to", sa.String(64), nullable=True))
        batch.add_column(sa.Column("customer_class", sa.String(16),
                                   server_default="standard", nullable=False))
    op.create_table(
        "ticket_daily_checks",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_ticket_daily_checks")),
    )


def downgrade() -> None:
    op.drop_table("ticket_daily_checks")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("customer_class")
        batch.drop_column("escalated_to")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("customer_class")
    op.execute(sa.text("DELETE FROM users WHERE role IN ('shift_lead', 'department_manager')"))
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("role", type_="check")
        batch.drop_column("team")
        batch.alter_column("role", type_=sa.String(16), existing_type=sa.String(24),
                           existing_nullable=False)
        batch.create_check_constraint("role", _roles(OLD_ROLES))
