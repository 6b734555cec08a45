"""Engines for the two supported databases: embedded SQLite and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1] if "sqlite:///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool if not path else None, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # pysqlite's own transaction handling is off (isolation_level None). A write transaction takes
    # the write lock up front with BEGIN IMMEDIATE, so two writers never both read a version and then
    # race to update it; reads begin deferred and run beside writers under WAL.
    write = conn.info.pop("sqlite_write", False)
    # A transaction that only appends audit entries commits without the full sync (see audit_tx).
    relaxed = conn.info.pop("relaxed_commit", False)
    conn.exec_driver_sql("PRAGMA synchronous=NORMAL" if relaxed else "PRAGMA synchronous=FULL")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
