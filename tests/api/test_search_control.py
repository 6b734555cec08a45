"""Result control: _include/_revinclude, _sort, _count and paging (stable under concurrent writes),
_total, _summary, _elements, unknown and malformed parameters."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import (
    FNR,
    FNR_1,
    FNR_2,
    SUBSETTED,
    assert_outcome,
    create,
    diagnostics,
    follow,
    glucose,
    ids,
    included,
    link,
    matches,
    patient,
    report,
    search,
)
from starlette.testclient import TestClient

# -- _include / _revinclude ----------------------------------------------------------------------


@pytest.fixture
def lab(client: TestClient) -> dict[str, Any]:
    """Two patients; a report for Kari with two results; one result is about Ola (for :iterate)."""
    kari = create(client, patient(FNR_1, "Nordmann", "Kari"))["id"]
    ola = create(client, patient(FNR_2, "Hansen", "Ola"))["id"]
    o1 = create(client, glucose(f"Patient/{kari}", 5.4))["id"]
    o2 = create(client, glucose(f"Patient/{ola}", 6.1))["id"]
    o3 = create(client, glucose(f"Patient/{kari}", 7.2))["id"]  # in no report
    rep = create(client, report(f"Patient/{kari}", [f"Observation/{o1}", f"Observation/{o2}"]))["id"]
    return {"kari": kari, "ola": ola, "o1": o1, "o2": o2, "o3": o3, "report": rep}


def _keys(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["resourceType"], r["id"]) for r in resources)


def test_include_forward(client: TestClient, lab: dict[str, Any]) -> None:
    bundle = search(client, "DiagnosticReport", {"_include": "DiagnosticReport:result"})
    assert ids(bundle) == [lab["report"]]
    assert _keys(included(bundle)) == sorted([("Observation", lab["o1"]), ("Observation", lab["o2"])])
    assert bundle["total"] == 1  # included resources are not counted


def test_include_with_target_type(client: TestClient, lab: dict[str, Any]) -> None:
    bundle = search(client, "DiagnosticReport", {"_include": "DiagnosticReport:subject:Patient"})
    assert _keys(included(bundle)) == [("Patient", lab["kari"])]
    bundle = search(client, "DiagnosticReport", {"_include": "DiagnosticReport:subject:Group"})
    assert included(bundle) == []


def test_include_subject_once_per_patient(client: TestClient, lab: dict[str, Any]) -> None:
    bundle = search(client, "Observation", {"_include": "Observation:subject"})
    assert sorted(ids(bundle)) == sorted([lab["o1"], lab["o2"], lab["o3"]])
    assert _keys(included(bundle)) == sorted([("Patient", lab["kari"]), ("Patient", lab["ola"])])
    # a match is never repeated as an include
    inc = search(client, "Observation", [("subject", f"Patient/{lab['kari']}"), ("_include", "Observation:subject")])
    assert sorted(ids(inc)) == sorted([lab["o1"], lab["o3"]])
    assert _keys(included(inc)) == [("Patient", lab["kari"])]


def test_revinclude(client: TestClient, lab: dict[str, Any]) -> None:
    bundle = search(client, "Patient", [("_id", lab["kari"]), ("_revinclude", "Observation:subject")])
    assert ids(bundle) == [lab["kari"]]
    assert _keys(included(bundle)) == sorted([("Observation", lab["o1"]), ("Observation", lab["o3"])])
    both = search(
        client,
        "Patient",
        [("_id", lab["kari"]), ("_revinclude", "Observation:subject"), ("_revinclude", "DiagnosticReport:subject")],
    )
    assert ("DiagnosticReport", lab["report"]) in _keys(included(both))


def test_include_iterate(client: TestClient, lab: dict[str, Any]) -> None:
    r = client.get(
        "/fhir/DiagnosticReport", params=[("_include", "DiagnosticReport:result"), ("_include", "Observation:subject")]
    )
    # without :iterate an _include only applies to the matches: rejected, or no Ola
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert ("Patient", lab["ola"]) not in _keys(included(r.json()))
    bundle = search(
        client,
        "DiagnosticReport",
        [("_include", "DiagnosticReport:result"), ("_include:iterate", "Observation:subject")],
    )
    assert _keys(included(bundle)) == sorted(
        [("Observation", lab["o1"]), ("Observation", lab["o2"]), ("Patient", lab["kari"]), ("Patient", lab["ola"])]
    )


def test_include_skips_deleted_targets(client: TestClient, lab: dict[str, Any]) -> None:
    client.delete(f"/fhir/Observation/{lab['o2']}")
    bundle = search(client, "DiagnosticReport", {"_include": "DiagnosticReport:result"})
    assert _keys(included(bundle)) == [("Observation", lab["o1"])]


def test_include_of_a_non_reference_parameter_is_400(client: TestClient, lab: dict[str, Any]) -> None:
    assert_outcome(client.get("/fhir/DiagnosticReport", params={"_include": "DiagnosticReport:status"}), 400)
    assert_outcome(client.get("/fhir/DiagnosticReport", params={"_include": "DiagnosticReport"}), 400)


# -- _sort ---------------------------------------------------------------------------------------


@pytest.fixture
def family(client: TestClient) -> dict[str, str]:
    rows = {
        "dahl-69": patient(None, "Dahl", "Kari", birth_date="1969-11-13"),
        "berg-79": patient(None, "Berg", "Ola", birth_date="1979-05-12"),
        "dahl-80": patient(None, "Dahl", "Per", birth_date="1980-01-01"),
        "aas-75": patient(None, "Aasen", "Eva", birth_date="1975-02-02"),
        "berg-none": patient(None, "Berg", "Liv"),
    }
    return {k: create(client, v)["id"] for k, v in rows.items()}


def _order(client: TestClient, family: dict[str, str], sort: str) -> list[str]:
    back = {v: k for k, v in family.items()}
    return [back[i] for i in ids(search(client, "Patient", {"_sort": sort}))]


def test_sort_by_date_ascending_and_descending(client: TestClient, family: dict[str, str]) -> None:
    assert _order(client, family, "birthdate") == ["dahl-69", "aas-75", "berg-79", "dahl-80", "berg-none"]
    assert _order(client, family, "-birthdate")[:4] == ["dahl-80", "berg-79", "aas-75", "dahl-69"]


def test_sort_by_id_and_last_updated(client: TestClient, family: dict[str, str]) -> None:
    by_id = _order(client, family, "_id")
    assert [family[k] for k in by_id] == sorted(family.values())
    assert _order(client, family, "-_id") == list(reversed(by_id))
    assert _order(client, family, "_lastUpdated") == list(family)
    assert _order(client, family, "-_lastUpdated") == list(reversed(family))


def test_sort_by_string(client: TestClient, family: dict[str, str]) -> None:
    order = _order(client, family, "family")
    assert order[0] == "aas-75"
    assert set(order[1:3]) == {"berg-79", "berg-none"}
    assert set(order[3:]) == {"dahl-69", "dahl-80"}


def test_sort_by_several_keys(client: TestClient, family: dict[str, str]) -> None:
    assert _order(client, family, "family,-birthdate") == ["aas-75", "berg-79", "berg-none", "dahl-80", "dahl-69"]
    assert _order(client, family, "-family,birthdate") == ["dahl-69", "dahl-80", "berg-79", "berg-none", "aas-75"]


def test_sort_by_token(client: TestClient) -> None:
    a = create(client, patient(FNR_2, gender="male"))["id"]
    b = create(client, patient(FNR_1, gender="female"))["id"]
    assert ids(search(client, "Patient", {"_sort": "gender"})) == [b, a]
    assert ids(search(client, "Patient", {"_sort": "-gender"})) == [a, b]


def test_sort_by_an_unknown_parameter_is_400(client: TestClient, family: dict[str, str]) -> None:
    found = assert_outcome(client.get("/fhir/Patient", params={"_sort": "skostorrelse"}), 400)
    assert "skostorrelse" in diagnostics(found)


# -- _count and paging ---------------------------------------------------------------------------


def _walk(client: TestClient, url: str, relation: str = "next") -> list[dict[str, Any]]:
    pages = []
    next_url: str | None = url
    while next_url:
        bundle = follow(client, next_url)
        pages.append(bundle)
        next_url = link(bundle, relation)
        assert len(pages) < 100
    return pages


def _make(client: TestClient, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        create(client, patient(None, f"Side{i:02d}", "Test", birth_date=f"19{50 + i:02d}-01-01"))
        for i in range(start, start + n)
    ]


def test_count_and_next_previous_links(client: TestClient) -> None:
    made = _make(client, 7)
    first = search(client, "Patient", {"_count": "3"})
    assert len(matches(first)) == 3
    assert first["total"] == 7
    assert link(first, "self")
    assert link(first, "next")
    assert link(first, "previous") is None
    pages = _walk(client, "/fhir/Patient?_count=3")
    assert [len(matches(p)) for p in pages] == [3, 3, 1]
    assert link(pages[-1], "next") is None
    assert all(link(p, "previous") for p in pages[1:])
    assert [i for p in pages for i in ids(p)] == [m["id"] for m in made]


def test_count_zero_gives_no_entries(client: TestClient) -> None:
    _make(client, 2)
    bundle = search(client, "Patient", {"_count": "0", "_total": "accurate"})
    assert matches(bundle) == []
    assert bundle["total"] == 2


@pytest.mark.parametrize("sort", [None, "birthdate", "-birthdate", "-_id", "family"])
def test_walking_previous_links_back_gives_the_same_pages(client: TestClient, sort: str | None) -> None:
    _make(client, 11)
    query = "/fhir/Patient?_count=4" + (f"&_sort={sort}" if sort else "")
    forward = _walk(client, query)
    assert [len(ids(p)) for p in forward] == [4, 4, 3]
    back = [forward[-1]]
    url = link(forward[-1], "previous")
    while url:
        page = follow(client, url)
        back.append(page)
        url = link(page, "previous")
        assert len(back) < 10
    assert [ids(p) for p in reversed(back)] == [ids(p) for p in forward]
    # and from a page reached backwards, next goes forward again
    again = follow(client, link(back[-1], "next"))  # type: ignore[arg-type]
    assert ids(again) == ids(forward[1])


def _paged_walk_with_writes(client: TestClient, sort: str | None) -> None:
    original = _make(client, 12)
    by_id = {r["id"]: r for r in original}
    query = "/fhir/Patient?_count=4" + (f"&_sort={sort}" if sort else "")
    seen: list[str] = []
    deleted_unseen: set[str] = set()
    bundle = follow(client, query)
    seen += ids(bundle)
    step = 0
    while link(bundle, "next"):
        step += 1
        # between pages: new resources, updates (including the sort keys), deletions of seen and unseen rows
        _make(client, 2, start=20 + 2 * step)
        unseen = [r["id"] for r in original if r["id"] not in seen and r["id"] not in deleted_unseen]
        for pid in [seen[0], seen[-1], *unseen[:1]]:
            res = by_id[pid]
            changed = {**res, "birthDate": f"20{10 + step:02d}-0{step}-01", "gender": "other"}
            assert client.put(f"/fhir/Patient/{pid}", json=changed).status_code == 200
        if unseen[1:]:
            victim = unseen[-1]
            assert client.delete(f"/fhir/Patient/{victim}").status_code in (200, 204)
            deleted_unseen.add(victim)
        if len(seen) > 2:
            client.delete(f"/fhir/Patient/{seen[1]}")
        bundle = follow(client, link(bundle, "next"))  # type: ignore[arg-type]
        seen += ids(bundle)
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert set(seen) == {r["id"] for r in original} - deleted_unseen


@pytest.mark.parametrize("sort", [None, "_id", "-_id", "family"])
def test_paging_is_stable_under_writes(client: TestClient, sort: str | None) -> None:
    _paged_walk_with_writes(client, sort)


@pytest.mark.parametrize("sort", ["birthdate", "-birthdate", "_lastUpdated", "-_lastUpdated"])
def test_paging_is_stable_when_updates_change_the_sort_key(client: TestClient, sort: str) -> None:
    _paged_walk_with_writes(client, sort)


def test_cursor_from_another_search_is_rejected(client: TestClient) -> None:
    _make(client, 3)
    nxt = link(search(client, "Patient", {"_count": "1", "_sort": "birthdate"}), "next")
    assert nxt is not None
    cursor = nxt.split("_cursor=", 1)[1].split("&", 1)[0]
    r = client.get("/fhir/Patient", params={"_cursor": cursor, "_sort": "birthdate,_id"})
    assert_outcome(r, 400)
    assert_outcome(client.get("/fhir/Patient", params={"_cursor": "ikke-en-markor"}), 400)


# -- _total, _summary, _elements -----------------------------------------------------------------


def test_total_accurate_on_every_page(client: TestClient) -> None:
    _make(client, 5)
    pages = _walk(client, "/fhir/Patient?_count=2&_total=accurate")
    assert [p.get("total") for p in pages] == [5, 5, 5]
    none = search(client, "Patient", {"_total": "none"})
    assert "total" not in none
    assert len(matches(none)) == 5


def test_summary_count(client: TestClient) -> None:
    _make(client, 3)
    bundle = search(client, "Patient", {"_summary": "count"})
    assert bundle["total"] == 3
    assert "entry" not in bundle or bundle["entry"] == []
    filtered = search(client, "Patient", {"_summary": "count", "family": "side01"})
    assert filtered["total"] == 1


def test_elements_keeps_only_the_listed_elements(client: TestClient) -> None:
    res = patient(FNR_1, "Ås", "Bjørn", birth_date="1969-11-13", gender="male")
    res["meta"] = {"tag": [{"system": "http://kjerne.test/kilde", "code": "x"}]}
    create(client, res)
    bundle = search(client, "Patient", {"_elements": "identifier,gender"})
    (got,) = matches(bundle)
    assert set(got) == {"resourceType", "id", "meta", "identifier", "gender"}
    assert got["identifier"] == [{"system": FNR, "value": FNR_1}]
    tags = [(t.get("system"), t.get("code")) for t in got["meta"].get("tag", [])]
    assert SUBSETTED in tags
    assert ("http://kjerne.test/kilde", "x") in tags
    # a read is not subsetted
    full = client.get(f"/fhir/Patient/{got['id']}").json()
    assert "name" in full and SUBSETTED not in [(t.get("system"), t.get("code")) for t in full["meta"]["tag"]]


def test_summary_text_and_data(client: TestClient) -> None:
    res = patient(FNR_1)
    res["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Kari Nordmann</div>'}
    create(client, res)
    (data,) = matches(search(client, "Patient", {"_summary": "data"}))
    assert "text" not in data and "name" in data
    (text,) = matches(search(client, "Patient", {"_summary": "text"}))
    assert "text" in text and "name" not in text


# -- unknown and malformed parameters ------------------------------------------------------------


def test_unknown_parameter_is_400_naming_it(client: TestClient) -> None:
    create(client, patient())
    found = assert_outcome(client.get("/fhir/Patient", params={"skostorrelse": "42"}), 400)
    assert "skostorrelse" in diagnostics(found)
    found = assert_outcome(client.get("/fhir/Patient", params={"family:fonetisk": "as"}), 400)
    assert "family:fonetisk" in diagnostics(found)


def test_unknown_parameter_is_ignored_with_lenient_handling(client: TestClient) -> None:
    a = create(client, patient(FNR_1, "Ås"))["id"]
    create(client, patient(FNR_2, "Berg"))
    bundle = search(client, "Patient", {"skostorrelse": "42", "family": "as"}, Prefer="handling=lenient")
    assert ids(bundle) == [a]
    outcomes = [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "outcome"]
    assert outcomes and "skostorrelse" in diagnostics(outcomes[0]["issue"])
    # the self link names what was sent
    assert link(bundle, "self")


def test_strict_handling_is_the_default(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Patient", params={"x": "1"}, headers={"Prefer": "handling=strict"}), 400)


@pytest.mark.parametrize(
    ("res_type", "name", "value"),
    [
        ("Patient", "birthdate", "ge2024-13-45"),
        ("Patient", "birthdate", "2023-02-30"),
        ("Patient", "birthdate", "i-går"),
        ("Patient", "_lastUpdated", "gt2024-01-01T25:00:00Z"),
        ("Observation", "value-quantity", "abc"),
        ("Observation", "value-quantity", "gtx|http://unitsofmeasure.org|mmol/L"),
        ("RiskAssessment", "probability", "abc"),
        ("RiskAssessment", "probability", "NaN"),
        ("Patient", "_count", "abc"),
        ("Patient", "_count", "-1"),
        ("Patient", "_total", "kanskje"),
        ("Patient", "_summary", "kort"),
        ("Observation", "subject", "Patient/1/2/3"),
    ],
)
def test_malformed_values_are_400(client: TestClient, res_type: str, name: str, value: str) -> None:
    found = assert_outcome(client.get(f"/fhir/{res_type}", params={name: value}), 400)
    assert found[0]["severity"] in ("error", "fatal")
    # lenient handling covers unknown parameters, not malformed values
    r = client.get(f"/fhir/{res_type}", params={name: value}, headers={"Prefer": "handling=lenient"})
    assert_outcome(r, 400)


def test_search_on_an_unknown_type_is_4xx(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Pasient", params={"name": "x"}), (400, 404))
