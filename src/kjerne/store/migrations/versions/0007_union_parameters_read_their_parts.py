"""union search parameters read their parts' index rows

Revision ID: 0007
Revises: 0006

Observation's combo-code, combo-value-concept, combo-data-absent-reason and combo-value-quantity
are unions of other parameters (kjerne.store.derived_params); their copied rows go.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, union parameter, its parts, value columns): fixed here as they were at this revision.
_UNIONS = (
    ("idx_token", "combo-code", ("code", "component-code"), "system, code, text"),
    (
        "idx_token",
        "combo-data-absent-reason",
        ("component-data-absent-reason", "data-absent-reason"),
        "system, code, text",
    ),
    ("idx_token", "combo-value-concept", ("component-value-concept", "value-concept"), "system, code, text"),
    (
        "idx_quantity",
        "combo-value-quantity",
        ("component-value-quantity", "value-quantity"),
        "value, system, code, unit",
    ),
)


def upgrade() -> None:
    for table, union, _, _ in _UNIONS:
        op.execute(f"DELETE FROM {table} WHERE res_type = 'Observation' AND param = '{union}'")


def downgrade() -> None:
    for table, union, parts, columns in _UNIONS:
        listed = ", ".join(f"'{p}'" for p in parts)
        op.execute(
            f"INSERT INTO {table} (rid, res_type, patient, param, {columns}) "
            f"SELECT DISTINCT rid, res_type, patient, '{union}', {columns} FROM {table} "
            f"WHERE res_type = 'Observation' AND param IN ({listed})"
        )
