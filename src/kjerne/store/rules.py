"""Platform rules applied on every write, whoever writes: the service tag, reservasjon (refuse new
data, purge existing), restriction labels from Consents, and default utsatt innsyn."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, and_, delete, select

from kjerne.access import restrictions as r
from kjerne.fhir.outcome import FhirError, Issue
from kjerne.services.classify import MALEDATA, service_of, tag_service
from kjerne.store.schema import INDEX_TABLES, idx_obs, resource, resource_history

if TYPE_CHECKING:
    from kjerne.store.writer import Writer

PVK_SYSTEM = "http://nhn.no/fhir/nilar/CodeSystem/PvkOutcome"


def patient_restrictions(conn: Connection, patient: str, now: dt.datetime) -> list[r.PatientRestriction]:
    rows = conn.execute(
        select(resource.c.content).where(
            and_(resource.c.res_type == "Consent", resource.c.patient == patient, resource.c.deleted.is_(False))
        )
    )
    out = []
    for (content,) in rows:
        found = r.patient_restriction(orjson.loads(content), patient, now)
        if found is not None:
            out.append(found)
    return out


def refuse_if_reserved(conn: Connection, res: dict[str, Any], patient: str | None, cache: dict[str, Any]) -> None:
    if patient is None or res.get("resourceType") in ("Patient", "Consent"):
        return
    service = service_of(res)
    if service is None:
        return
    if patient not in cache:
        cache[patient] = patient_restrictions(conn, patient, dt.datetime.now(dt.UTC))
    for restriction in cache[patient]:
        if restriction.kind == r.RESERVASJON and restriction.covers_service(service):
            raise FhirError(
                422,
                [
                    Issue(
                        "business-rule",
                        f"the patient has reserved against {service}; the data is refused",
                        details_code="Reservation",
                        details_system=PVK_SYSTEM,
                    )
                ],
            )


def purge_service_data(conn: Connection, patient: str, services: frozenset[str]) -> int:
    """Delete, with all history, the patient's data in the given services (all when empty). Every
    version is looked at, so data a producer already deleted goes too."""
    kept_types = ("Patient", "Consent")
    rids: set[int] = set()
    for table in (resource, resource_history):
        rows = conn.execute(
            select(table.c.rid, table.c.content).where(
                and_(table.c.patient == patient, table.c.res_type.notin_(kept_types))
            )
        )
        for rid, content in rows:
            if rid in rids:
                continue
            service = service_of(orjson.loads(bytes(content)))
            if service is not None and (not services or service in services):
                rids.add(rid)
    ordered = sorted(rids)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        for table in (*INDEX_TABLES.values(), idx_obs):
            conn.execute(delete(table).where(table.c.rid.in_(chunk)))
        conn.execute(delete(resource_history).where(resource_history.c.rid.in_(chunk)))
        conn.execute(delete(resource).where(resource.c.rid.in_(chunk)))
    return len(ordered)


def prepare(res: dict[str, Any], *, is_new: bool, previous: dict[str, Any] | None) -> None:
    """Before a version is stored: tag the service; give a new report its default utsatt innsyn;
    keep restriction labels across a producer's update."""
    service = tag_service(res)
    if service == MALEDATA and res.get("resourceType") == "Observation":
        check_measurement(res)
    if res.get("resourceType") == "DiagnosticReport" and is_new:
        days = r.default_delay_days(res)
        if days > 0 and not _has_label(res, r.UTSATT):
            issued = res.get("issued") or res.get("effectiveDateTime")
            try:
                base = dt.datetime.fromisoformat(str(issued).replace("Z", "+00:00"))
            except ValueError:
                base = dt.datetime.now(dt.UTC)
            if base.tzinfo is None:
                base = base.replace(tzinfo=dt.UTC)
            release = (base + dt.timedelta(days=days)).isoformat()
            add_label(res, r.UTSATT, None, release)
            meta = res.setdefault("meta", {})
            meta.setdefault("extension", []).append({"url": r.DEFAULT_RELEASE_EXT, "valueDateTime": release})
    elif previous is not None and res.get("resourceType") != "Consent":
        # Labels set through Consents survive a producer's update of the resource.
        old = previous
        if default_release_of(old) and not default_release_of(res):
            _set_default_release(res, default_release_of(old) or "")
        for coding in (old.get("meta") or {}).get("security", []):
            if coding.get("system") == r.RESTRICTION_SYSTEM and not _has_label(res, coding.get("code", "")):
                add_label(res, coding["code"], _owner(old), _release(old))


def check_measurement(res: dict[str, Any]) -> None:
    """Home measurements: physiologically impossible values are refused; values outside the alert
    range are stored with an interpretation flag (data/measurement-types.json)."""
    from kjerne.services.maledata.plausibility import check, flag

    checked = check(res)
    if checked.errors:
        raise FhirError(422, checked.errors)
    if checked.measurement_type is not None:
        flag(res, checked)


def _has_label(res: dict[str, Any], kind: str) -> bool:
    return any(
        c.get("system") == r.RESTRICTION_SYSTEM and c.get("code") == kind
        for c in (res.get("meta") or {}).get("security", [])
    )


def _release(res: dict[str, Any]) -> str | None:
    for ext in (res.get("meta") or {}).get("extension", []):
        if ext.get("url") == r.RELEASE_EXT:
            return ext.get("valueDateTime")
    return None


def _owner(res: dict[str, Any]) -> str | None:
    for c in (res.get("meta") or {}).get("security", []):
        if c.get("system") == r.OID_HPR:
            return c.get("code")
    return None


def add_label(res: dict[str, Any], kind: str, owner_hpr: str | None, release: str | None) -> None:
    meta = res.setdefault("meta", {})
    security = meta.setdefault("security", [])
    for coding in r.label_codings(kind, owner_hpr):
        if coding not in security:
            security.append(coding)
    if kind == r.UTSATT:
        exts = [e for e in meta.get("extension", []) if e.get("url") != r.RELEASE_EXT]
        if release:
            exts.append({"url": r.RELEASE_EXT, "valueDateTime": release})
        if exts:
            meta["extension"] = exts
        else:
            meta.pop("extension", None)


def remove_label(res: dict[str, Any], kind: str) -> None:
    meta = res.get("meta") or {}
    keep = [
        c for c in meta.get("security", []) if not (c.get("system") == r.RESTRICTION_SYSTEM and c.get("code") == kind)
    ]
    if kind == r.SKJERMING:
        keep = [c for c in keep if c.get("system") != r.OID_HPR]
    if keep:
        meta["security"] = keep
    else:
        meta.pop("security", None)
    if kind == r.UTSATT:
        exts = [e for e in meta.get("extension", []) if e.get("url") != r.RELEASE_EXT]
        if exts:
            meta["extension"] = exts
        else:
            meta.pop("extension", None)


def extra_index_rows(res: dict[str, Any]) -> list[tuple[str, int, int]]:
    """`_release`: when a report under utsatt innsyn opens to the citizen."""
    from kjerne.store.indexing import date_range

    release = _release(res)
    if not release:
        return []
    try:
        low, high = date_range(release)
    except ValueError:
        return []
    return [("_release", low, high)]


def after_consent(writer: Writer, consent: dict[str, Any], patient: str | None, withdrawn: bool) -> None:
    """Carry out what a Consent means: purge on reservasjon, labels on nekting/utsatt/skjerming."""
    kind = r.consent_category(consent)
    if kind == r.RESERVASJON and patient and not withdrawn:
        now = dt.datetime.now(dt.UTC)
        restriction = r.patient_restriction(consent, patient, now)
        if restriction is not None:
            writer.flush()
            writer.forget_recent()
            purge_service_data(writer.conn, patient, restriction.services)
            writer.reservations.pop(patient, None)
        return
    if kind not in r.PRACTITIONER_SET:
        return
    writer.flush()  # the Consent's own index rows must be visible to the recount below
    for root in r.target_references(consent):
        # A health worker's own utsatt innsyn (set, changed or withdrawn) replaces the default delay:
        # withdrawing it releases the report.
        apply_restrictions(writer, root, ruled_on_delay=kind == r.UTSATT)


def active_restrictions(conn: Connection, root: str) -> list[dict[str, Any]]:
    """The active health-personnel Consents that name this report."""
    from kjerne.store.schema import idx_reference

    res_type, res_id = root.split("/", 1)
    ref = idx_reference.c
    rids = select(ref.rid).where(
        and_(ref.res_type == "Consent", ref.param == "data", ref.target_type == res_type, ref.target_id == res_id)
    )
    out = []
    for (content,) in conn.execute(
        select(resource.c.content).where(and_(resource.c.rid.in_(rids), resource.c.deleted.is_(False)))
    ):
        consent = orjson.loads(bytes(content))
        if consent.get("status") == "active" and r.consent_category(consent) in r.PRACTITIONER_SET:
            out.append(consent)
    return out


def apply_restrictions(writer: Writer, root: str, *, ruled_on_delay: bool = False) -> None:
    """Set the labels of a report and its results to what all active Consents on it say together:
    one health worker withdrawing theirs does not lift another's."""
    consents = active_restrictions(writer.conn, root)
    kinds = {r.consent_category(c) for c in consents}
    owners = sorted({o for c in consents if r.consent_category(c) == r.SKJERMING for o in _actors(c)})
    releases = [r.release_after(c) for c in consents if r.consent_category(c) == r.UTSATT]
    release = None if (not releases or None in releases) else max(releases, key=lambda v: _instant_or_zero(v))
    res_type, res_id = root.split("/", 1)
    stored = writer.current(res_type, res_id)
    default = default_release_of(stored.resource()) if stored is not None else None  # a tombstone keeps it
    if ruled_on_delay:
        default = None
    for ref in target_closure(writer, [root]):
        relabel(writer, ref, kinds, owners, release, default)


def _actors(consent: dict[str, Any]) -> list[str]:
    out = []
    for actor in (consent.get("provision") or {}).get("actor", []):
        ident = (actor.get("reference") or {}).get("identifier") or {}
        if ident.get("system") == r.OID_HPR and ident.get("value"):
            out.append(str(ident["value"]))
    return out


def _instant_or_zero(value: str | None) -> int:
    from kjerne.store.indexing import date_range

    try:
        return date_range(value)[1] if value else 0
    except ValueError:
        return 0


def default_release_of(res: dict[str, Any]) -> str | None:
    for ext in (res.get("meta") or {}).get("extension", []):
        if ext.get("url") == r.DEFAULT_RELEASE_EXT:
            return ext.get("valueDateTime")
    return None


def _clear_default_release(res: dict[str, Any]) -> None:
    meta = res.get("meta") or {}
    exts = [e for e in meta.get("extension", []) if e.get("url") != r.DEFAULT_RELEASE_EXT]
    if exts:
        meta["extension"] = exts
    else:
        meta.pop("extension", None)


def _set_default_release(res: dict[str, Any], release: str) -> None:
    meta = res.setdefault("meta", {})
    exts = [e for e in meta.get("extension", []) if e.get("url") != r.DEFAULT_RELEASE_EXT]
    exts.append({"url": r.DEFAULT_RELEASE_EXT, "valueDateTime": release})
    meta["extension"] = exts


def relabel(
    writer: Writer,
    ref: str,
    kinds: set[str | None],
    owners: list[str],
    release: str | None,
    default_release: str | None = None,
) -> None:
    res_type, res_id = ref.split("/", 1)
    stored = writer.current(res_type, res_id, for_update=True)
    if stored is None:
        return
    res = stored.resource()
    for kind in r.PRACTITIONER_SET:
        remove_label(res, kind)
    _clear_default_release(res)
    if default_release:
        _set_default_release(res, default_release)
    if default_release and r.UTSATT not in kinds:
        # No health worker has ruled on the delay: the default rule still holds.
        kinds = {*kinds, r.UTSATT}
        release = default_release
    for kind in sorted(k for k in kinds if k):
        if kind == r.SKJERMING:
            for owner in owners if owners else [None]:
                add_label(res, kind, owner, None)
        else:
            add_label(res, kind, None, release if kind == r.UTSATT else None)
    if stored.deleted:
        writer.relabel_tombstone(stored, res)
    else:
        writer.put(res, res_id, keep_labels=False, guarded=False)


def target_closure(writer: Writer, refs: list[str]) -> list[str]:
    """A report and every result under it (hasMember hierarchies included): a restriction on a report
    covers its observations."""
    out: list[str] = []
    todo = list(refs)
    while todo:
        ref = todo.pop()
        if ref in out:
            continue
        out.append(ref)
        res_type, res_id = ref.split("/", 1)
        stored = writer.current(res_type, res_id)
        if stored is None:
            continue
        res = stored.resource() if not stored.deleted else _last_live_version(writer.conn, stored.rid)
        for key in ("result", "hasMember"):
            for child in res.get(key, []):
                child_ref = child.get("reference")
                if isinstance(child_ref, str) and child_ref.count("/") == 1:
                    todo.append(child_ref)
    return out


def _last_live_version(conn: Connection, rid: int) -> dict[str, Any]:
    """A deleted report's results are found through its last version before the deletion."""
    row = conn.execute(
        select(resource_history.c.content)
        .where(and_(resource_history.c.rid == rid, resource_history.c.deleted.is_(False)))
        .order_by(resource_history.c.version.desc())
        .limit(1)
    ).first()
    return orjson.loads(bytes(row[0])) if row else {}


def set_label(
    writer: Writer,
    ref: str,
    kind: str,
    on: bool,
    owner: str | None,
    release: str | None,
    default_release: str | None = None,
) -> None:
    res_type, res_id = ref.split("/", 1)
    stored = writer.current(res_type, res_id, for_update=True)
    if stored is None or stored.deleted:
        return
    res = stored.resource()
    if on:
        add_label(res, kind, owner, release)
        if default_release:
            _set_default_release(res, default_release)
    else:
        remove_label(res, kind)
    if not writer.relabel_in_place(stored, res):
        writer.put(res, res_id, keep_labels=False, guarded=False)


def propagate_report_labels(writer: Writer, report_refs: list[str]) -> None:
    """After a unit of writes: results stored beside a labelled report get the report's labels."""
    for ref in report_refs:
        res_type, res_id = ref.split("/", 1)
        stored = writer.current(res_type, res_id)
        if stored is None or stored.deleted:
            continue
        report = stored.resource()
        labels = [
            c.get("code")
            for c in (report.get("meta") or {}).get("security", [])
            if c.get("system") == r.RESTRICTION_SYSTEM
        ]
        if not labels:
            continue
        for child in target_closure(writer, [ref])[1:]:
            for kind in labels:
                set_label(writer, child, kind, True, _owner(report), _release(report), default_release_of(report))
