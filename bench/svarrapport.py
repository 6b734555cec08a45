"""Laboratory results: KITH Svarrapport 1.4 messages POSTed to /ingest/svarrapport, in reports per second.

The official examples `Svar_*_v1-4_Ny.xml` (new reports: biochemistry, immunology, microbiology, pathology,
radiology; 2-16 results each), taken in turn and made distinct per request: a new MsgId, a new report id
(ServProvId) and requisition id, and the patient's fødselsnummer replaced by a valid synthetic one, so every
message is a new report for one of `--patients` persons (identity resolution runs). 4 client threads with
keep-alive connections and a producer's system token POST them as application/xml to `kjerne serve` on
loopback (one and two workers), PostgreSQL with fsync on. After each run the ingest log must hold one
accepted entry per message.

In the same run the same rows (the FHIR Bundle the store's own mapper makes of each message, written by the
store's BundleProcessor into a scratch database and read back) are inserted directly, one transaction per
message, from as many threads, without parsing, mapping, lifecycle, ingest log, receipt or audit.

    .venv/bin/python bench/svarrapport.py [--messages 1500] [--patients 1000] [--clients 4]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

import common as c
import ingest as ing
import maledata as m
from kjerne.services.provesvar.svarrapport_map import map_svarrapport
from kjerne.store.db import make_engine

EXAMPLES = Path("/work/shared/data/svarrapport/examples/Svarrapport-v-1-4")
TARGET = 500  # reports/s

_MSGID = re.compile(rb"<MsgId>[^<]*</MsgId>")
_SERVPROV = re.compile(rb"<ServProvId>[^<]*</ServProvId>")
_SERVREQ_ID = re.compile(rb"(<ServReq>.*?<Id>)[^<]*(</Id>)", re.S)
_PATIENT_FNR = re.compile(rb"(<Patient>.*?<OffId>)[^<]*(</OffId>)", re.S)


def distinct(xml: bytes, rng: random.Random, fnr: str) -> bytes:
    """The example as a new report: new message, report and requisition ids, another patient."""
    def new_id() -> bytes:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()

    xml = _MSGID.sub(b"<MsgId>" + new_id() + b"</MsgId>", xml, count=1)
    xml = _SERVPROV.sub(b"<ServProvId>" + new_id() + b"</ServProvId>", xml, count=1)
    xml = _SERVREQ_ID.sub(lambda mm: mm.group(1) + new_id() + mm.group(2), xml, count=1)
    return _PATIENT_FNR.sub(lambda mm: mm.group(1) + fnr.encode() + mm.group(2), xml, count=1)


def workload(n: int, n_patients: int, seed: int) -> tuple[list[Path], list[bytes]]:
    files = sorted(EXAMPLES.glob("*_Ny.xml"))
    originals = [f.read_bytes() for f in files]
    fnrs = c.synthetic_fnrs(n_patients, seed)
    rng = random.Random(f"bench-svarrapport:{seed}")
    return files, [distinct(originals[i % len(originals)], rng, fnrs[i % n_patients]) for i in range(n)]


def ingest_status(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT status, count(*) FROM ingest_log GROUP BY status")).all())
    finally:
        engine.dispose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--messages", type=int, default=1500, help="messages per run, warm-up included")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--profile-messages", type=int, default=300, help="messages in the extra py-spy run (0: none)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    c.stop_on_sigterm()
    started = time.perf_counter()
    workers = [int(w) for w in args.workers.split(",") if w]

    files, bodies = workload(args.messages, args.patients, args.seed)
    print(f"mapping {len(bodies)} messages and preparing the raw rows (not timed) ...", flush=True)
    mapped = [map_svarrapport(b) for b in bodies]
    bad = [i for i, r in enumerate(mapped) if not r.ok or r.bundle is None]
    if bad:
        raise RuntimeError(f"message {bad[0]} does not map: {mapped[bad[0]].errors}")
    results = sum(sum(1 for e in r.bundle["entry"] if e["resource"]["resourceType"] == "Observation")
                  for r in mapped) / len(mapped)
    tmp = Path(tempfile.mkdtemp(prefix="kjerne-bench-svarrapport-"))
    prepared = ing.prepare([r.bundle for r in mapped], tmp)
    n_res = sum(len(x.resources) for x in prepared) / len(prepared)
    n_rows = sum(ing.row_total(x) for x in prepared) / len(prepared)

    def accepted(r: c.Reply) -> bool:
        return r.status_code == 200

    runs: list[m.Run] = []
    statuses: list[str] = []
    hot: tuple[m.Shares, m.Shares, m.Shares] = ([], [], [])
    try:
        with c.postgres(fsync=True) as cluster:
            pg_pid = c.postmaster_pid(cluster)
            common = dict(path="/ingest/svarrapport", content_type="application/xml", scope="system/*.write",
                          clients=args.clients, warmup=args.warmup, pg_pid=pg_pid, per_message=1,
                          accepted=accepted)
            for w in workers:
                print(f"API with {w} worker(s) ...", flush=True)
                url = cluster.create_database(f"api{w}")
                runs.append(m.run_api(url, tmp, bodies, workers=w, **common))
                st = ingest_status(url)
                statuses.append(f"{runs[-1].mode}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(st.items())))
                if st.get("ok", 0) + st.get("warning", 0) != len(bodies):
                    raise RuntimeError(f"expected {len(bodies)} accepted messages in the ingest log, got {st}")
                print(f"  {runs[-1].rate:,.1f} reports/s", flush=True)
            for copy in (False, True):
                print(f"raw inserts{' with COPY' if copy else ''} ...", flush=True)
                runs.append(m.run_raw(cluster.create_database(f"raw{int(copy)}"), prepared, clients=args.clients,
                                      warmup=args.warmup, pg_pid=pg_pid, copy=copy, per_message=1))
                print(f"  {runs[-1].rate:,.1f} reports/s", flush=True)
            if args.profile_messages:
                print("py-spy run (1 worker; figures not reported) ...", flush=True)
                prof = tmp / "svarrapport-spy.txt"
                m.run_api(cluster.create_database("spy"), tmp, bodies[: args.warmup + args.profile_messages],
                          workers=1, profile=prof, **common)
                hot = m.top_hotspots(prof)
    finally:
        if not os.environ.get("KJERNE_BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)

    headers, rows = m.table(runs, "reports", "message")
    headers[1] = "reports/s"
    print()
    c.print_table(headers, rows)
    best = max((r for r in runs if r.mode.startswith("API")), key=lambda r: r.rate)
    met = "met" if best.rate >= TARGET else "missed"
    verdict = f"Target ≥ {TARGET:,} reports/s on PostgreSQL: **{met}** (best {best.rate:,.1f}, {best.mode})."
    print("\n" + verdict)
    spots = m.hotspot_text(*hot)
    print(spots)
    body = (
        "## Laboratory results: Svarrapport 1.4 to /ingest/svarrapport\n\n"
        + c.header(started)
        + f"\n{args.messages:,} messages per run from the {len(files)} official examples "
        f"({', '.join(f.name for f in files)}), taken in turn, each made a new report (new MsgId, ServProvId and "
        f"requisition id; the patient's fødselsnummer replaced by one of {args.patients:,} valid synthetic numbers); "
        f"on average {results:.1f} results, {n_res:.1f} stored resources and {n_rows:.0f} rows per message. "
        f"The first {args.warmup} messages of each run are a warm-up and not counted. {args.clients} client threads "
        "with keep-alive connections, a producer's system token, `kjerne serve --dev` on 127.0.0.1. PostgreSQL "
        "with **fsync=on, synchronous_commit=on**; each run on a fresh, migrated database, whose tables are "
        "analysed after the warm-up (`c.analyse`), as autovacuum keeps them in a running service.\n\n"
        + c.markdown_table(headers, rows)
        + f"\n{verdict}\n\n"
        "Notes:\n\n"
        "- Every message was accepted: ingest log after each API run: " + "; ".join(statuses) + ".\n"
        "- *raw*: the same rows (the Bundle the store's mapper makes of each message, written by the store's "
        "BundleProcessor into a scratch SQLite database and read back, Patients created by identity resolution "
        "included) inserted with SQLAlchemy Core executemany (or the index rows by COPY), one transaction per "
        "message, same number of threads; no XML parsing, mapping, lifecycle look-ups, ingest log, APPREC receipt, "
        "audit or HTTP. API/raw divides by the faster raw run.\n"
        "- CPU ms per report: client = this process, server = the uvicorn process tree, database = the "
        "PostgreSQL postmaster tree (inserter = this process in the raw runs). *Other load*: the share of the 2 "
        "cores that processes outside the benchmark used in the timed part (the machine is shared).\n"
        f"- Where the server's time goes (an extra 1-worker run of {args.profile_messages} messages under py-spy, "
        "GIL samples; not in the table):\n\n"
        + spots
    )
    c.update_results("svarrapport", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
