"""patient observation codes

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_code",
        sa.Column("patient", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=512), nullable=False),
        sa.Column("system", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("patient", "code", "system"),
    )
    op.execute(
        "INSERT INTO patient_code (patient, code, system) "
        "SELECT DISTINCT patient, code, COALESCE(system, '') FROM idx_obs WHERE NOT component"
    )


def downgrade() -> None:
    op.drop_table("patient_code")
