"""The synthetic demo data set: a small Norwegian health region as FHIR R4 transaction bundles.

`generate()` yields the directory first (organisations, health personnel and their roles), then one or more
bundles per citizen: the Patient, their laboratory and radiology reports (prøvesvar) and, for those in home
follow-up, their home measurements (måledata). Every entry is a PUT to a fixed id, so loading the set twice
changes nothing, and the same seed always gives the same data.

Who the citizens are comes from `personas.plan_persons`; the fixed world (organisations, analyses, codes)
from `catalogue`. This module only tells what happened to each citizen over the period.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import random
from collections.abc import Iterable, Iterator
from typing import Any

from kjerne.demo import catalogue as cat
from kjerne.demo.personas import PersonPlan, plan_persons
from kjerne.fhir.identifiers import OID_FNR, OID_HERID, OID_HPR, OID_ORGNR, OID_RESH

Resource = dict[str, Any]

# A transaction this size stays well under any sensible request limit; a unit (one report with its order,
# specimens and results, or one day of home measurements) is never split across bundles.
MAX_BUNDLE_ENTRIES = 400


def generate(seed: int = 1, persons: int = 60, years: int = 4, today: dt.date | None = None) -> Iterator[dict]:
    """Transaction bundles: the directory, then each citizen's records, over `years` years up to `today`."""
    today = today or dt.date.today()
    yield _bundle("demo-bundle-directory", directory())
    for plan in plan_persons(seed, persons):
        life = _Life(plan, seed, years, today)
        for n, chunk in enumerate(_pack(life.units()), 1):
            yield _bundle(f"demo-bundle-{plan.index + 1:04d}-{n}", chunk)


def resources(bundles: Iterable[dict]) -> Iterator[Resource]:
    """Every resource in the bundles, in order."""
    for bundle in bundles:
        for entry in bundle["entry"]:
            yield entry["resource"]


def _bundle(bundle_id: str, items: list[Resource]) -> dict:
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in items
        ],
    }


def _pack(units: list[list[Resource]]) -> Iterator[list[Resource]]:
    chunk: list[Resource] = []
    for unit in units:
        if chunk and len(chunk) + len(unit) > MAX_BUNDLE_ENTRIES:
            yield chunk
            chunk = []
        chunk.extend(unit)
    if chunk:
        yield chunk


# --- time ---------------------------------------------------------------------------------------------


def _last_sunday(year: int, month: int) -> dt.date:
    last = dt.date(year, month + 1, 1) - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - 6) % 7)


def oslo_offset(day: dt.date) -> str:
    """UTC offset in Norway: summer time from the last Sunday of March to the last Sunday of October.
    The demo never places events in the night hours when the clocks change."""
    summer = _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10)
    return "+02:00" if summer else "+01:00"


def fhir_datetime(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}{oslo_offset(moment.date())}"


def _at(day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute)


# --- small FHIR helpers -------------------------------------------------------------------------------


def _coding(system: str, code: str, display: str | None = None) -> dict:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(*codings: dict, text: str | None = None) -> dict:
    out: dict[str, Any] = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


def _ref(kind: str, rid: str, display: str | None = None, identifier: dict | None = None) -> dict:
    out: dict[str, Any] = {"reference": f"{kind}/{rid}"}
    if identifier:
        out["identifier"] = identifier
    if display:
        out["display"] = display
    return out


def _num(value: float, decimals: int) -> int | float:
    return round(value) if decimals == 0 else round(value, decimals)


def _quantity(value: float, unit: str, ucum: str, comparator: str | None = None) -> dict:
    out: dict[str, Any] = {"value": value}
    if comparator:
        out["comparator"] = comparator
    out.update({"unit": unit, "system": cat.UCUM, "code": ucum})
    return out


def _org_ref(key: str) -> dict:
    org = cat.ORG_BY_KEY[key]
    return _ref("Organization", org.id, org.name, {"system": OID_ORGNR, "value": org.orgnr})


def _role_ref(p: cat.PractitionerSpec) -> dict:
    return _ref("PractitionerRole", p.role_id, f"{p.name}, {cat.ORG_BY_KEY[p.org].name}")


_INTERPRETATION = {"H": "High", "L": "Low", "N": "Normal"}
_OBSERVATION_CATEGORY = {"laboratory": "Laboratory", "imaging": "Imaging", "vital-signs": "Vital Signs"}

# Each resource gets its own copies of shared structures, so a consumer that edits one resource in place
# never changes another.


def _lab_category() -> list[dict]:
    return [_concept(_coding(cat.KV_8202, "LAB", "Laboratoriemedisin"), _coding(cat.V2_0074, "LAB", "Laboratory"))]


def _lab_report_code() -> dict:
    return _concept(
        _coding(cat.KV_8202, "CLIN", "Medisinsk biokjemi"),
        _coding(cat.LOINC, "11502-2", "Laboratory report"),
        text="Medisinsk biokjemi",
    )


def _observation_category(code: str) -> list[dict]:
    return [_concept(_coding(cat.OBS_CATEGORY, code, _OBSERVATION_CATEGORY[code]))]


# --- the directory ------------------------------------------------------------------------------------


def directory() -> list[Resource]:
    """Organisations (parents before their parts), practitioners and their roles."""
    fnrs = cat.practitioner_fnrs()
    return (
        [_organization(o) for o in cat.ORGANISATIONS]
        + [_practitioner(p, fnrs[p.key]) for p in cat.PRACTITIONERS]
        + [_practitioner_role(p) for p in cat.PRACTITIONERS]
    )


def _organization(o: cat.OrgSpec) -> Resource:
    identifiers = [{"use": "official", "system": OID_ORGNR, "value": o.orgnr}]
    if o.herid:
        identifiers.append({"system": OID_HERID, "value": o.herid})
    if o.resh:
        identifiers.append({"system": OID_RESH, "value": o.resh})
    line, postcode, city = o.address
    out: Resource = {
        "resourceType": "Organization",
        "id": o.id,
        "identifier": identifiers,
        "active": True,
        "type": [_concept(_coding(cat.ORG_TYPE, o.type_code, cat.ORG_TYPE_DISPLAY[o.type_code]), text=o.type_text)],
        "name": o.name,
        "address": [
            {"use": "work", "type": "physical", "line": [line], "city": city, "postalCode": postcode, "country": "NO"}
        ],
    }
    if o.part_of:
        out["partOf"] = _org_ref(o.part_of)
    return out


def _practitioner(p: cat.PractitionerSpec, fnr: str) -> Resource:
    qualifications = [
        {
            "code": _concept(
                _coding(cat.KV_9060, p.category, cat.HEALTH_PERSONNEL_CATEGORY[p.category]),
                text=cat.HEALTH_PERSONNEL_CATEGORY[p.category],
            )
        }
    ]
    if p.specialty:
        code, display = p.specialty
        codings = [_coding(cat.KV_7426, code, display)] if code else []
        qualifications.append({"code": {"coding": codings, "text": display} if codings else {"text": display}})
    return {
        "resourceType": "Practitioner",
        "id": p.id,
        "identifier": [{"use": "official", "system": OID_HPR, "value": p.hpr}, {"system": OID_FNR, "value": fnr}],
        "active": True,
        "name": [{"use": "official", "family": p.family, "given": p.given.split()}],
        "gender": p.gender,
        "birthDate": p.born.isoformat(),
        "qualification": qualifications,
    }


def _practitioner_role(p: cat.PractitionerSpec) -> Resource:
    out: Resource = {
        "resourceType": "PractitionerRole",
        "id": p.role_id,
        "active": True,
        "practitioner": _ref("Practitioner", p.id, p.name, {"system": OID_HPR, "value": p.hpr}),
        "organization": _org_ref(p.org),
        "code": [_concept(_coding(cat.KV_9060, p.category, cat.HEALTH_PERSONNEL_CATEGORY[p.category]))],
    }
    if p.specialty:
        code, display = p.specialty
        out["specialty"] = [_concept(_coding(cat.KV_7426, code, display)) if code else {"text": display}]
    return out


# --- one citizen's life -------------------------------------------------------------------------------

_LAB_REQUESTED_BY_HOSPITAL = ("heart_failure", "ckd")
_CV = {
    "tsh": 0.15,
    "ferritin": 0.12,
    "tg": 0.15,
    "alat": 0.12,
    "gt": 0.1,
    "ntprobnp": 0.2,
    "psa": 0.1,
    "b12": 0.1,
    "gluc": 0.08,
    "lpk": 0.1,
    "tpk": 0.08,
    "creat": 0.05,
    "hba1c": 0.03,
    "na": 0.008,
    "k": 0.04,
}
_AMENDMENT_NOTE = (
    "Korrigert svar. Resultatet er endret etter kontroll av analysen; tidligere utsendt verdi skal ikke brukes."
)


class _Life:
    def __init__(self, plan: PersonPlan, seed: int, years: int, today: dt.date) -> None:
        self.p = plan
        self.rng = random.Random(f"kjerne-demo:{seed}:life:{plan.index}")
        self.today = today
        self.last_day = today - dt.timedelta(days=2)
        self.start = max(today - dt.timedelta(days=round(years * 365.25)), plan.born + dt.timedelta(days=30))
        self.gp = cat.PRACTITIONER_BY_KEY[plan.gp]
        self.prefix = f"{plan.index + 1:04d}"
        self.n_obs = 0
        self.n_report = 0
        self.baseline: dict[str, float] = {}
        self.treated_from = self.start
        rng = self.rng
        # Fixed characteristics of this person's conditions, drawn once.
        self.ckd_level = rng.uniform(1.15, 1.5)
        self.dm_level = rng.uniform(52, 66)
        self.dm_phase = rng.uniform(0, math.tau)
        self.bnp_level = rng.uniform(700, 2200)
        self.tsh_untreated = rng.uniform(8, 18)

    @property
    def subject(self) -> dict:
        return _ref("Patient", self.p.id, self.p.name, {"system": OID_FNR, "value": self.p.fnr})

    def _obs_id(self) -> str:
        self.n_obs += 1
        return f"demo-obs-{self.prefix}-{self.n_obs:05d}"

    def units(self) -> list[list[Resource]]:
        units = [[self.patient()]]
        if self.start > self.last_day:
            return units
        units += self.lab_reports()
        units += self.imaging_reports()
        units += self.home_measurements()
        return units

    def patient(self) -> Resource:
        p = self.p
        place = cat.PLACES[p.place]
        return {
            "resourceType": "Patient",
            "id": p.id,
            "identifier": [{"use": "official", "system": OID_FNR, "value": p.fnr}],
            "active": True,
            "name": [{"use": "official", "family": p.family, "given": p.given.split()}],
            "gender": p.gender,
            "birthDate": p.born.isoformat(),
            "address": [
                {
                    "use": "home",
                    "type": "physical",
                    "line": [p.street],
                    "city": p.city,
                    "district": place.municipality,
                    "postalCode": p.postcode,
                    "country": "NO",
                }
            ],
            "generalPractitioner": [_role_ref(self.gp)],
        }

    def _random_day(self, earliest: dt.date | None = None) -> dt.date:
        earliest = earliest or self.start
        span = max((self.last_day - earliest).days, 0)
        day = earliest + dt.timedelta(days=self.rng.randint(0, span))
        if day.weekday() >= 5:  # laboratories and GPs take samples on weekdays
            friday = day - dt.timedelta(days=day.weekday() - 4)
            monday = day + dt.timedelta(days=7 - day.weekday())
            if friday >= earliest:
                day = friday
            elif monday <= self.last_day:
                day = monday
        return day

    # --- laboratory -----------------------------------------------------------------------------------

    def lab_reports(self) -> list[list[Resource]]:
        rng, p = self.rng, self.p
        age = p.age_on(self.today)
        chronic = [c for c in p.conditions if cat.CONDITION_PANELS.get(c)]
        if age < 18:
            n = rng.randint(1, 3)
        elif age < 65:
            n = rng.randint(3, 6)
        else:
            n = rng.randint(4, 7)
        n = min(n + sum(rng.randint(2, 3) for _ in chronic), 14)
        share = (self.last_day - self.start).days / (4 * 365.25)
        n = max(1, round(n * min(share, 1.5)))
        days = sorted({self._random_day() for _ in range(n)})
        self.treated_from = days[0] + dt.timedelta(days=rng.randint(10, 30))
        units = []
        for i, day in enumerate(days):
            units.append(self.lab_report(day, first=i == 0, last=i == len(days) - 1))
        return units

    def _panels(self, age: int, first: bool) -> list[str]:
        rng, p = self.rng, self.p
        chosen: list[str] = []
        for condition in p.conditions:
            for panel in cat.CONDITION_PANELS.get(condition, ()):
                if panel not in chosen and (first or rng.random() < 0.8):
                    chosen.append(panel)
        chosen += ["blodstatus", "crp"]
        extras = (
            ("nyre", 0.3),
            ("lever", 0.2),
            ("lipider", 0.15),
            ("diabetes", 0.12),
            ("thyreoidea", 0.1),
            ("jern", 0.12),
            ("b12", 0.05),
        )
        if age < 18:
            extras = (("jern", 0.3), ("thyreoidea", 0.1))
        for panel, odds in extras:
            if rng.random() < odds and panel not in chosen:
                chosen.append(panel)
        if p.gender == "male" and age >= 50 and rng.random() < 0.15:
            chosen.append("psa")
        return chosen

    def lab_report(self, day: dt.date, first: bool, last: bool) -> list[Resource]:
        rng, p = self.rng, self.p
        self.n_report += 1
        rno = f"{self.prefix}-{self.n_report:03d}"
        age = p.age_on(day)
        region = cat.REGIONS[p.region]
        hospital = any(c in p.conditions for c in _LAB_REQUESTED_BY_HOSPITAL) and rng.random() < 0.3
        lab_key = region.hospital_lab if hospital else region.lab
        lab = cat.ORG_BY_KEY[lab_key]
        requester = cat.PRACTITIONER_BY_KEY["bjarne-sund"] if hospital and lab_key == "lab-fjordvik" else self.gp

        keys: list[str] = []
        for panel in self._panels(age, first):
            for key in cat.PANELS[panel].analyses:
                if key not in keys and not (cat.ANALYSES[key].adults_only and age < 18):
                    keys.append(key)
        keys = keys[:12]
        order = [k for panel in cat.PANELS.values() for k in panel.analyses]
        keys.sort(key=order.index)
        panels_text = ", ".join(pn.text for pn in cat.PANELS.values() if any(k in pn.analyses for k in keys))

        collected = _at(day, rng.randint(7, 14), rng.randint(0, 59))
        ordered = collected - dt.timedelta(minutes=rng.randint(5, 120))
        received = collected + dt.timedelta(minutes=rng.randint(30, 300))
        issued = received + dt.timedelta(minutes=rng.randint(60, 1200))
        roll = rng.random()
        if (last and (self.today - day).days <= 21 and roll < 0.5) or roll < 0.02:
            status = "preliminary"
        elif roll < 0.05:
            status = "amended"
        else:
            status = "final"

        sr_id, dr_id = f"demo-sr-{rno}", f"demo-dr-{rno}"
        sr_ref = _ref("ServiceRequest", sr_id)
        specimens: dict[str, Resource] = {}
        for key in keys:
            code = cat.ANALYSES[key].specimen
            if code not in specimens:
                display, sct, sct_display, text = cat.SPECIMEN_TYPES[code]
                specimens[code] = {
                    "resourceType": "Specimen",
                    "id": f"demo-spec-{rno}-{code.lower()}",
                    "accessionIdentifier": {
                        "system": f"{cat.DEMO_ID_BASE}/{lab.orgnr}/provenummer",
                        "value": f"{day:%y%m%d}{p.index + 1:04d}{self.n_report:03d}{code}",
                    },
                    "status": "available",
                    "type": _concept(
                        _coding(cat.KV_8351, code, display), _coding(cat.SNOMED, sct, sct_display), text=text
                    ),
                    "subject": self.subject,
                    "receivedTime": fhir_datetime(received),
                    "request": [sr_ref],
                    "collection": {"collectedDateTime": fhir_datetime(collected)},
                }

        context = self._report_context(day)
        amended_key = rng.choice(keys) if status == "amended" else None
        observations = []
        for key in keys:
            obs_status = "amended" if key == amended_key else ("preliminary" if status == "preliminary" else "final")
            observations.append(
                self.lab_observation(
                    key,
                    lab_key,
                    day,
                    context,
                    obs_status,
                    collected,
                    issued,
                    sr_ref,
                    _ref("Specimen", specimens[cat.ANALYSES[key].specimen]["id"]),
                )
            )

        service_request: Resource = {
            "resourceType": "ServiceRequest",
            "id": sr_id,
            "identifier": [
                {
                    "system": f"{cat.DEMO_ID_BASE}/{cat.ORG_BY_KEY[requester.org].orgnr}/rekvisisjon",
                    "value": f"R{day:%y%m%d}-{rno}",
                }
            ],
            "status": "active" if status == "preliminary" else "completed",
            "intent": "order",
            "category": [_concept(_coding(cat.SNOMED, "108252007", "Laboratory procedure"))],
            "code": _concept(_coding(cat.KV_8202, "CLIN", "Medisinsk biokjemi"), text=panels_text),
            "subject": self.subject,
            "authoredOn": fhir_datetime(ordered),
            "requester": _role_ref(requester),
            "performer": [_org_ref(lab_key)],
            "specimen": [_ref("Specimen", s["id"]) for s in specimens.values()],
        }
        reasons = [cat.CONDITION_TEXT[c] for c in p.conditions if cat.CONDITION_PANELS.get(c)]
        if reasons:
            service_request["reasonCode"] = [{"text": "; ".join(reasons)}]
        report: Resource = {
            "resourceType": "DiagnosticReport",
            "id": dr_id,
            "identifier": [{"system": f"{cat.DEMO_ID_BASE}/{lab.orgnr}/svarrapport", "value": f"S{day:%y%m%d}-{rno}"}],
            "basedOn": [sr_ref],
            "status": status,
            "category": _lab_category(),
            "code": _lab_report_code(),
            "subject": self.subject,
            "effectiveDateTime": fhir_datetime(collected),
            "issued": fhir_datetime(issued),
            "performer": [_org_ref(lab_key)],
        }
        interpreters = cat.practitioners_at(lab_key, "LE")
        if interpreters and status != "preliminary":
            report["resultsInterpreter"] = [_role_ref(interpreters[0])]
        report["specimen"] = [_ref("Specimen", s["id"]) for s in specimens.values()]
        report["result"] = [_ref("Observation", o["id"], o["code"]["text"]) for o in observations]
        if status == "amended":
            report["conclusion"] = "Svaret er korrigert etter første utsendelse."
        return [service_request, *specimens.values(), report, *observations]

    def _report_context(self, day: dt.date) -> dict[str, float]:
        rng = self.rng
        odds = 0.25 if ("copd" in self.p.conditions or self.p.age_on(day) < 10) else 0.1
        infection = rng.random() < odds
        return {
            "crp": rng.uniform(15, 140) if infection else rng.lognormvariate(math.log(1.5), 0.8),
            "lpk_boost": rng.uniform(2.5, 7) if infection else 0.0,
        }

    def _reference(self, key: str, lab_key: str | None, day: dt.date) -> tuple[float | None, float | None]:
        age = self.p.age_on(day)
        if age < 16 and key in cat.CHILD_REFERENCE:
            return cat.CHILD_REFERENCE[key]
        ref = cat.LAB_REFERENCE_OVERRIDES.get(lab_key or "", {}).get(key) or cat.ANALYSES[key].ref
        low, high = ref[self.p.sex]
        if key == "ntprobnp" and age >= 75:
            high = 450
        return low, high

    def _baseline(self, key: str, day: dt.date) -> float:
        if key in self.baseline:
            return self.baseline[key]
        rng, age = self.rng, self.p.age_on(day)
        if key == "ferritin":
            value = rng.lognormvariate(math.log(60 if self.p.sex == "F" else 140), 0.45)
        elif key == "tsh":
            value = rng.lognormvariate(math.log(1.6), 0.35)
        elif key == "ntprobnp":
            value = (30 + 1.3 * age) * rng.lognormvariate(0, 0.3)
        elif key == "psa":
            value = 0.4 + max(age - 40, 0) * 0.045 * rng.lognormvariate(0, 0.4)
        elif key == "gluc":
            value = rng.gauss(5.2, 0.35)
        elif key == "hba1c":
            value = rng.gauss(34, 2.5)
        else:
            low, high = self._reference(key, None, day)
            low = 0.0 if low is None else low
            high = low * 3 if high is None else high
            value = rng.gauss((low + high) / 2, (high - low) / 7)
        self.baseline[key] = value
        return value

    def _untreated(self, day: dt.date) -> float:
        """1 before treatment starts, fading towards 0 over the following months."""
        if day < self.treated_from:
            return 1.0
        return math.exp(-(day - self.treated_from).days / 90)

    def _true_value(self, key: str, day: dt.date, ctx: dict[str, float]) -> float:
        c, y = self.p.conditions, (day - self.start).days / 365.25
        if key == "crp":
            return ctx["crp"]
        if key == "egfr":
            return ckd_epi(ctx["creat"], self.p.age_on(day), self.p.sex)
        v = self._baseline(key, day)
        if key == "hb":
            if "ckd" in c:
                v -= 1.0 + 0.25 * y
            if "iron_deficiency" in c:
                v -= 2.6 * self._untreated(day)
        elif key == "mcv" and "iron_deficiency" in c:
            v -= 11 * self._untreated(day)
        elif key == "ferritin" and "iron_deficiency" in c:
            u = self._untreated(day)
            v = 5 * u + v * (1 - u)
        elif key == "lpk":
            v += ctx["lpk_boost"]
        elif key == "creat":
            if "ckd" in c:
                v = self._reference("creat", None, day)[1] * self.ckd_level * math.exp(0.12 * y)
            if "heart_failure" in c:
                v *= 1.12
        elif key == "k" and "ckd" in c:
            v += 0.25 + 0.08 * y
        elif key == "na" and "heart_failure" in c:
            v -= 2.5
        elif key == "hba1c" and "diabetes" in c:
            v = self.dm_level + 3.0 * y + 4 * math.sin(2.3 * y + self.dm_phase)
        elif key == "gluc" and "diabetes" in c:
            v = 4.8 + (self._true_value("hba1c", day, ctx) - 32) * 0.11
        elif key in ("chol", "ldl") and "hyperlipidemia" in c:
            high = {"chol": 7.6, "ldl": 5.4}[key]
            treated = {"chol": 0.72, "ldl": 0.6}[key]
            u = self._untreated(day)
            v = high * (u + (1 - u) * treated)
        elif key == "tg" and "diabetes" in c:
            v *= 1.5
        elif key == "hdl" and "diabetes" in c:
            v *= 0.82
        elif key == "tsh" and "hypothyroid" in c:
            u = self._untreated(day)
            v = self.tsh_untreated * u + v * (1 - u)
        elif key == "ft4" and "hypothyroid" in c:
            u = self._untreated(day)
            v = 9.5 * u + v * (1 - u)
        elif key == "ntprobnp" and "heart_failure" in c:
            v = self.bnp_level * math.exp(0.12 * y)
        elif key in ("alat", "gt") and "fatty_liver" in c:
            v *= (2.3 if key == "alat" else 2.6) * (1 - 0.08 * y)
        return v

    def lab_observation(
        self,
        key: str,
        lab_key: str,
        day: dt.date,
        ctx: dict[str, float],
        status: str,
        collected: dt.datetime,
        issued: dt.datetime,
        sr_ref: dict,
        specimen_ref: dict,
    ) -> Resource:
        a = cat.ANALYSES[key]
        unit = a.unit_at(lab_key)
        truth = self._true_value(key, day, ctx)
        if key not in ("crp", "egfr"):
            truth *= 1 + self.rng.gauss(0, _CV.get(key, 0.03))
        truth = max(truth, 0.05 * (self._reference(key, None, day)[1] or 1))
        if key == "creat":
            ctx["creat"] = truth
        value = _num(truth * unit.factor, unit.decimals)
        comparator = None
        if key == "crp" and lab_key == "lab-nordlys" and value < 5:
            value, comparator = 5, "<"
        elif key == "crp" and value < 1:
            value, comparator = 1, "<"
        elif key == "egfr" and value > 90:
            value, comparator = 90, ">"
        low, high = (
            None if x is None else _num(x * unit.factor, unit.decimals) for x in self._reference(key, lab_key, day)
        )
        flag = "N"
        if comparator is None and low is not None and value < low:
            flag = "L"
        elif comparator is None and high is not None and value > high:
            flag = "H"
        nlk, loinc = unit.nlk or a.nlk, unit.loinc or a.loinc
        reference: dict[str, Any] = {}
        if low is not None:
            reference["low"] = _quantity(low, unit.unit, unit.ucum)
        if high is not None:
            reference["high"] = _quantity(high, unit.unit, unit.ucum)
        obs: Resource = {
            "resourceType": "Observation",
            "id": self._obs_id(),
            "basedOn": [sr_ref],
            "status": status,
            "category": _observation_category("laboratory"),
            "code": _concept(_coding(cat.NLK, *nlk), _coding(cat.LOINC, *loinc), text=a.text),
            "subject": self.subject,
            "effectiveDateTime": fhir_datetime(collected),
            "issued": fhir_datetime(issued),
            "performer": [_org_ref(lab_key)],
            "valueQuantity": _quantity(value, unit.unit, unit.ucum, comparator),
            "interpretation": [_concept(_coding(cat.INTERPRETATION, flag, _INTERPRETATION[flag]))],
            "specimen": specimen_ref,
            "referenceRange": [reference],
        }
        if status == "amended":
            obs["note"] = [{"text": _AMENDMENT_NOTE}]
        return obs

    # --- radiology ------------------------------------------------------------------------------------

    def imaging_reports(self) -> list[list[Resource]]:
        units = []
        for code in self.p.imaging:
            units.append(self.imaging_report(cat.PROCEDURES[code], self._random_day()))
        return units

    def imaging_report(self, proc: cat.Procedure, day: dt.date) -> list[Resource]:
        rng, p = self.rng, self.p
        self.n_report += 1
        rno = f"{self.prefix}-{self.n_report:03d}"
        region = cat.REGIONS[p.region]
        org = cat.ORG_BY_KEY[region.radiology]
        radiologist = cat.practitioners_at(org.key, "LE")[0]
        condition = next((c for c in p.conditions if c in proc.abnormal), None)
        if condition is None and "_any" in proc.abnormal and rng.random() < 0.5:
            condition = "_any"
        findings, conclusion = proc.abnormal[condition] if condition else proc.normal
        ordered = _at(day, rng.randint(8, 15), rng.randint(0, 59)) - dt.timedelta(days=rng.randint(3, 40))
        performed = _at(day, rng.randint(8, 15), rng.randint(0, 59))
        issued = performed + dt.timedelta(minutes=rng.randint(45, 1440))
        status = "preliminary" if (self.today - day).days <= 3 else "final"
        text = "\n".join(
            (
                f"{proc.display}",
                f"Undersøkelsesdato: {day:%d.%m.%Y}",
                f"Rekvirent: {self.gp.name}, {cat.ORG_BY_KEY[self.gp.org].name}",
                f"Klinisk problemstilling: {proc.indication}",
                "",
                "Beskrivelse:",
                findings,
                "",
                "Konklusjon:",
                conclusion,
                "",
                f"Beskrevet av {radiologist.name}, {org.name}",
            )
        )
        sr_id, dr_id = f"demo-sr-{rno}", f"demo-dr-{rno}"

        def code() -> dict:
            return _concept(_coding(cat.NCRP, proc.code, proc.display), text=proc.display)

        observation: Resource = {
            "resourceType": "Observation",
            "id": self._obs_id(),
            "basedOn": [_ref("ServiceRequest", sr_id)],
            "status": status,
            "category": _observation_category("imaging"),
            "code": code(),
            "subject": self.subject,
            "effectiveDateTime": fhir_datetime(performed),
            "issued": fhir_datetime(issued),
            "performer": [_org_ref(org.key)],
            "valueString": findings,
        }
        service_request: Resource = {
            "resourceType": "ServiceRequest",
            "id": sr_id,
            "identifier": [
                {
                    "system": f"{cat.DEMO_ID_BASE}/{cat.ORG_BY_KEY[self.gp.org].orgnr}/rekvisisjon",
                    "value": f"R{day:%y%m%d}-{rno}",
                }
            ],
            "status": "completed" if status == "final" else "active",
            "intent": "order",
            "category": [_concept(_coding(cat.SNOMED, "363679005", "Imaging"))],
            "code": code(),
            "subject": self.subject,
            "authoredOn": fhir_datetime(ordered),
            "requester": _role_ref(self.gp),
            "performer": [_org_ref(org.key)],
            "reasonCode": [{"text": proc.indication}],
        }
        report: Resource = {
            "resourceType": "DiagnosticReport",
            "id": dr_id,
            "identifier": [{"system": f"{cat.DEMO_ID_BASE}/{org.orgnr}/svarrapport", "value": f"S{day:%y%m%d}-{rno}"}],
            "basedOn": [_ref("ServiceRequest", sr_id)],
            "status": status,
            "category": [
                _concept(_coding(cat.V2_0074, "RAD", "Radiology")),
                _concept(_coding(cat.KV_8202, *proc.modality)),
            ],
            "code": code(),
            "subject": self.subject,
            "effectiveDateTime": fhir_datetime(performed),
            "issued": fhir_datetime(issued),
            "performer": [_org_ref(org.key)],
            "resultsInterpreter": [_role_ref(radiologist)],
            "result": [_ref("Observation", observation["id"], proc.display)],
            "conclusion": conclusion,
            "presentedForm": [
                {
                    "contentType": "text/plain; charset=utf-8",
                    "language": "nb",
                    "data": base64.b64encode(text.encode()).decode("ascii"),
                    "title": f"Radiologisvar: {proc.display}",
                    "creation": fhir_datetime(issued),
                }
            ],
        }
        return [service_request, report, observation]

    # --- home measurements ----------------------------------------------------------------------------

    def home_measurements(self) -> list[list[Resource]]:
        programme, org_key = self.p.followup, self.p.followup_org
        if programme is None or org_key is None:
            return []
        rng, p = self.rng, self.p
        length = rng.randint(60, 180)
        # Up to yesterday, so no measurement lies in the future whatever the hour of generation.
        end = self.today - dt.timedelta(days=rng.randint(1, 2) if p.archetype else rng.choice((1, 2, 4, 10, 30)))
        begin = max(end - dt.timedelta(days=length), self.start)
        if begin >= end:
            return []
        vitals = _HomeVitals(rng, p, programme, begin, end)
        nurses = cat.practitioners_at(org_key, "SP") if cat.ORG_BY_KEY[org_key].kind == "homecare" else []
        visits_news2 = bool(nurses) and programme in ("copd", "heart_failure")
        fnrs = cat.practitioner_fnrs()
        patient_author = _ref("Patient", p.id, p.name, {"system": OID_FNR, "value": p.fnr})
        org_ref = _org_ref(org_key)
        platform = cat.ORG_BY_KEY[cat.PLATFORM_FOR[org_key]].name
        units: list[list[Resource]] = []
        next_visit = begin + dt.timedelta(days=rng.randint(0, 3))
        day = begin
        while day <= end:
            today_obs: list[Resource] = []
            if rng.random() >= 0.07:  # some days nobody measures
                for key, per_day in cat.FOLLOWUP_PROGRAMMES[programme].items():
                    times = int(per_day) + (rng.random() < per_day - int(per_day))
                    for slot in range(times):
                        hour = rng.randint(7, 9) if slot == 0 else rng.randint(19, 21)
                        moment = _at(day, hour, rng.randint(0, 59))
                        today_obs.append(
                            self.vital(
                                key,
                                moment,
                                vitals.value(key, day, slot),
                                patient_author,
                                org_ref,
                                f"{cat.VITAL_SIGNS[key].device}, via {platform}",
                            )
                        )
            if visits_news2 and (day >= next_visit or vitals.severity(day) > 0.5):
                nurse = nurses[(day - begin).days % len(nurses)]
                author = _ref("Practitioner", nurse.id, nurse.name, {"system": OID_FNR, "value": fnrs[nurse.key]})
                moment = _at(day, rng.randint(10, 15), rng.randint(0, 59))
                visit = {key: vitals.value(key, day, 0) for key in ("resp", "spo2", "bp", "pulse", "temp")}
                visit_obs = [
                    self.vital(key, moment, value, author, org_ref, "Målt av hjemmesykepleien")
                    for key, value in visit.items()
                ]
                score = news2(
                    resp=visit["resp"],
                    spo2=visit["spo2"],
                    systolic=visit["bp"][0],
                    pulse=visit["pulse"],
                    temp=visit["temp"],
                )
                today_obs += visit_obs
                today_obs.append(self.news2_observation(moment, score, author, org_ref, visit_obs))
                if day >= next_visit:
                    next_visit = day + dt.timedelta(days=rng.choice((3, 4)))
            if today_obs:
                units.append(today_obs)
            day += dt.timedelta(days=1)
        return units

    def vital(self, key: str, moment: dt.datetime, value: Any, author: dict, org_ref: dict, device: str) -> Resource:
        v = cat.VITAL_SIGNS[key]
        codings = [_coding(cat.LOINC, *v.loinc), _coding(cat.SNOMED, *v.snomed)]
        if v.nlk:
            codings.append(_coding(cat.NLK, *v.nlk))
        obs: Resource = {
            "resourceType": "Observation",
            "id": self._obs_id(),
            "status": "final",
            "category": _observation_category("vital-signs"),
            "code": _concept(*codings, text=v.text),
            "subject": self.subject,
            "effectiveDateTime": fhir_datetime(moment),
            "performer": [author, org_ref],
        }
        if key == "bp":
            systolic, diastolic = value
            obs["component"] = [
                {
                    "code": _concept(
                        _coding(cat.LOINC, *cat.BP_SYSTOLIC[0]),
                        _coding(cat.SNOMED, *cat.BP_SYSTOLIC[1]),
                        text="Systolisk blodtrykk",
                    ),
                    "valueQuantity": _quantity(systolic, v.unit, v.ucum),
                },
                {
                    "code": _concept(
                        _coding(cat.LOINC, *cat.BP_DIASTOLIC[0]),
                        _coding(cat.SNOMED, *cat.BP_DIASTOLIC[1]),
                        text="Diastolisk blodtrykk",
                    ),
                    "valueQuantity": _quantity(diastolic, v.unit, v.ucum),
                },
            ]
        else:
            obs["valueQuantity"] = _quantity(value, v.unit, v.ucum)
        obs["device"] = {"display": device}
        return obs

    def news2_observation(
        self, moment: dt.datetime, score: int, author: dict, org_ref: dict, sources: list[Resource]
    ) -> Resource:
        return {
            "resourceType": "Observation",
            "id": self._obs_id(),
            "status": "final",
            "category": _observation_category("vital-signs"),
            "code": _concept(_coding(cat.SNOMED, *cat.NEWS2), text="NEWS2-skår"),
            "subject": self.subject,
            "effectiveDateTime": fhir_datetime(moment),
            "performer": [author, org_ref],
            "valueInteger": score,
            "derivedFrom": [_ref("Observation", o["id"]) for o in sources],
        }


class _HomeVitals:
    """Day-to-day values for one person in home follow-up: a personal baseline, slow trends, noise, and
    one or two bad spells (fluid retention in heart failure, exacerbations in COPD)."""

    def __init__(self, rng: random.Random, plan: PersonPlan, programme: str, begin: dt.date, end: dt.date):
        self.rng, self.programme, self.begin = rng, programme, begin
        female = plan.sex == "F"
        hypertensive = "hypertension" in plan.conditions or programme == "hypertension"
        self.weight = rng.uniform(58, 92) if female else rng.uniform(72, 112)
        if programme == "heart_failure":
            self.weight += 6
        self.systolic = rng.uniform(146, 162) if hypertensive else rng.uniform(118, 138)
        self.diastolic = self.systolic * rng.uniform(0.55, 0.62)
        self.pulse = rng.uniform(66, 84) if programme == "heart_failure" else rng.uniform(58, 78)
        self.spo2 = rng.uniform(90.5, 93.5) if programme == "copd" else rng.uniform(95.5, 98)
        self.resp = rng.uniform(16, 19) if programme == "copd" else rng.uniform(12, 16)
        self.glucose = rng.uniform(6.2, 8.8)
        self.hypertensive = hypertensive
        days = (end - begin).days
        self.spells: list[tuple[int, int]] = []
        if programme in ("heart_failure", "copd") and days > 20:
            for _ in range(rng.randint(1, 2)):
                self.spells.append((rng.randint(5, days - 10), rng.randint(5, 9)))

    def severity(self, day: dt.date) -> float:
        n = (day - self.begin).days
        for start, length in self.spells:
            if start <= n < start + length:
                return math.sin(math.pi * (n - start + 0.5) / length)
        return 0.0

    def value(self, key: str, day: dt.date, slot: int) -> Any:
        rng, s, n = self.rng, self.severity(day), (day - self.begin).days
        if key == "weight":
            drift = -0.01 * n if self.programme == "diabetes" else 0.0
            return round(self.weight + drift + 2.6 * s + rng.gauss(0, 0.35), 1)
        if key == "bp":
            treated = min(n * 0.1, 14) if self.hypertensive else 0.0
            systolic = self.systolic - treated + rng.gauss(0, 7)
            if rng.random() < 0.03:
                systolic += rng.uniform(20, 35)  # the odd reading in the alert range
            diastolic = self.diastolic - treated * 0.5 + rng.gauss(0, 5)
            return round(systolic), round(min(diastolic, systolic - 25))
        if key == "pulse":
            extra = rng.uniform(25, 40) if rng.random() < 0.02 else 0.0
            return round(self.pulse + 16 * s + extra + rng.gauss(0, 5))
        if key == "spo2":
            return round(min(100, self.spo2 - 4.5 * s + rng.gauss(0, 1.0)))
        if key == "resp":
            return round(self.resp + 7 * s + rng.gauss(0, 1.2))
        if key == "temp":
            fever = 1.4 * s if self.programme == "copd" else 0.0
            return round(36.7 + fever + rng.gauss(0, 0.25), 1)
        if key == "glucose":
            if rng.random() < 0.015:
                return round(rng.uniform(2.9, 3.8), 1)
            if rng.random() < 0.03:
                return round(rng.uniform(13.5, 19), 1)
            return round(self.glucose + (2.2 if slot else 0.0) + rng.gauss(0, 0.9), 1)
        raise KeyError(key)


# --- clinical formulas --------------------------------------------------------------------------------


def ckd_epi(creatinine_umol: float, age: int, sex: str) -> float:
    """eGFR (mL/min/1.73 m²) from plasma creatinine, CKD-EPI 2009."""
    scr = creatinine_umol / 88.42
    kappa, alpha = (0.7, -0.329) if sex == "F" else (0.9, -0.411)
    egfr = 141 * min(scr / kappa, 1) ** alpha * max(scr / kappa, 1) ** -1.209 * 0.993**age
    return egfr * 1.018 if sex == "F" else egfr


def news2(
    resp: int, spo2: int, systolic: int, pulse: int, temp: float, on_oxygen: bool = False, alert: bool = True
) -> int:
    """NEWS2 aggregate score, SpO2 scale 1."""
    score = 0
    score += 3 if resp <= 8 else 1 if resp <= 11 else 0 if resp <= 20 else 2 if resp <= 24 else 3
    score += 3 if spo2 <= 91 else 2 if spo2 <= 93 else 1 if spo2 <= 95 else 0
    score += 2 if on_oxygen else 0
    score += 3 if systolic <= 90 else 2 if systolic <= 100 else 1 if systolic <= 110 else 0 if systolic <= 219 else 3
    score += (
        3
        if pulse <= 40
        else 1
        if pulse <= 50
        else 0
        if pulse <= 90
        else 1
        if pulse <= 110
        else (2 if pulse <= 130 else 3)
    )
    score += 0 if alert else 3
    score += 3 if temp <= 35.0 else 1 if temp <= 36.0 else 0 if temp <= 38.0 else 1 if temp <= 39.0 else 2
    return score
