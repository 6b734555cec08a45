"""observation index for lastn and stats

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idx_obs",
        sa.Column("rid", sa.BigInteger(), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=512), nullable=True),
        sa.Column("code", sa.String(length=512), nullable=False),
        sa.Column("effective", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("component", sa.Boolean(), nullable=False),
    )
    with op.batch_alter_table("idx_obs", schema=None) as batch_op:
        batch_op.create_index("ix_obs_lastn", ["patient", "code", "system", "effective"], unique=False)
        batch_op.create_index("ix_obs_rid", ["rid"], unique=False)
    _backfill()


def _backfill() -> None:
    """Index the Observations a database already holds."""
    import orjson

    from kjerne.store.observations import observation_rows

    bind = op.get_bind()
    table = sa.table(
        "idx_obs",
        sa.column("rid"),
        sa.column("patient"),
        sa.column("system"),
        sa.column("code"),
        sa.column("effective"),
        sa.column("value"),
        sa.column("unit"),
        sa.column("component"),
    )
    rows = bind.execute(
        sa.text("SELECT rid, patient, content FROM resource WHERE res_type = 'Observation' AND NOT deleted")
    )
    batch: list[dict[str, Any]] = []
    for rid, patient, content in rows:
        batch.extend({"rid": rid, **row} for row in observation_rows(orjson.loads(bytes(content)), patient))
        if len(batch) >= 5000:
            bind.execute(table.insert(), batch)
            batch = []
    if batch:
        bind.execute(table.insert(), batch)


def downgrade() -> None:
    with op.batch_alter_table("idx_obs", schema=None) as batch_op:
        batch_op.drop_index("ix_obs_rid")
        batch_op.drop_index("ix_obs_lastn")

    op.drop_table("idx_obs")
