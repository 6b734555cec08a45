"""Duplicate-test warning: before ordering analyses, the recent results of the same analyses from any
lab. The look-back window per analysis comes from data/analyses.csv (lookback_days)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from kjerne.services.provesvar.reading import all_matches, patient_pairs
from kjerne.store.repository import Repository
from kjerne.terminology.analyses import Analysis, catalogue, harmonise

DEFAULT_LOOKBACK_DAYS = 7


@dataclass(slots=True)
class Recent:
    observation_id: str | None
    effective: str | None
    value: float | None
    unit: str | None
    lab: str | None


@dataclass(slots=True)
class Check:
    system: str | None
    code: str
    analysis: Analysis | None
    lookback_days: int
    recent: list[Recent] = field(default_factory=list)

    @property
    def duplicate(self) -> bool:
        return bool(self.recent)


def recent_results(
    repo: Repository, patient_ids: list[str], codes: list[tuple[str | None, str]], *, now: dt.datetime | None = None
) -> list[Check]:
    now = now or dt.datetime.now(dt.UTC)
    cat = catalogue()
    out: list[Check] = []
    for system, code in codes:
        analysis = cat.for_coding(system, code) if system else _by_code(cat, code)
        days = (analysis.lookback_days if analysis and analysis.lookback_days else None) or DEFAULT_LOOKBACK_DAYS
        check = Check(system, code, analysis, days)
        since = (now - dt.timedelta(days=days)).date().isoformat()
        if analysis is not None:
            wanted = ",".join(f"{s}|{c}" for s, c in analysis.codes)
        else:
            wanted = f"{system}|{code}" if system else code
        pairs = [*patient_pairs(patient_ids), ("code", wanted), ("date", f"ge{since}"), ("_sort", "-date")]
        for obs in all_matches(repo, "Observation", pairs):
            if obs.get("status") in ("cancelled", "entered-in-error"):
                continue
            h = harmonise(obs, cat)
            quantity = obs.get("valueQuantity") or {}
            check.recent.append(
                Recent(
                    obs.get("id"),
                    obs.get("effectiveDateTime") or obs.get("issued"),
                    h.value if h else quantity.get("value"),
                    h.unit if h else quantity.get("unit"),
                    h.lab_display if h else None,
                )
            )
        out.append(check)
    return out


def _by_code(cat: object, code: str) -> Analysis | None:
    for system in ("http://loinc.org", "urn:oid:2.16.578.1.12.4.1.1.7280"):
        found = cat.for_coding(system, code)  # type: ignore[attr-defined]
        if found is not None:
            return found  # type: ignore[no-any-return]
    return None
