"""read, vread, create, conditional create, update with versions, conditional update, delete, _history."""

from __future__ import annotations

import time

from api_helpers import (
    BASE_PATH,
    FNR,
    FNR_1,
    FNR_2,
    assert_outcome,
    count,
    create,
    follow,
    glucose,
    link,
    patient,
    put,
)
from starlette.testclient import TestClient


def _history(client: TestClient, path: str, **params: str) -> dict:
    r = client.get(f"/fhir/{path}/_history", params=params)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    return bundle


def _versions(bundle: dict) -> list[str]:
    return [e["response"]["etag"] for e in bundle.get("entry", [])]


# -- create / read -------------------------------------------------------------------------------


def test_create_returns_201_with_location_and_etag(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient())
    assert r.status_code == 201, r.text
    body = r.json()
    pid = body["id"]
    assert pid
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"{BASE_PATH}/Patient/{pid}/_history/1"
    assert r.headers["last-modified"]
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"]
    assert body["identifier"] == [{"system": FNR, "value": FNR_1}]


def test_create_ignores_client_id_and_meta_version(client: TestClient) -> None:
    sent = patient(rid="chosen-by-client")
    sent["meta"] = {"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z"}
    body = create(client, sent)
    assert body["id"] != "chosen-by-client"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert client.get("/fhir/Patient/chosen-by-client").status_code == 404


def test_read_returns_the_stored_resource(client: TestClient) -> None:
    created = create(client, patient(family="Hansen", birth_date="1969-11-13"))
    r = client.get(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.headers["etag"] == 'W/"1"'
    assert r.json() == created


def test_read_unknown_id_is_404_with_outcome(client: TestClient) -> None:
    found = assert_outcome(client.get("/fhir/Patient/finnes-ikke"), 404)
    assert found[0]["code"] == "not-found"


def test_read_unknown_type_is_4xx(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Pasient/1"), (400, 404))


def test_created_resource_is_searchable(client: TestClient) -> None:
    created = create(client, patient(FNR_2, family="Berg"))
    r = client.get("/fhir/Patient", params={"identifier": f"{FNR}|{FNR_2}"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [created["id"]]


# -- conditional create --------------------------------------------------------------------------


def test_conditional_create_returns_existing_instead_of_duplicating(client: TestClient) -> None:
    cond = {"If-None-Exist": f"identifier={FNR}|{FNR_1}"}
    first = client.post("/fhir/Patient", json=patient(), headers=cond)
    assert first.status_code == 201, first.text
    second = client.post("/fhir/Patient", json=patient(family="Annen"), headers=cond)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["name"][0]["family"] == "Nordmann"  # the existing one, not the new body
    assert count(client, "Patient", {"identifier": f"{FNR}|{FNR_1}"}) == 1
    assert count(client, "Patient") == 1


def test_conditional_create_without_match_creates(client: TestClient) -> None:
    create(client, patient(FNR_1))
    r = client.post("/fhir/Patient", json=patient(FNR_2), headers={"If-None-Exist": f"identifier={FNR}|{FNR_2}"})
    assert r.status_code == 201, r.text
    assert count(client, "Patient") == 2


def test_conditional_create_with_several_matches_is_412(client: TestClient) -> None:
    create(client, patient(FNR_1, family="Lie"))
    create(client, patient(FNR_2, family="Lie"))
    r = client.post("/fhir/Patient", json=patient(None, family="Lie"), headers={"If-None-Exist": "family=Lie"})
    assert_outcome(r, 412)
    assert count(client, "Patient") == 2


# -- update --------------------------------------------------------------------------------------


def test_update_with_if_match(client: TestClient) -> None:
    created = create(client, patient())
    pid = created["id"]
    changed = {**created, "gender": "female"}
    stale = put(client, changed, **{"If-Match": 'W/"0"'})
    assert_outcome(stale, 412)
    ok = put(client, changed, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == 'W/"2"'
    assert ok.json()["meta"]["versionId"] == "2"
    assert ok.json()["gender"] == "female"
    # the old ETag is stale now
    again = put(client, {**changed, "gender": "male"}, **{"If-Match": 'W/"1"'})
    assert_outcome(again, 412)
    current = client.get(f"/fhir/Patient/{pid}")
    assert current.headers["etag"] == 'W/"2"'
    assert current.json()["gender"] == "female"


def test_update_without_if_match_makes_a_new_version(client: TestClient) -> None:
    created = create(client, patient())
    r = put(client, {**created, "gender": "female"})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    r = put(client, {**created, "gender": "male"})
    assert r.headers["etag"] == 'W/"3"'


def test_if_match_on_a_resource_that_does_not_exist_is_412(client: TestClient) -> None:
    r = put(client, patient(rid="ny-pasient"), **{"If-Match": 'W/"1"'})
    assert_outcome(r, 412)
    assert client.get("/fhir/Patient/ny-pasient").status_code == 404


def test_update_as_create_with_a_new_id(client: TestClient) -> None:
    r = put(client, patient(rid="pas-1"))
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"{BASE_PATH}/Patient/pas-1/_history/1"
    assert r.json()["id"] == "pas-1"
    assert client.get("/fhir/Patient/pas-1").json()["name"][0]["family"] == "Nordmann"


def test_update_body_id_must_match_url(client: TestClient) -> None:
    r = client.put("/fhir/Patient/a", json=patient(rid="b"))
    found = assert_outcome(r, 400)
    assert found[0]["severity"] in ("error", "fatal")
    assert client.get("/fhir/Patient/a").status_code == 404
    assert client.get("/fhir/Patient/b").status_code == 404


def test_identical_put_creates_no_new_version(client: TestClient) -> None:
    created = create(client, patient(birth_date="1969-11-13"))
    pid = created["id"]
    same = put(client, created)
    assert same.status_code == 200, same.text
    assert same.headers["etag"] == 'W/"1"'
    # the same content without meta or with a stale meta is still the same content
    body = {k: v for k, v in created.items() if k != "meta"}
    assert put(client, body).headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{pid}").headers["etag"] == 'W/"1"'
    assert len(_history(client, f"Patient/{pid}")["entry"]) == 1


def test_conditional_update_creates_then_updates_the_match(client: TestClient) -> None:
    url = f"/fhir/Patient?identifier={FNR}|{FNR_1}"
    first = client.put(url, json=patient(family="Dahl"))
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    second = client.put(url, json=patient(family="Dahl", gender="female"))
    assert second.status_code == 200, second.text
    assert second.json()["id"] == pid
    assert second.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"
    assert count(client, "Patient") == 1


def test_conditional_update_with_query_params(client: TestClient) -> None:
    created = create(client, patient(FNR_2, family="Strand"))
    r = client.put("/fhir/Patient", params={"identifier": f"{FNR}|{FNR_2}"}, json=patient(FNR_2, family="Strand-Lie"))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created["id"]
    assert r.json()["name"][0]["family"] == "Strand-Lie"


def test_conditional_update_with_several_matches_is_412(client: TestClient) -> None:
    create(client, patient(FNR_1, family="Moen"))
    create(client, patient(FNR_2, family="Moen"))
    r = client.put("/fhir/Patient?family=Moen", json=patient(None, family="Moen"))
    assert_outcome(r, 412)
    assert count(client, "Patient", {"family": "Moen"}) == 2


def test_conditional_update_without_parameters_is_400(client: TestClient) -> None:
    assert_outcome(client.put("/fhir/Patient", json=patient()), 400)
    assert count(client, "Patient") == 0


# -- delete --------------------------------------------------------------------------------------


def test_delete_then_read_is_410(client: TestClient) -> None:
    created = create(client, patient())
    pid = created["id"]
    r = client.delete(f"/fhir/Patient/{pid}")
    assert r.status_code in (200, 204), r.text
    found = assert_outcome(client.get(f"/fhir/Patient/{pid}"), 410)
    assert found[0]["severity"] in ("error", "fatal")
    assert count(client, "Patient") == 0
    assert count(client, "Patient", {"_id": pid}) == 0
    # the version before the deletion is still readable; the deletion itself is gone
    old = client.get(f"/fhir/Patient/{pid}/_history/1")
    assert old.status_code == 200, old.text
    assert old.json()["name"] == created["name"]
    assert_outcome(client.get(f"/fhir/Patient/{pid}/_history/2"), 410)


def test_delete_twice_makes_one_deletion(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    assert len(_history(client, f"Patient/{pid}")["entry"]) == 2


def test_put_after_delete_revives_with_next_version(client: TestClient) -> None:
    created = create(client, patient())
    pid = created["id"]
    client.delete(f"/fhir/Patient/{pid}")
    r = put(client, {**created, "gender": "female"})
    assert r.status_code in (200, 201), r.text
    assert r.headers["etag"] == 'W/"3"'
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


# -- vread ---------------------------------------------------------------------------------------


def test_vread_of_old_versions(client: TestClient) -> None:
    created = create(client, patient(family="Vik"))
    pid = created["id"]
    put(client, {**created, "name": [{"family": "Vik-Olsen", "given": ["Kari"]}]})
    put(client, {**created, "name": [{"family": "Olsen", "given": ["Kari"]}]})
    for version, family in ((1, "Vik"), (2, "Vik-Olsen"), (3, "Olsen")):
        r = client.get(f"/fhir/Patient/{pid}/_history/{version}")
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == f'W/"{version}"'
        assert r.json()["meta"]["versionId"] == str(version)
        assert r.json()["name"][0]["family"] == family
    assert_outcome(client.get(f"/fhir/Patient/{pid}/_history/4"), 404)
    assert_outcome(client.get(f"/fhir/Patient/{pid}/_history/x"), (400, 404))


# -- history -------------------------------------------------------------------------------------


def test_instance_history_lists_all_versions_newest_first_with_deletion(client: TestClient) -> None:
    created = create(client, patient())
    pid = created["id"]
    put(client, {**created, "gender": "female"})
    put(client, {**created, "gender": "male"})
    client.delete(f"/fhir/Patient/{pid}")
    bundle = _history(client, f"Patient/{pid}")
    entries = bundle["entry"]
    assert _versions(bundle) == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert entries[0]["request"]["method"] == "DELETE"
    assert "resource" not in entries[0]
    assert [e["resource"]["meta"]["versionId"] for e in entries[1:]] == ["3", "2", "1"]
    assert [e["resource"].get("gender") for e in entries[1:]] == ["male", "female", None]
    assert entries[-1]["request"]["method"] == "POST"
    assert all(e["fullUrl"].endswith(f"/Patient/{pid}") for e in entries)


def test_instance_history_of_an_unknown_resource_is_404(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Patient/ukjent/_history"), 404)


def test_type_history_covers_every_version_of_every_resource(client: TestClient) -> None:
    a = create(client, patient(FNR_1, family="A"))
    b = create(client, patient(FNR_2, family="B"))
    put(client, {**a, "gender": "female"})
    client.delete(f"/fhir/Patient/{b['id']}")
    create(client, glucose(f"Patient/{a['id']}"))  # another type: not in Patient's history
    bundle = _history(client, "Patient")
    got = [(e["fullUrl"].rsplit("/", 1)[1], e["response"]["etag"]) for e in bundle["entry"]]
    assert sorted(got) == sorted([(a["id"], 'W/"1"'), (a["id"], 'W/"2"'), (b["id"], 'W/"1"'), (b["id"], 'W/"2"')])
    # newest first
    assert got[0] == (b["id"], 'W/"2"')
    modified = [e["response"]["lastModified"] for e in bundle["entry"]]
    assert modified == sorted(modified, reverse=True)


def test_history_paging_via_next_links(client: TestClient) -> None:
    created = create(client, patient())
    pid = created["id"]
    for i in range(6):
        put(client, {**created, "name": [{"family": f"Navn{i}", "given": ["Kari"]}]})
    seen: list[str] = []
    bundle = _history(client, f"Patient/{pid}", _count="3")
    pages = 0
    while True:
        pages += 1
        assert len(bundle.get("entry", [])) <= 3
        seen += _versions(bundle)
        nxt = link(bundle, "next")
        if nxt is None:
            break
        bundle = follow(client, nxt)
    assert seen == [f'W/"{v}"' for v in range(7, 0, -1)]
    assert pages == 3


def test_type_history_paging_does_not_repeat_or_skip(client: TestClient) -> None:
    made = [create(client, patient(None, family=f"P{i}")) for i in range(5)]
    for res in made[:3]:
        put(client, {**res, "gender": "other"})
    expected = {(r["id"], 1) for r in made} | {(r["id"], 2) for r in made[:3]}
    seen: list[tuple[str, int]] = []
    url: str | None = "/fhir/Patient/_history?_count=2"
    while url:
        bundle = follow(client, url)
        seen += [(e["fullUrl"].rsplit("/", 1)[1], int(e["response"]["etag"][3:-1])) for e in bundle.get("entry", [])]
        url = link(bundle, "next")
    assert len(seen) == len(set(seen))
    assert set(seen) == expected


def test_history_since(client: TestClient) -> None:
    created = create(client, patient())
    pid = created["id"]
    time.sleep(0.01)
    v2 = put(client, {**created, "gender": "female"}).json()
    bundle = _history(client, f"Patient/{pid}", _since=v2["meta"]["lastUpdated"])
    assert _versions(bundle) == ['W/"2"']


def test_history_since_after_the_last_change_is_an_empty_bundle(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    bundle = _history(client, f"Patient/{pid}", _since="2999-01-01T00:00:00Z")
    assert bundle.get("entry", []) == []
