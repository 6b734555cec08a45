"""Structural validation against the R4 model: the official examples pass, each rule fails precisely."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from kjerne.fhir import model
from kjerne.fhir.identifiers import OID_FNR, OID_HPR, OID_ORGNR, make_orgnr, make_synthetic_fnr
from kjerne.fhir.validation import MAX_ISSUES, validate

EXAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fhir-r4" / "examples"
EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.json") if p.name != "package.json")


def issues(resource: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(i.code, i.expression) for i in validate(resource)]


def one_issue(resource: dict[str, Any]) -> tuple[str, str | None]:
    found = validate(resource)
    assert len(found) == 1, [(i.code, i.expression, i.diagnostics) for i in found]
    assert found[0].severity == "error"
    assert found[0].diagnostics
    return found[0].code, found[0].expression


def synthetic_fnr() -> str:
    for individ in range(100, 200):
        fnr = make_synthetic_fnr(dt.date(1985, 6, 14), individ)
        if fnr is not None:
            return fnr
    raise AssertionError("no synthetic number")


def lab_observation() -> dict[str, Any]:
    """A typical Norwegian laboratory result."""
    return {
        "resourceType": "Observation",
        "id": "hb-1",
        "meta": {"profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Observation"]},
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.1.9051", "value": "LAB-2024-000123"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": "urn:oid:2.16.578.1.12.4.1.1.7280", "code": "NPU02319", "display": "B-Hemoglobin"},
                {"system": "http://loinc.org", "code": "718-7"},
            ]
        },
        "subject": {
            "reference": "Patient/p1",
            "identifier": {"system": OID_FNR, "value": synthetic_fnr()},
        },
        "effectiveDateTime": "2024-02-29T08:15:00+01:00",
        "issued": "2024-02-29T10:02:13.120+01:00",
        "performer": [{"reference": "Organization/lab", "display": "Sentrallaboratoriet"}],
        "valueQuantity": {"value": 13.9, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "N",
                    }
                ]
            }
        ],
        "referenceRange": [{"low": {"value": 11.7, "unit": "g/dL"}, "high": {"value": 15.3, "unit": "g/dL"}}],
        "specimen": {"reference": "urn:uuid:6f1b8a53-57c4-4d62-9c3e-2b0c1e0a9d11"},
    }


def observation(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"}}
    base.update(extra)
    return base


def patient(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resourceType": "Patient"}
    base.update(extra)
    return base


# --- the model -------------------------------------------------------------------------------------


def test_model_has_every_resource_type_and_datatype() -> None:
    types = model.resource_types()
    assert len(types) == 146
    assert {"Observation", "Patient", "Bundle", "Parameters", "Binary", "Consent"} <= types
    assert not {"Resource", "DomainResource", "MetadataResource", "Quantity"} & types
    assert model.is_resource_type("Provenance") and not model.is_resource_type("Foo")
    assert {"Quantity", "Reference", "Identifier", "Timing", "Dosage", "ElementDefinition", "Extension"} <= (
        model.datatypes()
    )
    regexes = model.primitive_types()
    assert len(regexes) == 20 and regexes["xhtml"] is None
    assert all(regexes[t] for t in regexes if t != "xhtml")


def test_model_elements_choices_backbones_and_content_references() -> None:
    value = model.elements("Observation")["value[x]"]  # type: ignore[index]
    assert value.is_choice and "Quantity" in value.types and value.max == 1
    component = model.element("Observation.component")
    assert component is not None and component.structure == "Observation.component" and component.repeats
    assert model.element("Observation.component.valueQuantity.value").types == ("decimal",)  # type: ignore[union-attr]
    nested = model.element("Questionnaire.item.item")
    assert nested is not None and nested.structure == "Questionnaire.item" and nested.max is None
    assert model.element("Questionnaire.item.item.item.linkId").min == 1  # type: ignore[union-attr]
    assert model.element("Timing.repeat.frequency").types == ("positiveInt",)  # type: ignore[union-attr]
    assert model.element("Patient.id").types == ("id",)  # type: ignore[union-attr]
    assert model.element("Patient.nonsense") is None
    assert model.elements("Nonsense") is None


# --- the official examples -------------------------------------------------------------------------


def test_all_official_examples_are_present() -> None:
    assert len(EXAMPLE_FILES) == 208, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_official_example_is_valid(path: Path) -> None:
    resource = json.loads(path.read_bytes())
    assert [(i.code, i.expression, i.diagnostics) for i in validate(resource)] == []


def test_typical_lab_observation_is_valid() -> None:
    assert validate(lab_observation()) == []


# --- resourceType ---------------------------------------------------------------------------------


def test_missing_resource_type() -> None:
    assert one_issue({"id": "x"}) == ("required", "resourceType")


def test_unknown_and_abstract_resource_types() -> None:
    assert one_issue({"resourceType": "Pasient"}) == ("not-supported", "resourceType")
    assert one_issue({"resourceType": "DomainResource"}) == ("not-supported", "resourceType")
    assert one_issue({"resourceType": "Quantity", "value": 1}) == ("not-supported", "resourceType")


def test_resource_type_must_be_a_string_and_resource_an_object() -> None:
    assert one_issue({"resourceType": ["Patient"]}) == ("structure", "resourceType")
    assert issues([]) == [("structure", "Resource")]  # type: ignore[arg-type]


# --- unknown elements and _primitive siblings ----------------------------------------------------


def test_unknown_element() -> None:
    assert one_issue(patient(nickname="Kari")) == ("structure", "Patient.nickname")
    assert one_issue(observation(component=[{"code": {"text": "a"}, "colour": "red"}])) == (
        "structure",
        "Observation.component[0].colour",
    )
    assert one_issue(patient(name=[{"family": "Nordmann", "resourceType": "HumanName"}])) == (
        "structure",
        "Patient.name[0].resourceType",
    )


def test_primitive_extension_siblings() -> None:
    ext = {"extension": [{"url": "http://example.org/precision", "valueCode": "day"}]}
    assert validate(patient(birthDate="1970-01-01", _birthDate=ext)) == []
    assert validate(patient(_birthDate=ext)) == []  # the value may be absent when extensions say why
    assert validate(patient(id="p1", _id=ext)) == []
    # only primitives take a sibling
    assert one_issue(patient(_name=ext)) == ("structure", "Patient._name")
    assert one_issue(patient(_nickname=ext)) == ("structure", "Patient._nickname")
    # Element.id and Extension.url are attributes without extensions
    assert one_issue(patient(name=[{"id": "n1", "_id": ext}])) == ("structure", "Patient.name[0]._id")
    assert one_issue(patient(extension=[{"url": "http://x.org/e", "_url": ext, "valueString": "a"}])) == (
        "structure",
        "Patient.extension[0]._url",
    )
    # the sibling is an Element: id and extension only, an object, not empty
    assert one_issue(patient(birthDate="1970-01-01", _birthDate={"value": "x"})) == (
        "structure",
        "Patient.birthDate.value",
    )
    assert one_issue(patient(birthDate="1970-01-01", _birthDate="x")) == ("structure", "Patient.birthDate")
    assert one_issue(patient(birthDate="1970-01-01", _birthDate={})) == ("structure", "Patient.birthDate")
    # choice siblings follow the choice type
    assert validate(observation(valueString="pos", _valueString=ext)) == []


def test_primitive_arrays_with_nulls() -> None:
    ext = {"extension": [{"url": "http://example.org/e", "valueString": "x"}]}
    ok = patient(name=[{"given": ["Kari", None, "Ola"], "_given": [None, ext, None]}])
    assert validate(ok) == []
    assert one_issue(patient(name=[{"given": ["Kari", None]}])) == ("structure", "Patient.name[0].given[1]")
    assert one_issue(patient(name=[{"given": ["Kari", None], "_given": [ext, None]}])) == (
        "structure",
        "Patient.name[0].given[1]",
    )
    assert one_issue(patient(name=[{"_given": [ext, None]}])) == ("structure", "Patient.name[0].given[1]")
    assert one_issue(patient(name=[{"given": ["Kari", "Ola"], "_given": [ext]}])) == (
        "structure",
        "Patient.name[0].given",
    )


def test_null_is_not_a_value() -> None:
    assert one_issue(patient(birthDate=None)) == ("structure", "Patient.birthDate")
    assert one_issue(patient(name=[None])) == ("structure", "Patient.name[0]")


# --- JSON datatypes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (patient(active="true"), "Patient.active"),
        (patient(active=1), "Patient.active"),
        (patient(gender=1), "Patient.gender"),
        (patient(birthDate=19700101), "Patient.birthDate"),
        (patient(name=[{"family": 7}]), "Patient.name[0].family"),
        (patient(name=["Kari Nordmann"]), "Patient.name[0]"),
        (patient(multipleBirthInteger="2"), "Patient.multipleBirthInteger"),
        (patient(multipleBirthInteger=2.0), "Patient.multipleBirthInteger"),
        (patient(multipleBirthInteger=True), "Patient.multipleBirthInteger"),
        (observation(valueQuantity={"value": "6.3"}), "Observation.valueQuantity.value"),
        (observation(valueQuantity={"value": False}), "Observation.valueQuantity.value"),
        (observation(code="Hb"), "Observation.code"),
        (patient(text={"status": "generated", "div": {"p": "x"}}), "Patient.text.div"),
        (patient(contained=["Organization/1"]), "Patient.contained[0]"),
    ],
)
def test_wrong_json_type(resource: dict[str, Any], expression: str) -> None:
    assert one_issue(resource) == ("structure", expression)


# --- primitive formats ---------------------------------------------------------------------------

GOOD_AND_BAD = [
    # (path builder, good values, bad values)
    ("id", lambda v: patient(id=v), "Patient.id", ["a-B.9", "x" * 64], ["a_b", "x" * 65, "a b"]),
    (
        "date",
        lambda v: patient(birthDate=v),
        "Patient.birthDate",
        ["1970", "1970-06", "1970-06-30", "2000-02-29"],
        ["1970-6-3", "1970-06-30T10:00:00Z", "70-01-01", "0000", "1970-00", "1970-01-32"],
    ),
    (
        "dateTime",
        lambda v: observation(effectiveDateTime=v),
        "Observation.effectiveDateTime",
        ["2024", "2024-02", "2024-02-29", "2024-02-29T10:00:00Z", "2024-02-29T23:59:60.123+14:00"],
        ["2024-02-29T10:00:00", "2024-02-29T10:00Z", "2024-02-29 10:00:00Z", "2024-02-29T24:00:00Z"],
    ),
    (
        "instant",
        lambda v: observation(issued=v),
        "Observation.issued",
        ["2024-02-29T10:00:00Z", "2024-02-29T10:00:00.5-03:30"],
        ["2024-02-29", "2024-02-29T10:00Z", "2024-02-29T10:00:00"],
    ),
    (
        "time",
        lambda v: observation(valueTime=v),
        "Observation.valueTime",
        ["00:00:00", "23:59:59.999"],
        ["24:00:00", "10:00", "1:00:00"],
    ),
    (
        "integer",
        lambda v: observation(valueInteger=v),
        "Observation.valueInteger",
        [0, -5, 2147483647, -2147483648],
        [2147483648, -2147483649],
    ),
    (
        "positiveInt",
        lambda v: observation(effectiveTiming={"repeat": {"frequency": v}}),
        "Observation.effectiveTiming.repeat.frequency",
        [1, 2147483647],
        [0, -1, 2147483648],
    ),
    (
        "unsignedInt",
        lambda v: observation(effectiveTiming={"repeat": {"offset": v}}),
        "Observation.effectiveTiming.repeat.offset",
        [0, 30],
        [-1, 2147483648],
    ),
    (
        "decimal",
        lambda v: observation(valueQuantity={"value": v}),
        "Observation.valueQuantity.value",
        [0, -1.5, 6.3e10, 12],
        [float("nan"), float("inf")],
    ),
    ("boolean", lambda v: patient(active=v), "Patient.active", [True, False], []),
    (
        "code",
        lambda v: patient(gender=v),
        "Patient.gender",
        ["female", "a b"],
        ["", " female", "female ", "a  b", "a\n\nb"],
    ),
    (
        "uri",
        lambda v: patient(implicitRules=v),
        "Patient.implicitRules",
        ["http://example.org/rules", "urn:oid:1.2"],
        ["", "http://example.org/my rules"],
    ),
    ("url", lambda v: patient(photo=[{"url": v}]), "Patient.photo[0].url", ["https://x.no/a.png"], ["x y"]),
    (
        "canonical",
        lambda v: patient(meta={"profile": [v]}),
        "Patient.meta.profile[0]",
        ["http://hl7.no/fhir/StructureDefinition/no-basis-Patient|2.0.0"],
        ["http://hl7.no/ Patient", ""],
    ),
    (
        "oid",
        lambda v: patient(extension=[{"url": "http://x.org/e", "valueOid": v}]),
        "Patient.extension[0].valueOid",
        ["urn:oid:2.16.578.1.12.4.1.4.1"],
        ["2.16.578", "urn:oid:3.1", "urn:oid:1.02"],
    ),
    (
        "uuid",
        lambda v: patient(extension=[{"url": "http://x.org/e", "valueUuid": v}]),
        "Patient.extension[0].valueUuid",
        ["urn:uuid:6f1b8a53-57c4-4d62-9c3e-2b0c1e0a9d11"],
        ["6f1b8a53-57c4-4d62-9c3e-2b0c1e0a9d11", "urn:uuid:6F1B8A53-57C4-4D62-9C3E-2B0C1E0A9D11"],
    ),
    (
        "base64Binary",
        lambda v: patient(photo=[{"data": v}]),
        "Patient.photo[0].data",
        ["aGVpIQ==", "aGVp\naGVp\r\n aGVp"],
        ["aGVpIQ=", "aGV pIQ==", "a*==", ""],
    ),
    (
        "markdown",
        lambda v: observation(note=[{"text": v}]),
        "Observation.note[0].text",
        ["**Hemolysert** prøve", "  leading space is allowed"],
        ["", "   ", "\n"],
    ),
    (
        "string",
        lambda v: patient(name=[{"family": v}]),
        "Patient.name[0].family",
        ["Ødegård", "Nordmann\u00a0Jr", "tab\there"],
        ["", " ", "bell\x07", "form\x0cfeed"],
    ),
]


@pytest.mark.parametrize(
    ("build", "expression", "good", "bad"),
    [pytest.param(b, e, g, x, id=t) for t, b, e, g, x in GOOD_AND_BAD],
)
def test_primitive_formats(build: Any, expression: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert validate(build(value)) == [], value
    for value in bad:
        assert one_issue(build(value)) == ("value", expression), value


def test_string_length_limit() -> None:
    assert validate(patient(name=[{"text": "x" * (1024 * 1024)}])) == []
    assert one_issue(patient(name=[{"text": "x" * (1024 * 1024 + 1)}])) == ("value", "Patient.name[0].text")


def test_narrative_div() -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Hei</p></div>'
    assert validate(patient(text={"status": "generated", "div": div})) == []
    assert one_issue(patient(text={"status": "generated", "div": "<p>Hei</p>"})) == ("value", "Patient.text.div")
    assert one_issue(patient(text={"status": "generated", "_div": {"id": "x"}, "div": div})) == (
        "structure",
        "Patient.text._div",
    )


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2023-02-28", True),
        ("2023-02-29", False),
        ("2023-02-30", False),
        ("2024-02-29", True),
        ("1900-02-29", False),
        ("2000-02-29", True),
        ("2023-04-30", True),
        ("2023-04-31", False),
        ("2023-06-31", False),
        ("2023-09-31", False),
        ("2023-11-31", False),
        ("2023-12-31", True),
    ],
)
def test_impossible_calendar_dates(value: str, ok: bool) -> None:
    for resource, expression in (
        (patient(birthDate=value), "Patient.birthDate"),
        (observation(effectiveDateTime=value + "T12:00:00+01:00"), "Observation.effectiveDateTime"),
        (observation(issued=value + "T12:00:00Z"), "Observation.issued"),
    ):
        if ok:
            assert validate(resource) == []
        else:
            assert one_issue(resource) == ("value", expression)


def test_month_13() -> None:
    assert one_issue(patient(birthDate="2023-13-01")) == ("value", "Patient.birthDate")


# --- cardinality ---------------------------------------------------------------------------------


def test_missing_required_elements() -> None:
    assert issues({"resourceType": "Observation"}) == [
        ("required", "Observation.status"),
        ("required", "Observation.code"),
    ]
    assert one_issue({"resourceType": "Observation", "status": "final"}) == ("required", "Observation.code")
    # a primitive is present when only its extensions are
    status_ext = {"extension": [{"url": "http://x.org/e", "valueString": "a"}]}
    assert validate({"resourceType": "Observation", "_status": status_ext, "code": {"text": "x"}}) == []
    # inside backbone elements and datatypes
    assert one_issue(observation(component=[{"valueString": "x"}])) == ("required", "Observation.component[0].code")
    assert one_issue(patient(extension=[{"valueString": "x"}])) == ("required", "Patient.extension[0].url")
    assert one_issue(observation(note=[{"authorString": "lab"}])) == ("required", "Observation.note[0].text")
    # a required choice element is satisfied by any of its types
    med = {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"display": "x"}}
    assert one_issue(med) == ("required", "MedicationRequest.medication")
    assert validate({**med, "medicationReference": {"reference": "Medication/m1"}}) == []
    assert validate({**med, "medicationCodeableConcept": {"text": "Paracet"}}) == []


def test_content_reference_is_checked_at_any_depth() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [{"linkId": "1.1", "type": "group", "item": [{"type": "string", "text": "Navn"}]}],
            }
        ],
    }
    assert one_issue(questionnaire) == ("required", "Questionnaire.item[0].item[0].item[0].linkId")
    params = {"resourceType": "Parameters", "parameter": [{"name": "a", "part": [{"valueString": "x"}]}]}
    assert one_issue(params) == ("required", "Parameters.parameter[0].part[0].name")


def test_array_where_max_is_one() -> None:
    assert one_issue(patient(gender=["female"])) == ("structure", "Patient.gender")
    assert one_issue(observation(code=[{"text": "Hb"}])) == ("structure", "Observation.code")
    assert one_issue(observation(valueQuantity=[{"value": 1}])) == ("structure", "Observation.valueQuantity")


def test_single_value_where_element_repeats() -> None:
    assert one_issue(patient(name={"family": "Nordmann"})) == ("structure", "Patient.name")
    assert one_issue(observation(category={"text": "lab"})) == ("structure", "Observation.category")
    assert one_issue(patient(name=[{"given": "Kari"}])) == ("structure", "Patient.name[0].given")


# --- choice types --------------------------------------------------------------------------------


def test_choice_types() -> None:
    assert validate(observation(valueCodeableConcept={"text": "positiv"})) == []
    assert one_issue(observation(valueDecimal=1.5)) == ("structure", "Observation.valueDecimal")
    assert one_issue(observation(valuequantity={"value": 1})) == ("structure", "Observation.valuequantity")
    assert one_issue(observation(value={"value": 1})) == ("structure", "Observation.value")
    assert one_issue(observation(valueQuantity={"value": 1}, valueString="1")) == (
        "structure",
        "Observation.valueString",
    )
    assert one_issue(patient(deceasedBoolean=False, deceasedDateTime="2020-01-01")) == (
        "structure",
        "Patient.deceasedDateTime",
    )


# --- empty values --------------------------------------------------------------------------------


def test_empty_object_array_and_string() -> None:
    assert one_issue(observation(code={})) == ("structure", "Observation.code")
    assert one_issue(patient(name=[])) == ("structure", "Patient.name")
    assert one_issue(patient(name=[{}])) == ("structure", "Patient.name[0]")
    assert one_issue(patient(gender="")) == ("value", "Patient.gender")
    assert one_issue(patient(name=[{"family": ""}])) == ("value", "Patient.name[0].family")


# --- references ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "Patient/123",
        "Patient/a-B.9",
        "Patient/123/_history/2",
        "http://example.org/fhir/Patient/123",
        "https://fhir.kjerne.no/Patient/123/_history/1",
        "urn:uuid:6f1b8a53-57c4-4d62-9c3e-2b0c1e0a9d11",
        "urn:oid:2.16.578.1.12.4.1.2.12345",
        "#pat",
        "#",
    ],
)
def test_valid_reference_formats(ref: str) -> None:
    assert validate(observation(subject={"reference": ref})) == []


@pytest.mark.parametrize(
    "ref",
    [
        "Pasient/123",
        "patient/123",
        "Patient/",
        "Patient/12_3",
        "Patient/123/456",
        "Patient/123/_history/",
        "Patient 123",
        "123",
        "urn:uuid:not-a-uuid",
        "urn:oid:2.16.x",
        "urn:isbn:0451450523",
        "ftp://example.org/Patient/1",
        "http://",
        "#p 1",
        "Patient?identifier=urn:oid:2.16.578.1.12.4.1.4.1|12345678901",
    ],
)
def test_invalid_reference_formats(ref: str) -> None:
    assert one_issue(observation(subject={"reference": ref})) == ("value", "Observation.subject.reference")


def test_conditional_references_only_in_transactions_and_batches() -> None:
    entry = {
        "resource": observation(subject={"reference": "Patient?identifier=urn:oid:2.16.578.1.12.4.1.4.1|1"}),
        "request": {"method": "POST", "url": "Observation"},
    }
    for kind in ("transaction", "batch"):
        assert validate({"resourceType": "Bundle", "type": kind, "entry": [entry]}) == []
    assert one_issue({"resourceType": "Bundle", "type": "collection", "entry": [entry]}) == (
        "value",
        "Bundle.entry[0].resource.subject.reference",
    )
    unknown = copy.deepcopy(entry)
    unknown["resource"]["subject"]["reference"] = "Pasient?identifier=x"
    assert one_issue({"resourceType": "Bundle", "type": "transaction", "entry": [unknown]}) == (
        "value",
        "Bundle.entry[0].resource.subject.reference",
    )


def test_reference_must_not_be_empty() -> None:
    assert one_issue(observation(subject={"type": "Patient"})) == ("required", "Observation.subject")
    assert one_issue(observation(performer=[{"display": "Lab"}, {"type": "Organization"}])) == (
        "required",
        "Observation.performer[1]",
    )
    assert validate(observation(subject={"display": "Kari Nordmann"})) == []
    assert validate(observation(subject={"identifier": {"system": "urn:oid:1.2.3", "value": "x"}})) == []
    absent = {
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]
    }
    assert validate(observation(subject=absent)) == []


def test_reference_format_in_extensions_and_nested_datatypes() -> None:
    ext = [{"url": "http://x.org/e", "valueReference": {"reference": "Nope/1"}}]
    assert one_issue(patient(extension=ext)) == ("value", "Patient.extension[0].valueReference.reference")
    comp = [{"code": {"text": "a"}}, {"code": {"text": "b"}, "valueQuantity": {"value": "x"}}]
    assert one_issue(observation(component=comp)) == ("structure", "Observation.component[1].valueQuantity.value")


# --- resources inside resources ------------------------------------------------------------------


def test_contained_resources_are_validated() -> None:
    org = {"resourceType": "Organization", "id": "org", "name": "Lab"}
    assert validate(patient(contained=[org], managingOrganization={"reference": "#org"})) == []
    assert one_issue(patient(contained=[org, {"resourceType": "Organization", "nme": "x"}])) == (
        "structure",
        "Patient.contained[1].nme",
    )
    assert one_issue(patient(contained=[{"id": "x"}])) == ("required", "Patient.contained[0].resourceType")
    assert one_issue(patient(contained=[{"resourceType": "Nope"}])) == (
        "not-supported",
        "Patient.contained[0].resourceType",
    )
    assert one_issue(patient(contained=[{"resourceType": "Observation", "status": "final"}])) == (
        "required",
        "Patient.contained[0].code",
    )


def test_bundle_entries_are_validated_as_resources() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:6f1b8a53-57c4-4d62-9c3e-2b0c1e0a9d11", "resource": patient(id="p1")},
            {"resource": {"resourceType": "Observation", "code": {"text": "Hb"}}},
            {"resource": patient(birthDate="2023-02-30")},
        ],
    }
    assert issues(bundle) == [
        ("required", "Bundle.entry[1].resource.status"),
        ("value", "Bundle.entry[2].resource.birthDate"),
    ]
    assert one_issue({"resourceType": "Bundle", "type": "collection", "entry": []}) == ("structure", "Bundle.entry")
    # the Bundle itself is checked too (type is required)
    assert one_issue({"resourceType": "Bundle"}) == ("required", "Bundle.type")
    response = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [{"response": {"status": "400", "outcome": {"resourceType": "OperationOutcome"}}}],
    }
    assert one_issue(response) == ("required", "Bundle.entry[0].response.outcome.issue")


def test_parameters_resources_are_validated() -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": patient(gender="kvinne ")},
            {"name": "nested", "part": [{"name": "r", "resource": {"resourceType": "Basic"}}]},
        ],
    }
    assert issues(params) == [
        ("value", "Parameters.parameter[0].resource.gender"),
        ("required", "Parameters.parameter[1].part[0].resource.code"),
    ]


# --- Norwegian identifiers -----------------------------------------------------------------------


def test_norwegian_identifiers() -> None:
    fnr = synthetic_fnr()
    good = patient(identifier=[{"system": OID_FNR, "value": fnr}, {"system": "http://example.org", "value": "1"}])
    assert validate(good) == []
    bad_check = fnr[:-1] + str((int(fnr[-1]) + 1) % 10)
    assert one_issue(
        patient(identifier=[{"system": "urn:oid:1.2.3", "value": "1"}, {"system": OID_FNR, "value": bad_check}])
    ) == (
        "value",
        "Patient.identifier[1].value",
    )
    assert one_issue(patient(identifier=[{"system": OID_FNR, "value": "31029912345"}])) == (
        "value",
        "Patient.identifier[0].value",
    )
    assert one_issue({"resourceType": "Practitioner", "identifier": [{"system": OID_HPR, "value": "12A45"}]}) == (
        "value",
        "Practitioner.identifier[0].value",
    )
    orgnr = make_orgnr(97400000)
    assert orgnr is not None
    assert validate({"resourceType": "Organization", "identifier": [{"system": OID_ORGNR, "value": orgnr}]}) == []
    assert one_issue({"resourceType": "Organization", "identifier": [{"system": OID_ORGNR, "value": "123456789"}]}) == (
        "value",
        "Organization.identifier[0].value",
    )
    # any Identifier, wherever it is
    assert one_issue(observation(subject={"identifier": {"system": OID_FNR, "value": "12345678901"}})) == (
        "value",
        "Observation.subject.identifier.value",
    )
    bundle = {"resourceType": "Bundle", "type": "collection", "identifier": {"system": OID_FNR, "value": "1"}}
    assert one_issue(bundle) == ("value", "Bundle.identifier.value")


# --- limits --------------------------------------------------------------------------------------


def test_issue_collection_stops_at_the_limit() -> None:
    resource = patient(**{f"unknown{i}": i for i in range(MAX_ISSUES * 2)})
    found = validate(resource)
    assert len(found) == MAX_ISSUES
    assert all(i.code == "structure" for i in found)


def test_deep_nesting_is_reported_not_raised() -> None:
    ext: dict[str, Any] = {"url": "http://x.org/e", "valueString": "leaf"}
    for _ in range(5000):
        ext = {"url": "http://x.org/e", "extension": [ext]}
    found = validate(patient(extension=[ext]))
    assert found and found[-1].code == "structure"


def test_validation_does_not_modify_the_resource() -> None:
    resource = lab_observation()
    before = copy.deepcopy(resource)
    validate(resource)
    assert resource == before


def test_values_found_valid_before_are_remembered_but_faults_always_reported() -> None:
    from kjerne.fhir.validation import _compiled

    code = {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]}
    assert validate(observation(code=code)) == []
    assert ("CodeableConcept", False, json.dumps(code, separators=(",", ":")).encode()) in _compiled().clean
    assert validate(observation(code=code, category=[code])) == []
    bad = {"coding": [{"system": "http://loinc.org", "code": " "}]}
    for _ in range(2):  # a faulty value is not remembered as valid
        assert one_issue(observation(code=bad)) == ("value", "Observation.code.coding[0].code")
    assert one_issue(observation(category=[code, bad])) == ("value", "Observation.category[1].coding[0].code")
    fnr = {"identifier": {"system": OID_FNR, "value": "12345678901"}}  # wrong check digits
    for _ in range(2):
        assert one_issue(observation(subject=fnr)) == ("value", "Observation.subject.identifier.value")
