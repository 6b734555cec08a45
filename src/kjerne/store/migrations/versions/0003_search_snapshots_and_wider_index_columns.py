"""search snapshots and wider index columns

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_snapshot",
        sa.Column("sid", sa.String(length=36), nullable=False),
        sa.Column("pos", sa.Integer(), nullable=False),
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sid", "pos"),
    )
    op.create_table(
        "search_snapshot_info",
        sa.Column("sid", sa.String(length=36), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("query_hash", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("sid"),
    )
    with op.batch_alter_table("search_snapshot_info", schema=None) as batch_op:
        batch_op.create_index("ix_snapshot_created", ["created"], unique=False)

    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.alter_column(
            "system", existing_type=sa.VARCHAR(length=255), type_=sa.String(length=512), existing_nullable=True
        )
        batch_op.alter_column(
            "code", existing_type=sa.VARCHAR(length=64), type_=sa.String(length=512), existing_nullable=True
        )
        batch_op.alter_column(
            "unit", existing_type=sa.VARCHAR(length=64), type_=sa.String(length=512), existing_nullable=True
        )

    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.alter_column(
            "ident_system", existing_type=sa.VARCHAR(length=255), type_=sa.String(length=512), existing_nullable=True
        )
        batch_op.alter_column(
            "ident_value", existing_type=sa.VARCHAR(length=255), type_=sa.String(length=512), existing_nullable=True
        )

    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.alter_column(
            "system", existing_type=sa.VARCHAR(length=255), type_=sa.String(length=512), existing_nullable=True
        )
        batch_op.alter_column(
            "code", existing_type=sa.VARCHAR(length=255), type_=sa.String(length=512), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.alter_column(
            "code", existing_type=sa.String(length=512), type_=sa.VARCHAR(length=255), existing_nullable=True
        )
        batch_op.alter_column(
            "system", existing_type=sa.String(length=512), type_=sa.VARCHAR(length=255), existing_nullable=True
        )

    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.alter_column(
            "ident_value", existing_type=sa.String(length=512), type_=sa.VARCHAR(length=255), existing_nullable=True
        )
        batch_op.alter_column(
            "ident_system", existing_type=sa.String(length=512), type_=sa.VARCHAR(length=255), existing_nullable=True
        )

    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.alter_column(
            "unit", existing_type=sa.String(length=512), type_=sa.VARCHAR(length=64), existing_nullable=True
        )
        batch_op.alter_column(
            "code", existing_type=sa.String(length=512), type_=sa.VARCHAR(length=64), existing_nullable=True
        )
        batch_op.alter_column(
            "system", existing_type=sa.String(length=512), type_=sa.VARCHAR(length=255), existing_nullable=True
        )

    with op.batch_alter_table("search_snapshot_info", schema=None) as batch_op:
        batch_op.drop_index("ix_snapshot_created")

    op.drop_table("search_snapshot_info")
    op.drop_table("search_snapshot")
