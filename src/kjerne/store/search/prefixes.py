from __future__ import annotations

from kjerne.store.search.request import DATE_PREFIXES


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in DATE_PREFIXES and (value[2].isdigit() or value[2] in "-."):
        return value[:2], value[2:]
    return "eq", value
