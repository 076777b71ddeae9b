"""customers and customer_numbers: the identity gate's customer record (issue 18)

A customer's header (surname, title), personal fields hidden until the caller is
verified (STD-077), the PIN as a salted hash only, and the numbers they call from.
Reveals and edits are written to the existing ``audit_log``.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07 12:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("surname", sa.String(length=64), nullable=False),
        sa.Column("given_name", sa.String(length=64), server_default="", nullable=False),
        sa.Column("title", sa.String(length=32), server_default="", nullable=False),
        sa.Column("account", sa.String(length=64), server_default="", nullable=False),
        sa.Column("address", sa.String(length=255), server_default="", nullable=False),
        sa.Column("id_tail", sa.String(length=8), server_default="", nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_table(
        "customer_numbers",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE",
                                name=op.f("fk_customer_numbers_customer_id_customers")),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_customer_numbers")),
    )
    op.create_index("ix_customer_numbers_customer_id", "customer_numbers", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_customer_numbers_customer_id", table_name="customer_numbers")
    op.drop_table("customer_numbers")
    op.drop_table("customers")
