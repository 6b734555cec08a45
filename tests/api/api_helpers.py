"""Resource builders and small request helpers shared by the API tests.

The identifiers are the synthetic Norwegian test numbers used throughout the suite: they pass the
check-digit rules, so the server must accept them."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.testclient import TestClient

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR = "urn:oid:2.16.578.1.12.4.1.4.2"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")

FNR_1 = "13116900216"
FNR_2 = "12057900499"
FNR_BAD = "13116900217"  # last check digit wrong
DNR_1 = "53116900048"  # a D-number (day + 40) for a person born 13 November 1969
ORG_1 = "987654325"
ORG_2 = "974760673"
HPR_1 = "9144889"

BASE_PATH = "http://testserver/fhir"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def fnr_identifier(value: str = FNR_1, *, typed: bool = False) -> dict[str, Any]:
    ident: dict[str, Any] = {"system": FNR, "value": value}
    if typed:
        ident["type"] = {"coding": [{"system": V2_0203, "code": "NI"}], "text": "Fødselsnummer"}
    return ident


def patient(
    fnr: str | None = FNR_1,
    family: str = "Nordmann",
    given: str | list[str] = "Kari",
    *,
    birth_date: str | None = None,
    gender: str | None = None,
    rid: str | None = None,
    typed: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient"}
    if rid:
        res["id"] = rid
    if fnr:
        res["identifier"] = [fnr_identifier(fnr, typed=typed)]
    res["name"] = [{"family": family, "given": [given] if isinstance(given, str) else given}]
    if birth_date:
        res["birthDate"] = birth_date
    if gender:
        res["gender"] = gender
    res.update(extra)
    return res


def glucose(
    subject: dict[str, Any] | str | None,
    value: float | None = 5.4,
    *,
    unit: str = "mmol/L",
    code: str = "15074-8",
    display: str = "Glukose i blod",
    effective: str | None = "2024-03-05T10:15:00+01:00",
    status: str = "final",
    **extra: Any,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
    }
    if subject is not None:
        res["subject"] = {"reference": subject} if isinstance(subject, str) else subject
    if effective:
        res["effectiveDateTime"] = effective
    if value is not None:
        res["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    res.update(extra)
    return res


def report(subject: str, results: list[str], *, code: str = "58410-2") -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject},
        "result": [{"reference": r} for r in results],
    }


def organization(orgnr: str = ORG_1, name: str = "Testsykehuset HF") -> dict[str, Any]:
    return {"resourceType": "Organization", "identifier": [{"system": ORGNR, "value": orgnr}], "name": name}


def practitioner(hpr: str = HPR_1, family: str = "Lege") -> dict[str, Any]:
    return {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": hpr}], "name": [{"family": family}]}


# -- requests ---------------------------------------------------------------------------------------


def create(client: TestClient, res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res)
    assert r.status_code == 201, r.text
    return r.json()


def put(client: TestClient, res: dict[str, Any], **headers: str) -> Any:
    return client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=headers)


def search(client: TestClient, res_type: str, params: Any = None, **headers: str) -> dict[str, Any]:
    r = client.get(f"/fhir/{res_type}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def included(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "include"]


def ids(bundle: dict[str, Any]) -> list[str]:
    return [r["id"] for r in matches(bundle)]


def search_ids(client: TestClient, res_type: str, params: Any = None) -> set[str]:
    return set(ids(search(client, res_type, params)))


def count(client: TestClient, res_type: str, params: Any = None) -> int:
    """Number of current resources matching, from _summary=count (never paged)."""
    pairs = list(params.items()) if isinstance(params, dict) else list(params or [])
    bundle = search(client, res_type, [*pairs, ("_summary", "count")])
    return int(bundle["total"])


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            return str(item["url"])
    return None


def follow(client: TestClient, url: str) -> dict[str, Any]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    return r.json()


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def issues(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert body.get("resourceType") == "OperationOutcome", body
    assert body.get("issue"), body
    return list(body["issue"])


def assert_outcome(r: Any, status: int | tuple[int, ...]) -> list[dict[str, Any]]:
    """The response has the status (or one of them) and an OperationOutcome body; returns its issues."""
    wanted = (status,) if isinstance(status, int) else status
    assert r.status_code in wanted, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers
    return issues(r.json())


def expressions(found: list[dict[str, Any]]) -> list[str]:
    return [e for i in found for e in i.get("expression", [])]


def diagnostics(found: list[dict[str, Any]]) -> str:
    return " ".join(str(i.get("diagnostics", "")) for i in found)
