"""transaction (all or nothing, urn:uuid references, conditional create) and batch (independent entries)."""

from __future__ import annotations

from typing import Any

from api_helpers import (
    FNR,
    FNR_1,
    FNR_2,
    ORG_1,
    ORGNR,
    assert_outcome,
    count,
    create,
    expressions,
    glucose,
    issues,
    organization,
    patient,
    report,
    search,
)
from starlette.testclient import TestClient

P_URN = "urn:uuid:6f1c2a52-3d7e-4c4f-9a51-0d3c1e7b2a10"
O_URN = "urn:uuid:1b0c3e44-8a5d-4f0e-b7a4-9f2d6c5e8a21"
R_URN = "urn:uuid:9d7e5a13-2c4b-4e8f-a1d6-3b5c7e9f0a32"
ORG_URN = "urn:uuid:0a9b8c7d-6e5f-4a3b-9c1d-2e3f4a5b6c7d"


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(res: dict[str, Any], full_url: str | None = None, if_none_exist: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
    if full_url:
        e["fullUrl"] = full_url
    if if_none_exist:
        e["request"]["ifNoneExist"] = if_none_exist
    return e


def put_entry(res: dict[str, Any], url: str, full_url: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": res, "request": {"method": "PUT", "url": url}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def send(client: TestClient, bundle: dict[str, Any]) -> Any:
    return client.post("/fhir", json=bundle)


def status(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


def nothing_stored(client: TestClient) -> None:
    for res_type in ("Patient", "Observation", "DiagnosticReport", "Organization"):
        assert count(client, res_type) == 0, res_type


# -- transaction ---------------------------------------------------------------------------------


def test_transaction_stores_everything_and_rewrites_urn_uuid_references(client: TestClient) -> None:
    obs = glucose(P_URN)
    obs["performer"] = [{"reference": ORG_URN}]
    bundle = tx(
        post(report(P_URN, [O_URN]), R_URN),
        post(obs, O_URN),
        post(patient(), P_URN),
        post(organization(), ORG_URN),
    )
    r = send(client, bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert len(out["entry"]) == 4
    assert [status(e) for e in out["entry"]] == [201, 201, 201, 201]
    # response entries keep the request order
    types = [e["response"]["location"].split("/")[0] for e in out["entry"]]
    assert types == ["DiagnosticReport", "Observation", "Patient", "Organization"]
    rid, oid, pid, org_id = (e["response"]["location"].split("/")[1] for e in out["entry"])
    assert all(e["response"]["etag"] == 'W/"1"' for e in out["entry"])

    stored_report = client.get(f"/fhir/DiagnosticReport/{rid}").json()
    assert stored_report["subject"]["reference"] == f"Patient/{pid}"
    assert stored_report["result"] == [{"reference": f"Observation/{oid}"}]
    stored_obs = client.get(f"/fhir/Observation/{oid}").json()
    assert stored_obs["subject"]["reference"] == f"Patient/{pid}"
    assert stored_obs["performer"] == [{"reference": f"Organization/{org_id}"}]
    assert "urn:uuid" not in str(stored_report) + str(stored_obs)
    # and the rewritten references are indexed
    assert {r["id"] for r in _matches(search(client, "Observation", {"subject": f"Patient/{pid}"}))} == {oid}


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def test_transaction_is_all_or_nothing_on_an_invalid_resource(client: TestClient) -> None:
    bad = glucose(P_URN)
    bad["effectiveDateTime"] = "2023-02-30"
    bundle = tx(post(patient(), P_URN), post(glucose(P_URN)), post(bad), post(organization()))
    r = send(client, bundle)
    found = assert_outcome(r, (400, 422))
    assert any("Bundle.entry[2]" in e for e in expressions(found)), found
    nothing_stored(client)


def test_transaction_is_all_or_nothing_on_a_failing_precondition(client: TestClient) -> None:
    existing = create(client, patient(FNR_2, family="Fast"))
    changed = {**existing, "gender": "male"}
    bundle = tx(
        post(patient(FNR_1)),
        {
            "resource": changed,
            "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"9"'},
        },
    )
    assert_outcome(send(client, bundle), (409, 412))
    assert count(client, "Patient") == 1
    assert client.get(f"/fhir/Patient/{existing['id']}").json().get("gender") is None


def test_transaction_is_all_or_nothing_on_an_unknown_type(client: TestClient) -> None:
    bundle = tx(
        post(patient()),
        {"resource": {"resourceType": "Pasient"}, "request": {"method": "POST", "url": "Pasient"}},
    )
    assert_outcome(send(client, bundle), (400, 404, 422))
    nothing_stored(client)


def test_transaction_with_an_unresolvable_urn_uuid_is_400_and_stores_nothing(client: TestClient) -> None:
    bundle = tx(post(patient(), P_URN), post(glucose("urn:uuid:00000000-0000-4000-8000-000000000000")))
    found = assert_outcome(send(client, bundle), 400)
    assert "urn:uuid:00000000-0000-4000-8000-000000000000" in str(found)
    nothing_stored(client)


def test_transaction_with_a_duplicate_full_url_is_400(client: TestClient) -> None:
    bundle = tx(post(patient(FNR_1), P_URN), post(patient(FNR_2), P_URN))
    found = assert_outcome(send(client, bundle), 400)
    assert P_URN in str(found)
    nothing_stored(client)


def test_transaction_entry_without_request_is_400(client: TestClient) -> None:
    bundle = tx(post(patient()), {"resource": patient(FNR_2)})
    assert_outcome(send(client, bundle), 400)
    nothing_stored(client)


def test_conditional_create_in_a_transaction_reuses_the_match(client: TestClient) -> None:
    existing = create(client, patient(FNR_1))
    cond = f"identifier={FNR}|{FNR_1}"
    bundle = tx(post(patient(FNR_1, family="Ny"), P_URN, if_none_exist=cond), post(glucose(P_URN), O_URN))
    r = send(client, bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert status(entries[0]) == 200
    assert entries[0]["response"]["location"].startswith(f"Patient/{existing['id']}/")
    assert status(entries[1]) == 201
    oid = entries[1]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{existing['id']}"
    assert count(client, "Patient") == 1
    assert client.get(f"/fhir/Patient/{existing['id']}").json()["name"][0]["family"] == "Nordmann"


def test_conditional_create_in_a_transaction_creates_when_nothing_matches(client: TestClient) -> None:
    cond = f"identifier={FNR}|{FNR_2}"
    bundle = tx(post(patient(FNR_2), P_URN, if_none_exist=cond), post(glucose(P_URN)))
    r = send(client, bundle)
    assert r.status_code == 200, r.text
    assert [status(e) for e in r.json()["entry"]] == [201, 201]
    assert count(client, "Patient", {"identifier": f"{FNR}|{FNR_2}"}) == 1


def test_transaction_put_and_delete(client: TestClient) -> None:
    keep = create(client, patient(FNR_1))
    gone = create(client, organization())
    bundle = tx(
        put_entry({**keep, "gender": "female"}, f"Patient/{keep['id']}"),
        {"request": {"method": "DELETE", "url": f"Organization/{gone['id']}"}},
        put_entry(patient(FNR_2, rid="tx-ny"), "Patient/tx-ny"),
    )
    r = send(client, bundle)
    assert r.status_code == 200, r.text
    assert [status(e) for e in r.json()["entry"]] == [200, 204, 201]
    assert client.get(f"/fhir/Patient/{keep['id']}").headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Organization/{gone['id']}").status_code == 410
    assert client.get("/fhir/Patient/tx-ny").status_code == 200


def test_transaction_put_with_body_id_different_from_url_is_rejected(client: TestClient) -> None:
    bundle = tx(put_entry(patient(FNR_1, rid="a"), "Patient/b"))
    assert_outcome(send(client, bundle), 400)
    nothing_stored(client)


def test_post_to_base_needs_a_transaction_or_batch_bundle(client: TestClient) -> None:
    assert_outcome(send(client, tx(post(patient()), kind="collection")), 400)
    assert_outcome(send(client, patient()), 400)
    nothing_stored(client)


# -- batch ---------------------------------------------------------------------------------------


def test_batch_entries_are_independent(client: TestClient) -> None:
    bad = patient(FNR_2, family="Feil")
    bad["birthDate"] = "2023-02-30"
    bundle = tx(
        post(patient(FNR_1, family="God")),
        post(bad),
        post(organization()),
        {"request": {"method": "GET", "url": "Patient?family=God"}},
        kind="batch",
    )
    r = send(client, bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "batch-response"
    entries = out["entry"]
    assert len(entries) == 4
    assert [status(e) for e in entries] == [201, 400, 201, 200]
    # the bad one carries its own OperationOutcome
    bad_issues = issues(entries[1]["response"]["outcome"])
    assert any("birthDate" in e for e in expressions(bad_issues)), bad_issues
    # the good ones are stored, in order
    assert entries[0]["resource"]["name"][0]["family"] == "God"
    assert entries[2]["resource"]["resourceType"] == "Organization"
    assert count(client, "Patient") == 1
    assert count(client, "Patient", {"family": "Feil"}) == 0
    assert count(client, "Organization") == 1


def test_prefer_return_minimal_answers_entries_without_the_resource(client: TestClient) -> None:
    for kind in ("batch", "transaction"):
        bundle = tx(post(patient(FNR_1 if kind == "batch" else FNR_2)), post(organization()), kind=kind)
        r = client.post("/fhir", json=bundle, headers={"prefer": "return=minimal"})
        assert r.status_code == 200, r.text
        entries = r.json()["entry"]
        assert [status(e) for e in entries] == [201, 201]
        for e in entries:
            assert "resource" not in e
            assert e["response"]["location"] and e["response"]["etag"] == 'W/"1"'
    assert count(client, "Patient") == 2


def test_batch_entry_errors_do_not_stop_later_entries(client: TestClient) -> None:
    existing = create(client, patient(FNR_1))
    bundle = tx(
        {
            "resource": {**existing, "gender": "male"},
            "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"5"'},
        },
        {"request": {"method": "GET", "url": "Patient/finnes-ikke"}},
        {"resource": {"resourceType": "Organization", "name": "X"}, "request": {"method": "POST", "url": "Patient"}},
        post(glucose("urn:uuid:11111111-1111-4111-8111-111111111111")),
        post(organization(), ORG_URN),
        kind="batch",
    )
    r = send(client, bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [status(e) for e in entries] == [412, 404, 400, 400, 201]
    for e in entries[:4]:
        issues(e["response"]["outcome"])
    assert client.get(f"/fhir/Patient/{existing['id']}").json().get("gender") is None
    assert count(client, "Organization") == 1
    assert count(client, "Observation") == 0


def test_batch_conditional_create(client: TestClient) -> None:
    cond = f"identifier={FNR}|{FNR_1}"
    bundle = tx(post(patient(FNR_1), if_none_exist=cond), kind="batch")
    assert status(send(client, bundle).json()["entry"][0]) == 201
    assert status(send(client, bundle).json()["entry"][0]) == 200
    assert count(client, "Patient") == 1


def test_conditional_update_and_delete_in_a_transaction(client: TestClient) -> None:
    existing = create(client, patient(FNR_1, family="Gammel"))
    org = create(client, organization())
    bundle = tx(
        put_entry(patient(FNR_1, family="Ny"), f"Patient?identifier={FNR}|{FNR_1}"),
        put_entry(patient(FNR_2, family="Helt Ny"), f"Patient?identifier={FNR}|{FNR_2}"),
        {"request": {"method": "DELETE", "url": f"Organization?identifier={ORGNR}|{ORG_1}"}},
    )
    r = send(client, bundle)
    assert r.status_code == 200, r.text
    assert [status(e) for e in r.json()["entry"]] == [200, 201, 204]
    updated = client.get(f"/fhir/Patient/{existing['id']}")
    assert updated.headers["etag"] == 'W/"2"'
    assert updated.json()["name"][0]["family"] == "Ny"
    assert count(client, "Patient") == 2
    assert client.get(f"/fhir/Organization/{org['id']}").status_code == 410


def test_conditional_create_in_a_transaction_with_several_matches_is_412(client: TestClient) -> None:
    create(client, patient(FNR_1, family="Lie"))
    create(client, patient(FNR_2, family="Lie"))
    bundle = tx(post(organization()), post(patient(None, family="Lie"), if_none_exist="family=Lie"))
    assert_outcome(send(client, bundle), 412)
    assert count(client, "Patient") == 2
    assert count(client, "Organization") == 0
