"""Concurrent writers on one store: version checks hold, no update is lost, no duplicate is made.

The writers are threads calling the repository directly (the ASGI test client would run them one at a
time), each in its own transaction on its own connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from api_helpers import BASE_PATH, FNR, FNR_1, FNR_2, glucose, patient
from sqlalchemy import Engine
from starlette.testclient import TestClient

from kjerne.access.context import UNRESTRICTED
from kjerne.fhir.outcome import FhirError
from kjerne.store.repository import Repository
from kjerne.store.writer import WriteResult

CONFLICT = (409, 412)


@dataclass
class Outcomes:
    ok: list[WriteResult] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    crashed: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def race(engine: Engine, jobs: list[Callable[[Repository], WriteResult]]) -> Outcomes:
    """Run the jobs at once, one thread and one repository each."""
    out = Outcomes()
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[Repository], WriteResult]) -> None:
        repo = Repository(engine, UNRESTRICTED, base_url=BASE_PATH)
        barrier.wait()
        try:
            result = job(repo)
        except FhirError as err:
            with out.lock:
                out.refused.append(err.status)
        except BaseException as exc:
            with out.lock:
                out.crashed.append(exc)
        else:
            with out.lock:
                out.ok.append(result)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert not out.crashed, [repr(e) for e in out.crashed]
    return out


def versions(repo: Repository, res_type: str, res_id: str) -> list[int]:
    return [s.version for s in repo.history(res_type, res_id, count=1000).rows]


def named(family: str, rid: str) -> dict[str, Any]:
    return patient(FNR_1, family, "Kari", rid=rid)


def test_same_if_match_one_wins(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED, base_url=BASE_PATH)
    for round_ in range(3):
        rid = f"p-{round_}"
        repo.update(named("Start", rid), rid)
        out = race(
            engine, [lambda r, i=i, rid=rid: r.update(named(f"Skriver{i}", rid), rid, if_match=1) for i in range(4)]
        )
        assert len(out.ok) == 1, (out.ok, out.refused)
        assert len(out.refused) == 3
        assert all(s in CONFLICT for s in out.refused), out.refused
        current = repo.read("Patient", rid)
        assert current.version == 2 == len(out.ok) + 1
        assert current.resource()["name"][0]["family"] == out.ok[0].stored.resource()["name"][0]["family"]
        assert versions(repo, "Patient", rid) == [2, 1]


def test_plain_concurrent_updates_lose_nothing(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED, base_url=BASE_PATH)
    rid = "p-plain"
    repo.update(named("Start", rid), rid)
    jobs = [lambda r, i=i, j=j: r.update(named(f"W{i}-{j}", rid), rid) for i in range(6) for j in range(3)]
    out = race(engine, jobs)
    assert all(s == 409 for s in out.refused), out.refused
    assert out.ok, "no update succeeded"
    current = repo.read("Patient", rid)
    assert current.version == len(out.ok) + 1
    # every successful write is its own version, and every one is in the history
    got = sorted(r.stored.version for r in out.ok)
    assert got == list(range(2, current.version + 1))
    names = {r.stored.resource()["name"][0]["family"] for r in out.ok}
    history = repo.history("Patient", rid, count=1000).rows
    assert {s.resource()["name"][0]["family"] for s in history} == names | {"Start"}
    assert versions(repo, "Patient", rid) == list(range(current.version, 0, -1))


def test_concurrent_update_as_create_of_one_new_id(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED, base_url=BASE_PATH)
    for round_ in range(3):
        rid = f"ny-{round_}"
        out = race(engine, [lambda r, i=i, rid=rid: r.update(named(f"Ny{i}", rid), rid) for i in range(4)])
        assert all(s in CONFLICT for s in out.refused), out.refused
        assert out.ok
        assert sum(1 for r in out.ok if r.created) == 1
        current = repo.read("Patient", rid)
        assert current.version == len(out.ok)
        assert versions(repo, "Patient", rid) == list(range(current.version, 0, -1))


def test_concurrent_if_match_on_a_new_id(engine: Engine) -> None:
    """If-Match W/"0"-style creation is not offered; If-Match on a missing resource is refused by all."""
    rid = "aldri"
    out = race(engine, [lambda r, i=i: r.update(named(f"N{i}", rid), rid, if_match=1) for i in range(3)])
    assert out.ok == []
    assert all(s in CONFLICT for s in out.refused)


def test_concurrent_conditional_creates_make_one_resource(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED, base_url=BASE_PATH)
    cond = f"identifier={FNR}|{FNR_2}"
    out = race(engine, [lambda r: r.create(patient(FNR_2), if_none_exist=cond) for _ in range(4)])
    assert not out.refused or all(s in CONFLICT for s in out.refused), out.refused
    created = [r for r in out.ok if r.created]
    assert len(created) == 1, [r.stored.res_id for r in created]
    found = repo.search("Patient", [("identifier", f"{FNR}|{FNR_2}")]).page.rows
    assert len(found) == 1


def test_concurrent_first_data_for_one_new_person_makes_one_patient(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED, base_url=BASE_PATH)
    subject = {"identifier": {"system": FNR, "value": FNR_2}}
    out = race(engine, [lambda r, v=v: r.create(glucose(subject, v)) for v in (4.1, 5.2, 6.3, 7.4)])
    assert not out.refused, out.refused
    found = repo.search("Patient", [("identifier", f"{FNR}|{FNR_2}")]).page.rows
    assert len(found) == 1
    refs = {r.stored.resource()["subject"]["reference"] for r in out.ok}
    assert refs == {f"Patient/{found[0].res_id}"}


def test_concurrent_deletes_make_one_deletion(engine: Engine) -> None:
    repo = Repository(engine, UNRESTRICTED, base_url=BASE_PATH)
    rid = "slett"
    repo.update(named("Slett", rid), rid)
    out = Outcomes()
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            Repository(engine, UNRESTRICTED, base_url=BASE_PATH).delete("Patient", rid)
        except FhirError as err:
            out.refused.append(err.status)
        except BaseException as exc:
            out.crashed.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not out.crashed, [repr(e) for e in out.crashed]
    assert all(s in CONFLICT for s in out.refused)
    assert versions(repo, "Patient", rid) == [2, 1]


@pytest.mark.parametrize("n", [4])
def test_http_updates_with_the_same_etag(client: TestClient, n: int) -> None:
    """Through the API: of several updates sent with one ETag, one succeeds and the rest get 409/412."""
    created = client.post("/fhir/Patient", json=patient(FNR_1)).json()
    pid = created["id"]
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        r = client.put(
            f"/fhir/Patient/{pid}",
            json={**created, "name": [{"family": f"Http{i}", "given": ["Kari"]}]},
            headers={"If-Match": 'W/"1"'},
        )
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(statuses).count(200) == 1, statuses
    assert all(s in (200, *CONFLICT) for s in statuses), statuses
    assert client.get(f"/fhir/Patient/{pid}").headers["etag"] == 'W/"2"'
