"""resource store and search index

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idx_date",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("low", sa.BigInteger(), nullable=False),
        sa.Column("high", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.create_index("ix_date_lookup", ["res_type", "param", "low"], unique=False)
        batch_op.create_index("ix_date_patient", ["patient", "res_type", "param", "high"], unique=False)
        batch_op.create_index("ix_date_rid", ["rid", "param"], unique=False)

    op.create_table(
        "idx_number",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    with op.batch_alter_table("idx_number", schema=None) as batch_op:
        batch_op.create_index("ix_number_lookup", ["res_type", "param", "value"], unique=False)
        batch_op.create_index("ix_number_rid", ["rid"], unique=False)

    op.create_table(
        "idx_quantity",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("unit", sa.String(length=64), nullable=True),
    )
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.create_index("ix_quantity_lookup", ["res_type", "param", "value"], unique=False)
        batch_op.create_index("ix_quantity_rid", ["rid"], unique=False)

    op.create_table(
        "idx_reference",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("ident_system", sa.String(length=255), nullable=True),
        sa.Column("ident_value", sa.String(length=255), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
    )
    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.create_index("ix_reference_ident", ["ident_value", "param"], unique=False)
        batch_op.create_index("ix_reference_rid", ["rid"], unique=False)
        batch_op.create_index("ix_reference_target", ["target_id", "target_type", "param"], unique=False)

    op.create_table(
        "idx_string",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("norm", sa.String(length=255), nullable=False),
        sa.Column("exact", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.create_index("ix_string_lookup", ["res_type", "param", "norm"], unique=False)
        batch_op.create_index("ix_string_rid", ["rid"], unique=False)

    op.create_table(
        "idx_token",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=255), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
    )
    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.create_index("ix_token_lookup", ["res_type", "param", "code", "system"], unique=False)
        batch_op.create_index("ix_token_patient", ["patient", "param", "code"], unique=False)
        batch_op.create_index("ix_token_rid", ["rid"], unique=False)

    op.create_table(
        "idx_uri",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("idx_uri", schema=None) as batch_op:
        batch_op.create_index("ix_uri_lookup", ["res_type", "param", "value"], unique=False)
        batch_op.create_index("ix_uri_rid", ["rid"], unique=False)

    op.create_table(
        "resource",
        sa.Column("rid", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("rid"),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    )
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.create_index("ix_resource_patient", ["patient", "res_type", "rid"], unique=False)
        batch_op.create_index("ix_resource_type_updated", ["res_type", "last_updated", "rid"], unique=False)

    op.create_table(
        "resource_history",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("rid", "version"),
    )
    with op.batch_alter_table("resource_history", schema=None) as batch_op:
        batch_op.create_index("ix_history_patient", ["patient", "res_type"], unique=False)
        batch_op.create_index("ix_history_type_updated", ["res_type", "last_updated"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("resource_history", schema=None) as batch_op:
        batch_op.drop_index("ix_history_type_updated")
        batch_op.drop_index("ix_history_patient")

    op.drop_table("resource_history")
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.drop_index("ix_resource_type_updated")
        batch_op.drop_index("ix_resource_patient")

    op.drop_table("resource")
    with op.batch_alter_table("idx_uri", schema=None) as batch_op:
        batch_op.drop_index("ix_uri_rid")
        batch_op.drop_index("ix_uri_lookup")

    op.drop_table("idx_uri")
    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.drop_index("ix_token_rid")
        batch_op.drop_index("ix_token_patient")
        batch_op.drop_index("ix_token_lookup")

    op.drop_table("idx_token")
    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.drop_index("ix_string_rid")
        batch_op.drop_index("ix_string_lookup")

    op.drop_table("idx_string")
    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_reference_target")
        batch_op.drop_index("ix_reference_rid")
        batch_op.drop_index("ix_reference_ident")

    op.drop_table("idx_reference")
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.drop_index("ix_quantity_rid")
        batch_op.drop_index("ix_quantity_lookup")

    op.drop_table("idx_quantity")
    with op.batch_alter_table("idx_number", schema=None) as batch_op:
        batch_op.drop_index("ix_number_rid")
        batch_op.drop_index("ix_number_lookup")

    op.drop_table("idx_number")
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.drop_index("ix_date_rid")
        batch_op.drop_index("ix_date_patient")
        batch_op.drop_index("ix_date_lookup")

    op.drop_table("idx_date")
