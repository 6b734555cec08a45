"""ingest log

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("producer", sa.String(length=64), nullable=False),
        sa.Column("producer_name", sa.String(length=255), nullable=True),
        sa.Column("sender", sa.String(length=64), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("msg_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("issued", sa.BigInteger(), nullable=True),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_log", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_msg", ["producer", "msg_id"], unique=False)
        batch_op.create_index("ix_ingest_producer", ["producer", "received"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ingest_log", schema=None) as batch_op:
        batch_op.drop_index("ix_ingest_producer")
        batch_op.drop_index("ix_ingest_msg")

    op.drop_table("ingest_log")
