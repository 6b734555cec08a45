"""$lastn: the latest measurements of one heavy patient, over HTTP and in-process, on PostgreSQL.

One patient with `--heavy` (100,000) home measurements among `--total` Observations (default 2,000,000;
the others 200 per patient), all vital signs (heart rate 8867-4, respiratory rate, body weight, SpO2).
The rows are bulk-loaded exactly as the store writes them (bench/dataset.py: the store's own Writer makes
a template per measurement type and value, checked against the Writer; COPY into the tables, secondary
indexes rebuilt), `patient_code` filled as the store fills it (one row per patient, code and system), then
VACUUM ANALYZE. Then, as a practitioner whose attestation names that patient (`person-id` header):

- `GET /fhir/Observation/$lastn?max=1` (the newest measurement of every code), and
- `GET /fhir/Observation/$lastn?max=5&code=http://loinc.org|8867-4`,

one request at a time over a keep-alive connection to `kjerne serve --dev` (1 worker), and the same in-process
with `observation_ops.lastn(Repository(engine, AccessPolicy(...)), ObsQuery(patients=[pid]), n)`, a fresh
policy per call. Every response is checked against the index: the entries are the newest per code.

    .venv/bin/python bench/lastn.py [--total 2000000] [--heavy 100000] [--requests 300]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from sqlalchemy import Engine, text

import common as c
import dataset as d
from kjerne.access.policy import AccessPolicy, RequestInfo
from kjerne.api.auth import build_verifier
from kjerne.config import Settings
from kjerne.store.db import make_engine
from kjerne.store.migrate import upgrade
from kjerne.store.observation_ops import ObsQuery, lastn, parse_codes
from kjerne.store.repository import Repository

TARGET_P99 = 0.020
HR = "http://loinc.org|8867-4"
QUERIES = [("max=1, every code", "max=1", 1, []), ("max=5, code=8867-4", f"max=5&code={HR}", 5, [HR])]


def fill_patient_code(engine: Engine) -> None:
    """What the Writer's _note_codes leaves: one row per (patient, code, system), system '' when absent."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO patient_code (patient, code, system) SELECT DISTINCT patient, code, "
                          "COALESCE(system, '') FROM idx_obs WHERE NOT component ON CONFLICT DO NOTHING"))


def expected(engine: Engine, pid: str, n: int, code: str | None) -> dict[str, list[int]]:
    """code -> the n newest effective times (µs) of the patient's measurements, from the index."""
    sql = ("SELECT code, effective FROM (SELECT code, effective, row_number() OVER (PARTITION BY code, system "
           "ORDER BY effective DESC) AS k FROM idx_obs WHERE patient = :p AND NOT component"
           + (" AND code = :c" if code else "") + ") x WHERE k <= :n ORDER BY code, effective DESC")
    out: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for row in conn.execute(text(sql), {"p": pid, "n": n, "c": code}):
            out.setdefault(row.code, []).append(row.effective)
    return out


def effective_of(engine: Engine, ids: list[str]) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT r.res_id, o.code, o.effective FROM resource r JOIN idx_obs o ON o.rid = r.rid "
                                 "WHERE r.res_id = ANY(:ids) AND NOT o.component"), {"ids": ids}).all()
    return {r.res_id: (r.code, r.effective) for r in rows}


def verify(engine: Engine, ids: list[str], want: dict[str, list[int]]) -> None:
    got: dict[str, list[int]] = {}
    eff = effective_of(engine, ids)
    for i in ids:
        code, e = eff[i]
        got.setdefault(code, []).append(e)
    got = {k: sorted(v, reverse=True) for k, v in got.items()}
    if got != want:
        raise AssertionError(f"$lastn returned {got}, the index says {want}")


def explain(engine: Engine, principal: object, heavy: d.PatientPlan, base: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement that picks the rows in `$lastn?max=1` for the heavy patient."""
    from sqlalchemy import event

    seen: list[tuple[str, object]] = []

    def grab(conn: object, cursor: object, statement: str, parameters: object, context: object, many: bool) -> None:
        if "picked" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        repo = Repository(engine, AccessPolicy(engine, principal, RequestInfo(person_id=heavy.fnr)), base_url=base)
        lastn(repo, ObsQuery(patients=[heavy.pid]), 1)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    if not seen:
        return ""
    statement, params = seen[0]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()  # type: ignore[arg-type]
    return "\n".join(r[0] for r in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--total", type=int, default=2_000_000)
    p.add_argument("--heavy", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    c.stop_on_sigterm()
    started = time.perf_counter()
    d.HEAVY, d.HEAVY_OBS, d.LAB_SHARE = 1, args.heavy, 0.0  # one heavy patient; home measurements only
    patients = d.plan(args.total, args.seed)
    heavy = patients[0]
    assert heavy.heavy and heavy.obs == args.heavy
    tmp = Path(tempfile.mkdtemp(prefix="kjerne-bench-lastn-"))
    results: list[list[str]] = []
    plan = ""
    notes: list[str] = []
    try:
        with c.postgres(fsync=True) as cluster:
            url = cluster.create_database("lastn")
            upgrade(url)
            engine = make_engine(url)
            print(f"loading {args.total:,} Observations for {len(patients):,} patients ...", flush=True)
            loaded = d.load(engine, url, patients, seed=args.seed, procs=2)
            t0 = time.perf_counter()
            fill_patient_code(engine)
            d.analyse(engine)
            loaded.phases["patient_code + analyze"] = time.perf_counter() - t0
            d.check_against_writer(engine, patients[1])
            with engine.connect() as conn:
                codes = conn.execute(text("SELECT count(*) FROM patient_code WHERE patient = :p"),
                                     {"p": heavy.pid}).scalar_one()
                n_obs = conn.execute(text("SELECT count(*) FROM resource WHERE res_type = 'Observation'")).scalar_one()
            print(f"  loaded in {loaded.seconds:.0f} s; {n_obs:,} Observations; heavy patient: {codes} codes",
                  flush=True)
            wants = {label: expected(engine, heavy.pid, n, "8867-4" if codes_q else None)
                     for label, _, n, codes_q in QUERIES}
            with c.server(url, tmp) as srv:
                issuer = c.issuer_for(tmp, srv.port)
                pr = c.PRACTITIONER
                token = str(issuer.practitioner_token(hpr=pr["hpr"], pid=pr["pid"], org=pr["org"],
                                                      patients=[heavy.fnr], purpose="TREAT"))
                headers = {"authorization": f"Bearer {token}", "person-id": heavy.fnr}
                settings = Settings(db_url=url, dev=True, var_dir=tmp, host="127.0.0.1", port=srv.port)
                verifier = build_verifier(settings)
                principal = verifier.verify(f"Bearer {token}")
                base = settings.fhir_base()
                plan = explain(engine, principal, heavy, base)
                with httpx.Client(timeout=60) as client:
                    for label, qs, n, codes_q in QUERIES:
                        want = wants[label]
                        n_entries = sum(len(v) for v in want.values())

                        def http(check: bool, qs: str = qs, want: dict[str, list[int]] = want,
                                 n_entries: int = n_entries, label: str = label) -> float:
                            t0 = time.perf_counter()
                            r = client.get(f"{srv.url}/fhir/Observation/$lastn?{qs}", headers=headers)
                            took = time.perf_counter() - t0
                            if r.status_code != 200:
                                raise AssertionError(f"HTTP {r.status_code}: {r.text[:500]}")
                            ids = [e["resource"]["id"] for e in orjson.loads(r.content).get("entry", [])]
                            if len(ids) != n_entries:
                                raise AssertionError(f"{label}: {len(ids)} entries, expected {n_entries}")
                            if check:
                                verify(engine, ids, want)
                            return took

                        def inproc(check: bool, codes_q: list[str] = codes_q, n: int = n,
                                   want: dict[str, list[int]] = want, n_entries: int = n_entries,
                                   label: str = label) -> float:
                            t0 = time.perf_counter()
                            repo = Repository(engine, AccessPolicy(engine, principal,
                                                                   RequestInfo(person_id=heavy.fnr)), base_url=base)
                            got = lastn(repo, ObsQuery(patients=[heavy.pid], codes=parse_codes(codes_q)), n)
                            took = time.perf_counter() - t0
                            if len(got) != n_entries:
                                raise AssertionError(f"{label} in-process: {len(got)} entries, expected {n_entries}")
                            if check:
                                verify(engine, [s.res_id for s in got], want)
                            return took

                        http(True)
                        inproc(True)
                        for _ in range(args.warmup):
                            http(False)
                            inproc(False)
                        c.wait_for_quiet()
                        busy0, w0 = c.machine_busy(), time.perf_counter()
                        cpu0 = c.own_cpu() + c.tree_cpu(srv.process.pid) + c.tree_cpu(c.postmaster_pid(cluster))
                        h = [http(False) for _ in range(args.requests)]
                        i = [inproc(False) for _ in range(args.requests)]
                        cpu1 = c.own_cpu() + c.tree_cpu(srv.process.pid) + c.tree_cpu(c.postmaster_pid(cluster))
                        other = max(0.0, c.machine_busy() - busy0 - (cpu1 - cpu0)) / (
                            (time.perf_counter() - w0) * c.ncpu())
                        http(True)
                        inproc(True)
                        results.append([label, str(n_entries), str(args.requests), c.ms(statistics.median(h)),
                                        c.ms(c.percentile(h, 99)), c.ms(statistics.median(i)),
                                        c.ms(c.percentile(i, 99)), f"{other:.0%}"])
                        print(f"  {label}: HTTP p50 {results[-1][3]} p99 {results[-1][4]} ms; in-process p50 "
                              f"{results[-1][5]} p99 {results[-1][6]} ms", flush=True)
            phases = ", ".join(f"{k} {v:.0f} s" for k, v in loaded.phases.items())
            notes.append(f"Load: {loaded.seconds + loaded.phases['patient_code + analyze']:.0f} s ({phases}); "
                         f"{n_obs:,} Observations, {len(patients):,} patients; the heavy patient has {heavy.obs:,} "
                         f"measurements of {codes} codes.")
            engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    headers = ["query", "entries", "requests", "HTTP p50 ms", "HTTP p99 ms", "in-process p50 ms",
               "in-process p99 ms", "other load"]
    print()
    c.print_table(headers, results)
    worst = max(float(r[4]) for r in results) / 1000
    met = "met" if worst <= TARGET_P99 else "missed"
    verdict = f"Target p99 ≤ {TARGET_P99 * 1000:.0f} ms over HTTP: **{met}** (worst HTTP p99 {worst * 1000:.1f} ms)."
    print("\n" + verdict)
    body = (
        "## $lastn for a patient with 100,000 measurements (PostgreSQL)\n\n"
        + c.header(started)
        + f"\n`GET /fhir/Observation/$lastn` for one patient with {args.heavy:,} home measurements among "
        f"{args.total:,} Observations, `person-id` header, a practitioner token whose attestation names the "
        f"patient (a fresh policy and an audit entry per request). {args.requests} timed requests per query after "
        f"{args.warmup} warm-up, one at a time over one keep-alive connection to `kjerne serve --dev` (1 worker); "
        "then the same number in-process (`observation_ops.lastn` with a `Repository(engine, AccessPolicy(...))` "
        "built per call; token verified once). Times in ms.\n\n"
        + c.markdown_table(headers, results)
        + f"\n{verdict}\n\nNotes:\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + "- Data: all Observations are vital signs (bench/dataset.py with one heavy patient and no laboratory "
        "share): rows made from templates the store's Writer wrote, sampled rows rebuilt by the Writer and "
        "compared, one Observation written by the real Writer in this database and compared; COPY, indexes "
        "rebuilt, `patient_code` filled from `idx_obs` as the store writes it, VACUUM ANALYZE.\n"
        "- Correctness: before and after the timed requests, the HTTP and in-process answers were compared with "
        "the index: per code, the returned measurements are exactly the newest `max` (by effective time); every "
        "timed answer had the expected number of entries.\n"
        + ("\n<details><summary>Plan of the statement that picks the rows for max=1 (EXPLAIN ANALYZE, heavy "
           "patient)</summary>\n\n```\n" + plan + "\n```\n</details>\n\n" if plan else "")
        + "- PostgreSQL: fsync=on, synchronous_commit=on (the audit commit of each request is flushed); "
        + ", ".join(f"{k}={v}" for k, v in c.PG_SETTINGS.items())
        + ". *Other load*: share of the 2 cores used by processes outside the benchmark while timing (the machine "
        "is shared).\n"
    )
    c.update_results("lastn", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
