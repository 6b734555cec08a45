"""SMART scopes, v1 and v2 syntax."""

from __future__ import annotations

import pytest

from kjerne.access.scopes import Scope, Scopes

V1_TABLE = [
    # scope,                   context,   type,          action,   allowed
    ("patient/*.read", "patient", "Observation", "read", True),
    ("patient/*.read", "patient", "Observation", "search", True),
    ("patient/*.read", "patient", "Observation", "write", False),
    ("patient/*.read", "user", "Observation", "read", False),
    ("user/Observation.read", "user", "Observation", "read", True),
    ("user/Observation.read", "user", "DiagnosticReport", "read", False),
    ("user/Observation.read", "system", "Observation", "read", False),
    ("user/Observation.write", "user", "Observation", "write", True),
    ("user/Observation.write", "user", "Observation", "delete", True),
    ("user/Observation.write", "user", "Observation", "read", False),
    ("system/*.write", "system", "Observation", "write", True),
    ("system/*.write", "system", "Bundle", "create", True),
    ("system/*.write", "system", "Observation", "read", False),
    ("system/*.*", "system", "Observation", "read", True),
    ("system/*.*", "system", "Observation", "write", True),
    ("patient/Consent.*", "patient", "Consent", "write", True),
    ("patient/Consent.*", "patient", "Observation", "read", False),
    # a scope must name its context
    ("*.*", "patient", "Observation", "read", False),
    ("*.*", "system", "Observation", "write", False),
]

V2_TABLE = [
    ("patient/Observation.rs", "patient", "Observation", "read", True),
    ("patient/Observation.rs", "patient", "Observation", "search", True),
    ("patient/Observation.rs", "patient", "Observation", "write", False),
    ("patient/Observation.r", "patient", "Observation", "search", False),
    ("patient/Observation.s", "patient", "Observation", "read", False),
    ("user/*.cruds", "user", "DiagnosticReport", "read", True),
    ("user/*.cruds", "user", "DiagnosticReport", "write", True),
    ("user/*.cruds", "user", "DiagnosticReport", "delete", True),
    ("system/Observation.cu", "system", "Observation", "write", True),
    ("system/Observation.c", "system", "Observation", "write", False),  # create-only may not overwrite
    ("system/Observation.c", "system", "Observation", "create", True),
    ("system/Observation.cud", "system", "Observation", "update", True),
    ("system/Observation.d", "system", "Observation", "delete", True),
    ("system/Observation.d", "system", "Observation", "read", False),
    # restricted scopes never grant the whole type
    ("patient/Observation.rs?category=laboratory", "patient", "Observation", "read", False),
]


@pytest.mark.parametrize(("scope", "context", "resource_type", "action", "allowed"), V1_TABLE + V2_TABLE)
def test_allows(scope: str, context: str, resource_type: str, action: str, allowed: bool) -> None:
    assert Scopes.parse(scope).allows(context, resource_type, action) is allowed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "openid",
        "profile",
        "nhn:pps/provesvar",
        "launch/patient",
        "helseid://scopes/identity/pid",
        "patient/observation.read",  # resource types are capitalised
        "patient/Observation.sr",  # v2 letters must come in cruds order
        "patient/Observation.rr",
        "patient/Observation.",
        "practitioner/Observation.read",
        "patient/Observation.read?category=laboratory",  # v1 has no query part
    ],
)
def test_not_smart_resource_scopes(text: str) -> None:
    assert Scope.parse(text) is None
    scopes = Scopes.parse(text)
    assert text in scopes
    assert not scopes.grants


def test_parse_string_and_list_forms() -> None:
    from_string = Scopes.parse("openid  user/*.read\tuser/Consent.write")
    from_list = Scopes.parse(["openid", "user/*.read user/Consent.write", "openid"])
    assert from_string.raw == from_list.raw == ("openid", "user/*.read", "user/Consent.write")
    assert str(from_string) == "openid user/*.read user/Consent.write"
    assert len(from_list) == 3
    assert from_string.contexts == frozenset({"user"})


def test_empty() -> None:
    scopes = Scopes.parse(None)
    assert not scopes.allows("patient", "Observation", "read")
    assert scopes.contexts == frozenset()
    assert list(scopes) == []


def test_restrictions_of_v2_query_scopes() -> None:
    scopes = Scopes.parse("patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs")
    assert scopes.restrictions("patient", "Observation", "read") == [
        {"category": "laboratory"},
        {"category": "vital-signs"},
    ]
    assert scopes.restrictions("patient", "Observation", "write") == []
    assert scopes.restrictions("user", "Observation", "read") == []


def test_unknown_context_or_action_is_a_programming_error() -> None:
    scopes = Scopes.parse("user/*.read")
    with pytest.raises(ValueError):
        scopes.allows("citizen", "Observation", "read")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        scopes.allows("user", "Observation", "peek")  # type: ignore[arg-type]
