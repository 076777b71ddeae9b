"""index callback_tasks.updated_at for the desktops' task feed

The dialer pushes every task changed since its last tick to the owning agents'
desktops; without this index that query scans every task ever created.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 01:25:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_callback_tasks_updated_at", "callback_tasks", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_callback_tasks_updated_at", table_name="callback_tasks")
