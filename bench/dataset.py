"""Bulk-loading Observations exactly as the store would have written them, fast enough for a million.

Loading a million Observations through HTTP or the Writer takes too long for a benchmark, so the rows are
made here and copied in (COPY on PostgreSQL, executemany on SQLite) with the secondary indexes dropped
during the load and rebuilt after it. The rows are the store's own: each distinct shape of resource
(Patient; lab Observation by analysis, laboratory and interpretation; vital sign by type and value) is
written once by the store's own Writer into a scratch database (`common.Scratch`) with sentinel values in
the places that vary (ids, patient, fødselsnummer, times, value), and every resource of that shape is
those rows with its own values put in. A sample (1 in `VERIFY_EVERY`, and always the first of each shape)
is also written by the Writer and must come out identical, or the load stops; `check_against_writer`
compares one with what the real Writer stores in the database under test.

Persons: `HEAVY` patients with `HEAVY_OBS` Observations each, then typical patients with `PER_PATIENT`
each, about `LAB_SHARE` of them laboratory results and the rest home measurements (vital signs).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, text

import common as c
from kjerne.store.clock import now_us
from kjerne.store.indexing import date_range

HEAVY = 3
HEAVY_OBS = 2000
PER_PATIENT = 200
LAB_SHARE = 0.85
VERIFY_EVERY = 997
CHUNK_OBS = 4000

S_PID = "00000000-0000-4000-8000-5e0000000001"
S_ID = "00000000-0000-4000-8000-5e0000000002"
S_SR = "00000000-0000-4000-8000-5e0000000003"
S_SPEC = "00000000-0000-4000-8000-5e0000000004"
S_FNR = "S-FNR-00001"
S_EFFECTIVE = "1901-02-03T04:05:06Z"
S_ISSUED = "1901-03-04T05:06:07Z"
S_VALUE = 987654.321  # a laboratory value; vital signs (whole numbers, range-checked) key their template
S_LOW, S_HIGH = date_range(S_EFFECTIVE)
TABLES = ["resource", *[t.name for t in c.ROW_TABLES + c.SIDE_TABLES]]
SIDE = {t.name for t in c.SIDE_TABLES}


@dataclass(frozen=True, slots=True)
class PatientPlan:
    n: int
    fnr: str
    pid: str
    obs: int
    heavy: bool


def plan(total: int, seed: int = 1) -> list[PatientPlan]:
    """Heavy patients first, then typical ones, until `total` Observations; a prefix of the plan for a
    larger total is the plan for a smaller one, so a database can grow from one size to the next."""
    heavy = min(HEAVY, total // HEAVY_OBS)
    rest = total - heavy * HEAVY_OBS
    typical = -(-rest // PER_PATIENT)
    fnrs = c.synthetic_fnrs(heavy + typical, seed)
    rng = random.Random(f"bench-dataset:pids:{seed}")
    out = []
    for i, fnr in enumerate(fnrs):
        n = HEAVY_OBS if i < heavy else min(PER_PATIENT, rest - (i - heavy) * PER_PATIENT)
        out.append(PatientPlan(i, fnr, c.random_id(rng), n, i < heavy))
    return out


def prefix_for(patients: list[PatientPlan], total: int) -> list[PatientPlan]:
    out, n = [], 0
    for p in patients:
        if n >= total:
            break
        out.append(p)
        n += p.obs
    return out


# -- Observations from templates --------------------------------------------------------------------


@dataclass(slots=True)
class Slots:
    """What varies between Observations of one shape."""

    res_id: str
    sr: str
    spec: str
    effective: str
    issued: str
    value: float | int


@dataclass(slots=True)
class Shape:
    kind: str  # lab | vital | patient
    key: tuple[Any, ...]
    analysis: Any = None
    lab: str = ""
    flag: str = ""
    vital: tuple[Any, ...] = ()

    def body(self, s: Slots, fnr: str, pid: str) -> dict[str, Any]:
        if self.kind == "patient":
            return c.new_patient(fnr, pid)
        # as identity resolution leaves a subject named by fødselsnummer: the reference added last
        subject = {"type": "Patient", "identifier": {"system": c.OID_FNR, "value": fnr}, "reference": f"Patient/{pid}"}
        if self.kind == "lab":
            return c.lab_observation_body(self.analysis, self.lab, s.value, self.flag, subject, s.effective,
                                          s.issued, f"ServiceRequest/{s.sr}", f"Specimen/{s.spec}")
        return c.vital_observation_body(self.vital, int(s.value), subject, s.effective)


PATIENT = Shape("patient", ("patient",))
CONTENT = c.RESOURCE_COLUMNS.index("content")


@dataclass(slots=True)
class Template:
    """One shape's rows with sentinels, and where in them each varying value goes."""

    content: bytes
    rows: list[tuple[str, list[Any], int | None, list[tuple[int, int]]]]  # (table, row, rid column, [(col, slot)])


def _slot_of(v: Any, sentinels: dict[Any, int]) -> int | None:
    if v is None or isinstance(v, bool) or not isinstance(v, str | int | float):
        return None
    return sentinels.get(v)


def _rid_column(table: str) -> int | None:
    cols = c.RESOURCE_COLUMNS if table == "resource" else c.INDEX_COLUMNS[table]
    return cols.index("rid") if "rid" in cols else None


class Templates:
    """Per shape, the rows the store's Writer writes (into a scratch database) for one Observation with
    sentinel values; then any number of Observations of that shape by putting their values in."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.scratch = c.Scratch()
        self.cache: dict[tuple[Any, ...], Template] = {}
        self.verified: set[tuple[Any, ...]] = set()
        self.count = 0

    def written(self, shape: Shape, s: Slots, fnr: str, pid: str) -> c.Rows:
        with c.fixed_clock(self.now):
            return self.scratch.write(shape.body(s, fnr, pid), s.res_id)

    def template(self, shape: Shape) -> Template:
        t = self.cache.get(shape.key)
        if t is None:
            lab = shape.kind == "lab"
            value = S_VALUE if lab else (shape.key[-1] if shape.kind == "vital" else 0)
            made = self.written(shape, Slots(S_ID if shape.kind != "patient" else S_PID, S_SR, S_SPEC, S_EFFECTIVE,
                                             S_ISSUED, value), S_FNR, S_PID)
            values: tuple[Any, ...] = (S_PID, S_ID, S_SR, S_SPEC, S_FNR, S_LOW, S_HIGH)
            if lab:
                values += (S_VALUE,)
            sentinels: dict[Any, int] = {v: i for i, v in enumerate(values)}
            rows = []
            for table, table_rows in made.items():
                rid_col = _rid_column(table)
                for row in table_rows:
                    subs = [(col, slot) for col, v in enumerate(row) if col != rid_col
                            and (slot := _slot_of(v, sentinels)) is not None]
                    rows.append((table, list(row), rid_col, subs))
            t = Template(made["resource"][0][CONTENT], rows)
            self.cache[shape.key] = t
        return t

    def rows(self, shape: Shape, s: Slots, fnr: str, pid: str, rid: int) -> c.Rows:
        """The rows for one resource of this shape: the template with this one's values put in."""
        t = self.template(shape)
        lab = shape.kind == "lab"
        low, high = date_range(s.effective) if s.effective else (None, None)
        values = (pid, s.res_id, s.sr, s.spec, fnr, low, high, float(s.value))
        content = t.content
        for old, new in ((S_PID, pid), (S_ID, s.res_id), (S_SR, s.sr), (S_SPEC, s.spec), (S_FNR, fnr),
                         (S_EFFECTIVE, s.effective), (S_ISSUED, s.issued)):
            content = content.replace(old.encode(), new.encode())
        if lab:
            content = content.replace(orjson.dumps(S_VALUE), orjson.dumps(s.value))
        out: c.Rows = {}
        for table, row, rid_col, subs in t.rows:
            r = row.copy()
            if rid_col is not None:
                r[rid_col] = rid
            for col, slot in subs:
                r[col] = values[slot]
            if table == "resource":
                r[CONTENT] = content
            out.setdefault(table, []).append(tuple(r))
        self.count += 1
        if shape.key not in self.verified or self.count % VERIFY_EVERY == 0:
            self.verified.add(shape.key)
            real = {table: [tuple(rid if i == _rid_column(table) else v for i, v in enumerate(row)) for row in rows]
                    for table, rows in self.written(shape, s, fnr, pid).items()}
            if real != out:
                diff = {k: (real.get(k), out.get(k)) for k in set(real) | set(out) if real.get(k) != out.get(k)}
                raise AssertionError(f"templated rows differ from the store's for {shape.key}: {diff}")
        return out


_CURRENT_TEMPLATES: Templates | None = None


def observations(p: PatientPlan, seed: int, rid: int, templates: Templates) -> Iterator[
        tuple[bool, str, dict[str, list[tuple[Any, ...]]]]]:
    """(is_lab, id, rows) for each of the patient's Observations, rids counting up from `rid`."""
    rng = random.Random(f"bench-dataset:{seed}:{p.n}")
    for i in range(p.obs):
        lab = rng.random() < LAB_SHARE
        moment = c.random_moment(rng)
        if lab:
            analysis = rng.choice(c.ANALYSES)
            lab_key = rng.choice(c.LABS)
            value, flag = c.lab_result(rng, analysis, lab_key)
            shape = Shape("lab", ("lab", analysis.key, lab_key, flag), analysis=analysis, lab=lab_key, flag=flag)
            issued = moment + dt.timedelta(minutes=rng.randint(60, 1200))
            slots = Slots(c.random_id(rng), c.random_id(rng), c.random_id(rng), c.fhir_time(moment),
                          c.fhir_time(issued), value)
        else:
            vital = rng.choice(c.VITALS)
            value = rng.randint(vital[5], vital[6])
            shape = Shape("vital", ("vital", vital[0], value), vital=vital)
            slots = Slots(c.random_id(rng), "", "", c.fhir_time(moment), "", value)
        yield lab, slots.res_id, templates.rows(shape, slots, p.fnr, p.pid, rid + i)


# -- chunks, made in worker processes -------------------------------------------------------------------


@dataclass
class Chunk:
    patients: list[PatientPlan]
    rid: int  # the first rid of the chunk
    seed: int
    now: int
    pg_url: str | None  # copy straight into this database; otherwise hand the rows back


@dataclass
class ChunkResult:
    lab_counts: dict[str, int] = field(default_factory=dict)  # patient id -> laboratory Observations
    lab_ids: dict[str, list[str]] = field(default_factory=dict)  # patient id -> a few lab Observation ids
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # when not copied
    count: int = 0


def chunk_rows(chunk: Chunk) -> tuple[ChunkResult, dict[str, list[tuple[Any, ...]]]]:
    global _CURRENT_TEMPLATES
    if _CURRENT_TEMPLATES is None or _CURRENT_TEMPLATES.now != chunk.now:
        _CURRENT_TEMPLATES = Templates(chunk.now)
    templates = _CURRENT_TEMPLATES
    res = ChunkResult()
    tables: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    rid = chunk.rid
    for p in chunk.patients:
        patient = templates.rows(PATIENT, Slots(p.pid, "", "", "", "", 0), p.fnr, p.pid, rid)
        rid += 1
        for t, rows in patient.items():
            tables[t].extend(rows)
        labs = 0
        ids: list[str] = []
        for is_lab, res_id, rows in observations(p, chunk.seed, rid, templates):
            for t, r in rows.items():
                tables[t].extend(r)
            if is_lab:
                labs += 1
                if len(ids) < 5:
                    ids.append(res_id)
        rid += p.obs
        res.lab_counts[p.pid] = labs
        res.lab_ids[p.pid] = ids
        res.count += 1 + p.obs
    for t in SIDE:  # the store writes a side row once (patient_code: once per patient and code)
        tables[t] = list(dict.fromkeys(tables[t]))
    return res, tables


_PG_CONN: Any = None
_PG_TYPES: dict[str, list[int]] = {}


def make_chunk(chunk: Chunk) -> ChunkResult:
    res, tables = chunk_rows(chunk)
    if chunk.pg_url is None:
        res.rows = tables
        return res
    global _PG_CONN
    import psycopg

    if _PG_CONN is None:
        _PG_CONN = psycopg.connect(chunk.pg_url, autocommit=True)
        for t in TABLES:
            cols = _columns(t)
            oids = dict(_PG_CONN.execute(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped", (t,)).fetchall())
            _PG_TYPES[t] = [oids[col] for col in cols]
    with _PG_CONN.transaction(), _PG_CONN.cursor() as cur:
        for t in TABLES:
            rows = tables[t]
            if not rows:
                continue
            with cur.copy(f"COPY {t} ({', '.join(_columns(t))}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(_PG_TYPES[t])
                for row in rows:
                    cp.write_row(row)
    return res


def _columns(table: str) -> list[str]:
    return c.RESOURCE_COLUMNS if table == "resource" else c.INDEX_COLUMNS[table]


# -- loading -------------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    seconds: float
    resources: int
    lab_counts: dict[str, int]
    lab_ids: dict[str, list[str]]
    phases: dict[str, float] = field(default_factory=dict)


def chunks(patients: list[PatientPlan], first_rid: int, seed: int, now: int, pg_url: str | None) -> list[Chunk]:
    out: list[Chunk] = []
    group: list[PatientPlan] = []
    rid = first_rid
    start = rid
    for p in patients:
        group.append(p)
        rid += 1 + p.obs
        if sum(g.obs for g in group) >= CHUNK_OBS:
            out.append(Chunk(group, start, seed, now, pg_url))
            group, start = [], rid
    if group:
        out.append(Chunk(group, start, seed, now, pg_url))
    return out


def load(engine: Engine, db_url: str, patients: list[PatientPlan], *, seed: int = 1, procs: int = 2,
         progress: bool = True) -> Loaded:
    """Load the patients and their Observations into a migrated database (empty, or loaded earlier by
    this function); secondary indexes are dropped for the load and rebuilt, then the tables are analysed."""
    started = time.perf_counter()
    pg = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        first_rid = (conn.execute(text("SELECT coalesce(max(rid), 0) FROM resource")).scalar_one() or 0) + 1
    now = now_us()
    work = chunks(patients, first_rid, seed, now, db_url.replace("postgresql+psycopg://", "postgresql://") if pg
                  else None)
    total = sum(1 + p.obs for p in patients)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    ddl = drop_indexes(engine)
    engine.dispose()  # no pooled connection is inherited by the worker processes
    result = Loaded(0.0, 0, {}, {})
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(procs) as pool:
        if pg:
            for r in pool.imap_unordered(make_chunk, work):
                _merge(result, r, total, progress)
        else:
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("PRAGMA synchronous=OFF")
                for r in pool.imap_unordered(make_chunk, work):
                    cur.execute("BEGIN")
                    for t in TABLES:
                        if r.rows.get(t):
                            cols = _columns(t)
                            cur.executemany(
                                f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                                r.rows[t])
                    cur.execute("COMMIT")
                    r.rows = {}
                    _merge(result, r, total, progress)
                cur.close()
            finally:
                raw.close()
        # Let the workers exit on their own: terminating a pool whose idle workers wait on the task
        # queue can hang for good.
        pool.close()
        pool.join()
    phases["generate and copy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rebuild_indexes(engine, ddl)
    phases["rebuild indexes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyse(engine)
    phases["vacuum/analyze"] = time.perf_counter() - t0
    if progress:
        print(flush=True)
    result.seconds = time.perf_counter() - started
    result.phases = phases
    return result


def _merge(into: Loaded, r: ChunkResult, total: int, progress: bool) -> None:
    into.resources += r.count
    into.lab_counts.update(r.lab_counts)
    into.lab_ids.update(r.lab_ids)
    if progress:
        print(f"\r  loaded {into.resources:,} of {total:,} resources", end="", flush=True)


def drop_indexes(engine: Engine) -> list[str]:
    """Drop the secondary indexes (and the unique constraint) of the store's tables; returns the DDL that
    recreates them as they were."""
    tables = TABLES
    ddl: list[str] = []
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            cons = conn.execute(text(
                "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'u' AND conrelid::regclass::text = ANY(:t)"), {"t": tables}).all()
            names = {n for n, _, _ in cons}
            idx = conn.execute(text(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(:t) "
                "AND i.indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u'))"),
                {"t": tables}).all()
            for name, table, definition in cons:
                conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
                ddl.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            for name, definition in idx:
                if name not in names:
                    conn.execute(text(f'DROP INDEX "{name}"'))
                    ddl.append(definition)
        else:
            rows = conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                "AND tbl_name IN (" + ", ".join(f"'{t}'" for t in tables) + ")")).all()
            for name, sql in rows:
                conn.execute(text(f'DROP INDEX "{name}"'))
                ddl.append(sql)
    return ddl


def rebuild_indexes(engine: Engine, ddl: list[str]) -> None:
    with engine.begin() as conn:
        for statement in ddl:
            conn.execute(text(statement))
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('resource', 'rid'), "
                              "(SELECT max(rid) FROM resource))"))


def analyse(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))


# -- checks ----------------------------------------------------------------------------------------------------


def check_against_writer(engine: Engine, patient: PatientPlan, seed: int = 1) -> None:
    """Store one Observation with the real Writer in the database under test (in a transaction that is
    rolled back) and compare every row it wrote with the rows this module makes for the same resource."""
    from kjerne.store.writer import Writer

    rng = random.Random(f"bench-dataset:check:{seed}")
    analysis = c.ANALYSES[0]
    value, flag = c.lab_result(rng, analysis, c.LABS[0])
    shape = Shape("lab", ("lab", analysis.key, c.LABS[0], flag), analysis=analysis, lab=c.LABS[0], flag=flag)
    slots = Slots(c.random_id(rng), c.random_id(rng), c.random_id(rng), "2024-05-06T07:08:09Z",
                  "2024-05-06T09:08:09Z", value)
    with engine.connect() as conn:
        conn.info["sqlite_write"] = True
        tx = conn.begin()
        try:
            writer = Writer(conn)
            stored = writer.put(shape.body(slots, patient.fnr, patient.pid), slots.res_id).stored
            writer.finish()
            theirs = c.read_rows(conn, [stored.rid])[stored.rid]
        finally:
            tx.rollback()
    ours = Templates(stored.last_updated).rows(shape, slots, patient.fnr, patient.pid, stored.rid)
    for table in SIDE:  # once per patient and code, not per resource: not part of one resource's rows
        ours.pop(table, None)
    norm = {k: sorted(v, key=repr) for k, v in ours.items() if v}
    got = {k: sorted(v, key=repr) for k, v in theirs.items() if v}
    if norm != got:
        diff = {k: (got.get(k), norm.get(k)) for k in set(norm) | set(got) if norm.get(k) != got.get(k)}
        raise AssertionError(f"bulk rows differ from what the Writer stores: {diff}")
