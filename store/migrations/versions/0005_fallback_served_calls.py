"""calls the dialplan's fallback queue served (issue 14)

When the engine is away, the dialplan queues callers with a plain ``Queue()`` and
records them with ``MixMonitor``; the engine enters those calls afterwards from
Asterisk's own records (CEL, ``callflow/recovery.py``). ``calls.fallback_served`` says
the fallback queue, not our flow, routed the call (its outcome stays answered or
abandoned, so the KPIs count it like any other).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 12:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("fallback_served", sa.Boolean(),
                                   server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("fallback_served")
