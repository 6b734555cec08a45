from __future__ import annotations

import datetime as dt
import time

UTC = dt.UTC


def now_us() -> int:
    return time.time_ns() // 1000


def us_to_instant(us: int) -> str:
    """FHIR instant with microseconds, UTC."""
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
