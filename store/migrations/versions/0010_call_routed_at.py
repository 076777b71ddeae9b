"""calls.routed_at and calls.menu: the wait starts after the named-agent menu (issue 17)

The KPI definitions start a caller's wait (t_in) when the call reaches agent routing,
after any menu; until now the store kept only ``entered_at``, when our flow took the
call, before the named-agent question. ``routed_at`` is that t_in and ``menu`` says a
menu came first (a menu call with no ``routed_at`` ended in the menu: IVR-handled).
Calls stored before this revision met no menu as far as the store knows: their
``routed_at`` is their ``entered_at``, which is what their figures were computed from.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 09:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("menu", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
    op.execute("UPDATE calls SET routed_at = entered_at")


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("menu")
        batch.drop_column("routed_at")
