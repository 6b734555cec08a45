"""Engines for the two supported databases: embedded SQLite and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.pool import NullPool

PING_AFTER_IDLE_S = 1.0
# No request leaves its transaction idle for long: one that does (a client stuck mid-transaction) is
# ended by PostgreSQL, its locks released, instead of holding up every request queued behind them.
IDLE_IN_TRANSACTION_S = 300


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    ping_after_idle: float = PING_AFTER_IDLE_S,
    idle_in_transaction: float = IDLE_IN_TRANSACTION_S,
) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1] if "sqlite:///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool if not path else None, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    options = f"-c idle_in_transaction_session_timeout={int(idle_in_transaction * 1000)}"
    given = make_url(url).query.get("options")  # an operator's own options in the URL are kept
    if given:
        options = f"{given if isinstance(given, str) else ' '.join(given)} {options}"
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, connect_args={"options": options})
    _ping_when_idle(engine, ping_after_idle)
    return engine


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Check a pooled PostgreSQL connection with a round trip only when it has been idle for a while.

    Pinging at every checkout (SQLAlchemy's pool_pre_ping) cost each request a round trip. A
    connection handed back less than `idle_s` ago is taken as it is, unless psycopg already knows it
    is broken; one that fails its ping is replaced before anyone uses it. A server that goes away
    within the window fails that request, which gets a 503 (see `app`), and the pool is renewed.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _returned(dbapi_conn: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if getattr(dbapi_conn, "broken", False) or dbapi_conn.closed:
            raise exc.DisconnectionError("the connection is broken")
        returned = record.info.pop("returned", None)
        if returned is not None and time.monotonic() - returned < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as err:
            raise exc.DisconnectionError(f"the connection failed its ping: {err}") from err


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
