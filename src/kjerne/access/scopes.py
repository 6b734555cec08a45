"""SMART on FHIR scopes: what a token lets its holder do, by context, resource type and action.

Both scope syntaxes are read:

* v1: ``patient/Observation.read``, ``user/*.write``, ``system/*.*``
* v2: ``patient/Observation.rs``, ``user/*.cruds``, ``system/Observation.cu?category=laboratory``

A v1 ``read`` grants read and search (``rs``), ``write`` grants create, update and delete (``cud``),
``*`` grants all five. Scopes that are not SMART resource scopes (``openid``, ``nhn:pps/provesvar``,
``launch/patient`` …) are kept in ``raw`` but grant nothing here.

A scope always names its context; a bare ``*.*`` without ``patient/``, ``user/`` or ``system/`` is not
a SMART resource scope and grants nothing, so a token cannot widen its reach by leaving the context out.

v2 scopes with a query (``?category=…``) only grant a subset of a resource type. ``allows`` answers
for the whole type, so it ignores them; callers that can apply the restriction ask ``restrictions``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
# "read" and "write" are the coarse actions of SMART v1; the others are the v2 letters spelled out.
Action = Literal["read", "write", "search", "create", "update", "delete"]

CONTEXTS: frozenset[str] = frozenset({"patient", "user", "system"})

_V2_ORDER = "cruds"
_V2_PATTERN = re.compile(r"c?r?u?d?s?")
_RESOURCE_PATTERN = re.compile(r"\*|[A-Z][A-Za-z]{1,63}")
_V1_PERMISSIONS = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(_V2_ORDER)}
# What each action needs. "write" asks for create *and* update because ingest both adds new
# resources and replaces corrected ones; a create-only scope must not be able to overwrite.
_ACTION_NEEDS: dict[str, frozenset[str]] = {
    "read": frozenset("r"),
    "search": frozenset("s"),
    "write": frozenset("cu"),
    "create": frozenset("c"),
    "update": frozenset("u"),
    "delete": frozenset("d"),
}


@dataclass(frozen=True, slots=True)
class Scope:
    """One SMART resource scope."""

    context: Context
    resource: str  # a resource type, or "*"
    permissions: frozenset[str]  # subset of "cruds"
    query: tuple[tuple[str, str], ...] = ()  # v2 restriction such as (("category", "laboratory"),)
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """The scope, or None when ``text`` is not a SMART resource scope."""
        head, _, query_text = text.partition("?")
        context, slash, rest = head.partition("/")
        if not slash or context not in CONTEXTS:
            return None
        resource, dot, suffix = rest.rpartition(".")
        if not dot or not _RESOURCE_PATTERN.fullmatch(resource):
            return None
        permissions = _V1_PERMISSIONS.get(suffix)
        if permissions is None:
            if not suffix or not _V2_PATTERN.fullmatch(suffix):
                return None
            permissions = frozenset(suffix)
        elif query_text:
            return None  # v1 syntax has no query part
        query: tuple[tuple[str, str], ...] = ()
        if query_text:
            try:
                query = tuple(parse_qsl(query_text, keep_blank_values=False, strict_parsing=True))
            except ValueError:
                return None
        return cls(context, resource, permissions, query, text)  # type: ignore[arg-type]

    def covers(self, context: str, resource_type: str, action: str) -> bool:
        """Whether this scope grants ``action`` on every ``resource_type`` resource in ``context``."""
        needs = _ACTION_NEEDS.get(action)
        if needs is None:
            raise ValueError(f"unknown action {action!r}")
        return self.context == context and self.resource in ("*", resource_type) and needs <= self.permissions


@dataclass(frozen=True, slots=True)
class Scopes:
    """The scopes of one token."""

    raw: tuple[str, ...] = ()
    grants: tuple[Scope, ...] = ()

    @classmethod
    def parse(cls, value: str | Iterable[str] | None) -> Scopes:
        """Scopes from a ``scope`` claim: a space-separated string or a list of strings."""
        if value is None:
            return cls()
        items = value.split() if isinstance(value, str) else [str(v) for v in value]
        raw: list[str] = []
        for item in items:
            # A list entry may itself hold several space-separated scopes.
            for part in item.split():
                if part not in raw:
                    raw.append(part)
        grants = tuple(scope for scope in map(Scope.parse, raw) if scope is not None)
        return cls(tuple(raw), grants)

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __contains__(self, scope: object) -> bool:
        return scope in self.raw

    def __len__(self) -> int:
        return len(self.raw)

    def __str__(self) -> str:
        return " ".join(self.raw)

    @property
    def contexts(self) -> frozenset[str]:
        """The SMART contexts (patient, user, system) that any scope grants something in."""
        return frozenset(scope.context for scope in self.grants)

    def allows(self, context: Context, resource_type: str, action: Action) -> bool:
        """Whether some unrestricted scope grants ``action`` on all ``resource_type`` resources."""
        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}")
        return any(not scope.query and scope.covers(context, resource_type, action) for scope in self.grants)

    def restrictions(self, context: Context, resource_type: str, action: Action) -> list[dict[str, str]]:
        """Search restrictions of v2 scopes that grant ``action`` on a subset of ``resource_type``.

        Each entry is one alternative (the holder may see what matches any of them); an empty list
        means no restricted grant exists. Check ``allows`` first: an unrestricted grant wins.
        """
        return [
            dict(scope.query) for scope in self.grants if scope.query and scope.covers(context, resource_type, action)
        ]
