"""What the pages show, read through a Repository (and so through the access engine and the audit log).

Nothing here touches a table: every function takes the Repository the page built for its user and calls
its search/read/create/delete, `observation_ops` or the audit reader. The functions turn FHIR resources into
small view objects the templates print.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kjerne.access import restrictions as r
from kjerne.audit.events import ACCESS_BASIS_SYSTEM, OVERRIDE_EXT, PURPOSE_SYSTEM, REASON_EXT
from kjerne.fhir.identifiers import OID_HPR
from kjerne.store.records import Stored
from kjerne.store.repository import Repository
from kjerne.web import fmt

V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
KODEVERK_8202 = "http://ehelse.no/fhir/CodeSystem/no-kodeverk-8202"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
SERVICE_SYSTEM = "http://kjerne.no/fhir/CodeSystem/service"
SERVICES = ("provesvar", "maledata")
MAX_POINTS = 1000


def patient_refs(patients: list[str]) -> str:
    return ",".join(f"Patient/{p}" for p in patients)


def _search(repo: Repository, res_type: str, pairs: list[tuple[str, str]]) -> tuple[list[Stored], list[Stored], Any]:
    result = repo.search(res_type, pairs)
    return result.page.rows, result.included, result.page.next


# -- analyses: plain-language names and harmonised units ------------------------------------------------

_catalogue_state: dict[str, Any] = {"at": 0.0, "cat": None}


def catalogue() -> Any:
    """The analysis catalogue (kjerne.terminology.analyses) when it can be loaded, else None. A failure
    is remembered for a minute so a missing file does not cost every page a read."""
    state = _catalogue_state
    if state["cat"] is not None:
        return state["cat"]
    if time.monotonic() - state["at"] < 60 and state["at"]:
        return None
    state["at"] = time.monotonic()
    try:
        from kjerne.terminology.analyses import catalogue as load

        state["cat"] = load()
    except Exception:
        return None
    return state["cat"]


def harmonised(obs: Mapping[str, Any]) -> Any:
    cat = catalogue()
    if cat is None:
        return None
    try:
        from kjerne.terminology.analyses import harmonise

        return harmonise(obs, cat)
    except Exception:
        return None


def analysis_of(obs: Mapping[str, Any]) -> Any:
    cat = catalogue()
    return cat.for_concept(obs.get("code")) if cat is not None else None


def analysis_key(obs: Mapping[str, Any]) -> str | None:
    """What the trend page is asked for: the harmonised analysis, or the result's own first code."""
    analysis = analysis_of(obs)
    if analysis is not None:
        return str(analysis.key)
    codes = fmt.codings(obs.get("code"))
    return f"kode:{codes[0][1]}" if codes else None


def analysis_name(obs: Mapping[str, Any], lang: str) -> str:
    analysis = analysis_of(obs)
    if analysis is not None:
        text = analysis.display_en if lang == "en" and analysis.display_en else analysis.display_no
        if text:
            return str(text)
    return fmt.concept_text(obs.get("code"))


# -- results and reports ------------------------------------------------------------------------------


@dataclass
class ResultView:
    id: str
    name: str
    value: str
    range_text: str
    flag: str | None
    status: str
    effective: str | None
    lab: str
    trend: str | None
    members: list[ResultView] = field(default_factory=list)
    note: str = ""


@dataclass
class ReportView:
    id: str
    title: str
    kind: str  # lab | radiology | pathology | microbiology | other
    status: str
    effective: str | None
    issued: str | None
    lab: str
    interpreter: str
    conclusion: str
    attachments: list[fmt.Attachment]
    results: list[ResultView]
    labels: set[str]
    release_after: str | None
    shielded_by: str | None
    flagged: int = 0


def report_kind(report: Mapping[str, Any]) -> str:
    codes = {c for cat in report.get("category") or () for _, c in fmt.codings(cat)}
    if codes & {"RAD", "RTG", "UL", "CT", "MR", "NM"}:
        return "radiology"
    if codes & {"PAT", "SP", "CP", "CYTO"}:
        return "pathology"
    if codes & {"MB", "MIC", "MIK", "MCB"}:
        return "microbiology"
    if codes & {"LAB", "CH", "HM", "CLIN", "BLD", "IMM"}:
        return "lab"
    return "other"


def _labels(res: Mapping[str, Any]) -> tuple[set[str], str | None, str | None]:
    meta = res.get("meta") or {}
    labels = {c.get("code") for c in meta.get("security") or () if c.get("system") == r.RESTRICTION_SYSTEM}
    owner = next((c.get("code") for c in meta.get("security") or () if c.get("system") == OID_HPR), None)
    release = next((e.get("valueDateTime") for e in meta.get("extension") or () if e.get("url") == r.RELEASE_EXT), None)
    return {str(x) for x in labels if x}, release, owner


def result_view(
    obs: Mapping[str, Any], lang: str, by_id: Mapping[str, Mapping[str, Any]], depth: int = 0
) -> ResultView:
    _lo, _hi, range_text = fmt.reference_range(obs)
    members = []
    if depth < 4:
        for m in obs.get("hasMember") or ():
            mid = fmt.ref_id(m, "Observation")
            if mid and mid in by_id:
                members.append(result_view(by_id[mid], lang, by_id, depth + 1))
    return ResultView(
        id=str(obs.get("id")),
        name=analysis_name(obs, lang),
        value=fmt.value_text(obs),
        range_text=range_text,
        flag=fmt.flag(obs),
        status=str(obs.get("status") or ""),
        effective=fmt.effective(obs),
        lab=fmt.performer_name(obs),
        trend=analysis_key(obs) if "valueQuantity" in obs else None,
        members=members,
        note="; ".join(str(n.get("text")) for n in obs.get("note") or () if n.get("text")),
    )


def report_view(report: Mapping[str, Any], lang: str, by_id: Mapping[str, Mapping[str, Any]]) -> ReportView:
    results = []
    nested = {
        fmt.ref_id(m, "Observation") for o in by_id.values() for m in o.get("hasMember") or () if isinstance(m, Mapping)
    }
    for ref in report.get("result") or ():
        oid = fmt.ref_id(ref, "Observation")
        if oid and oid in by_id and oid not in nested:
            results.append(result_view(by_id[oid], lang, by_id))
    labels, release, owner = _labels(report)
    interpreters = [str(p.get("display")) for p in report.get("resultsInterpreter") or () if p.get("display")]
    return ReportView(
        id=str(report.get("id")),
        title=fmt.concept_text(report.get("code")),
        kind=report_kind(report),
        status=str(report.get("status") or ""),
        effective=fmt.effective(report),
        issued=report.get("issued"),
        lab=fmt.performer_name(report),
        interpreter=", ".join(interpreters),
        conclusion=str(report.get("conclusion") or ""),
        attachments=fmt.attachments(report),
        results=results,
        labels=labels,
        release_after=release,
        shielded_by=owner,
        flagged=sum(1 for x in results if x.flag),
    )


def reports(
    repo: Repository,
    patients: list[str],
    lang: str,
    *,
    count: int = 15,
    cursor: str | None = None,
    category: str | None = None,
) -> tuple[list[ReportView], str | None]:
    """The patient's reports, newest first, each with its results."""
    if not patients:
        return [], None
    pairs = [
        ("patient", patient_refs(patients)),
        ("_sort", "-date"),
        ("_count", str(count)),
        ("_include", "DiagnosticReport:result"),
    ]
    if category:
        pairs.append(("category", category))
    if cursor:
        pairs.append(("_cursor", cursor))
    rows, included, nxt = _search(repo, "DiagnosticReport", pairs)
    by_id = {s.res_id: s.resource() for s in included if s.res_type == "Observation"}
    views = [report_view(s.resource(), lang, by_id) for s in rows]
    return views, (nxt.encode() if nxt is not None else None)


def report_detail(repo: Repository, report_id: str, lang: str) -> tuple[ReportView, dict[str, Any]]:
    """One report with every result under it, hierarchies (hasMember) included."""
    stored = repo.read("DiagnosticReport", report_id)
    report = stored.resource()
    by_id: dict[str, dict[str, Any]] = {}
    wanted = [fmt.ref_id(x, "Observation") for x in report.get("result") or ()]
    todo = [w for w in wanted if w]
    for _ in range(5):  # hierarchy levels
        if not todo:
            break
        rows, _inc, _n = _search(repo, "Observation", [("_id", ",".join(todo[:200])), ("_count", "200")])
        todo = []
        for s in rows:
            obs = s.resource()
            by_id[s.res_id] = obs
            for m in obs.get("hasMember") or ():
                mid = fmt.ref_id(m, "Observation")
                if mid and mid not in by_id:
                    todo.append(mid)
    return report_view(report, lang, by_id), report


def awaiting_release(repo: Repository, patients: list[str]) -> list[dict[str, Any]]:
    """Reports the citizen is waiting for: under utsatt innsyn and not yet released. Listed with no
    content at all: when the report was issued (`issued`), when it opens if that is known
    (`release_after`) and what kind of report it is (`kind`: lab, radiology, pathology …). The access
    engine decides which reports these are and the listing is audited."""
    from kjerne.services.provesvar.awaiting import awaiting_release as listing

    return listing(repo)


# -- trends --------------------------------------------------------------------------------------------


@dataclass
class TrendPoint:
    when: dt.datetime
    value: float
    unit: str
    lab: str
    low: float | None
    high: float | None
    flag: str | None
    converted: bool


@dataclass
class Trend:
    key: str
    name: str
    unit: str
    points: list[TrendPoint]
    other_units: int = 0


def trend(repo: Repository, patients: list[str], key: str, lang: str, since: dt.datetime | None) -> Trend | None:
    """One analysis over time, across laboratories, in the analysis' harmonised unit where it has one."""
    if not patients or not key:
        return None
    cat = catalogue()
    analysis = None
    if key.startswith("kode:"):
        codes = [key[5:]]
    else:
        analysis = cat.get(key) if cat is not None else None
        if analysis is None:
            return None
        codes = sorted({c for _, c in analysis.codes})
    pairs = [
        ("patient", patient_refs(patients)),
        ("code", ",".join(codes)),
        ("_sort", "date"),
        ("_count", str(MAX_POINTS)),
    ]
    if since is not None:
        pairs.append(("date", "ge" + since.date().isoformat()))
    rows, _inc, _n = _search(repo, "Observation", pairs)
    points: list[TrendPoint] = []
    name, unit = "", ""
    for s in rows:
        obs = s.resource()
        when = fmt.parse_time(fmt.effective(obs))
        q = obs.get("valueQuantity") or {}
        if when is None or not isinstance(q.get("value"), int | float):
            continue
        h = harmonised(obs)
        if analysis is not None and (h is None or h.analysis.key != analysis.key):
            continue
        name = name or analysis_name(obs, lang)
        if h is not None:
            points.append(
                TrendPoint(
                    when,
                    h.value,
                    h.unit or "",
                    h.lab_display or "",
                    h.reference_low,
                    h.reference_high,
                    fmt.flag(obs),
                    h.converted,
                )
            )
        else:
            lo, hi, _ = fmt.reference_range(obs)
            points.append(
                TrendPoint(
                    when,
                    float(q["value"]),
                    str(q.get("unit") or q.get("code") or ""),
                    fmt.performer_name(obs),
                    lo,
                    hi,
                    fmt.flag(obs),
                    False,
                )
            )
    if analysis is not None:
        unit = analysis.canonical_unit
        name = (analysis.display_en if lang == "en" and analysis.display_en else analysis.display_no) or name
    elif points:
        unit = max({p.unit for p in points}, key=lambda u: sum(1 for p in points if p.unit == u))
    shown = [p for p in points if p.unit == unit] if unit else points
    return Trend(key, name or key, unit, shown, other_units=len(points) - len(shown))


# -- home measurements -------------------------------------------------------------------------------


def measurement_types() -> Any:
    from kjerne.services.maledata.types import registry

    return registry()


@dataclass
class Latest:
    key: str
    name: str
    value: str
    when: str | None
    flag: str | None


def _type_codes(mtype: Any) -> list[tuple[str | None, str]]:
    return [(LOINC, c) for c in mtype.codes.loinc] or [(None, c) for _, c in mtype.codes.pairs()]


def latest_measurements(repo: Repository, patients: list[str], lang: str) -> list[Latest]:
    """The newest value of each kind of measurement the patient has ($lastn through the access engine)."""
    from kjerne.store.observation_ops import ObsQuery, lastn

    if not patients:
        return []
    reg = measurement_types()
    codes = [c for t in reg.all() for c in _type_codes(t)]
    found = lastn(repo, ObsQuery(list(patients), codes=codes), 1)
    seen: dict[str, Latest] = {}
    for s in found:
        obs = s.resource()
        mtype = reg.for_observation(obs)
        if mtype is None or mtype.key in seen:
            continue
        values = _values(mtype, obs)
        text = " / ".join(fmt.number(v) for _, v, _ in values) if values else fmt.value_text(obs)
        unit = fmt.unit_text(values[0][2]) if values else ""
        flag = next((f for _, _, _, f in _flags(mtype, values)), None)
        seen[mtype.key] = Latest(
            mtype.key,
            mtype.display_en if lang == "en" else mtype.display_nb,
            f"{text} {unit}".strip(),
            fmt.effective(obs),
            flag,
        )
    order = {t.key: i for i, t in enumerate(reg.all())}
    return sorted(seen.values(), key=lambda x: order.get(x.key, 99))


def _values(mtype: Any, obs: Mapping[str, Any]) -> list[tuple[str, float, str]]:
    """(component key or '', value in the canonical unit, unit) for one measurement."""
    out: list[tuple[str, float, str]] = []
    if mtype.value_kind == "components":
        for comp in mtype.components:
            for c in obs.get("component") or ():
                if comp.codes.matches(c.get("code")):
                    q = c.get("valueQuantity") or {}
                    v = _canonical(comp, q)
                    if v is not None:
                        out.append((comp.key, v, comp.canonical_unit))
        return out
    if mtype.value_kind == "integer" and isinstance(obs.get("valueInteger"), int):
        return [("", float(obs["valueInteger"]), mtype.canonical_unit or "")]
    q = obs.get("valueQuantity")
    if isinstance(q, Mapping):
        v = _canonical(mtype, q)
        if v is not None:
            return [("", v, mtype.canonical_unit or "")]
    return out


def _canonical(kind: Any, q: Mapping[str, Any]) -> float | None:
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    unit = kind.unit(q.get("code") or q.get("unit"))
    if unit is None:
        return float(value) if not kind.units else None
    return float(unit.to_canonical(float(value)))


def _flags(mtype: Any, values: list[tuple[str, float, str]]) -> Iterable[tuple[str, float, str, str]]:
    for key, v, unit in values:
        alert = mtype.component(key).alert if key else mtype.alert
        code = alert.interpret(v) if alert is not None else None
        if code:
            yield key, v, unit, code


@dataclass
class MeasurementSeries:
    key: str  # type key, or type key + "." + component key
    name: str
    unit: str
    points: list[tuple[dt.datetime, float]]
    flagged: set[int]
    alert: Any  # AlertRange or None


def measurement_series(
    repo: Repository, patients: list[str], type_key: str, lang: str, since: dt.datetime
) -> list[MeasurementSeries]:
    """One kind of measurement over a period: one series, or one per component (blood pressure)."""
    return measurement_series_many(repo, patients, [type_key], lang, since).get(type_key, [])


def measurement_series_many(
    repo: Repository, patients: list[str], type_keys: list[str], lang: str, since: dt.datetime
) -> dict[str, list[MeasurementSeries]]:
    """Several kinds of measurement over a period, read with one search."""
    reg = measurement_types()
    types = [t for t in (reg.by_key(k) for k in type_keys) if t is not None]
    if not types or not patients:
        return {}
    codes = sorted({f"{s}|{c}" if s else c for t in types for s, c in _type_codes(t)})
    pairs = [
        ("patient", patient_refs(patients)),
        ("code", ",".join(codes)),
        ("date", "ge" + since.isoformat(timespec="seconds")),
        ("_sort", "date"),
        ("_count", str(MAX_POINTS)),
    ]
    rows, _inc, _n = _search(repo, "Observation", pairs)
    out: dict[str, dict[str, MeasurementSeries]] = {}
    for mtype in types:
        parts = [
            (c.key, c.display_en if lang == "en" else c.display_nb, c.canonical_unit, c.alert) for c in mtype.components
        ] or [("", mtype.display_en if lang == "en" else mtype.display_nb, mtype.canonical_unit or "", mtype.alert)]
        out[mtype.key] = {
            key: MeasurementSeries(
                f"{mtype.key}.{key}" if key else mtype.key, name, fmt.unit_text(unit), [], set(), alert
            )
            for key, name, unit, alert in parts
        }
    wanted = {t.key for t in types}
    for s in rows:
        obs = s.resource()
        mtype = reg.for_observation(obs)
        when = fmt.parse_time(fmt.effective(obs))
        if mtype is None or mtype.key not in wanted or when is None:
            continue
        for key, v, _unit in _values(mtype, obs):
            ser = out[mtype.key].get(key)
            if ser is None:
                continue
            if ser.alert is not None and ser.alert.interpret(v):
                ser.flagged.add(len(ser.points))
            ser.points.append((when, v))
    return {k: list(v.values()) for k, v in out.items()}


# -- the access log --------------------------------------------------------------------------------------

ACTIONS = {
    "read": ("Åpnet", "Opened"),
    "vread": ("Åpnet en tidligere versjon av", "Opened an earlier version of"),
    "search-type": ("Søkte i", "Searched"),
    "history-instance": ("Så historikken til", "Looked at the history of"),
    "create": ("Opprettet", "Created"),
    "update": ("Endret", "Changed"),
    "delete": ("Slettet", "Deleted"),
    "operation": ("Hentet", "Retrieved"),
    "transaction": ("Leverte", "Delivered"),
    "login": ("Forsøkte å logge inn", "Tried to log in"),
}
WHAT = {
    "DiagnosticReport": ("prøvesvar", "test results"),
    "Observation": ("prøvesvar eller målinger", "results or measurements"),
    "Consent": ("personverninnstillinger", "privacy settings"),
    "AuditEvent": ("tilgangsloggen", "the access log"),
    "Patient": ("personopplysninger", "personal details"),
    "ServiceRequest": ("rekvisisjoner", "orders"),
    "Specimen": ("prøvemateriale", "specimens"),
    "AllergyIntolerance": ("kritisk informasjon", "critical information"),
    "Condition": ("kritisk informasjon", "critical information"),
}
PURPOSES = {
    "TREAT": ("Behandling", "Treatment"),
    "ETREAT": ("Akuttbehandling", "Emergency treatment"),
    "COC": ("Koordinering av helsehjelp", "Coordination of care"),
    "BTG": ("Nødtilgang", "Break the glass"),
}
BASES = {
    "UNNTAK": ("Tjenstlig behov uten samtykke (unntak)", "Need without consent (exception)"),
    "SAMTYKKE": ("Ditt samtykke", "Your consent"),
    "FORHOYET_SAMTYKKE": ("Ditt samtykke, også til sperrede opplysninger", "Your consent, also to blocked data"),
    "AKUTT": ("Akuttilgang (nødrett)", "Emergency access"),
    "FORHOYET_AKUTT": (
        "Akuttilgang (nødrett), også til sperrede opplysninger",
        "Emergency access, also to blocked data",
    ),
}


@dataclass
class LogEntry:
    seq: str
    when: str
    who: str
    org: str
    own: bool
    health_personnel: bool
    action: str
    what: str
    purpose: list[str]
    override: bool
    reason: str
    denied: bool
    channel: str


def _ext(event: Mapping[str, Any], url: str) -> Any:
    for e in event.get("extension") or ():
        if e.get("url") == url:
            return next((v for k, v in e.items() if k.startswith("value")), None)
    return None


def log_entry(event: Mapping[str, Any], lang: str) -> LogEntry:
    pick = 1 if lang == "en" else 0
    agents = event.get("agent") or []
    requestor = next((a for a in agents if a.get("requestor")), agents[0] if agents else {})
    who = requestor.get("who") or {}
    own = str(who.get("reference", "")).startswith("Patient/")
    hp = (who.get("identifier") or {}).get("system") == OID_HPR
    orgs = [
        (a.get("who") or {}).get("display")
        for a in agents
        if not a.get("requestor") and (a.get("who") or {}).get("display")
    ]
    # The point of care says more than the legal entity; show it first.
    org = ", ".join(dict.fromkeys(str(o) for o in reversed(orgs)))
    subtype = next((c.get("code") for c in event.get("subtype") or ()), "")
    types = []
    for e in event.get("entity") or ():
        ref = str((e.get("what") or {}).get("reference") or "")
        if ref and not ref.startswith("Patient/"):
            types.append(ref.split("/", 1)[0])
    what = [WHAT.get(t, (t, t))[pick] for t in dict.fromkeys(types)]
    purposes = []
    for concept in event.get("purposeOfEvent") or ():
        for c in concept.get("coding") or ():
            if c.get("system") == PURPOSE_SYSTEM and c.get("code") in PURPOSES:
                purposes.append(PURPOSES[c["code"]][pick])
            elif c.get("system") == ACCESS_BASIS_SYSTEM and c.get("code") in BASES:
                purposes.append(BASES[c["code"]][pick])
    observer = str(((event.get("source") or {}).get("observer") or {}).get("display") or "")
    channel = "portal" if "portal" in observer else "api" if "api" in observer else ""
    return LogEntry(
        seq=str(event.get("id")),
        when=str(event.get("recorded") or ""),
        who=("Du" if pick == 0 else "You") if own else str(who.get("display") or ""),
        org=org,
        own=own,
        health_personnel=hp,
        action=ACTIONS.get(subtype, (subtype, subtype))[pick],
        what=", ".join(what),
        purpose=purposes,
        override=bool(_ext(event, OVERRIDE_EXT)),
        reason=str(_ext(event, REASON_EXT) or ""),
        denied=event.get("outcome") not in (None, "0"),
        channel=channel,
    )


def access_log(
    repo: Repository, patients: list[str], lang: str, *, before: int | None, include_own: bool, want: int = 40
) -> tuple[list[LogEntry], int | None]:
    """The citizen's access log, newest first. Their own use is left out unless asked for."""
    from kjerne.audit.reader import read_log

    out: list[LogEntry] = []
    # One read of the log per page: the citizen's own use makes up most of it and is filtered here.
    events, cursor = read_log(repo, patients, count=want * 10, before_seq=before)
    for event in events:
        entry = log_entry(event, lang)
        if include_own or not entry.own:
            out.append(entry)
    if len(out) > want:
        cursor = int(out[want - 1].seq)
        out = out[:want]
    return _grouped(out, lang), cursor


def _grouped(entries: list[LogEntry], lang: str) -> list[LogEntry]:
    """One line for what one person did in one go: neighbouring entries by the same person, on the same
    basis, within a minute, are merged (the reads one page makes)."""
    out: list[LogEntry] = []
    for e in entries:
        prev = out[-1] if out else None
        same = prev is not None and (prev.who, prev.org, prev.purpose, prev.reason, prev.denied, prev.own) == (
            e.who,
            e.org,
            e.purpose,
            e.reason,
            e.denied,
            e.own,
        )
        if same and prev is not None:
            t0, t1 = fmt.parse_time(prev.when), fmt.parse_time(e.when)
            same = t0 is not None and t1 is not None and abs((t0 - t1).total_seconds()) <= 60
        if same and prev is not None:
            prev.override = prev.override or e.override
            actions = [a for a in dict.fromkeys([*prev.action.split(" · "), e.action]) if a]
            prev.action = " · ".join(actions)
            whats = [w for w in dict.fromkeys([*prev.what.split(", "), *e.what.split(", ")]) if w]
            prev.what = ", ".join(whats)
            continue
        out.append(e)
    for e in out:
        if not e.what:
            e.what = "(ingen treff)" if lang != "en" else "(nothing found)"
    return out


# -- restrictions -------------------------------------------------------------------------------------


@dataclass
class RestrictionView:
    id: str
    kind: str
    services: list[str]
    personnel: list[str]
    reports: list[str]
    active: bool
    release_after: str | None
    set_by: str | None
    set_by_hpr: str | None = None


def restriction_view(c: Mapping[str, Any]) -> RestrictionView:
    provision = c.get("provision") or {}
    services = [
        str(x.get("code"))
        for concept in provision.get("code") or ()
        for x in concept.get("coding") or ()
        if x.get("system") == SERVICE_SYSTEM
    ]
    personnel, owner, owner_hpr = [], None, None
    for a in provision.get("actor") or ():
        ref = a.get("reference") or {}
        ident = ref.get("identifier") or {}
        if ident.get("system") == OID_HPR:
            personnel.append(str(ref.get("display") or ident.get("value")))
            owner = owner or str(ref.get("display") or ident.get("value"))
            owner_hpr = owner_hpr or ident.get("value")
    return RestrictionView(
        id=str(c.get("id")),
        kind=str(r.consent_category(dict(c)) or ""),
        services=services,
        personnel=personnel,
        reports=r.target_references(dict(c)),
        active=c.get("status") == "active",
        release_after=r.release_after(dict(c)),
        set_by=owner,
        set_by_hpr=owner_hpr,
    )


def restrictions(
    repo: Repository, patients: list[str], extra: list[tuple[str, str]] | None = None
) -> list[RestrictionView]:
    if not patients:
        return []
    rows, _inc, _n = _search(repo, "Consent", [("patient", patient_refs(patients)), ("_count", "200"), *(extra or [])])
    views = [restriction_view(s.resource()) for s in rows]
    return [v for v in views if v.active and v.kind]


def consent(
    kind: str,
    patient: str,
    *,
    services: Iterable[str] = (),
    personnel: Iterable[tuple[str, str]] = (),
    data: Iterable[str] = (),
    release: str | None = None,
) -> dict[str, Any]:
    """A restriction as the store takes it (docs/restrictions.md)."""
    provision: dict[str, Any] = {"type": "deny"}
    actors = [
        {
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "PROV"}]},
            "reference": {"identifier": {"system": OID_HPR, "value": hpr}, "display": name},
        }
        for hpr, name in personnel
    ]
    if actors:
        provision["actor"] = actors
    codes = [{"coding": [{"system": SERVICE_SYSTEM, "code": s}]} for s in services]
    if codes:
        provision["code"] = codes
    items = [{"meaning": "instance", "reference": {"reference": d}} for d in data]
    if items:
        provision["data"] = items
    if release:
        provision["period"] = {"end": release}
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [dict(r.CONSENT_SCOPE)]},
        "category": [{"coding": [{"system": r.RESTRICTION_SYSTEM, "code": kind}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision,
    }


def withdraw(repo: Repository, consent_id: str) -> None:
    """Withdraw a restriction: the Consent becomes inactive (and keeps its history)."""
    stored = repo.read("Consent", consent_id)
    consent = stored.resource()
    consent["status"] = "inactive"
    consent.pop("meta", None)
    repo.update(consent, consent_id, if_match=stored.version)


@dataclass
class PersonnelView:
    hpr: str
    name: str
    role: str
    workplaces: list[str]


def find_personnel(repo: Repository, name: str) -> list[PersonnelView]:
    """Health personnel in the directory by name, with their HPR number and workplaces. The directory
    also holds their national id; it is never shown."""
    name = name.strip()
    if len(name) < 2:
        return []
    rows, _inc, _n = _search(repo, "Practitioner", [("name", name), ("_count", "20")])
    out: dict[str, PersonnelView] = {}
    for s in rows:
        p = s.resource()
        hpr = next((i.get("value") for i in p.get("identifier") or () if i.get("system") == OID_HPR), None)
        if not hpr:
            continue
        role = next((fmt.concept_text(q.get("code")) for q in p.get("qualification") or ()), "")
        out[s.res_id] = PersonnelView(str(hpr), fmt.human_name(p), role, [])
    if out:
        roles, orgs, _n = _search(
            repo,
            "PractitionerRole",
            [
                ("practitioner", ",".join(f"Practitioner/{i}" for i in out)),
                ("_include", "PractitionerRole:organization"),
            ],
        )
        org_names = {s.res_id: str(s.resource().get("name") or "") for s in orgs if s.res_type == "Organization"}
        for s in roles:
            role = s.resource()
            pid = fmt.ref_id(role.get("practitioner"), "Practitioner")
            org = role.get("organization") or {}
            name_ = org.get("display") or org_names.get(fmt.ref_id(org, "Organization") or "", "")
            if pid in out and name_:
                out[pid].workplaces.append(str(name_))
    return sorted(out.values(), key=lambda p: p.name)


# -- health personnel views ---------------------------------------------------------------------------


@dataclass
class CumulativeRow:
    key: str
    name: str
    unit: str
    cells: dict[str, tuple[str, str | None, str]]  # day -> (value, flag, lab)


@dataclass
class Cumulative:
    days: list[str]
    rows: list[CumulativeRow]
    older: str | None


def _flag_code(code: str | None) -> str | None:
    if not code:
        return None
    if code in fmt.HIGH:
        return "high"
    if code in fmt.LOW:
        return "low"
    return "abnormal"


def cumulative(
    repo: Repository, patients: list[str], lang: str, *, columns: int = 8, before: str | None = None
) -> Cumulative:
    """Analyses × sampling days across laboratories, in each analysis' harmonised unit, newest day first
    (kjerne.services.provesvar.cumulative)."""
    from kjerne.services.provesvar.cumulative import cumulative as build

    if not patients:
        return Cumulative([], [], None)
    table = build(repo, patients)
    eligible = [d for d in table.dates if before is None or d < before]
    days = eligible[:columns]
    rows = []
    for row in table.rows:
        cells: dict[str, tuple[str, str | None, str]] = {}
        for cell in row.cells:  # newest first: the first of a day is shown
            day = cell.effective[:10]
            if day in days and day not in cells:
                cells[day] = (f"{cell.comparator or ''}{fmt.number(cell.value)}", _flag_code(cell.flag), cell.lab or "")
        if cells:
            name = row.display_en if lang == "en" and row.display_en else row.display_no
            rows.append(CumulativeRow(row.key, name, fmt.unit_text(row.unit), cells))
    older = days[-1] if len(eligible) > columns else None
    return Cumulative(days, rows, older)


@dataclass
class RecentResult:
    analysis: str
    when: str | None
    value: str
    lab: str
    flag: str | None
    days_ago: int


def orderable_analyses(lang: str) -> list[tuple[str, str, int | None]]:
    """(key, name, lookback days) of the analyses a duplicate warning can be given for."""
    cat = catalogue()
    if cat is None:
        return []
    out = [(a.key, (a.display_en if lang == "en" and a.display_en else a.display_no), a.lookback_days) for a in cat]
    return sorted(out, key=lambda x: x[1].lower())


def recent_results(repo: Repository, patients: list[str], keys: list[str], lang: str) -> list[RecentResult]:
    """Earlier results for the analyses about to be ordered, within each analysis' look-back window
    (kjerne.services.provesvar.duplicates)."""
    from kjerne.services.provesvar.duplicates import recent_results as check

    cat = catalogue()
    if cat is None or not patients or not keys:
        return []
    analyses = [a for a in (cat.get(k) for k in keys) if a is not None]
    codes: list[tuple[str | None, str]] = [a.codes[0] for a in analyses if a.codes]
    now = fmt.now_oslo()
    out = []
    for found in check(repo, patients, codes):
        a = found.analysis
        name = (a.display_en if lang == "en" and a.display_en else a.display_no) if a is not None else found.code
        for hit in found.recent:
            when = fmt.parse_time(hit.effective)
            value = f"{fmt.number(hit.value)} {fmt.unit_text(hit.unit)}".strip() if hit.value is not None else ""
            out.append(RecentResult(name, hit.effective, value, hit.lab or "", None, (now - when).days if when else 0))
    return out


@dataclass
class CriticalItem:
    kind: str
    text: str
    detail: str
    recorded: str | None


def patient_overview(repo: Repository, patients: list[str]) -> tuple[dict[str, Any] | None, list[CriticalItem]]:
    """The patient's name and birth date with their allergies and critical conditions, in one search."""
    if not patients:
        return None, []
    rows, included, _n = _search(
        repo,
        "Patient",
        [
            ("_id", ",".join(patients)),
            ("_revinclude", "AllergyIntolerance:patient"),
            ("_revinclude", "Condition:patient"),
        ],
    )
    summary = _summary(rows[0].resource()) if rows else None
    return summary, [_critical(s.res_type, s.resource()) for s in included if s.res_type in CRITICAL_TYPES]


CRITICAL_TYPES = ("AllergyIntolerance", "Condition")


def _critical(res_type: str, res: Mapping[str, Any]) -> CriticalItem:
    if res_type == "AllergyIntolerance":
        detail = ", ".join(
            fmt.concept_text(m) for rx in res.get("reaction") or () for m in rx.get("manifestation") or ()
        )
        detail = " · ".join(x for x in (str(res.get("criticality") or ""), detail) if x)
    else:
        detail = fmt.concept_text(res.get("severity"))
    return CriticalItem(
        res_type, fmt.concept_text(res.get("code")), detail, res.get("recordedDate") or res.get("onsetDateTime")
    )


def _summary(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": fmt.human_name(p), "birth_date": p.get("birthDate"), "gender": p.get("gender")}


def patient_summary(repo: Repository, patients: list[str]) -> dict[str, Any] | None:
    if not patients:
        return None
    rows, _inc, _n = _search(repo, "Patient", [("_id", ",".join(patients))])
    if not rows:
        return None
    return _summary(rows[0].resource())
