"""The delivery log every ingest adapter writes: producer coverage and idempotent redelivery."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, desc, insert, select

from kjerne.store.clock import now_us, us_to_instant
from kjerne.store.schema import ingest_log

_DAY_US = 86_400_000_000


@dataclass(slots=True)
class Delivery:
    producer: str
    format: str
    status: str
    received: int = field(default_factory=now_us)
    producer_name: str | None = None
    sender: str | None = None
    msg_id: str | None = None
    reasons: list[str] = field(default_factory=list)
    issued: int | None = None
    reports: int = 0
    receipt: bytes | None = None


def record(conn: Connection, d: Delivery) -> None:
    conn.execute(
        insert(ingest_log).values(
            received=d.received,
            producer=d.producer,
            producer_name=d.producer_name,
            sender=d.sender,
            format=d.format,
            msg_id=d.msg_id[:255] if d.msg_id else None,
            status=d.status,
            reasons="\n".join(d.reasons)[:4000] if d.reasons else None,
            issued=d.issued,
            reports=d.reports,
            receipt=d.receipt,
        )
    )


def record_alone(engine: Engine, d: Delivery) -> None:
    with engine.connect() as conn:
        conn.info["sqlite_write"] = True
        with conn.begin():
            record(conn, d)


def accepted_before(conn: Connection, producer: str, msg_id: str | None) -> bytes | None:
    """The receipt of an earlier accepted delivery of the same message, if there was one."""
    if not msg_id:
        return None
    row = conn.execute(
        select(ingest_log.c.receipt)
        .where(
            and_(
                ingest_log.c.producer == producer,
                ingest_log.c.msg_id == msg_id[:255],
                ingest_log.c.status.in_(("ok", "warning", "superseded")),
            )
        )
        .order_by(desc(ingest_log.c.id))
        .limit(1)
    ).first()
    return bytes(row[0]) if row and row[0] is not None else None


def producer_stats(engine: Engine, *, days: int = 30, now: int | None = None) -> list[dict[str, Any]]:
    """Per producer: reports per day, latest delivery, delivery lag (issued → received), rejections."""
    now = now or now_us()
    since = now - days * _DAY_US
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                ingest_log.c.producer,
                ingest_log.c.producer_name,
                ingest_log.c.sender,
                ingest_log.c.format,
                ingest_log.c.status,
                ingest_log.c.received,
                ingest_log.c.issued,
                ingest_log.c.reports,
                ingest_log.c.reasons,
                ingest_log.c.msg_id,
            ).where(ingest_log.c.received >= since)
        ).all()
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        p = by.setdefault(
            r.producer,
            {
                "producer": r.producer,
                "name": r.producer_name,
                "senders": set(),
                "formats": set(),
                "per_day": {},
                "latest": 0,
                "lags": [],
                "delivered": 0,
                "rejected": [],
                "warnings": 0,
            },
        )
        p["name"] = p["name"] or r.producer_name
        if r.sender:
            p["senders"].add(r.sender)
        p["formats"].add(r.format)
        p["latest"] = max(p["latest"], r.received)
        if r.status == "rejected":
            p["rejected"].append({"received": us_to_instant(r.received), "msg_id": r.msg_id, "reasons": r.reasons})
            continue
        p["delivered"] += 1
        p["warnings"] += r.status == "warning"
        day = dt.datetime.fromtimestamp(r.received / 1e6, dt.UTC).date().isoformat()
        p["per_day"][day] = p["per_day"].get(day, 0) + (r.reports or 0)
        if r.issued:
            p["lags"].append(max(0, r.received - r.issued) / 1e6)
    out = []
    for p in sorted(by.values(), key=lambda x: x["producer"]):
        lags = sorted(p.pop("lags"))
        per_day = p.pop("per_day")
        out.append(
            {
                **p,
                "senders": sorted(p["senders"]),
                "formats": sorted(p["formats"]),
                "latest": us_to_instant(p["latest"]),
                "reports_per_day": dict(sorted(per_day.items())),
                "lag_seconds": {
                    "median": statistics.median(lags) if lags else None,
                    "p95": lags[min(len(lags) - 1, int(len(lags) * 0.95))] if lags else None,
                    "max": lags[-1] if lags else None,
                },
                "rejected_count": len(p["rejected"]),
                "rejected": p["rejected"][-20:],
            }
        )
    return out
