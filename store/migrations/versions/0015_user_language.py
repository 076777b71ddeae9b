"""users.language: the pages' language a person chose (issue 18, one language per page)

``NULL`` (every login before this revision) means the deployment's default language
(``CALLFLOW_UI_LANGUAGE``, else the Policy's ``greetings.language``); api/language.py.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-07 12:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
