"""Code systems and code tables used when mapping a KITH Svarrapport to FHIR.

Volven kodeverk are written as `urn:oid:2.16.578.1.12.4.1.1.<n>` in FHIR codings. Tables here are facts
from the national code lists and from Norsk helsenett's NILAR mapping (DiagnosticReport and Observation
status tables); nothing in this module decides anything about a particular message.
"""

from __future__ import annotations

from dataclasses import dataclass

KODEVERK_OID_PREFIX = "2.16.578.1.12.4.1.1."


def kodeverk_system(number: str | int) -> str:
    return f"urn:oid:{KODEVERK_OID_PREFIX}{number}"


def kodeverk_number(oid: str | None) -> str | None:
    """'2.16.578.1.12.4.1.1.7280' (or with urn:oid:) -> '7280'; None for OIDs outside Volven's arc."""
    if not oid:
        return None
    oid = oid.strip().removeprefix("urn:oid:")
    if oid.startswith(KODEVERK_OID_PREFIX):
        rest = oid[len(KODEVERK_OID_PREFIX) :]
        if rest.isdigit():
            return rest
    return None


@dataclass(frozen=True, slots=True)
class Kodeverk:
    number: str
    name: str

    @property
    def system(self) -> str:
        return kodeverk_system(self.number)


def _table(*rows: tuple[str, str]) -> dict[str, Kodeverk]:
    return {n: Kodeverk(n, name) for n, name in rows}


# Code systems accepted in Investigation/Id (what was examined). A code from any other system is refused:
# the receiver cannot know what was analysed.
INVESTIGATION_SYSTEMS = _table(
    ("7280", "Norsk laboratoriekodeverk (NLK)"),
    ("7270", "Norsk klinisk prosedyrekodeverk, radiologi (NCRP)"),
    ("7010", "Norsk patologikodeverk (NORPAT)"),
    ("8212", "Uspesifisert laboratoriekodeverk"),
    ("8219", "Kodeverk for patologisk-anatomiske undersøkelser"),
    # Used by the directorate's own medical biochemistry acceptance messages for NPU/NOR codes that
    # later became part of NLK (7280).
    ("7230", "Laboratoriekodeverk (NPU/NOR-koder, forløper for NLK)"),
)

# Investigation/Spec (method / additional specification).
SPEC_SYSTEMS = _table(
    ("7270", "NCRP tilleggskode"),
    ("8350", "Analysespesifikasjon"),
    ("7280", "Norsk laboratoriekodeverk (NLK)"),
    ("8212", "Uspesifisert laboratoriekodeverk"),
)

# TextResult/TextCode (coded result values).
RESULT_VALUE_SYSTEMS = _table(
    ("8271", "Resistens (SIR)"),
    ("7010", "Norsk patologikodeverk (NORPAT)"),
    ("8340", "Tekstlige resultatverdier for mikrobiologiske svar"),
    ("7280", "Norsk laboratoriekodeverk (NLK)"),
    ("8212", "Uspesifisert laboratoriekodeverk"),
    ("7270", "NCRP"),
)

# AnalysedSubject/TypeCoded (specimen material).
SPECIMEN_TYPE_SYSTEMS = _table(
    ("8351", "Prøvemateriale"),
    ("8216", "Kodeverk for cytologisk materiale"),
    ("8212", "Uspesifisert laboratoriekodeverk"),
)

# ServReport/CodedComment.
REPORT_COMMENT_SYSTEMS = _table(
    ("8269", "Kommentar til svarrapport"),
    ("8272", "Anbefaling om ny undersøkelse"),
    ("8273", "Hastegrad"),
    ("8274", "Anbefaling om supplerende undersøkelser"),
    ("8275", "Cytologisk materiale tatt med"),
)

# Kodeverk 8202 Type laboratoriemelding (ServReport/MsgDescr) and the NILAR main expertise it belongs to.
MAIN_EXPERTISE_SYSTEM = "http://nhn.no/fhir/nilar/CodeSystem/main-expertise-cs"
MAIN_EXPERTISE = {
    "HLAB": "Laboratoriemedisin",
    "HPAT": "Patologi",
    "HRAD": "Radiologi og nukleærmedisin",
}
MSG_DESCR_8202: dict[str, tuple[str, str | None]] = {
    "LAB": ("Laboratoriemedisin", "HLAB"),
    "CLIN": ("Medisinsk biokjemi", "HLAB"),
    "FARM": ("Klinisk farmakologi", "HLAB"),
    "IMTR": ("Immunologi og transfusjonsmedisin", "HLAB"),
    "MBIO": ("Medisinsk mikrobiologi", "HLAB"),
    "MGEN": ("Medisinsk genetikk", "HLAB"),
    "PAT": ("Patologi", "HPAT"),
    "HIST": ("Histologi", "HPAT"),
    "CYTO": ("Cytologi", "HPAT"),
    "MPAT": ("Molekylærpatologi", "HPAT"),
    "OBD": ("Obduksjon", "HPAT"),
    "MORS": ("Mors", "HPAT"),
    "BLD": ("Bildediagnostikk", "HRAD"),
    "RAD": ("Radiologi", "HRAD"),
    "CT": ("Computertomografi", "HRAD"),
    "MA": ("Mammografi", "HRAD"),
    "MR": ("Magnettomografi", "HRAD"),
    "NUK": ("Nukleærmedisin", "HRAD"),
    "RTG": ("Røntgen", "HRAD"),
    "SCI": ("Scintigrafi", "HRAD"),
    "UL": ("Ultralyd", "HRAD"),
    "AN": ("Annet", None),
}

# Kodeverk 7309 (ServReport/ServType) and 7306 (ServReport/Status).
SERV_TYPE_7309 = {
    "N": "Ny",
    "M": "Endring",
    "C": "Kansellering",
    "H": "Historikk",
    "A": "Tillegg",
    "X": "Annet",
}
REPORT_STATUS_7306 = {
    "S": "Planlagt",
    "P": "Foreløpig rapport",
    "F": "Endelig rapport",
    "A": "Tillegg til rapport",
}

# DiagnosticReport.status from ServType (7309) x Status (7306), NILAR mapping.md.
_DR_ROWS = {
    #      N               M            C            H          A
    "S": ("registered", "amended", "cancelled", "unknown", "unknown"),
    "P": ("preliminary", "amended", "cancelled", "unknown", "unknown"),
    "F": ("final", "amended", "cancelled", "unknown", "unknown"),
    "A": ("unknown", "appended", "cancelled", "unknown", "unknown"),
}
_COLS = ("N", "M", "C", "H", "A")
DIAGNOSTIC_REPORT_STATUS: dict[tuple[str, str], str] = {
    (serv_type, status): row[i] for status, row in _DR_ROWS.items() for i, serv_type in enumerate(_COLS)
}


def diagnostic_report_status(serv_type: str, status: str) -> str | None:
    """None when either code is outside its code list (the caller refuses the message)."""
    if serv_type == "X" and status in REPORT_STATUS_7306:
        return "unknown"
    return DIAGNOSTIC_REPORT_STATUS.get((serv_type, status))


# Kodeverk 8245 (ResultItem/StatusInvestigation).
STATUS_INVESTIGATION_8245 = {
    "1": "Revidert",
    "2": "Foreløpig",
    "3": "Endelig",
    "4": "Tillegg",
    "5": "Henvisning registrert",
    "6": "Prosedyre registrert/planlagt",
    "7": "Tildelt time",
    "8": "Undersøkelse gjennomført",
    "9": "Diktert",
    "10": "Skrevet (usignert svar foreligger)",
    "11": "Signert",
    "12": "Korrigert (usignert tilleggsbeskrivelse foreligger)",
    "13": "Signert korrigert/tilleggsbeskrivelse foreligger",
    "14": "Undersøkelse slettet",
    "15": "I prosess",
}

# Observation.status from ResultItem ServType x StatusInvestigation, NILAR mapping.md. Key "" is a result
# item without StatusInvestigation.
_OBS_ROWS = {
    #       N              M             C            H              A
    "": ("final", "amended", "cancelled", "final", "final"),
    "1": ("unknown", "amended", "cancelled", "amended", "unknown"),
    "2": ("preliminary", "amended", "cancelled", "preliminary", "preliminary"),
    "3": ("final", "amended", "cancelled", "final", "final"),
    "4": ("final", "amended", "cancelled", "final", "final"),
    "5": ("registered", "unknown", "cancelled", "unknown", "registered"),
    "6": ("registered", "registered", "cancelled", "unknown", "registered"),
    "7": ("registered", "registered", "cancelled", "unknown", "registered"),
    "8": ("preliminary", "unknown", "cancelled", "unknown", "preliminary"),
    "9": ("preliminary", "unknown", "cancelled", "unknown", "preliminary"),
    "10": ("preliminary", "unknown", "cancelled", "unknown", "preliminary"),
    "11": ("final", "amended", "cancelled", "unknown", "final"),
    "12": ("unknown", "amended", "cancelled", "unknown", "preliminary"),
    "13": ("final", "amended", "cancelled", "unknown", "final"),
    "14": ("unknown", "unknown", "cancelled", "unknown", "unknown"),
    "15": ("registered", "registered", "cancelled", "final", "registered"),
}
OBSERVATION_STATUS: dict[tuple[str, str], str] = {
    (serv_type, status): row[i] for status, row in _OBS_ROWS.items() for i, serv_type in enumerate(_COLS)
}


def observation_status(serv_type: str, status_investigation: str) -> str | None:
    if serv_type == "X" and status_investigation in _OBS_ROWS:
        return "unknown"
    return OBSERVATION_STATUS.get((serv_type, status_investigation))


# Kodeverk 8244 (DevResultInd) and the matching HL7 v3 ObservationInterpretation code.
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DEVIATION_8244 = {
    "1": ("Over øvre referansegrense", "H", "High"),
    "2": ("Under nedre referansegrense", "L", "Low"),
    "3": ("Utenfor referansegrensene", "A", "Abnormal"),
}

# Kodeverk 8239 (NumResult/ArithmeticComp) -> Quantity.comparator. NE ("not equal") has no FHIR comparator.
COMPARATOR_8239 = {"LT": "<", "LE": "<=", "GT": ">", "GE": ">=", "ML": "<", "MG": ">"}

# Kodeverk 8243 (TextResult/Heading).
TEXT_HEADING_8243 = {
    "AN": "Analyse",
    "FU": "Funn og undersøkelsesresultater",
    "GR": "Gruppe",
    "LR": "Laboratorieresultat",
    "RSB": "Resistensbestemmelse",
    "SY": "Sykmelding",
    "UP": "Ubesvarte prøver",
    "VU": "Vurdering",
    "XX": "Uspesifisert",
}

# Patient identifier types (Patient/TypeOffId) accepted as national identifiers.
PATIENT_ID_TYPES = {
    "FNR": "urn:oid:2.16.578.1.12.4.1.4.1",
    "DNR": "urn:oid:2.16.578.1.12.4.1.4.2",
    "FHN": "urn:oid:2.16.578.1.12.4.1.4.3",
}
# Known but not national (cannot name a person across systems): refused with a specific message.
LOCAL_PATIENT_ID_TYPES = {
    "HNR": "H-nummer",
    "PNR": "Passnummer",
    "SEF": "Svensk personnummer",
    "DKF": "Dansk personnummer",
    "SSN": "Social security number",
    "FPN": "Forsikringspolisenummer",
    "UID": "Utenlandsk identifikasjon",
    "DUF": "DUF-nummer",
    "XXX": "Annet",
}

# Identifier types for organisations (Inst/Dept TypeId) and persons (HCPerson/HCProf TypeId, AdditionalId).
ORG_ID_TYPES = {
    "ENH": "urn:oid:2.16.578.1.12.4.1.4.101",
    "HER": "urn:oid:2.16.578.1.12.4.1.2",
    "RSH": "urn:oid:2.16.578.1.12.4.1.4.102",
}
LOCAL_ORG_ID_TYPES = {"LAV": "Lokal identifikator for avdelinger", "LOK": "Lokal identifikator"}
PERSON_ID_TYPES = {
    "HPR": "urn:oid:2.16.578.1.12.4.1.4.4",
    "HER": "urn:oid:2.16.578.1.12.4.1.2",
}
# A health professional's own national id number must never be exposed through the service.
PRIVATE_PERSON_ID_TYPES = {"FNR", "DNR", "HNR"}

# Kodeverk 9060 (HCProf/Type): health personnel category.
HP_CATEGORY_9060 = "9060"

# AppRec: kodeverk 8222 (status) and 8221 (error codes).
APPREC_STATUS_8222 = {"1": "OK", "2": "Avvist", "3": "OK, feil i delmelding"}
APPREC_ERROR_8221 = {
    "E10": "Ugyldig meldingsidentifikator",
    "E20": "Lege finnes ikke",
    "E21": "Mottaker finnes ikke",
    "E30": "Pasientens fødselsnummer mangler",
    "E31": "Pasientens fødselsnummer er feil",
    "E32": "Pasientens navn mangler",
    "E35": "Pasienten finnes ikke i mottakersystemet",
    "E36": "Pasientopplysninger er utilstrekkelige",
    "T01": "Ikke XML / ikke 'well formed' / uleselig",
    "T02": "XML validerer ikke",
    "T10": "Støtter ikke meldingsformatet",
    "T99": "Annen feil på format",
    "X99": "Annen feil",
}
