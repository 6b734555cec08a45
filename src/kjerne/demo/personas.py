"""The synthetic citizens of the demo world, and the named actors used for tokens and portal log-in.

`plan_persons(seed, count)` decides who each citizen is: name, fødselsnummer, address, GP, chronic
conditions and whether they are followed up at home. The plan is prefix-stable: person *n* is the same
whether 10 or 500 persons are asked for, and it does not depend on the day the data is generated. The
first persons are archetypes with fixed stories (and seed-dependent names), so `personas()` can promise
what each of them has in the data set `generate(seed)` produces.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from functools import cache

from kjerne.demo import catalogue as cat
from kjerne.fhir.identifiers import make_synthetic_fnr


@dataclass(frozen=True)
class PersonPlan:
    index: int
    given: str
    family: str
    gender: str  # FHIR administrative gender: female | male
    born: dt.date
    fnr: str
    region: str
    place: str
    street: str
    postcode: str
    city: str
    gp: str  # practitioner key of the fastlege
    conditions: tuple[str, ...]
    followup: str | None  # home follow-up programme, see catalogue.FOLLOWUP_PROGRAMMES
    imaging: tuple[str, ...]  # NCRP codes of the imaging examinations in the period
    archetype: str | None = None

    @property
    def id(self) -> str:
        return f"demo-pat-{self.index + 1:04d}"

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"

    @property
    def sex(self) -> str:
        return "F" if self.gender == "female" else "M"

    def age_on(self, day: dt.date) -> int:
        years = day.year - self.born.year
        return years - ((day.month, day.day) < (self.born.month, self.born.day))

    @property
    def followup_org(self) -> str | None:
        """Original data controller of the home measurements: the municipality's home-care service
        where there is one, the hospital for heart failure and where there is none."""
        if self.followup is None:
            return None
        region = cat.REGIONS[self.region]
        if self.followup != "heart_failure" and self.place in region.homecare:
            return region.homecare[self.place]
        return region.followup_hospital


@dataclass(frozen=True)
class _Archetype:
    key: str
    gender: str
    age: int
    region: str
    place: str
    conditions: tuple[str, ...]
    followup: str | None
    imaging: tuple[str, ...]
    description: str


ARCHETYPES: tuple[_Archetype, ...] = (
    _Archetype(
        "diabetes-drammen",
        "female",
        58,
        "drammen",
        "drammen",
        ("diabetes", "hypertension"),
        "diabetes",
        (),
        "Diabetes type 2 med stigende HbA1c; måler blodsukker hjemme.",
    ),
    _Archetype(
        "hjertesvikt-oslo",
        "male",
        79,
        "oslo",
        "oslo",
        ("heart_failure", "ckd"),
        "heart_failure",
        ("SGD0AA", "SKC0AK"),
        "Hjertesvikt og kronisk nyresykdom; daglig vekt og blodtrykk til sykehuset.",
    ),
    _Archetype(
        "ung-kvinne-oslo",
        "female",
        34,
        "oslo",
        "oslo",
        ("iron_deficiency",),
        None,
        ("SNG0AG",),
        "Jernmangel som blir behandlet; MR av kne.",
    ),
    _Archetype("barn-hamar", "male", 7, "hamar", "hamar", (), None, (), "Barn med noen få blodprøver."),
    _Archetype(
        "kols-hamar",
        "male",
        71,
        "hamar",
        "hamar",
        ("copd",),
        "copd",
        ("SGD0AA",),
        "KOLS; oksygenmetning hjemme og besøk av hjemmesykepleien med NEWS2.",
    ),
    _Archetype(
        "stoffskifte-drammen",
        "female",
        46,
        "drammen",
        "lier",
        ("hypothyroid", "hyperlipidemia"),
        None,
        (),
        "Lavt stoffskifte som blir behandlet; høyt kolesterol.",
    ),
)

_REGION_WEIGHTS = (("oslo", 0.4), ("drammen", 0.3), ("hamar", 0.3))
# Age bands are dealt in a fixed rotation rather than drawn, so even a small data set has infants,
# children, adults and the very old. Every fifth citizen is someone in home follow-up.
_AGE_ROTATION = (
    (40, 64),
    (65, 94),
    (18, 39),
    (0, 2),
    (40, 64),
    (65, 94),
    (3, 17),
    (18, 39),
    (40, 64),
    (80, 94),
    (18, 39),
    (40, 64),
    (65, 94),
    (3, 17),
    (40, 64),
    (18, 39),
    (65, 79),
    (40, 64),
)
_FOLLOWUP_SLOT = 5
_FOLLOWUP_WEIGHTS = (("heart_failure", 0.3), ("copd", 0.3), ("diabetes", 0.25), ("hypertension", 0.15))


def _condition_odds(age: int, sex: str) -> dict[str, float]:
    return {
        "diabetes": 0.14 if age >= 35 else 0.0,
        "ckd": 0.10 if age >= 55 else 0.0,
        "hypothyroid": (0.10 if sex == "F" else 0.03) if age >= 25 else 0.0,
        "iron_deficiency": 0.10 if sex == "F" and 15 <= age <= 50 else 0.0,
        "hyperlipidemia": 0.14 if age >= 40 else 0.0,
        "heart_failure": 0.10 if age >= 65 else 0.0,
        "copd": 0.09 if age >= 55 else 0.0,
        "hypertension": 0.28 if age >= 45 else 0.0,
        "fatty_liver": 0.05 if age >= 25 else 0.0,
    }


_FOLLOWUP_ODDS = (("heart_failure", 0.6), ("copd", 0.5), ("diabetes", 0.2), ("hypertension", 0.1))


def _pick_name(rng: random.Random, gender: str, born: dt.date) -> str:
    modern = born.year >= 1990
    if rng.random() < 0.1:
        modern = not modern
    if gender == "female":
        return rng.choice(cat.FEMALE_MODERN if modern else cat.FEMALE_CLASSIC)
    return rng.choice(cat.MALE_MODERN if modern else cat.MALE_CLASSIC)


def _pick_fnr(rng: random.Random, born: dt.date, used: set[str]) -> str:
    # Births before 2000 use individual numbers 000-399; 400-499 are kept for health personnel.
    low, high = (0, 399) if born.year < 2000 else (500, 999)
    while True:
        fnr = make_synthetic_fnr(born, rng.randint(low, high))
        if fnr is not None and fnr not in used:
            used.add(fnr)
            return fnr


def _imaging(rng: random.Random, age: int, conditions: tuple[str, ...]) -> tuple[str, ...]:
    if age < 18:
        return ("SGD0AA",) if rng.random() < 0.08 else ()
    exams: list[str] = []
    for condition in conditions:
        code = cat.CONDITION_PROCEDURES.get(condition)
        if code and code not in exams and rng.random() < 0.6:
            exams.append(code)
    if rng.random() < 0.35:
        exams.append(rng.choice(cat.GENERAL_PROCEDURES))
    return tuple(exams[:2])


@cache
def plan_persons(seed: int, count: int) -> tuple[PersonPlan, ...]:
    rng = random.Random(f"kjerne-demo:{seed}:persons")
    used = set(cat.practitioner_fnrs().values())
    plans: list[PersonPlan] = []
    for index in range(count):
        arche = ARCHETYPES[index] if index < len(ARCHETYPES) else None
        followup_slot = arche is None and index % _FOLLOWUP_SLOT == 2
        if arche:
            gender, age, region, place = arche.gender, arche.age, arche.region, arche.place
        else:
            gender = rng.choice(("female", "male"))
            lo, hi = (50, 92) if followup_slot else _AGE_ROTATION[index % len(_AGE_ROTATION)]
            age = rng.randint(lo, hi)
            region = rng.choices([r for r, _ in _REGION_WEIGHTS], [w for _, w in _REGION_WEIGHTS])[0]
            place = rng.choice(cat.REGIONS[region].places)
        born = cat.REFERENCE_DATE - dt.timedelta(days=round(age * 365.25) + rng.randint(30, 360))
        sex = "F" if gender == "female" else "M"
        given = _pick_name(rng, gender, born)
        if rng.random() < 0.12:
            second = _pick_name(rng, gender, born)
            if second != given:
                given = f"{given} {second}"
        family = rng.choice(cat.FAMILY_NAMES)
        fnr = _pick_fnr(rng, born, used)
        postcode, city = rng.choice(cat.PLACES[place].postcodes)
        street = f"{rng.choice(cat.STREETS)} {rng.randint(1, 120)}{rng.choice(('', '', '', 'A', 'B'))}"
        gp = rng.choice(
            [p.key for office in cat.REGIONS[region].gp_offices for p in cat.practitioners_at(office, "LE")]
        )
        if arche:
            conditions, followup, imaging = arche.conditions, arche.followup, arche.imaging
        else:
            odds = _condition_odds(age, sex)
            conditions = tuple(c for c, p in odds.items() if rng.random() < p)
            if followup_slot:
                followup = rng.choices([c for c, _ in _FOLLOWUP_WEIGHTS], [w for _, w in _FOLLOWUP_WEIGHTS])[0]
                if followup not in conditions:
                    conditions = tuple(c for c in odds if c in conditions or c == followup)
            else:
                followup = next((c for c, p in _FOLLOWUP_ODDS if c in conditions and rng.random() < p), None)
            imaging = _imaging(rng, age, conditions)
        plans.append(
            PersonPlan(
                index=index,
                given=given,
                family=family,
                gender=gender,
                born=born,
                fnr=fnr,
                region=region,
                place=place,
                street=street,
                postcode=postcode,
                city=city,
                gp=gp,
                conditions=conditions,
                followup=followup,
                imaging=imaging,
                archetype=arche.key if arche else None,
            )
        )
    return tuple(plans)


def _org_entry(key: str, kind: str | None = None) -> dict:
    org = cat.ORG_BY_KEY[key]
    parent = cat.ORG_BY_KEY[org.part_of] if org.part_of else org
    return {
        "key": org.key,
        "kind": kind or org.kind,
        "name": org.name,
        "org_number": org.orgnr,
        "her_id": org.herid,
        "legal_entity_org_number": parent.orgnr,
        "legal_entity_name": parent.name,
        "organization_id": org.id,
    }


def personas(seed: int = 1) -> dict:
    """Named actors for tokens and log-in, consistent with `generate(seed)` for any `persons` ≥ 6."""
    citizens = []
    for plan, arche in zip(plan_persons(seed, len(ARCHETYPES)), ARCHETYPES, strict=True):
        gp = cat.PRACTITIONER_BY_KEY[plan.gp]
        followup_org = plan.followup_org
        citizens.append(
            {
                "key": arche.key,
                "description": arche.description,
                "fnr": plan.fnr,
                "name": plan.name,
                "given": plan.given,
                "family": plan.family,
                "gender": plan.gender,
                "birth_date": plan.born.isoformat(),
                "municipality": cat.PLACES[plan.place].municipality,
                "patient_id": plan.id,
                "conditions": [cat.CONDITION_TEXT[c] for c in plan.conditions],
                "gp": {
                    "hpr": gp.hpr,
                    "name": gp.name,
                    "practitioner_role_id": gp.role_id,
                    "org_number": cat.ORG_BY_KEY[gp.org].orgnr,
                },
                "has_lab_results": True,
                "has_radiology": bool(plan.imaging),
                "has_measurements": plan.followup is not None,
                "followup": cat.FOLLOWUP_TEXT[plan.followup] if plan.followup else None,
                "followup_org_number": cat.ORG_BY_KEY[followup_org].orgnr if followup_org else None,
            }
        )
    fnrs = cat.practitioner_fnrs()
    practitioners = []
    for p in cat.PRACTITIONERS:
        if not p.persona:
            continue
        org = _org_entry(p.org)
        practitioners.append(
            {
                "key": p.persona,
                "hpr": p.hpr,
                "fnr": fnrs[p.key],
                "name": p.name,
                "given": p.given,
                "family": p.family,
                "role": p.category,
                "role_display": cat.HEALTH_PERSONNEL_CATEGORY[p.category],
                "org_number": org["org_number"],
                "org_name": org["name"],
                "legal_entity_org_number": org["legal_entity_org_number"],
                "legal_entity_name": org["legal_entity_name"],
                "practitioner_id": p.id,
                "practitioner_role_id": p.role_id,
                "organization_id": org["organization_id"],
            }
        )
    producers = [_org_entry(o.key) for o in cat.ORGANISATIONS if o.kind in ("lab", "radiology", "platform")]
    producers += [_org_entry(key, "followup") for key in sorted(cat.PLATFORM_FOR)]
    return {"seed": seed, "citizens": citizens, "practitioners": practitioners, "producers": producers}
