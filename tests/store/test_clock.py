from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from kjerne.store.clock import us_to_instant

_MAX_US = 4_102_444_800_000_000  # 2100-01-01


@given(st.integers(min_value=0, max_value=_MAX_US))
def test_instant_is_the_utc_time_of_the_microseconds(us: int) -> None:
    expected = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    assert us_to_instant(us) == expected.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_instants_within_one_second_and_across_seconds() -> None:
    base = 1_733_000_000_000_000
    assert us_to_instant(base) == "2024-11-30T20:53:20.000000Z"
    assert us_to_instant(base + 999_999) == "2024-11-30T20:53:20.999999Z"
    assert us_to_instant(base + 1_000_000) == "2024-11-30T20:53:21.000000Z"
    assert us_to_instant(base + 1) == "2024-11-30T20:53:20.000001Z"  # back to a second formatted before
