"""Search parameters that are unions of others keep no index rows of their own.

`combo-code` is `Observation.code | Observation.component.code`: exactly the rows of `code` and
`component-code` together. Storing them again would copy two index rows per Observation, billions
at national scale; a search on the union reads its parts' rows instead. Which parameters qualify
follows from the normative FHIRPath expressions, not from a hand-kept list.
"""

from __future__ import annotations

from functools import cache

from kjerne.fhir.searchparams import registry


def _branches(expression: str, resource_type: str) -> frozenset[str]:
    """The top-level `|` branches of an expression that apply to this resource type."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(expression):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i])
            start = i + 1
    parts.append(expression[start:])
    own = (f"{resource_type}.", f"({resource_type}.")
    return frozenset(" ".join(p.split()) for p in parts if p.strip().startswith(own))


@cache
def unions(resource_type: str) -> dict[str, tuple[str, ...]]:
    """{parameter: the parameters whose rows it reads} for this resource type."""
    params = registry().for_type(resource_type)
    branches = {
        code: _branches(sp.expression, resource_type)
        for code, sp in params.items()
        if sp.expression and sp.type not in ("composite", "special")
    }
    out: dict[str, tuple[str, ...]] = {}
    for code in sorted(branches, key=lambda c: (len(branches[c]), c)):
        mine = branches[code]
        if len(mine) < 2:
            continue
        parts = sorted(
            other
            for other, theirs in branches.items()
            if other not in out and params[other].type == params[code].type and theirs and theirs < mine
        )
        covered: set[str] = set()
        for part in parts:
            covered |= branches[part]
        if covered == mine:
            out[code] = tuple(parts)
    return out


def stored_as(resource_type: str, code: str) -> tuple[str, ...]:
    """The parameters whose index rows answer a search on `code`."""
    return unions(resource_type).get(code, (code,))
