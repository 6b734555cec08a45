"""Write-time search-index extraction."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from kjerne.store.indexing import (
    _PLANS,
    DATE_MAX,
    DATE_MIN,
    IndexRows,
    _needs,
    date_range,
    extract,
    normalise,
    plan_for,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EXAMPLES = SHARED / "fhir-r4" / "examples"


def us(text: str) -> int:
    """Microseconds since the epoch for an ISO timestamp with offset."""
    moment = dt.datetime.fromisoformat(text)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def rows_for(rows: list, param: str) -> list:
    return [r for r in rows if r[0] == param]


# --------------------------------------------------------------------------- corpus


def _example_resources() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "resourceType" not in data:
            continue  # package.json
        out.append((path.name, data))
        for i, entry in enumerate(data.get("entry") or []):
            if isinstance(entry.get("resource"), dict):
                out.append((f"{path.name}#entry{i}", entry["resource"]))
    return out


def test_every_example_extracts():
    resources = _example_resources()
    assert len(resources) > 200
    totals = IndexRows()
    for name, res in resources:
        rows = extract(res)
        for kind in IndexRows.__slots__:
            items = getattr(rows, kind)
            assert len(items) == len(set(items)), (name, kind)
            getattr(totals, kind).extend(items)
        for _, low, high in rows.dates:
            assert low >= DATE_MIN and high <= DATE_MAX, name
    for kind in IndexRows.__slots__:
        assert getattr(totals, kind), f"no {kind} rows in the whole example corpus"
    assert not any(r[0] in ("_id", "_lastUpdated") for r in totals.tokens + totals.dates)


# --------------------------------------------------------------------------- tokens


def test_codeable_concept_and_coding_tokens():
    rows = extract(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [
                    {"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"},
                    {"system": "urn:oid:2.16.578.1.12.4.1.1.7280", "code": "NPU02319"},
                ],
                "text": "Hb  i blod",
            },
            "category": [{"text": "Laboratorium"}],
            "dataAbsentReason": {"coding": [{"system": "s", "code": "c"}, {"system": "s", "code": "c"}]},
        }
    ).tokens
    assert rows_for(rows, "code") == [
        ("code", "http://loinc.org", "718-7", "hemoglobin hb i blod"),
        ("code", "urn:oid:2.16.578.1.12.4.1.1.7280", "NPU02319", "hb i blod"),
    ]
    assert rows_for(rows, "category") == [("category", None, None, "laboratorium")]
    assert rows_for(rows, "status") == [("status", None, "final", None)]
    assert rows_for(rows, "data-absent-reason") == [("data-absent-reason", "s", "c", None)]  # deduplicated


def test_identifier_tokens_and_of_type_rows():
    fnr_type = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI"}],
        "text": "Fødselsnummer",
    }
    rows = extract(
        {
            "resourceType": "Patient",
            "identifier": [
                {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216", "type": fnr_type},
                {"system": "urn:example", "value": "x"},
            ],
        }
    ).tokens
    assert rows_for(rows, "identifier") == [
        ("identifier", "urn:oid:2.16.578.1.12.4.1.4.1", "13116900216", "fødselsnummer"),
        ("identifier", "urn:example", "x", None),
    ]
    assert rows_for(rows, "identifier:of-type") == [
        ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "NI|13116900216", None)
    ]


def test_contact_point_boolean_and_telecom_filters():
    rows = extract(
        {
            "resourceType": "Patient",
            "active": True,
            "telecom": [
                {"system": "phone", "value": "+47 22 00 00 00", "use": "work"},
                {"system": "email", "value": "ola@example.no"},
            ],
        }
    ).tokens
    assert rows_for(rows, "active") == [("active", None, "true", None)]
    assert rows_for(rows, "telecom") == [
        ("telecom", None, "+47 22 00 00 00", None),
        ("telecom", None, "ola@example.no", None),
    ]
    assert rows_for(rows, "email") == [("email", None, "ola@example.no", None)]
    assert rows_for(rows, "phone") == [("phone", None, "+47 22 00 00 00", None)]
    assert rows_for(rows, "deceased") == [("deceased", None, "false", None)]


# --------------------------------------------------------------------------- strings


def test_human_name_and_address_strings():
    res = {
        "resourceType": "Patient",
        "name": [{"family": "Ærø", "given": ["Åse", "Kari"], "prefix": ["Dr."], "text": "Dr. Åse Kari Ærø"}],
        "address": [
            {
                "line": ["Storgata 1", "Oppgang B"],
                "city": "Tromsø",
                "district": "Troms",
                "postalCode": "9008",
                "country": "NO",
            }
        ],
    }
    rows = extract(res).strings
    assert sorted(r[2] for r in rows_for(rows, "name")) == sorted(["Dr. Åse Kari Ærø", "Ærø", "Åse", "Kari", "Dr."])
    assert rows_for(rows, "family") == [("family", "ærø", "Ærø")]
    assert rows_for(rows, "given") == [("given", "ase", "Åse"), ("given", "kari", "Kari")]
    assert [r[1] for r in rows_for(rows, "address")] == [
        "storgata 1",
        "oppgang b",
        "tromsø",
        "troms",
        "9008",
        "no",
    ]
    assert rows_for(rows, "address-city") == [("address-city", "tromsø", "Tromsø")]
    assert rows_for(rows, "address-postalcode") == [("address-postalcode", "9008", "9008")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Øystein", "øystein"),
        ("ØYSTEIN", "øystein"),
        ("Ærlig", "ærlig"),
        ("Åsgårdstrand", "asgardstrand"),
        ("  Hans \t  Petter\n", "hans petter"),
        ("José Müller", "jose muller"),
        ("Straße", "strasse"),
        ("ﬁne", "fine"),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        # Winter: Oslo is UTC+1; summer: UTC+2.
        ("2024", "2024-01-01T00:00:00+01:00", "2024-12-31T23:59:59.999999+01:00"),
        ("2024-03", "2024-03-01T00:00:00+01:00", "2024-03-31T23:59:59.999999+02:00"),
        ("2024-02", "2024-02-01T00:00:00+01:00", "2024-02-29T23:59:59.999999+01:00"),
        ("2024-07-01", "2024-07-01T00:00:00+02:00", "2024-07-01T23:59:59.999999+02:00"),
        ("2024-12", "2024-12-01T00:00:00+01:00", "2024-12-31T23:59:59.999999+01:00"),
        ("2024-03-05T08:15", "2024-03-05T08:15:00+01:00", "2024-03-05T08:15:59.999999+01:00"),
        ("2024-03-05T08:15:30", "2024-03-05T08:15:30+01:00", "2024-03-05T08:15:30.999999+01:00"),
        ("2024-03-05T08:15:30Z", "2024-03-05T08:15:30+00:00", "2024-03-05T08:15:30.999999+00:00"),
        ("2024-03-05T08:15:30-05:00", "2024-03-05T13:15:30+00:00", "2024-03-05T13:15:30.999999+00:00"),
        ("2024-03-05T08:15:30.25+02:00", "2024-03-05T08:15:30.25+02:00", "2024-03-05T08:15:30.25+02:00"),
        ("2024-03-05T08:15:30.1234567Z", "2024-03-05T08:15:30.123456Z", "2024-03-05T08:15:30.123456Z"),
    ],
)
def test_date_range(value, low, high):
    assert date_range(value) == (us(low), us(high))


def test_daylight_saving_days():
    low, high = date_range("2024-03-31")  # spring forward: 23 hours
    assert high - low + 1 == 23 * 3600 * 10**6
    low, high = date_range("2024-10-27")  # fall back: 25 hours
    assert high - low + 1 == 25 * 3600 * 10**6


def test_extreme_years():
    assert date_range("0001")[0] < date_range("1970")[0] < date_range("9999")[1] < DATE_MAX
    assert date_range("9999-12-31")[1] == date_range("9999")[1]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "24",
        "2024-13",
        "2024-02-30",
        "2023-02-29",
        "2024-1-5",
        "2024-03-05T24:00:00",
        "2024-03-05T10:60",
        "2024-03-05T10:00:60",
        "2024-03-05T10:00:00+15:00",
        "2024-03-05T10:00:00+01:60",
        "2024-03-05 10:00:00",
        "2024-03-05T10",
        "0000",
        "2024-03-05Z",
        "ge2024",
    ],
)
def test_date_range_rejects(value):
    with pytest.raises(ValueError):
        date_range(value)


def test_date_rows_and_period_open_ends():
    rows = extract(
        {
            "resourceType": "Encounter",
            "period": {"start": "2024-03-05T08:00:00+01:00"},
        }
    ).dates
    assert rows_for(rows, "date") == [("date", us("2024-03-05T08:00:00+01:00"), DATE_MAX)]
    rows = extract({"resourceType": "Encounter", "period": {"end": "2024-03"}}).dates
    assert rows_for(rows, "date") == [("date", DATE_MIN, date_range("2024-03")[1])]
    rows = extract({"resourceType": "Encounter", "period": {"start": "2024", "end": "2025"}}).dates
    assert rows_for(rows, "date") == [("date", date_range("2024")[0], date_range("2025")[1])]
    assert extract({"resourceType": "Encounter", "period": {}}).dates == []


def test_date_rows_from_choice_and_timing():
    obs = {"resourceType": "Observation", "effectiveDateTime": "2024-03-05"}
    assert rows_for(extract(obs).dates, "date") == [("date", *date_range("2024-03-05"))]
    obs = {"resourceType": "Observation", "effectiveInstant": "2024-03-05T10:00:00.000Z"}
    assert rows_for(extract(obs).dates, "date") == [("date", *date_range("2024-03-05T10:00:00.000Z"))]
    obs = {
        "resourceType": "Observation",
        "effectiveTiming": {
            "event": ["2024-03-05", "2024-03-06"],
            "repeat": {"boundsPeriod": {"start": "2024-03-01"}},
        },
    }
    assert rows_for(extract(obs).dates, "date") == [
        ("date", *date_range("2024-03-05")),
        ("date", *date_range("2024-03-06")),
        ("date", date_range("2024-03-01")[0], DATE_MAX),
    ]
    pat = {"resourceType": "Patient", "birthDate": "1969-11-13"}
    assert extract(pat).dates == [("birthdate", *date_range("1969-11-13"))]


def test_malformed_values_are_skipped():
    rows = extract(
        {
            "resourceType": "Patient",
            "birthDate": "13.11.1969",
            "deceasedDateTime": "yesterday",
            "name": [{"family": 42}],
        }
    )
    assert rows.dates == []
    assert rows.strings == []


# --------------------------------------------------------------------------- references


def test_reference_rows():
    rows = extract(
        {
            "resourceType": "Observation",
            "subject": {"reference": "Patient/p1/_history/3"},
            "performer": [
                {"reference": "https://fhir.example.no/r4/Practitioner/9"},
                {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "123"}, "type": "Practitioner"},
                {"reference": "Organization/o1", "identifier": {"system": "urn:oid:x", "value": "974"}},
                {"reference": "urn:uuid:0e2a1b0c-2b6f-4a43-9c2e-8c6f3d0b7a51"},
                {"reference": "#contained"},
                {"display": "Just a name"},
            ],
            "basedOn": [{"reference": "ServiceRequest/sr1"}, {"reference": "ServiceRequest/sr1"}],
        }
    ).references
    assert rows_for(rows, "subject") == [("subject", "Patient", "p1", None, None, None)]
    assert rows_for(rows, "performer") == [
        ("performer", None, None, None, None, "https://fhir.example.no/r4/Practitioner/9"),
        ("performer", "Practitioner", None, "urn:oid:2.16.578.1.12.4.1.4.4", "123", None),
        ("performer", "Organization", "o1", "urn:oid:x", "974", None),
        ("performer", None, None, None, None, "urn:uuid:0e2a1b0c-2b6f-4a43-9c2e-8c6f3d0b7a51"),
    ]
    assert rows_for(rows, "based-on") == [("based-on", "ServiceRequest", "sr1", None, None, None)]


def test_patient_param_follows_resolve_is_patient():
    def refs(subject):
        return extract({"resourceType": "Observation", "subject": subject}).references

    rows = refs({"reference": "Patient/p1"})
    assert rows_for(rows, "patient") == [("patient", "Patient", "p1", None, None, None)]
    assert rows_for(rows, "subject") == [("subject", "Patient", "p1", None, None, None)]

    rows = refs({"reference": "Group/g1"})
    assert rows_for(rows, "patient") == []
    assert rows_for(rows, "subject") == [("subject", "Group", "g1", None, None, None)]

    rows = refs({"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216"}, "type": "Patient"})
    assert rows_for(rows, "patient") == [
        ("patient", "Patient", None, "urn:oid:2.16.578.1.12.4.1.4.1", "13116900216", None)
    ]
    rows = refs({"identifier": {"system": "urn:example", "value": "dev"}, "type": "Device"})
    assert rows_for(rows, "patient") == []
    rows = refs({"identifier": {"system": "urn:example", "value": "who"}})  # no type info: kept
    assert rows_for(rows, "patient") == [("patient", None, None, "urn:example", "who", None)]

    # Parameters defined without resolve(): AllergyIntolerance.patient always indexes.
    rows = extract({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p2"}}).references
    assert rows_for(rows, "patient") == [("patient", "Patient", "p2", None, None, None)]


def test_canonical_and_inline_resource_references():
    rows = extract(
        {
            "resourceType": "PlanDefinition",
            "library": ["http://example.org/Library/a|1.0"],
            "relatedArtifact": [
                {"type": "depends-on", "resource": "http://example.org/Library/b"},
                {"type": "citation", "resource": "http://example.org/Library/c"},
            ],
        }
    ).references
    assert rows_for(rows, "depends-on") == [
        ("depends-on", None, None, None, None, "http://example.org/Library/b"),
        ("depends-on", None, None, None, None, "http://example.org/Library/a|1.0"),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "document",
        "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}],
    }
    assert rows_for(extract(bundle).references, "composition") == [
        ("composition", "Composition", "c1", None, None, None)
    ]


# --------------------------------------------------------------------------- quantities, numbers, uris


def test_quantity_rows():
    obs = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
    }
    assert rows_for(extract(obs).quantities, "value-quantity") == [
        ("value-quantity", 13.2, "http://unitsofmeasure.org", "g/dL", "g/dL")
    ]
    sampled = {"resourceType": "Observation", "valueSampledData": {"origin": {"value": 0}, "data": "1 2"}}
    assert extract(sampled).quantities == []
    condition = {
        "resourceType": "Condition",
        "onsetRange": {"low": {"value": 10, "unit": "a"}, "high": {"value": 20, "unit": "a"}},
    }
    assert rows_for(extract(condition).quantities, "onset-age") == [
        ("onset-age", 10.0, None, None, "a"),
        ("onset-age", 20.0, None, None, "a"),
    ]
    condition = {"resourceType": "Condition", "abatementAge": {"value": 3, "code": "a"}}
    assert rows_for(extract(condition).quantities, "abatement-age") == [("abatement-age", 3.0, None, "a", None)]
    charge = {"resourceType": "ChargeItem", "priceOverride": {"value": 250, "currency": "NOK"}}
    assert rows_for(extract(charge).quantities, "price-override") == [
        ("price-override", 250.0, "urn:iso:std:iso:4217", "NOK", None)
    ]
    assert extract({"resourceType": "Observation", "valueQuantity": {"unit": "g"}}).quantities == []


def test_number_rows():
    risk = {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.25}]}
    assert extract(risk).numbers == [("probability", 0.25)]
    charge = {"resourceType": "ChargeItem", "factorOverride": 2}
    assert extract(charge).numbers == [("factor-override", 2.0)]


def test_meta_rows():
    rows = extract(
        {
            "resourceType": "Observation",
            "id": "o1",
            "meta": {
                "versionId": "2",
                "lastUpdated": "2024-03-05T10:00:00Z",
                "source": "urn:kjerne:ingest",
                "profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Observation"],
                "tag": [{"system": "http://kjerne.no/tag", "code": "demo", "display": "Demo"}],
                "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
            },
        }
    )
    assert rows_for(rows.tokens, "_tag") == [("_tag", "http://kjerne.no/tag", "demo", "demo")]
    assert rows_for(rows.tokens, "_security") == [
        ("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R", None)
    ]
    assert rows.uris == [
        ("_profile", "http://hl7.no/fhir/StructureDefinition/no-basis-Observation"),
        ("_source", "urn:kjerne:ingest"),
    ]
    assert rows_for(rows.tokens, "_id") == []
    assert rows.dates == []  # _lastUpdated lives on the resource table


def test_uri_rows():
    vs = {
        "resourceType": "ValueSet",
        "url": "http://example.org/ValueSet/x",
        "compose": {"include": [{"system": "urn:s"}]},
    }
    rows = extract(vs).uris
    assert rows_for(rows, "url") == [("url", "http://example.org/ValueSet/x")]
    assert rows_for(rows, "reference") == [("reference", "urn:s")]


# --------------------------------------------------------------------------- plans and edges


def test_skipping_getters_for_absent_elements_changes_no_rows(monkeypatch):
    resources = _example_resources()
    skipped = 0
    for _, res in resources:
        plan = plan_for(res["resourceType"])
        skipped += sum(1 for _, _, _, needs, _ in plan if needs is not None and res.keys().isdisjoint(needs))
    assert skipped > 1000  # the shortcut is really taken
    fast = [extract(res) for _, res in resources]
    for rtype in {res["resourceType"] for _, res in resources}:
        monkeypatch.setitem(_PLANS, rtype, tuple((c, g, conv, None, None) for c, g, conv, _, _ in plan_for(rtype)))
    full = [extract(res) for _, res in resources]
    assert fast == full


def test_remembered_rows_are_the_rows_computed_afresh(monkeypatch):
    resources = [res for _, res in _example_resources()]
    _PLANS.clear()  # fresh memos
    first = [extract(res) for res in resources]
    again = [extract(res) for res in resources]  # now mostly from the memos
    remembered = sum(
        len(m.rows) for rtype in {r["resourceType"] for r in resources} for *_, m in plan_for(rtype) if m is not None
    )
    assert remembered > 100  # the memos are really used
    for rtype in {res["resourceType"] for res in resources}:
        monkeypatch.setitem(_PLANS, rtype, tuple((c, g, conv, n, None) for c, g, conv, n, _ in plan_for(rtype)))
    fresh = [extract(res) for res in resources]
    assert first == fresh and again == fresh


def test_a_resource_with_contained_resources_bypasses_the_memos():
    # resolve() of "#id" reads Resource.contained, which the memo keys do not cover
    res = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "s"}],
        "subject": {"reference": "#s"},
    }
    memos = [m for *_, m in plan_for("Observation") if m is not None]
    before = [m.lookups for m in memos]
    extract(res)
    assert [m.lookups for m in memos] == before
    extract({k: v for k, v in res.items() if k != "contained"})
    assert [m.lookups for m in memos] != before


def test_a_memo_for_values_that_never_repeat_switches_itself_off():
    _PLANS.clear()
    for i in range(2100):
        extract(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "identifier": [{"system": "urn:x", "value": str(i)}],
            }
        )
    memos = {code: m for code, *_, m in plan_for("Observation") if m is not None}
    assert not memos["identifier"].on and not memos["identifier"].rows
    assert memos["code"].on and len(memos["code"].rows) == 1


def test_a_getter_that_lists_or_answers_without_elements_always_runs():
    assert _needs("Patient", lambda r: list(r.items())) is None
    assert _needs("Patient", lambda r: [r.get("deceasedBoolean") is None]) is None
    assert _needs("Patient", lambda r: [x for x in [r.get("name")] if x]) == frozenset({"name"})


def test_composite_special_and_store_columns_not_planned():
    obs_codes = {code for code, *_ in plan_for("Observation")}
    assert "code-value-quantity" not in obs_codes and "combo-code-value-concept" not in obs_codes
    assert {"_id", "_lastUpdated", "_text", "_content", "_query"}.isdisjoint(obs_codes)
    assert {"code", "patient", "subject", "_tag", "_profile", "_security", "_source"} <= obs_codes
    assert "near" not in {code for code, *_ in plan_for("Location")}
    assert plan_for("Observation") is plan_for("Observation")


def test_unknown_type_and_missing_type():
    assert extract({"resourceType": "NotAThing", "status": "x"}) == IndexRows()
    with pytest.raises(ValueError):
        extract({"id": "x"})


def test_rows_construct_positionally():
    # The writer builds empty rows for deletions positionally.
    assert IndexRows([], [], [], [], [], [], []) == IndexRows()
