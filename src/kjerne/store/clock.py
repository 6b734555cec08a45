from __future__ import annotations

import datetime as dt
import time

UTC = dt.UTC


def now_us() -> int:
    return time.time_ns() // 1000


_second: tuple[int, str] = (-1, "")  # the last whole second formatted; a batch writes many within one


def us_to_instant(us: int) -> str:
    """FHIR instant with microseconds, UTC, from integer microseconds (exact: no float rounding)."""
    global _second
    sec, frac = divmod(us, 1_000_000)
    known = _second
    if known[0] == sec:
        prefix = known[1]
    else:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second = (sec, prefix)
    return f"{prefix}.{frac:06d}Z"
