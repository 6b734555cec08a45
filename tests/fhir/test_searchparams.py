"""Search-parameter registry and the FHIRPath compiler behind index extraction."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from kjerne.fhir.fhirpath import (
    FhirPathError,
    UnsupportedExpression,
    compile_expression,
    evaluate,
    reference_is,
)
from kjerne.fhir.searchparams import TYPES, SearchParam, registry

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
BUNDLE = SHARED / "fhir-r4" / "search-parameters.json"
GENERATED = REPO / "src" / "kjerne" / "data" / "search-parameters.json"

# Parameters whose FHIRPath expression the compiler rejects, as (base type, code). Every R4
# expression is currently supported; an addition here must be deliberate.
UNSUPPORTED: set[tuple[str, str]] = set()
# Parameters R4 defines without any FHIRPath expression: never indexed.
NO_EXPRESSION = {("DomainResource", "_text"), ("Resource", "_content"), ("Resource", "_query")}


def _compile(expr: str, resource_type: str | None = None):
    return compile_expression(expr, resource_type=resource_type, choices=registry().choices)


# --------------------------------------------------------------------------- registry


def test_registry_holds_every_r4_parameter():
    reg = registry()
    urls = {sp.url for rt in reg.resource_types for sp in reg.for_type(rt).values()}
    assert len(urls) == 1375
    assert reg.fhir_version == "4.0.1"
    assert len(reg.resource_types) == 146
    assert all(sp.type in TYPES for rt in reg.resource_types for sp in reg.for_type(rt).values())


def test_get_and_for_type():
    reg = registry()
    sp = reg.get("Observation", "patient")
    assert isinstance(sp, SearchParam)
    assert sp.type == "reference"
    assert "Observation.subject.where(resolve() is Patient)" in (sp.expression or "")
    assert "Observation" in sp.base and "Patient" in sp.target
    assert sp.url == "http://hl7.org/fhir/SearchParameter/clinical-patient"
    assert reg.get("Observation", "nope") is None
    assert reg.get("NoSuchType", "_id") is None
    assert reg.for_type("NoSuchType") == {}
    obs = reg.for_type("Observation")
    assert {"code", "subject", "value-quantity", "code-value-quantity"} <= set(obs)
    assert obs["value-quantity"].type == "quantity"


@pytest.mark.parametrize("rt", ["Patient", "Observation", "Bundle", "Binary", "Parameters", "Consent"])
def test_common_parameters_on_every_type(rt):
    reg = registry()
    for code, kind in [
        ("_id", "token"),
        ("_lastUpdated", "date"),
        ("_tag", "token"),
        ("_profile", "uri"),
        ("_security", "token"),
        ("_source", "uri"),
    ]:
        sp = reg.get(rt, code)
        assert sp is not None and sp.type == kind, (rt, code)
    # _text belongs to DomainResource: not to Bundle, Binary or Parameters.
    assert (reg.get(rt, "_text") is None) == (rt in ("Bundle", "Binary", "Parameters"))


def test_composite_components_resolve_by_url():
    reg = registry()
    sp = reg.get("Observation", "code-value-quantity")
    assert sp is not None and sp.type == "composite"
    codes = []
    for definition, expression in sp.components:
        part = reg.by_url(definition)
        assert part is not None
        codes.append((part.code, expression))
    assert codes == [("code", "code"), ("value-quantity", "value.as(Quantity)")]


def test_choice_elements_known():
    choices = registry().choices
    assert set(choices["Observation.effective"]) == {"DateTime", "Period", "Timing", "Instant"}
    assert "Patient.deceased" in choices
    assert "Observation.subject" not in choices


def test_registry_is_a_cached_singleton():
    assert registry() is registry()


def test_generated_table_is_current(tmp_path):
    spec = importlib.util.spec_from_file_location("build_search_params", REPO / "tools" / "build_search_params.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    data, _ = tool.build(BUNDLE)
    assert tool.dump(data) == GENERATED.read_text(encoding="utf-8")
    compact = json.loads(GENERATED.read_text(encoding="utf-8"))
    assert set(compact["params"][0]) <= {"code", "type", "expression", "base", "target", "url", "component"}


# --------------------------------------------------------------------------- allow-list


def test_every_expression_compiles_except_the_allow_list():
    reg = registry()
    failures: set[tuple[str, str]] = set()
    missing: set[tuple[str, str]] = set()
    seen: set[str] = set()
    for rt in sorted(reg.resource_types | {"Resource", "DomainResource"}):
        params = reg.for_type(rt).values() if rt in reg.resource_types else []
        for sp in params:
            if sp.url in seen:
                continue
            seen.add(sp.url)
            if sp.expression is None:
                missing.add((sp.base[0], sp.code))
                continue
            for base in sp.base:
                try:
                    _compile(sp.expression, None if base in ("Resource", "DomainResource") else base)
                    for _, component in sp.components:
                        _compile(component)
                except UnsupportedExpression:
                    failures.add((base, sp.code))
    assert len(seen) == 1375
    assert failures == UNSUPPORTED
    assert missing == NO_EXPRESSION


# --------------------------------------------------------------------------- FHIRPath

OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "Hb"},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2024-03-05T08:15:00+01:00",
    "valueQuantity": {"value": 13.2, "unit": "g/dL"},
    "component": [
        {"code": {"text": "a"}, "valueString": "x"},
        {"code": {"text": "b"}, "valueQuantity": {"value": 1}},
    ],
    "extension": [{"url": "http://example.org/a", "valueString": "A"}],
}


def test_paths_and_unions():
    assert _compile("Observation.status")(OBS) == ["final"]
    assert _compile("Observation.code.coding.code")(OBS) == ["718-7"]
    assert _compile("Observation.component.code.text")(OBS) == ["a", "b"]
    assert _compile("Observation.status | Observation.code.text")(OBS) == ["final", "Hb"]
    assert _compile("Observation.status | Observation.status")(OBS) == ["final"]
    assert _compile("Observation.missing.deeper")(OBS) == []
    assert _compile("Observation")(OBS) == [OBS]


def test_type_root_filters_and_prunes():
    expr = "Condition.code | Observation.code.text"
    assert _compile(expr, "Observation")(OBS) == ["Hb"]
    # Compiled for Condition, the Observation branch is gone (the getter trusts the type).
    assert _compile(expr, "Condition")({"resourceType": "Condition", "code": {"text": "c"}}) == [{"text": "c"}]
    assert _compile("Condition.code", "Observation")(OBS) == []
    assert _compile(expr)(OBS) == ["Hb"]  # runtime resourceType check
    assert _compile("Resource.id", "Observation")(OBS) == ["o1"]
    assert _compile("DomainResource.id")(OBS) == ["o1"]


def test_choice_types_read_json_variants():
    assert _compile("Observation.value as Quantity")(OBS) == [{"value": 13.2, "unit": "g/dL"}]
    assert _compile("(Observation.value as Quantity).value")(OBS) == [13.2]
    assert _compile("Observation.value.as(Quantity)")(OBS) == [{"value": 13.2, "unit": "g/dL"}]
    assert _compile("Observation.value.ofType(Quantity)")(OBS) == [{"value": 13.2, "unit": "g/dL"}]
    assert _compile("(Observation.value as CodeableConcept)")(OBS) == []
    assert _compile("(Observation.effective as dateTime)")(OBS) == ["2024-03-05T08:15:00+01:00"]
    assert _compile("(Observation.effective as Period)")(OBS) == []
    assert _compile("Observation.effective")(OBS) == ["2024-03-05T08:15:00+01:00"]
    assert _compile("Observation.component.value as string")(OBS) == ["x"]
    # Without a choice map the compiler recognises variants by FHIR data-type suffix.
    assert compile_expression("Observation.effective")(OBS) == ["2024-03-05T08:15:00+01:00"]
    assert compile_expression("Observation.value.value")(OBS) == [13.2]


def test_where_resolve_is():
    def refs(*items):
        return {"resourceType": "Observation", "subject": list(items)}

    expr = "Observation.subject.where(resolve() is Patient)"
    f = _compile(expr, "Observation")
    assert f(refs({"reference": "Patient/1"})) == [{"reference": "Patient/1"}]
    assert f(refs({"reference": "Group/1"})) == []
    assert f(refs({"reference": "Patient/1/_history/3"})) != []
    assert f(refs({"reference": "https://fhir.example.no/r4/Patient/9"})) != []
    assert f(refs({"reference": "https://fhir.example.no/r4/Group/9"})) == []
    assert f(refs({"identifier": {"value": "1"}, "type": "Patient"})) != []
    assert f(refs({"identifier": {"value": "1"}, "type": "Device"})) == []
    assert f(refs({"identifier": {"value": "1"}})) != []  # no type information: kept
    assert f(refs({"reference": "urn:uuid:5b3c9a1e-9a8e-4d6a-8a7c-4a9c1b2d3e4f"})) != []
    assert f(refs({"reference": "urn:uuid:5b3c9a1e-9a8e-4d6a-8a7c-4a9c1b2d3e4f", "type": "Group"})) == []
    contained = refs({"reference": "#g"}, {"reference": "#p"})
    contained["contained"] = [{"resourceType": "Group", "id": "g"}, {"resourceType": "Patient", "id": "p"}]
    assert f(contained) == [{"reference": "#p"}]
    assert reference_is({"reference": "Patient/1"}, "FHIR.Patient")
    assert reference_is("Patient/1", "Resource")


def test_where_equality_and_extension():
    pat = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b.no"}],
    }
    assert _compile("Patient.telecom.where(system='email').value")(pat) == ["a@b.no"]
    assert _compile("Patient.telecom.where(system!='email').value")(pat) == ["1"]
    assert _compile("Observation.extension('http://example.org/a').value as string")(OBS) == ["A"]
    assert _compile("Observation.extension.where(url='http://example.org/a').valueString")(OBS) == ["A"]
    assert _compile("Observation.extension('http://example.org/none')")(OBS) == []


def test_functions():
    assert _compile("Observation.component.first().code.text")(OBS) == ["a"]
    assert _compile("Observation.component.last().code.text")(OBS) == ["b"]
    assert _compile("Observation.component.tail().code.text")(OBS) == ["b"]
    assert _compile("Observation.component.count()")(OBS) == [2]
    assert _compile("Observation.component.exists()")(OBS) == [True]
    assert _compile("Observation.note.exists()")(OBS) == [False]
    assert _compile("Observation.note.empty()")(OBS) == [True]
    assert _compile("Observation.component.exists(code.text = 'b')")(OBS) == [True]
    assert _compile("Observation.status.exists().not()")(OBS) == [False]
    assert _compile("Observation.component[1].code.text")(OBS) == ["b"]
    assert _compile("Observation.status is code")(OBS) == [True]
    assert _compile("Observation.subject.is(Reference)")(OBS) == [True]
    assert _compile("%resource.id")(OBS) == ["o1"]
    assert _compile("Observation.status = 'final' and Observation.id = 'o1'")(OBS) == [True]
    assert _compile("Observation.status = 'final' or Observation.missing = 'x'")(OBS) == [True]
    assert _compile("Observation.missing = 'x'")(OBS) == []
    assert _compile("Observation.status ~ 'FINAL'")(OBS) == [True]


@pytest.mark.parametrize(
    ("patient", "expected"),
    [
        ({}, [False]),
        ({"deceasedBoolean": False}, [False]),
        ({"deceasedBoolean": True}, [True]),
        ({"deceasedDateTime": "2020-01-01"}, [True]),
    ],
)
def test_deceased_expression(patient, expected):
    expr = registry().get("Patient", "deceased").expression
    assert _compile(expr, "Patient")({"resourceType": "Patient", **patient}) == expected


def test_bundle_first_entry():
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Composition", "id": "c"}}, {}]}
    assert _compile("Bundle.entry[0].resource", "Bundle")(bundle) == [{"resourceType": "Composition", "id": "c"}]


def test_evaluate_convenience():
    assert evaluate("Observation.code.coding.system", OBS) == ["http://loinc.org"]


@pytest.mark.parametrize("expr", ["Observation.", "Observation.code(", "(Observation", "Observation.code ==", "'x"])
def test_syntax_errors(expr):
    with pytest.raises(FhirPathError):
        compile_expression(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "Observation.subject.resolve()",
        "iif(Observation.status, 1, 2)",
        "Observation.value + 1",
        "Observation.code.coding[$index]",
        "%unknownVariable",
        "Observation.extension(url)",
    ],
)
def test_unsupported_constructs_fail_at_compile_time(expr):
    with pytest.raises(UnsupportedExpression):
        compile_expression(expr)
