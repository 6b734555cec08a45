"""The synthetic demo data set: deterministic, internally consistent, valid FHIR R4, Norwegian identifiers."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import re
import time
from typing import Any

import pytest

from kjerne.demo import catalogue as cat
from kjerne.demo.generate import MAX_BUNDLE_ENTRIES, ckd_epi, generate, news2, resources
from kjerne.demo.personas import personas as make_personas
from kjerne.demo.personas import plan_persons
from kjerne.fhir.identifiers import (
    OID_FNR,
    OID_HERID,
    OID_HPR,
    OID_ORGNR,
    birth_date,
    is_synthetic,
    is_valid_fnr,
    is_valid_orgnr,
)

TODAY = dt.date(2025, 6, 1)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\+0[12]:00)$")
VITAL_CODES = {
    "8867-4": "364075005",
    "85354-9": "75367002",
    "2708-6": "431314004",
    "9279-1": "86290005",
    "8310-5": "276885007",
    "29463-7": "27113001",
    "15074-8": "434912009",
}
VITAL_UNITS = {"8867-4": "/min", "2708-6": "%", "9279-1": "/min", "8310-5": "Cel", "29463-7": "kg", "15074-8": "mmol/L"}


@pytest.fixture(scope="module")
def bundles() -> list[dict]:
    return list(generate(seed=1, today=TODAY))


@pytest.fixture(scope="module")
def all_resources(bundles: list[dict]) -> list[dict]:
    return list(resources(bundles))


@pytest.fixture(scope="module")
def by_type(all_resources: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for r in all_resources:
        out[r["resourceType"]].append(r)
    return out


@pytest.fixture(scope="module")
def index(all_resources: list[dict]) -> dict[str, dict]:
    return {f"{r['resourceType']}/{r['id']}": r for r in all_resources}


def _codes(concept: dict, system: str) -> list[str]:
    return [c["code"] for c in concept.get("coding", []) if c.get("system") == system]


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _identifier(resource: dict, system: str) -> str | None:
    return next((i["value"] for i in resource.get("identifier", []) if i["system"] == system), None)


def _is_lab(report: dict) -> bool:
    return any("LAB" in _codes(c, cat.V2_0074) for c in report["category"])


def _is_rad(report: dict) -> bool:
    return any("RAD" in _codes(c, cat.V2_0074) for c in report["category"])


# --- shape and determinism --------------------------------------------------------------------------


def test_same_seed_gives_same_data(bundles: list[dict]) -> None:
    assert list(generate(seed=1, today=TODAY)) == bundles


def test_other_seed_gives_other_citizens(by_type: dict[str, list[dict]]) -> None:
    other = [r for r in resources(generate(seed=2, persons=10, today=TODAY)) if r["resourceType"] == "Patient"]
    assert {_identifier(p, OID_FNR) for p in other}.isdisjoint({_identifier(p, OID_FNR) for p in by_type["Patient"]})


def test_person_plan_is_prefix_stable() -> None:
    assert plan_persons(1, 12) == plan_persons(1, 60)[:12]


def test_directory_comes_first_then_patient_first_in_each_person(bundles: list[dict]) -> None:
    first = {e["resource"]["resourceType"] for e in bundles[0]["entry"]}
    assert first == {"Organization", "Practitioner", "PractitionerRole"}
    seen_patients = set()
    for bundle in bundles[1:]:
        head = bundle["entry"][0]["resource"]
        person = bundle["id"].rsplit("-", 1)[0]
        if person not in seen_patients:
            assert head["resourceType"] == "Patient"
            seen_patients.add(person)


def test_every_entry_is_an_idempotent_put(bundles: list[dict]) -> None:
    for bundle in bundles:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        assert 0 < len(bundle["entry"]) <= MAX_BUNDLE_ENTRIES
        for entry in bundle["entry"]:
            r = entry["resource"]
            assert entry["request"] == {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}


def test_ids_are_valid_and_unique_per_type(all_resources: list[dict]) -> None:
    seen: set[tuple[str, str]] = set()
    for r in all_resources:
        assert FHIR_ID.match(r["id"]), r["id"]
        assert r["id"].startswith("demo-")
        key = (r["resourceType"], r["id"])
        assert key not in seen, key
        seen.add(key)


def test_references_resolve_in_the_same_or_an_earlier_bundle(bundles: list[dict]) -> None:
    loaded: set[str] = set()
    count = 0
    for bundle in bundles:
        here = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
        for entry in bundle["entry"]:
            for node in _walk(entry["resource"]):
                ref = node.get("reference")
                if isinstance(ref, str):
                    count += 1
                    assert re.match(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$", ref), ref
                    assert ref in here or ref in loaded, ref
        loaded |= here
    assert count > 10_000


def test_every_resource_is_valid_fhir(all_resources: list[dict]) -> None:
    from kjerne.fhir import validation

    problems = {}
    for r in all_resources:
        issues = validation.validate(r)
        if issues:
            problems[f"{r['resourceType']}/{r['id']}"] = [(i.expression, i.diagnostics) for i in issues]
    assert not problems, list(problems.items())[:5]


def test_datetimes_carry_the_norwegian_offset(all_resources: list[dict]) -> None:
    for node in _walk(all_resources):
        for key in ("effectiveDateTime", "issued", "authoredOn", "collectedDateTime", "receivedTime"):
            if key in node:
                assert DATETIME.match(node[key]), node[key]
    summer = [r for r in all_resources if r.get("effectiveDateTime", "")[5:7] == "07"]
    winter = [r for r in all_resources if r.get("effectiveDateTime", "")[5:7] == "01"]
    assert summer and all(r["effectiveDateTime"].endswith("+02:00") for r in summer)
    assert winter and all(r["effectiveDateTime"].endswith("+01:00") for r in winter)


def test_default_size_and_speed() -> None:
    started = time.perf_counter()
    total = sum(1 for _ in resources(generate(today=TODAY)))
    elapsed = time.perf_counter() - started
    assert 5_000 <= total <= 15_000
    assert elapsed < 10


# --- people and organisations -----------------------------------------------------------------------


def test_citizens_have_synthetic_fnr_and_matching_birth_date(by_type: dict[str, list[dict]]) -> None:
    patients = by_type["Patient"]
    assert len(patients) >= 50
    for p in patients:
        fnr = _identifier(p, OID_FNR)
        assert fnr and is_valid_fnr(fnr) and is_synthetic(fnr), fnr
        assert int(fnr[2:4]) > 80
        assert birth_date(fnr) == dt.date.fromisoformat(p["birthDate"])
        assert p["gender"] in ("female", "male")
        assert p["name"][0]["family"] and p["name"][0]["given"]
        address = p["address"][0]
        assert re.match(r"^\d{4}$", address["postalCode"]) and address["city"] and address["district"]
    genders = collections.Counter(p["gender"] for p in patients)
    assert genders["female"] >= 15 and genders["male"] >= 15
    ages = [(TODAY - dt.date.fromisoformat(p["birthDate"])).days / 365.25 for p in patients]
    assert min(ages) < 3 and max(ages) > 85 and max(ages) < 96


def test_organisations(by_type: dict[str, list[dict]]) -> None:
    orgs = by_type["Organization"]
    for org in orgs:
        orgnr = _identifier(org, OID_ORGNR)
        assert orgnr and is_valid_orgnr(orgnr), orgnr
        assert org["type"][0]["coding"][0]["system"] == cat.ORG_TYPE
    kinds = collections.Counter(o.kind for o in cat.ORGANISATIONS)
    assert kinds["lab"] >= 3 and kinds["radiology"] >= 2 and kinds["gp"] >= 3
    assert kinds["hospital"] >= 2 and kinds["municipality"] >= 2 and kinds["homecare"] >= 2
    healthcare = [o for o in orgs if o["type"][0]["coding"][0]["code"] in ("prov", "dept")]
    assert all(_identifier(o, OID_HERID) for o in healthcare)
    assert sum(1 for o in orgs if "partOf" in o) >= 6
    assert len({_identifier(o, OID_ORGNR) for o in orgs}) == len(orgs)


def test_every_org_number_anywhere_is_valid(all_resources: list[dict]) -> None:
    numbers = {n["value"] for n in _walk(all_resources) if n.get("system") == OID_ORGNR and "value" in n}
    assert numbers and all(is_valid_orgnr(v) for v in numbers)


def test_health_personnel(by_type: dict[str, list[dict]], index: dict[str, dict]) -> None:
    practitioners = by_type["Practitioner"]
    assert len(practitioners) >= 12
    for p in practitioners:
        hpr = _identifier(p, OID_HPR)
        assert hpr and re.match(r"^\d{7}$", hpr)
        fnr = _identifier(p, OID_FNR)
        assert fnr and is_valid_fnr(fnr) and is_synthetic(fnr)
        assert birth_date(fnr) == dt.date.fromisoformat(p["birthDate"])
        assert _codes(p["qualification"][0]["code"], cat.KV_9060)[0] in cat.HEALTH_PERSONNEL_CATEGORY
    categories = {_codes(p["qualification"][0]["code"], cat.KV_9060)[0] for p in practitioners}
    assert {"LE", "SP", "BI"} <= categories
    linked = set()
    for role in by_type["PractitionerRole"]:
        assert index[role["practitioner"]["reference"]]["resourceType"] == "Practitioner"
        assert index[role["organization"]["reference"]]["resourceType"] == "Organization"
        assert _codes(role["code"][0], cat.KV_9060)
        linked.add(role["practitioner"]["reference"])
    assert linked == {f"Practitioner/{p['id']}" for p in practitioners}
    all_fnr = [_identifier(r, OID_FNR) for r in practitioners + by_type["Patient"]]
    assert len(set(all_fnr)) == len(all_fnr)


# --- prøvesvar -------------------------------------------------------------------------------------


def test_lab_reports(by_type: dict[str, list[dict]], index: dict[str, dict]) -> None:
    reports = [r for r in by_type["DiagnosticReport"] if _is_lab(r)]
    per_person = collections.Counter(r["subject"]["reference"] for r in reports)
    assert len(per_person) == len(by_type["Patient"])
    assert 5 <= len(reports) / len(per_person) <= 8
    statuses = collections.Counter(r["status"] for r in reports)
    assert statuses["final"] > 0.85 * len(reports) and statuses["preliminary"] and statuses["amended"]
    for r in reports:
        assert _codes(r["category"][0], cat.KV_8202) == ["LAB"]
        assert r["code"]["coding"]
        assert 5 <= len(r["result"]) <= 12
        performer = index[r["performer"][0]["reference"]]
        assert performer["id"] in {o.id for o in cat.ORGANISATIONS if o.kind == "lab"}
        request = index[r["basedOn"][0]["reference"]]
        assert request["intent"] == "order" and request["status"] in ("completed", "active")
        requester = index[request["requester"]["reference"]]
        assert requester["resourceType"] == "PractitionerRole"
        for ref in r["specimen"]:
            specimen = index[ref["reference"]]
            assert specimen["accessionIdentifier"]["value"]
            assert specimen["collection"]["collectedDateTime"] == r["effectiveDateTime"]
        for ref in r["result"]:
            obs = index[ref["reference"]]
            assert obs["subject"]["reference"] == r["subject"]["reference"]
            assert obs["performer"][0]["reference"] == r["performer"][0]["reference"]


def test_lab_observations_are_coded_and_interpreted(by_type: dict[str, list[dict]]) -> None:
    lab = [o for o in by_type["Observation"] if _codes(o["category"][0], cat.OBS_CATEGORY) == ["laboratory"]]
    assert len(lab) > 2000
    flags = collections.Counter()
    for o in lab:
        assert len(_codes(o["code"], cat.NLK)) == 1 and len(_codes(o["code"], cat.LOINC)) == 1
        assert o["code"]["text"]
        q = o["valueQuantity"]
        assert q["system"] == cat.UCUM and q["code"]
        ref = o["referenceRange"][0]
        flag = _codes(o["interpretation"][0], cat.INTERPRETATION)[0]
        flags[flag] += 1
        if "comparator" in q:
            assert flag == "N"
            continue
        expected = "N"
        if "low" in ref and q["value"] < ref["low"]["value"]:
            expected = "L"
        elif "high" in ref and q["value"] > ref["high"]["value"]:
            expected = "H"
        assert flag == expected, o["id"]
    assert flags["H"] and flags["L"] and flags["N"] > flags["H"]


def test_same_analysis_in_different_units_across_labs(by_type: dict[str, list[dict]]) -> None:
    units: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for o in by_type["Observation"]:
        for loinc in _codes(o["code"], cat.LOINC):
            if "valueQuantity" in o:
                units[loinc][o["valueQuantity"]["code"]].add(o["performer"][0]["reference"])
    mixed = {loinc: dict(u) for loinc, u in units.items() if len(u) > 1}
    assert "718-7" in mixed  # haemoglobin in g/dL and g/L
    assert set(mixed["718-7"]) == {"g/dL", "g/L"}
    assert mixed["718-7"]["g/dL"].isdisjoint(mixed["718-7"]["g/L"])
    assert "1742-6" in mixed  # ALAT in U/L and µkat/L
    creatinine = {loinc for loinc in units if loinc in ("14682-9", "2160-0")}
    assert creatinine == {"14682-9", "2160-0"}  # µmol/L and mg/dL, each under its own LOINC


def test_chronic_kidney_disease_shows_rising_creatinine(by_type: dict[str, list[dict]]) -> None:
    plan = next(p for p in plan_persons(1, 60) if p.archetype == "hjertesvikt-oslo")
    values = sorted(
        (o["effectiveDateTime"], o["valueQuantity"]["value"])
        for o in by_type["Observation"]
        if o["subject"]["reference"] == f"Patient/{plan.id}" and "14682-9" in _codes(o["code"], cat.LOINC)
    )
    assert len(values) >= 4
    assert values[-1][1] > values[0][1] * 1.2


def test_reports_span_several_years(by_type: dict[str, list[dict]]) -> None:
    dates = sorted(r["effectiveDateTime"][:10] for r in by_type["DiagnosticReport"])
    first, last = dt.date.fromisoformat(dates[0]), dt.date.fromisoformat(dates[-1])
    assert (last - first).days > 3.5 * 365
    assert last <= TODAY
    assert len({d[:4] for d in dates}) >= 4


def test_radiology_reports(by_type: dict[str, list[dict]], index: dict[str, dict]) -> None:
    reports = [r for r in by_type["DiagnosticReport"] if _is_rad(r)]
    assert len(reports) >= 10
    for r in reports:
        assert _codes(r["code"], cat.NCRP)
        assert r["conclusion"]
        form = r["presentedForm"][0]
        assert form["contentType"].startswith("text/plain")
        text = base64.b64decode(form["data"]).decode("utf-8")
        assert r["conclusion"] in text and "Beskrivelse" in text
        assert index[r["performer"][0]["reference"]]["id"] in {o.id for o in cat.ORGANISATIONS if o.kind == "radiology"}
        assert index[r["resultsInterpreter"][0]["reference"]]["resourceType"] == "PractitionerRole"


# --- måledata --------------------------------------------------------------------------------------


def test_home_measurements(by_type: dict[str, list[dict]], index: dict[str, dict]) -> None:
    vitals = [o for o in by_type["Observation"] if _codes(o["category"][0], cat.OBS_CATEGORY) == ["vital-signs"]]
    persons = {o["subject"]["reference"] for o in vitals}
    assert 12 <= len(persons) <= 20
    seen_loinc = set()
    for o in vitals:
        loinc = _codes(o["code"], cat.LOINC)
        if loinc:
            code = loinc[0]
            seen_loinc.add(code)
            assert _codes(o["code"], cat.SNOMED) == [VITAL_CODES[code]]
            assert o["device"]["display"]
            if code in VITAL_UNITS:
                assert o["valueQuantity"]["code"] == VITAL_UNITS[code]
            if code == "85354-9":
                components = [(_codes(c["code"], cat.LOINC)[0], c["valueQuantity"]["code"]) for c in o["component"]]
                assert components == [("8480-6", "mm[Hg]"), ("8462-4", "mm[Hg]")]
        else:
            assert _codes(o["code"], cat.SNOMED) == [cat.NEWS2[0]]
            assert isinstance(o["valueInteger"], int)
            assert all(index[d["reference"]]["subject"] == o["subject"] for d in o["derivedFrom"])
        author, organization = (index[p["reference"]] for p in o["performer"])
        assert author["resourceType"] in ("Patient", "Practitioner")
        assert o["performer"][0]["identifier"]["system"] == OID_FNR
        assert organization["resourceType"] == "Organization"
    assert seen_loinc == set(VITAL_CODES)
    days = collections.Counter((o["subject"]["reference"], o["effectiveDateTime"][:10]) for o in vitals)
    per_person = collections.Counter(person for person, _ in days)
    assert min(per_person.values()) >= 30  # followed over weeks to months


def test_clinical_formulas() -> None:
    assert news2(resp=16, spo2=97, systolic=130, pulse=72, temp=36.8) == 0
    assert news2(resp=26, spo2=88, systolic=95, pulse=125, temp=39.5) == 3 + 3 + 2 + 2 + 2
    assert 85 < ckd_epi(70, 40, "M") < 130
    assert ckd_epi(250, 75, "F") < 20


# --- personas --------------------------------------------------------------------------------------


def test_personas_match_the_data(by_type: dict[str, list[dict]], index: dict[str, dict]) -> None:
    personas = make_personas(1)
    assert personas == make_personas(1)
    patients = {_identifier(p, OID_FNR): p for p in by_type["Patient"]}
    lab_subjects = {r["subject"]["reference"] for r in by_type["DiagnosticReport"] if _is_lab(r)}
    rad_subjects = {r["subject"]["reference"] for r in by_type["DiagnosticReport"] if _is_rad(r)}
    vital_subjects = {
        o["subject"]["reference"]
        for o in by_type["Observation"]
        if _codes(o["category"][0], cat.OBS_CATEGORY) == ["vital-signs"]
    }
    citizens = personas["citizens"]
    assert len(citizens) >= 5
    assert any(c["has_measurements"] for c in citizens) and any(not c["has_measurements"] for c in citizens)
    for c in citizens:
        patient = patients[c["fnr"]]
        ref = f"Patient/{patient['id']}"
        assert patient["id"] == c["patient_id"]
        assert patient["name"][0]["family"] == c["family"] and " ".join(patient["name"][0]["given"]) == c["given"]
        assert patient["birthDate"] == c["birth_date"]
        assert (ref in lab_subjects) == c["has_lab_results"]
        assert (ref in rad_subjects) == c["has_radiology"]
        assert (ref in vital_subjects) == c["has_measurements"]
        assert patient["generalPractitioner"][0]["reference"] == f"PractitionerRole/{c['gp']['practitioner_role_id']}"

    practitioners = {_identifier(p, OID_HPR): p for p in by_type["Practitioner"]}
    roles = {r["practitioner"]["reference"]: r for r in by_type["PractitionerRole"]}
    assert {"LE", "SP"} <= {p["role"] for p in personas["practitioners"]}
    for p in personas["practitioners"]:
        practitioner = practitioners[p["hpr"]]
        assert _identifier(practitioner, OID_FNR) == p["fnr"]
        role = roles[f"Practitioner/{practitioner['id']}"]
        assert _codes(role["code"][0], cat.KV_9060) == [p["role"]]
        org = index[role["organization"]["reference"]]
        assert _identifier(org, OID_ORGNR) == p["org_number"] and org["name"] == p["org_name"]
        assert is_valid_orgnr(p["legal_entity_org_number"])

    orgs = {_identifier(o, OID_ORGNR): o for o in by_type["Organization"]}
    kinds = collections.Counter(p["kind"] for p in personas["producers"])
    assert kinds["lab"] >= 3 and kinds["radiology"] >= 2 and kinds["platform"] >= 1 and kinds["followup"] >= 2
    for producer in personas["producers"]:
        assert orgs[producer["org_number"]]["name"] == producer["name"]
