"""Alembic, driven from code: `kjerne db upgrade` needs no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from kjerne.store.db import normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(db_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(db_url).replace("%", "%%"))
    return cfg


def upgrade(db_url: str, revision: str = "head") -> None:
    if db_url.startswith("sqlite:///"):
        Path(db_url.split("sqlite:///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(db_url), revision)
