"""What the synthetic demo world is made of: code systems, places, names, organisations, health personnel,
laboratory analyses, radiology procedures and home-measurement types.

Everything here is fixed data. Who the citizens are is decided in `personas`; what happens to them in
`generate`. Organisations and health personnel do not depend on the seed, so log-in personas stay the same
whichever data set is loaded.

Names of organisations and people are invented. Municipalities, postcodes, LOINC, SNOMED CT and UCUM codes
are real; NLK codes are real where the analysis is common and otherwise shaped like real ones; NCRP codes
follow the real pattern (prefix S, body region, modality) but are not checked against the published list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache

from kjerne.fhir.identifiers import make_orgnr, make_synthetic_fnr

# --- code systems -------------------------------------------------------------------------------------
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NLK = "urn:oid:2.16.578.1.12.4.1.1.7280"
NCRP = "urn:oid:2.16.578.1.12.4.1.1.7270"
KV_8202 = "http://ehelse.no/fhir/CodeSystem/no-kodeverk-8202"
KV_8351 = "urn:oid:2.16.578.1.12.4.1.1.8351"
KV_9060 = "urn:oid:2.16.578.1.12.4.1.1.9060"
KV_7426 = "urn:oid:2.16.578.1.12.4.1.1.7426"  # medical specialty
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"

# Identifiers that only exist inside the demo world (accession numbers, order numbers) live under a
# reserved example domain so they can never be mistaken for a real system.
DEMO_ID_BASE = "https://id.kjerne.example"

# Birth dates are fixed relative to this day, not to the day the data is generated, so a persona's
# fødselsnummer is the same on every machine and every day.
REFERENCE_DATE = dt.date(2025, 1, 1)

HEALTH_PERSONNEL_CATEGORY = {
    "LE": "Lege",
    "SP": "Sykepleier",
    "BI": "Bioingeniør",
    "RA": "Radiograf",
    "HE": "Helsesekretær",
}

# --- places -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    municipality: str
    postcodes: tuple[tuple[str, str], ...]  # (postnummer, poststed)


PLACES: dict[str, Place] = {
    "oslo": Place(
        "Oslo",
        (
            ("0150", "OSLO"),
            ("0182", "OSLO"),
            ("0455", "OSLO"),
            ("0560", "OSLO"),
            ("0661", "OSLO"),
            ("0765", "OSLO"),
            ("0976", "OSLO"),
        ),
    ),
    "drammen": Place("Drammen", (("3015", "DRAMMEN"), ("3044", "DRAMMEN"), ("3036", "DRAMMEN"))),
    "lier": Place("Lier", (("3400", "LIER"),)),
    "hamar": Place("Hamar", (("2317", "HAMAR"), ("2318", "HAMAR"))),
    "stange": Place("Stange", (("2335", "STANGE"),)),
    "elverum": Place("Elverum", (("2406", "ELVERUM"), ("2407", "ELVERUM"))),
    "lillehammer": Place("Lillehammer", (("2609", "LILLEHAMMER"), ("2615", "LILLEHAMMER"))),
}

STREETS = (
    "Storgata",
    "Kirkeveien",
    "Skolegata",
    "Parkveien",
    "Bjørkeveien",
    "Granveien",
    "Fjellveien",
    "Sjøgata",
    "Solbakken",
    "Hageveien",
    "Lyngveien",
    "Elvegata",
    "Torggata",
    "Løkkeveien",
    "Furuveien",
    "Myrveien",
    "Bakkegata",
    "Stasjonsveien",
    "Åsveien",
    "Kløverveien",
)


@dataclass(frozen=True)
class Region:
    """Where a citizen lives decides their GP office, their laboratory and who follows them up at home."""

    key: str
    places: tuple[str, ...]
    gp_offices: tuple[str, ...]
    lab: str
    radiology: str
    hospital_lab: str
    followup_hospital: str
    homecare: dict[str, str] = field(default_factory=dict)  # place key -> home-care organisation key


REGIONS: dict[str, Region] = {
    "oslo": Region(
        "oslo", ("oslo",), ("gp-bjorkelia",), "lab-nordlys", "rad-fjordvik", "lab-fjordvik", "dept-fjordvik-med"
    ),
    "drammen": Region(
        "drammen",
        ("drammen", "drammen", "lier"),
        ("gp-elvebredden",),
        "lab-kystlab",
        "rad-fjordvik",
        "lab-fjordvik",
        "dept-fjordvik-med",
        {"drammen": "homecare-drammen"},
    ),
    "hamar": Region(
        "hamar",
        ("hamar", "hamar", "stange", "elverum", "lillehammer"),
        ("gp-fjellheim",),
        "lab-mjosdalen",
        "rad-klarsyn",
        "lab-mjosdalen",
        "hosp-mjosdalen",
        {"hamar": "homecare-hamar"},
    ),
}

# --- names --------------------------------------------------------------------------------------------

FEMALE_CLASSIC = (
    "Anne",
    "Inger",
    "Kari",
    "Marit",
    "Ingrid",
    "Liv",
    "Eva",
    "Berit",
    "Astrid",
    "Bjørg",
    "Hilde",
    "Solveig",
    "Randi",
    "Marianne",
    "Elisabeth",
    "Kristin",
    "Ragnhild",
    "Sigrid",
    "Gunn",
    "Åse",
    "Turid",
    "Wenche",
    "Tone",
    "Grete",
    "Reidun",
    "Torill",
    "Gerd",
    "Aud",
    "Unni",
    "Hanne",
)
FEMALE_MODERN = (
    "Nora",
    "Emma",
    "Sofie",
    "Ingeborg",
    "Sara",
    "Thea",
    "Maja",
    "Ella",
    "Olivia",
    "Frida",
    "Tuva",
    "Ida",
    "Amalie",
    "Selma",
    "Hedda",
    "Leah",
    "Aurora",
    "Linnea",
    "Vilde",
    "Mathilde",
    "Silje",
    "Ane",
    "Julie",
)
MALE_CLASSIC = (
    "Jan",
    "Per",
    "Bjørn",
    "Ole",
    "Lars",
    "Kjell",
    "Knut",
    "Arne",
    "Svein",
    "Hans",
    "Geir",
    "Tor",
    "Terje",
    "Odd",
    "Rolf",
    "Helge",
    "Egil",
    "Leif",
    "Harald",
    "Einar",
    "Trond",
    "Øyvind",
    "Gunnar",
    "Steinar",
    "Morten",
    "Rune",
    "Frode",
    "Stig",
    "Asbjørn",
    "Magne",
)
MALE_MODERN = (
    "Jakob",
    "Emil",
    "Noah",
    "Oliver",
    "Filip",
    "William",
    "Lucas",
    "Liam",
    "Henrik",
    "Aksel",
    "Isak",
    "Magnus",
    "Sindre",
    "Tobias",
    "Elias",
    "Theodor",
    "Johannes",
    "Mathias",
    "Sander",
    "Eirik",
    "Andreas",
    "Håkon",
    "Martin",
)
FAMILY_NAMES = (
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Johnsen",
    "Pettersen",
    "Eriksen",
    "Berg",
    "Haugen",
    "Hagen",
    "Johannessen",
    "Andreassen",
    "Jacobsen",
    "Dahl",
    "Jørgensen",
    "Halvorsen",
    "Henriksen",
    "Lund",
    "Sørensen",
    "Moen",
    "Gundersen",
    "Iversen",
    "Strand",
    "Solberg",
    "Svendsen",
    "Eide",
    "Knutsen",
    "Martinsen",
    "Paulsen",
    "Bakken",
    "Mathisen",
    "Lie",
    "Amundsen",
    "Nguyen",
    "Rasmussen",
    "Ali",
    "Lunde",
    "Solheim",
    "Berge",
    "Moe",
    "Nygård",
    "Bakke",
    "Fredriksen",
    "Holm",
    "Lien",
    "Hauge",
    "Knudsen",
    "Evensen",
    "Sæther",
    "Aas",
    "Myhre",
    "Haugland",
    "Thomassen",
    "Sivertsen",
    "Simonsen",
    "Danielsen",
    "Sandvik",
    "Rønning",
    "Næss",
    "Vik",
    "Haug",
    "Ellingsen",
    "Thorsen",
    "Birkeland",
    "Isaksen",
    "Ruud",
    "Aasen",
    "Strøm",
    "Myklebust",
    "Tangen",
    "Ødegård",
    "Helland",
    "Bøe",
    "Aune",
    "Tveit",
    "Brekke",
    "Ahmed",
    "Kowalski",
)

# --- organisations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgSpec:
    key: str
    name: str
    kind: str  # lab, radiology, gp, hospital, hospital-dept, municipality, homecare, platform
    type_code: str  # organization-type: prov, dept, govt, bus
    type_text: str
    orgnr_base: int  # first eight digits; the check digit is computed (and the base bumped past 10s)
    herid: str | None
    address: tuple[str, str, str]  # line, postnummer, poststed
    part_of: str | None = None
    resh: str | None = None

    @property
    def id(self) -> str:
        return f"demo-org-{self.key}"

    @property
    def orgnr(self) -> str:
        return _orgnr(self.orgnr_base)


@cache
def _orgnr(base: int) -> str:
    while (value := make_orgnr(base)) is None:
        base += 1
    return value


ORG_TYPE_DISPLAY = {
    "prov": "Healthcare Provider",
    "dept": "Hospital Department",
    "govt": "Government",
    "bus": "Non-Healthcare Business or Corporation",
}

ORGANISATIONS: tuple[OrgSpec, ...] = (
    OrgSpec(
        "hosp-fjordvik",
        "Fjordvik universitetssykehus HF",
        "hospital",
        "prov",
        "Helseforetak (sykehus)",
        99431020,
        "91001",
        ("Sykehusveien 1", "0450", "OSLO"),
    ),
    OrgSpec(
        "lab-fjordvik",
        "Fjordvik universitetssykehus, Avdeling for medisinsk biokjemi",
        "lab",
        "dept",
        "Medisinsk laboratorium (sykehus)",
        99431112,
        "91002",
        ("Sykehusveien 1", "0450", "OSLO"),
        part_of="hosp-fjordvik",
        resh="4201115",
    ),
    OrgSpec(
        "rad-fjordvik",
        "Fjordvik universitetssykehus, Radiologisk avdeling",
        "radiology",
        "dept",
        "Radiologisk avdeling",
        99431139,
        "91003",
        ("Sykehusveien 1", "0450", "OSLO"),
        part_of="hosp-fjordvik",
        resh="4201120",
    ),
    OrgSpec(
        "dept-fjordvik-med",
        "Fjordvik universitetssykehus, Medisinsk klinikk",
        "hospital-dept",
        "dept",
        "Medisinsk klinikk (digital hjemmeoppfølging)",
        99431155,
        "91004",
        ("Sykehusveien 1", "0450", "OSLO"),
        part_of="hosp-fjordvik",
        resh="4201131",
    ),
    OrgSpec(
        "hosp-mjosdalen",
        "Mjøsdalen sykehus HF",
        "hospital",
        "prov",
        "Helseforetak (sykehus)",
        99522031,
        "92001",
        ("Skolegata 32", "2317", "HAMAR"),
    ),
    OrgSpec(
        "lab-mjosdalen",
        "Mjøsdalen sykehus, Laboratoriemedisin",
        "lab",
        "dept",
        "Medisinsk laboratorium (sykehus)",
        99522147,
        "92002",
        ("Skolegata 32", "2317", "HAMAR"),
        part_of="hosp-mjosdalen",
        resh="4209002",
    ),
    OrgSpec(
        "lab-nordlys",
        "Nordlys Medisinske Laboratorium AS",
        "lab",
        "prov",
        "Medisinsk laboratorium (privat)",
        99610015,
        "93001",
        ("Torggata 12", "0182", "OSLO"),
    ),
    OrgSpec(
        "lab-kystlab",
        "Kystlab Medisinsk Laboratorium AS",
        "lab",
        "prov",
        "Medisinsk laboratorium (privat)",
        99610198,
        "93002",
        ("Elvegata 4", "3015", "DRAMMEN"),
    ),
    OrgSpec(
        "rad-klarsyn",
        "Klarsyn Røntgeninstitutt AS",
        "radiology",
        "prov",
        "Røntgeninstitutt (privat)",
        99610244,
        "93003",
        ("Stasjonsveien 9", "2318", "HAMAR"),
    ),
    OrgSpec(
        "gp-bjorkelia",
        "Bjørkelia legekontor",
        "gp",
        "prov",
        "Legekontor (fastlegepraksis)",
        99720319,
        "94001",
        ("Bjørkeveien 2", "0560", "OSLO"),
    ),
    OrgSpec(
        "gp-elvebredden",
        "Elvebredden legesenter",
        "gp",
        "prov",
        "Legekontor (fastlegepraksis)",
        99720416,
        "94002",
        ("Elvegata 21", "3044", "DRAMMEN"),
    ),
    OrgSpec(
        "gp-fjellheim",
        "Fjellheim legekontor",
        "gp",
        "prov",
        "Legekontor (fastlegepraksis)",
        99720513,
        "94003",
        ("Fjellveien 7", "2317", "HAMAR"),
    ),
    OrgSpec(
        "mun-drammen",
        "Drammen kommune",
        "municipality",
        "govt",
        "Kommune",
        99830011,
        None,
        ("Engene 1", "3015", "DRAMMEN"),
    ),
    OrgSpec(
        "homecare-drammen",
        "Drammen kommune, hjemmetjenesten",
        "homecare",
        "prov",
        "Kommunal helse- og omsorgstjeneste (hjemmetjenesten)",
        99830127,
        "95001",
        ("Engene 1", "3015", "DRAMMEN"),
        part_of="mun-drammen",
    ),
    OrgSpec(
        "mun-hamar",
        "Hamar kommune",
        "municipality",
        "govt",
        "Kommune",
        99830224,
        None,
        ("Vangsvegen 51", "2317", "HAMAR"),
    ),
    OrgSpec(
        "homecare-hamar",
        "Hamar kommune, hjemmetjenesten",
        "homecare",
        "prov",
        "Kommunal helse- og omsorgstjeneste (hjemmetjenesten)",
        99830313,
        "95002",
        ("Vangsvegen 51", "2317", "HAMAR"),
        part_of="mun-hamar",
    ),
    OrgSpec(
        "platform-trygghjem",
        "Trygghjem Velferdsteknologi AS",
        "platform",
        "bus",
        "Leverandør av digital hjemmeoppfølging",
        99940017,
        "96001",
        ("Løkkeveien 3", "0661", "OSLO"),
    ),
    OrgSpec(
        "platform-vardo",
        "Vardo Helseteknologi AS",
        "platform",
        "bus",
        "Leverandør av digital hjemmeoppfølging",
        99940114,
        "96002",
        ("Storgata 40", "2609", "LILLEHAMMER"),
    ),
)

ORG_BY_KEY: dict[str, OrgSpec] = {o.key: o for o in ORGANISATIONS}

# Which platform carries home measurements for which follow-up organisation.
PLATFORM_FOR = {
    "dept-fjordvik-med": "platform-trygghjem",
    "homecare-drammen": "platform-trygghjem",
    "homecare-hamar": "platform-vardo",
    "hosp-mjosdalen": "platform-vardo",
}

# --- health personnel ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PractitionerSpec:
    key: str
    given: str
    family: str
    gender: str
    born: dt.date
    hpr: str
    category: str  # kodeverk 9060
    org: str
    specialty: tuple[str | None, str] | None = None  # kodeverk 7426 (code, display); code only when known
    persona: str | None = None  # name used by the log-in personas

    @property
    def id(self) -> str:
        return f"demo-prac-{self.key}"

    @property
    def role_id(self) -> str:
        return f"demo-role-{self.key}"

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"


_ALLMENN = ("1", "Allmennmedisin")
_BIOKJEMI = (None, "Medisinsk biokjemi")
_RADIOLOGI = (None, "Radiologi")
_INDREMED = (None, "Indremedisin")

PRACTITIONERS: tuple[PractitionerSpec, ...] = (
    PractitionerSpec(
        "siri-holmen",
        "Siri",
        "Holmen",
        "female",
        dt.date(1978, 4, 11),
        "5651203",
        "LE",
        "gp-bjorkelia",
        _ALLMENN,
        persona="fastlege-oslo",
    ),
    PractitionerSpec(
        "anders-braaten", "Anders", "Bråten", "male", dt.date(1969, 9, 2), "5651311", "LE", "gp-bjorkelia", _ALLMENN
    ),
    PractitionerSpec(
        "mona-lindeberg", "Mona", "Lindeberg", "female", dt.date(1985, 1, 23), "5651427", "SP", "gp-bjorkelia"
    ),
    PractitionerSpec(
        "henrik-aasland",
        "Henrik",
        "Aasland",
        "male",
        dt.date(1974, 6, 30),
        "5651532",
        "LE",
        "gp-elvebredden",
        _ALLMENN,
        persona="fastlege-drammen",
    ),
    PractitionerSpec(
        "farah-rahimi", "Farah", "Rahimi", "female", dt.date(1988, 11, 5), "5651648", "LE", "gp-elvebredden", _ALLMENN
    ),
    PractitionerSpec(
        "gunhild-roe",
        "Gunhild",
        "Rø",
        "female",
        dt.date(1966, 3, 17),
        "5651753",
        "LE",
        "gp-fjellheim",
        _ALLMENN,
        persona="fastlege-hamar",
    ),
    PractitionerSpec(
        "ola-tveiten", "Ola", "Tveiten", "male", dt.date(1981, 8, 8), "5651869", "LE", "gp-fjellheim", _ALLMENN
    ),
    PractitionerSpec(
        "petter-wold",
        "Petter",
        "Wold",
        "male",
        dt.date(1971, 12, 1),
        "5652114",
        "LE",
        "lab-fjordvik",
        _BIOKJEMI,
        persona="lege-laboratorium",
    ),
    PractitionerSpec("camilla-nes", "Camilla", "Nes", "female", dt.date(1990, 5, 14), "5652229", "BI", "lab-fjordvik"),
    PractitionerSpec(
        "randi-ulvestad", "Randi", "Ulvestad", "female", dt.date(1963, 2, 27), "5652335", "LE", "lab-nordlys", _BIOKJEMI
    ),
    PractitionerSpec("jonas-hegge", "Jonas", "Hegge", "male", dt.date(1992, 10, 19), "5652441", "BI", "lab-nordlys"),
    PractitionerSpec(
        "kjersti-moland", "Kjersti", "Moland", "female", dt.date(1976, 7, 3), "5652556", "LE", "lab-kystlab", _BIOKJEMI
    ),
    PractitionerSpec(
        "erlend-bakkevold", "Erlend", "Bakkevold", "male", dt.date(1987, 4, 25), "5652662", "BI", "lab-mjosdalen"
    ),
    PractitionerSpec(
        "tor-lindqvist",
        "Tor",
        "Lindqvist",
        "male",
        dt.date(1968, 1, 9),
        "5653117",
        "LE",
        "rad-fjordvik",
        _RADIOLOGI,
        persona="radiolog",
    ),
    PractitionerSpec("elin-dahle", "Elin", "Dahle", "female", dt.date(1989, 9, 21), "5653223", "RA", "rad-fjordvik"),
    PractitionerSpec(
        "lise-kvam", "Lise", "Kvam", "female", dt.date(1973, 12, 12), "5653339", "LE", "rad-klarsyn", _RADIOLOGI
    ),
    PractitionerSpec(
        "bjarne-sund",
        "Bjarne",
        "Sund",
        "male",
        dt.date(1970, 3, 3),
        "5654112",
        "LE",
        "dept-fjordvik-med",
        _INDREMED,
        persona="lege-sykehus",
    ),
    PractitionerSpec(
        "hege-falk",
        "Hege",
        "Falk",
        "female",
        dt.date(1983, 6, 16),
        "5654228",
        "SP",
        "dept-fjordvik-med",
        persona="sykepleier-sykehus",
    ),
    PractitionerSpec(
        "nina-bergesen",
        "Nina",
        "Bergesen",
        "female",
        dt.date(1979, 10, 28),
        "5655113",
        "SP",
        "homecare-drammen",
        persona="sykepleier-drammen",
    ),
    PractitionerSpec("yusuf-demir", "Yusuf", "Demir", "male", dt.date(1991, 2, 7), "5655229", "SP", "homecare-drammen"),
    PractitionerSpec(
        "marte-skaug",
        "Marte",
        "Skaug",
        "female",
        dt.date(1986, 8, 30),
        "5655334",
        "SP",
        "homecare-hamar",
        persona="sykepleier-hamar",
    ),
    PractitionerSpec(
        "stian-rudshaug", "Stian", "Rudshaug", "male", dt.date(1995, 5, 2), "5655441", "HE", "gp-fjellheim"
    ),
)

PRACTITIONER_BY_KEY: dict[str, PractitionerSpec] = {p.key: p for p in PRACTITIONERS}


@cache
def practitioner_fnrs() -> dict[str, str]:
    """Synthetic fødselsnummer per practitioner key; individual numbers from a band citizens never use."""
    out: dict[str, str] = {}
    for n, p in enumerate(PRACTITIONERS):
        individ = 400 + 3 * n
        while (fnr := make_synthetic_fnr(p.born, individ)) is None:
            individ += 1
        out[p.key] = fnr
    return out


def practitioners_at(org_key: str, category: str | None = None) -> list[PractitionerSpec]:
    return [p for p in PRACTITIONERS if p.org == org_key and (category is None or p.category == category)]


# --- laboratory analyses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """How one laboratory reports an analysis: the unit and the factor from the canonical unit."""

    unit: str  # as printed on the report
    ucum: str
    factor: float = 1.0
    decimals: int = 0
    nlk: tuple[str, str] | None = None  # NLK code differs when the unit differs
    loinc: tuple[str, str] | None = None  # a different LOINC only when the property differs


@dataclass(frozen=True)
class Analysis:
    key: str
    nlk: tuple[str, str]
    loinc: tuple[str, str]
    text: str  # plain-language Norwegian
    specimen: str  # kodeverk 8351: B blood, P plasma, S serum
    unit: Unit
    ref: dict[str, tuple[float | None, float | None]]  # sex (F/M) -> canonical low/high
    variants: dict[str, Unit] = field(default_factory=dict)  # lab key -> unit, where it differs
    adults_only: bool = False

    def unit_at(self, lab: str) -> Unit:
        return self.variants.get(lab, self.unit)


def _both(low: float | None, high: float | None) -> dict[str, tuple[float | None, float | None]]:
    return {"F": (low, high), "M": (low, high)}


ANALYSES: dict[str, Analysis] = {
    a.key: a
    for a in (
        Analysis(
            "hb",
            ("NOR05172", "B-Hemoglobin"),
            ("718-7", "Hemoglobin [Mass/volume] in Blood"),
            "Hemoglobin (blodprosent)",
            "B",
            Unit("g/dL", "g/dL", 1, 1),
            {"F": (11.7, 15.3), "M": (13.4, 17.0)},
            {"lab-kystlab": Unit("g/L", "g/L", 10, 0, nlk=("NPU28309", "B-Hemoglobin (massekonsentrasjon)"))},
        ),
        Analysis(
            "lpk",
            ("NPU02593", "B-Leukocytter"),
            ("6690-2", "Leukocytes [#/volume] in Blood by Automated count"),
            "Hvite blodlegemer (leukocytter)",
            "B",
            Unit("x10^9/L", "10*9/L", 1, 1),
            _both(3.5, 10.0),
        ),
        Analysis(
            "tpk",
            ("NPU03568", "B-Trombocytter"),
            ("777-3", "Platelets [#/volume] in Blood by Automated count"),
            "Blodplater (trombocytter)",
            "B",
            Unit("x10^9/L", "10*9/L", 1, 0),
            {"F": (165, 387), "M": (145, 348)},
        ),
        Analysis(
            "mcv",
            ("NPU01944", "(B)Erytrocytter-MCV"),
            ("787-2", "MCV [Entitic volume] by Automated count"),
            "Størrelse på røde blodlegemer (MCV)",
            "B",
            Unit("fL", "fL", 1, 0),
            _both(82, 98),
        ),
        Analysis(
            "crp",
            ("NPU19748", "P-CRP"),
            ("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma"),
            "Betennelsesmarkør (CRP)",
            "P",
            Unit("mg/L", "mg/L", 1, 0),
            _both(None, 5),
        ),
        Analysis(
            "na",
            ("NPU03429", "P-Natrium"),
            ("2951-2", "Sodium [Moles/volume] in Serum or Plasma"),
            "Natrium (salt)",
            "P",
            Unit("mmol/L", "mmol/L", 1, 0),
            _both(137, 145),
        ),
        Analysis(
            "k",
            ("NPU03230", "P-Kalium"),
            ("2823-3", "Potassium [Moles/volume] in Serum or Plasma"),
            "Kalium",
            "P",
            Unit("mmol/L", "mmol/L", 1, 1),
            _both(3.5, 4.4),
        ),
        Analysis(
            "creat",
            ("NPU18016", "P-Kreatinin"),
            ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma"),
            "Kreatinin (nyrefunksjon)",
            "P",
            Unit("µmol/L", "umol/L", 1, 0),
            {"F": (45, 90), "M": (60, 105)},
            {
                "lab-kystlab": Unit(
                    "mg/dL",
                    "mg/dL",
                    1 / 88.42,
                    2,
                    nlk=("NPU01807", "P-Kreatinin (masse)"),
                    loinc=("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
                )
            },
        ),
        Analysis(
            "egfr",
            ("NPU27158", "Pt(P-Kreatinin)-eGFR/1,73m²"),
            (
                "62238-1",
                "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma "
                "or Blood by Creatinine-based formula (CKD-EPI)",
            ),
            "Beregnet nyrefunksjon (eGFR)",
            "P",
            Unit("mL/min/1,73m²", "mL/min/{1.73_m2}", 1, 0),
            _both(60, None),
            adults_only=True,
        ),
        Analysis(
            "alat",
            ("NPU19651", "P-ALAT"),
            ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),
            "Leverprøve (ALAT)",
            "P",
            Unit("U/L", "U/L", 1, 0),
            {"F": (10, 45), "M": (10, 70)},
            {"lab-kystlab": Unit("µkat/L", "ukat/L", 1 / 60, 2, nlk=("NPU01589", "P-ALAT (µkat/L)"))},
        ),
        Analysis(
            "gt",
            ("NPU19657", "P-Gamma-GT"),
            ("2324-2", "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma"),
            "Leverprøve (gamma-GT)",
            "P",
            Unit("U/L", "U/L", 1, 0),
            {"F": (10, 75), "M": (15, 115)},
            adults_only=True,
        ),
        Analysis(
            "alp",
            ("NPU27783", "P-ALP"),
            ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma"),
            "Leverprøve (basisk fosfatase, ALP)",
            "P",
            Unit("U/L", "U/L", 1, 0),
            _both(35, 105),
            adults_only=True,
        ),
        Analysis(
            "bili",
            ("NPU01370", "P-Bilirubin"),
            ("14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma"),
            "Bilirubin (gallefargestoff)",
            "P",
            Unit("µmol/L", "umol/L", 1, 0),
            _both(5, 25),
        ),
        Analysis(
            "hba1c",
            ("NPU27300", "B-HbA1c"),
            ("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol"),
            "Langtidsblodsukker (HbA1c)",
            "B",
            Unit("mmol/mol", "mmol/mol", 1, 0),
            _both(28, 40),
        ),
        Analysis(
            "gluc",
            ("NPU02192", "P-Glukose"),
            ("14749-6", "Glucose [Moles/volume] in Serum or Plasma"),
            "Blodsukker (glukose)",
            "P",
            Unit("mmol/L", "mmol/L", 1, 1),
            _both(4.0, 6.0),
        ),
        Analysis(
            "tsh",
            ("NPU03577", "S-TSH"),
            ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma"),
            "Stoffskiftehormon (TSH)",
            "S",
            Unit("mIE/L", "m[IU]/L", 1, 2),
            _both(0.4, 4.5),
        ),
        Analysis(
            "ft4",
            ("NPU03579", "S-Fritt T4"),
            ("14920-3", "Thyroxine (T4) free [Moles/volume] in Serum or Plasma"),
            "Stoffskiftehormon (fritt T4)",
            "S",
            Unit("pmol/L", "pmol/L", 1, 0),
            _both(12, 22),
        ),
        Analysis(
            "ferritin",
            ("NPU19763", "S-Ferritin"),
            ("2276-4", "Ferritin [Mass/volume] in Serum or Plasma"),
            "Jernlager (ferritin)",
            "S",
            Unit("µg/L", "ug/L", 1, 0),
            {"F": (10, 170), "M": (30, 400)},
        ),
        Analysis(
            "chol",
            ("NPU01566", "P-Kolesterol"),
            ("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma"),
            "Totalkolesterol",
            "P",
            Unit("mmol/L", "mmol/L", 1, 1),
            _both(3.3, 6.9),
            adults_only=True,
        ),
        Analysis(
            "ldl",
            ("NPU01568", "P-LDL-kolesterol"),
            ("39469-2", "Cholesterol in LDL [Moles/volume] in Serum or Plasma by calculation"),
            "LDL-kolesterol («det onde» kolesterolet)",
            "P",
            Unit("mmol/L", "mmol/L", 1, 1),
            _both(1.4, 4.7),
            adults_only=True,
        ),
        Analysis(
            "hdl",
            ("NPU01567", "P-HDL-kolesterol"),
            ("14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma"),
            "HDL-kolesterol («det gode» kolesterolet)",
            "P",
            Unit("mmol/L", "mmol/L", 1, 1),
            {"F": (1.0, 2.7), "M": (0.8, 2.1)},
            adults_only=True,
        ),
        Analysis(
            "tg",
            ("NPU04094", "P-Triglyserid"),
            ("14927-8", "Triglyceride [Moles/volume] in Serum or Plasma"),
            "Triglyserider (blodfett)",
            "P",
            Unit("mmol/L", "mmol/L", 1, 1),
            _both(0.45, 2.6),
            adults_only=True,
        ),
        Analysis(
            "ntprobnp",
            ("NPU21571", "P-NT-proBNP"),
            ("33762-6", "Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma"),
            "Hjertebelastning (NT-proBNP)",
            "P",
            Unit("ng/L", "ng/L", 1, 0),
            _both(None, 300),
            adults_only=True,
        ),
        Analysis(
            "psa",
            ("NPU08669", "S-PSA"),
            ("2857-1", "Prostate specific Ag [Mass/volume] in Serum or Plasma"),
            "Prostataprøve (PSA)",
            "S",
            Unit("µg/L", "ug/L", 1, 1),
            _both(None, 4.0),
            adults_only=True,
        ),
        Analysis(
            "b12",
            ("NPU01700", "S-Kobalamin (vitamin B12)"),
            ("14685-2", "Cobalamin (Vitamin B12) [Moles/volume] in Serum or Plasma"),
            "Vitamin B12",
            "S",
            Unit("pmol/L", "pmol/L", 1, 0),
            _both(150, 650),
            adults_only=True,
        ),
    )
}

# Laboratories differ a little in their reference limits (method and population); canonical units.
LAB_REFERENCE_OVERRIDES: dict[str, dict[str, dict[str, tuple[float | None, float | None]]]] = {
    "lab-fjordvik": {"hb": {"F": (11.5, 15.5), "M": (13.0, 17.0)}, "k": _both(3.6, 4.6)},
    "lab-kystlab": {"tsh": _both(0.3, 4.2), "ft4": _both(11, 21)},
    "lab-mjosdalen": {"crp": _both(None, 4), "alat": {"F": (10, 45), "M": (10, 60)}},
}

# Children under 16 get paediatric limits where the adult ones would be misleading.
CHILD_REFERENCE: dict[str, tuple[float | None, float | None]] = {
    "hb": (11.0, 14.5),
    "creat": (20, 60),
    "alat": (5, 40),
    "ferritin": (10, 140),
    "tpk": (150, 450),
    "lpk": (4.5, 13.0),
}

SPECIMEN_TYPES: dict[str, tuple[str, str, str, str]] = {
    # 8351 code -> (8351 display, SNOMED CT code, SNOMED display, Norwegian container text)
    "B": ("Blod", "119297000", "Blood specimen", "EDTA-blod"),
    "P": ("Plasma", "119361006", "Plasma specimen", "Heparinplasma"),
    "S": ("Serum", "119364003", "Serum specimen", "Serum"),
}


@dataclass(frozen=True)
class Panel:
    key: str
    text: str
    analyses: tuple[str, ...]


PANELS: dict[str, Panel] = {
    p.key: p
    for p in (
        Panel("blodstatus", "Blodstatus", ("hb", "lpk", "tpk", "mcv")),
        Panel("crp", "CRP", ("crp",)),
        Panel("nyre", "Elektrolytter og nyrefunksjon", ("na", "k", "creat", "egfr")),
        Panel("lever", "Leverprøver", ("alat", "gt", "alp", "bili")),
        Panel("diabetes", "Diabeteskontroll", ("hba1c", "gluc")),
        Panel("lipider", "Lipidstatus", ("chol", "ldl", "hdl", "tg")),
        Panel("thyreoidea", "Thyreoideaprøver", ("tsh", "ft4")),
        Panel("jern", "Jernstatus", ("ferritin",)),
        Panel("hjerte", "Hjertesviktmarkør", ("ntprobnp",)),
        Panel("psa", "PSA", ("psa",)),
        Panel("b12", "Vitamin B12", ("b12",)),
    )
}

# What each condition makes the GP order, on top of the routine blodstatus and CRP.
CONDITION_PANELS: dict[str, tuple[str, ...]] = {
    "diabetes": ("diabetes", "nyre", "lipider"),
    "ckd": ("nyre",),
    "hypothyroid": ("thyreoidea",),
    "iron_deficiency": ("jern",),
    "hyperlipidemia": ("lipider", "lever"),
    "heart_failure": ("hjerte", "nyre"),
    "copd": (),
    "hypertension": ("nyre",),
    "fatty_liver": ("lever",),
}

CONDITION_TEXT = {
    "diabetes": "Diabetes type 2",
    "ckd": "Kronisk nyresykdom",
    "hypothyroid": "Hypotyreose (lavt stoffskifte)",
    "iron_deficiency": "Jernmangelanemi",
    "hyperlipidemia": "Forhøyet kolesterol",
    "heart_failure": "Hjertesvikt",
    "copd": "KOLS",
    "hypertension": "Høyt blodtrykk",
    "fatty_liver": "Fettlever",
}

# --- radiology ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Procedure:
    code: str  # NCRP-shaped
    display: str
    modality: tuple[str, str]  # kodeverk 8202 (code, display)
    indication: str
    normal: tuple[str, str]  # (findings, conclusion)
    abnormal: dict[str, tuple[str, str]]  # condition -> (findings, conclusion)


_UL = ("UL", "Ultralyd")
_RTG = ("RTG", "Røntgen")
_MR = ("MR", "Magnettomografi")
_CT = ("CT", "Computertomografi")

PROCEDURES: dict[str, Procedure] = {
    p.code: p
    for p in (
        Procedure(
            "SJJ0AK",
            "UL Lever",
            _UL,
            "Forhøyede leverprøver. Spørsmål om fettlever.",
            (
                "Leveren har normal størrelse og jevn ekkostruktur. Ingen fokale forandringer. Galleblæren er "
                "tynnvegget uten konkrementer. Galleveiene er ikke utvidet.",
                "Normal ultralyd av lever.",
            ),
            {
                "fatty_liver": (
                    "Leveren er lett forstørret med diffust økt ekkogenisitet. Ingen fokale "
                    "forandringer. Galleveiene er ikke utvidet.",
                    "Funn forenlig med fettlever. Ingen fokale leverforandringer.",
                )
            },
        ),
        Procedure(
            "SKC0AK",
            "UL Nyrer",
            _UL,
            "Fallende eGFR. Spørsmål om strukturell nyresykdom.",
            (
                "Begge nyrer har normal størrelse og normal parenkymtykkelse. Ingen hydronefrose. Ingen konkrementer.",
                "Normale nyrer ved ultralyd.",
            ),
            {
                "ckd": (
                    "Begge nyrer er små, høyre 9,2 cm og venstre 9,5 cm, med tynt parenkym og økt "
                    "ekkogenisitet. Ingen hydronefrose. Ingen konkrementer.",
                    "Bilateralt små nyrer, forenlig med kronisk nyresykdom.",
                )
            },
        ),
        Procedure(
            "SGD0AA",
            "Rtg Thorax",
            _RTG,
            "Langvarig hoste og tung pust.",
            (
                "Normal hjertestørrelse. Lungene er ekspanderte og uten infiltrater. Frie sinus.",
                "Normale forhold i thorax.",
            ),
            {
                "copd": (
                    "Hyperekspanderte lunger med avflatede diafragmakupler og økt retrosternalt rom. "
                    "Ingen infiltrater. Frie sinus.",
                    "Funn forenlig med emfysem. Ingen pneumoni.",
                ),
                "heart_failure": (
                    "Lett forstørret hjerteskygge. Lett karstuvning. Små mengder pleuravæske bilateralt.",
                    "Forstørret hjerte og lett stuvning, forenlig med hjertesvikt.",
                ),
            },
        ),
        Procedure(
            "SNG0AG",
            "MR Kne",
            _MR,
            "Smerter og hevelse i kneet etter vridning.",
            ("Intakte menisker og korsbånd. Ingen benmargsødem. Normal brusk.", "Normal MR av kne."),
            {
                "_any": (
                    "Horisontal rift i bakhornet av mediale menisk. Lett bruskslitasje i mediale "
                    "kompartment. Intakte korsbånd.",
                    "Degenerativ rift i mediale menisk.",
                )
            },
        ),
        Procedure(
            "SNA0AA",
            "Rtg Columna cervicalis",
            _RTG,
            "Nakkesmerter gjennom flere måneder.",
            ("Normal lordose. Normale skivehøyder. Ingen skjelettforandringer.", "Normal røntgen av nakken."),
            {
                "_any": (
                    "Lett redusert skivehøyde C5-C6 med små osteofytter. Ellers normale forhold.",
                    "Lette degenerative forandringer C5-C6.",
                )
            },
        ),
        Procedure(
            "SAA0AG",
            "MR Caput",
            _MR,
            "Hodepine med nyoppståtte synsforstyrrelser.",
            (
                "Normale forhold intrakranielt. Ingen blødning, infarkt eller ekspansiv prosess. Normale ventrikler.",
                "Normal MR av hjernen.",
            ),
            {},
        ),
        Procedure(
            "SJA0AD",
            "CT Abdomen",
            _CT,
            "Magesmerter og vekttap.",
            ("Normale parenkymatøse organer. Ingen forstørrede lymfeknuter. Ingen fri væske.", "Normal CT av abdomen."),
            {
                "fatty_liver": (
                    "Diffust lav attenuering i leveren. Ellers normale parenkymatøse organer. Ingen fri væske.",
                    "Fettlever. Ellers normal CT av abdomen.",
                )
            },
        ),
    )
}

# Which procedures a GP orders for whom.
CONDITION_PROCEDURES = {
    "fatty_liver": "SJJ0AK",
    "ckd": "SKC0AK",
    "copd": "SGD0AA",
    "heart_failure": "SGD0AA",
}
GENERAL_PROCEDURES = ("SNG0AG", "SNA0AA", "SGD0AA", "SAA0AG", "SJA0AD", "SJJ0AK")

# --- home measurements (VkpObservation) ---------------------------------------------------------------


@dataclass(frozen=True)
class VitalSign:
    key: str
    loinc: tuple[str, str]
    snomed: tuple[str, str]
    text: str
    unit: str
    ucum: str
    decimals: int
    device: str
    nlk: tuple[str, str] | None = None


VITAL_SIGNS: dict[str, VitalSign] = {
    v.key: v
    for v in (
        VitalSign(
            "pulse",
            ("8867-4", "Heart rate"),
            ("364075005", "Heart rate"),
            "Puls",
            "/min",
            "/min",
            0,
            "Blodtrykksmåler BT-210 (Bluetooth)",
        ),
        VitalSign(
            "bp",
            ("85354-9", "Blood pressure panel with all children optional"),
            ("75367002", "Blood pressure"),
            "Blodtrykk",
            "mmHg",
            "mm[Hg]",
            0,
            "Blodtrykksmåler BT-210 (Bluetooth)",
        ),
        VitalSign(
            "spo2",
            ("2708-6", "Oxygen saturation in Arterial blood"),
            ("431314004", "Peripheral oxygen saturation"),
            "Oksygenmetning",
            "%",
            "%",
            0,
            "Pulsoksymeter PX-40 (Bluetooth)",
        ),
        VitalSign(
            "resp",
            ("9279-1", "Respiratory rate"),
            ("86290005", "Respiratory rate"),
            "Respirasjonsfrekvens",
            "/min",
            "/min",
            0,
            "Telt av hjemmesykepleier",
        ),
        VitalSign(
            "temp",
            ("8310-5", "Body temperature"),
            ("276885007", "Core body temperature"),
            "Kroppstemperatur",
            "°C",
            "Cel",
            1,
            "Øretermometer TM-5",
        ),
        VitalSign(
            "weight",
            ("29463-7", "Body weight"),
            ("27113001", "Body weight"),
            "Kroppsvekt",
            "kg",
            "kg",
            1,
            "Personvekt VK-300 (Bluetooth)",
        ),
        VitalSign(
            "glucose",
            ("15074-8", "Glucose [Moles/volume] in Blood"),
            ("434912009", "Blood glucose concentration"),
            "Blodsukker",
            "mmol/L",
            "mmol/L",
            1,
            "Blodsukkerapparat GL-8 (Bluetooth)",
            nlk=("NPU02187", "B-Glukose"),
        ),
    )
}

BP_SYSTOLIC = (("8480-6", "Systolic blood pressure"), ("271649006", "Systolic blood pressure"))
BP_DIASTOLIC = (("8462-4", "Diastolic blood pressure"), ("271650006", "Diastolic blood pressure"))
NEWS2 = ("1104051000000101", "Royal College of Physicians NEWS2 (National Early Warning Score 2) total score")

# What each follow-up programme measures and how often (per day; below 1 means some days).
FOLLOWUP_PROGRAMMES: dict[str, dict[str, float]] = {
    "heart_failure": {"weight": 1.0, "bp": 1.0, "pulse": 1.0, "spo2": 0.6},
    "copd": {"spo2": 1.0, "pulse": 1.0, "temp": 0.3},
    "diabetes": {"glucose": 1.6, "weight": 0.15, "bp": 0.2},
    "hypertension": {"bp": 1.0, "pulse": 1.0},
}
FOLLOWUP_TEXT = {
    "heart_failure": "Digital hjemmeoppfølging ved hjertesvikt",
    "copd": "Digital hjemmeoppfølging ved KOLS",
    "diabetes": "Digital hjemmeoppfølging ved diabetes",
    "hypertension": "Hjemmeblodtrykksmåling",
}
