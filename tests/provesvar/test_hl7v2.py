"""HL7 v2 ORU^R01 -> FHIR transaction Bundle, and the ACK/NAK (kjerne.services.provesvar.hl7v2)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import hl7
import pytest

from kjerne.fhir.identifiers import OID_DNR, OID_FNR, OID_HPR
from kjerne.services.provesvar.hl7v2 import KEY_SYSTEM, LOCAL_CODES, ack, map_oru, read_ts
from kjerne.services.provesvar.svarrapport_map import MappingResult

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hl7v2"
PEER = DATA / "microsoft-fhir-converter"
EXPECTED = PEER / "expected-fhir"
GLUCOSE = DATA / "python-hl7" / "GHH-LAB-ORU_R01-glucose.hl7"
RECEIVED = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _segments(raw: bytes) -> list[str]:
    text = raw.decode("utf-8-sig")
    return [line for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if line.strip()]


def _message_type(path: Path) -> str:
    return _segments(path.read_bytes())[0].split("|")[8]


ORU_FILES = sorted([p for p in PEER.glob("*.hl7") if _message_type(p).startswith("ORU")] + [GLUCOSE])
OUL_FILES = sorted(p for p in PEER.glob("*.hl7") if _message_type(p).startswith("OUL"))
WITH_PEER_OUTPUT = sorted(p for p in ORU_FILES if (EXPECTED / f"{p.stem}-expected.json").exists())

SEPARATORS = {"cr": "\r", "lf": "\n", "crlf": "\r\n"}


def variant(raw: bytes, name: str) -> bytes:
    """The message with CR, LF or CRLF segment separators, with ("bom-...") or without a UTF-8 byte order mark."""
    bom = name.startswith("bom-")
    sep = SEPARATORS[name.removeprefix("bom-")]
    body = sep.join(_segments(raw)) + sep
    return (b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8")


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            out += [value] if key == "reference" and isinstance(value, str) else references(value)
        return out
    if isinstance(node, list):
        return [r for item in node for r in references(item)]
    return []


def mapped(raw: bytes | str) -> MappingResult:
    result = map_oru(raw, received_at=RECEIVED)
    assert result.ok, result.errors
    assert result.bundle is not None
    return result


def bundle_of(raw: bytes | str) -> dict[str, Any]:
    return entries(mapped(raw))


def entries(result: MappingResult) -> dict[str, Any]:
    assert result.bundle is not None
    return result.bundle


def fhir_time(raw: str) -> str:
    moment = read_ts(raw)
    assert moment is not None
    return moment.fhir


# A Norwegian message that uses most of what the mapper reads.
NORWEGIAN = [
    "MSH|^~\\&|LIS|OUS-MIKRO|KJERNE|NHN|20240105101500+0100||ORU^R01^ORU_R01|MSG0001|P|2.5.1",
    "PID|1||13116900216^^^^FNR||Nordmann^Kari^^^^^L||19691113|F",
    "ORC|RE|REQ-1^EPJ|LAB-1^LIS",
    "OBR|1|REQ-1^EPJ|LAB-1^LIS|HB^Hematologi^L|||20240105080000+0100|||||||||"
    "9144889^Lege^Lise^^^^^^^^^^HPR||||||20240105100000+0100|||F",
    "NTE|1||Prøven var lett hemolysert",
    "OBX|1|NM|NPU02319^B-Hemoglobin^NPU||13.4|g/dL|11.7-15.3|N|||F|||20240105080000+0100",
    "OBX|2|SN|NPU19748^P-CRP^NPU||<^5|mg/L|<5||||F",
    "OBX|3|SN|NPU01685^Pt-Titer^NPU||^1^:^128||||||F",
    "OBX|4|SN|NPU03568^B-Trombocytter^NPU||^150^-^450|10*9/L|||||F",
    "OBX|5|ST|X1^Tolkning^L||Positiv||||||F",
    "NTE|1||Kontroll om 3 mnd",
    "OBX|6|TX|X2^Beskrivelse^L||Linje en~Linje to||||||F",
    "OBX|7|FT|X3^Merknad^L||Første\\.br\\andre \\T\\ tredje||||||F",
    "OBX|8|CWE|X4^Funn^L||260373001^Detected^SCT|||A|||F",
    "OBX|9|DT|X5^Dato^L||20240104||||||F",
    "OBX|10|NM|NPU02593^B-Leukocytter^NPU||12.1|10E9/l|3.5-10.0|H|||C|||20240105080000+0100",
    "OBX|11|ED|PDF^Rapport^L||^AP^PDF^Base64^JVBERi0xLjQK||||||F",
    "SPM|1|SPEC-1&LIS||BLD^Blood^HL70487|||||||P||||||20240105080000+0100|20240105090000+0100",
]


def message(lines: list[str], sep: str = "\r") -> bytes:
    return (sep.join(lines) + sep).encode("utf-8")


def replace(lines: list[str], prefix: str, new: str | None) -> list[str]:
    """The lines with the first one starting with `prefix` replaced (or removed when `new` is None)."""
    out, done = [], False
    for line in lines:
        if not done and line.startswith(prefix):
            done = True
            if new is not None:
                out.append(new)
            continue
        out.append(line)
    assert done, prefix
    return out


def set_field(line: str, n: int, value: str) -> str:
    fields = line.split("|")
    index = n if not line.startswith("MSH") else n - 1
    while len(fields) <= index:
        fields.append("")
    fields[index] = value
    return "|".join(fields)


# --------------------------------------------------------------------------------------------------
# Every ORU test file maps, whatever its segment separators


@pytest.mark.parametrize("name", ["cr", "lf", "crlf", "bom-cr", "bom-lf", "bom-crlf"])
@pytest.mark.parametrize("path", ORU_FILES, ids=lambda p: p.name)
def test_every_oru_file_maps_with_any_separator(path: Path, name: str) -> None:
    reference = mapped(path.read_bytes())
    result = mapped(variant(path.read_bytes(), name))
    assert result.bundle == entries(reference)
    assert result.msg_id == reference.msg_id
    bundle = entries(result)
    assert bundle["type"] == "transaction"
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls))
    assert all(u.startswith("urn:uuid:") for u in urls)
    # every reference inside the Bundle points at an entry; logical references carry an identifier
    for ref in references(bundle):
        assert ref in urls, ref
    for e in bundle["entry"]:
        assert e["request"]["method"] == "PUT"
        assert "?identifier=" in e["request"]["url"]
    assert resources(bundle, "DiagnosticReport")
    assert resources(bundle, "Observation")


@pytest.mark.parametrize("path", ORU_FILES, ids=lambda p: p.name)
def test_text_input_and_bytes_input_agree(path: Path) -> None:
    assert mapped(path.read_bytes().decode("utf-8")).bundle == bundle_of(path.read_bytes())


@pytest.mark.parametrize("path", ORU_FILES, ids=lambda p: p.name)
def test_same_message_twice_gives_the_same_bundle(path: Path) -> None:
    first = map_oru(path.read_bytes(), received_at=RECEIVED)
    second = map_oru(path.read_bytes(), received_at=RECEIVED + dt.timedelta(days=400))
    assert first.bundle == entries(second)
    assert json.dumps(entries(first), sort_keys=True) == json.dumps(entries(second), sort_keys=True)


def test_a_later_version_updates_the_same_resources() -> None:
    """LAB-ORU-1 (partly preliminary) and LAB-ORU-2 (final) report the same two orders."""
    first, second = mapped((PEER / "LAB-ORU-1.hl7").read_bytes()), mapped((PEER / "LAB-ORU-2.hl7").read_bytes())

    def requests(result: MappingResult, resource_type: str) -> set[str]:
        return {e["request"]["url"] for e in entries(result)["entry"] if e["resource"]["resourceType"] == resource_type}

    for resource_type in ("Patient", "DiagnosticReport", "ServiceRequest", "Specimen", "Observation"):
        assert requests(first, resource_type) == requests(second, resource_type), resource_type
    statuses = {r["code"]["coding"][0]["code"]: r["status"] for r in resources(entries(second), "Observation")}
    assert set(statuses.values()) == {"final"}


# --------------------------------------------------------------------------------------------------
# Comparison with the peer converter's output


def _peer(path: Path) -> dict[str, Any]:
    return json.loads((EXPECTED / f"{path.stem}-expected.json").read_text())


def _instant(value: str) -> Any:
    if "T" not in value:
        return value
    return dt.datetime.fromisoformat(value)


# Deliberate differences (docs/hl7v2-mapping.md): OBX-11 I ("results pending") is `registered` here where the
# peer writes `unknown`; an empty OBR-25 is derived from the results' statuses where the peer writes `unknown`.
STATUS_DIFFERENCES = {("unknown", "registered")}
REPORT_STATUS_DIFFERENCES = {
    "LAB-ORU-1": {"26464-8": ("unknown", "preliminary")},
    "LAB-ORU-2": {"26464-8": ("unknown", "final"), "24317-0": ("unknown", "final")},
}


@pytest.mark.parametrize("path", WITH_PEER_OUTPUT, ids=lambda p: p.name)
def test_results_agree_with_the_peer_converter(path: Path) -> None:
    peer = _peer(path)
    mine = bundle_of(path.read_bytes())
    peer_obs, my_obs = resources(peer, "Observation"), resources(mine, "Observation")
    assert len(my_obs) == len(peer_obs)
    for theirs, ours in zip(peer_obs, my_obs, strict=True):
        t_code, o_code = theirs["code"]["coding"][0], ours["code"]["coding"][0]
        assert o_code["code"] == t_code["code"]
        if t_code.get("system") in ("http://loinc.org", "http://snomed.info/sct"):
            assert o_code["system"] == t_code["system"]
        else:  # a code system the message does not name by a known code: local to the producer here
            assert o_code["system"].startswith(LOCAL_CODES)
        if theirs["status"] != ours["status"]:
            assert (theirs["status"], ours["status"]) in STATUS_DIFFERENCES
        if "valueQuantity" in theirs:
            tq, oq = theirs["valueQuantity"], ours["valueQuantity"]
            assert oq["value"] == tq["value"]
            assert oq["unit"] == tq["unit"]
            if "code" in tq:
                assert oq["code"] == tq["code"]
            assert oq["system"] == "http://unitsofmeasure.org"
        else:
            assert "valueQuantity" not in ours
        if "valueString" in theirs:
            assert ours["valueString"] == theirs["valueString"]
        if "valueCodeableConcept" in theirs:
            tc, oc = theirs["valueCodeableConcept"], ours["valueCodeableConcept"]
            assert [(c["system"], c["code"]) for c in oc["coding"]] == [(c["system"], c["code"]) for c in tc["coding"]]
            assert oc.get("text") == tc.get("text")
        if not any(k.startswith("value") for k in theirs):
            assert not any(k.startswith("value") for k in ours)
        assert [c["code"] for i in ours.get("interpretation", []) for c in i["coding"]] == [
            c["code"] for i in theirs.get("interpretation", []) for c in i["coding"]
        ]
        assert [r["text"] for r in ours.get("referenceRange", [])] == [
            r["text"] for r in theirs.get("referenceRange", [])
        ]
        if "effectiveDateTime" in theirs:
            assert _instant(ours["effectiveDateTime"]) == _instant(theirs["effectiveDateTime"])

    # the patient: same identifier value, name, birth date and sex
    (their_patient,) = resources(peer, "Patient")
    (my_patient,) = resources(mine, "Patient")
    assert my_patient["identifier"][0]["value"] == their_patient["identifier"][0]["value"]
    assert my_patient["name"][0]["family"] == their_patient["name"][0]["family"]
    assert my_patient["name"][0]["given"] == their_patient["name"][0]["given"]
    assert my_patient["birthDate"] == their_patient["birthDate"]
    assert my_patient["gender"] == their_patient["gender"]

    # the reports: one per OBR (the peer also makes reports of RP values, which are attachments here)
    their_reports = {r["code"]["coding"][0]["code"]: r for r in resources(peer, "DiagnosticReport")}
    my_reports = {r["code"]["coding"][0]["code"]: r for r in resources(mine, "DiagnosticReport")}
    assert set(my_reports) <= set(their_reports)
    differences = REPORT_STATUS_DIFFERENCES.get(path.stem, {})
    for code, report in my_reports.items():
        expected = differences.get(code, (their_reports[code]["status"], their_reports[code]["status"]))
        assert (their_reports[code]["status"], report["status"]) == expected
        theirs_ids = {i.get("value") for i in their_reports[code].get("identifier", []) if i.get("value")}
        assert {i["value"] for i in report["identifier"]} <= theirs_ids


def test_units_are_ucum() -> None:
    bundle = bundle_of((PEER / "LAB-ORU-2.hl7").read_bytes())
    quantities = [o["valueQuantity"] for o in resources(bundle, "Observation")]
    assert {(q["unit"], q["code"]) for q in quantities} == {
        ("%", "%"),
        ("g/l-1", "g/L-1"),  # as sent: UCUM reads it as g.L
        ("giga.l-1", "10*9/L"),
        ("tera.l-1", "10*12/L"),
    }


def test_patients_without_a_national_id_are_written_and_referenced_by_full_url() -> None:
    result = mapped((PEER / "LRI_2.0-NG_CBC_Typ_Message.hl7").read_bytes())
    entry = next(e for e in entries(result)["entry"] if e["resource"]["resourceType"] == "Patient")
    ident = entry["resource"]["identifier"][0]
    assert ident["system"] == "urn:kjerne:hl7v2:NIST%20Lab%20Facility:patient:NIST%20MPI"
    assert ident["type"]["coding"][0]["code"] == "MR"
    assert entry["request"]["url"] == (
        "Patient?identifier=urn:kjerne:hl7v2:NIST%2520Lab%2520Facility:patient:NIST%2520MPI|PATID1234"
    )
    for res in resources(entries(result), "Observation"):
        assert res["subject"] == {"reference": entry["fullUrl"]}
    assert any("no Norwegian national identity number" in w for w in result.warnings)


def test_an_assigning_authority_with_an_oid_is_the_identifier_system() -> None:
    bundle = bundle_of((PEER / "ORU-R01-01.hl7").read_bytes())
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.840.1.114222.4.3.3.5.1.2"
    (report,) = resources(bundle, "DiagnosticReport")
    assert report["identifier"][0] == {
        "use": "official",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "FILL"}]},
        "system": "urn:oid:2.16.840.1.114222.4.3.3.5.1.2",
        "value": "986",
    }


# --------------------------------------------------------------------------------------------------
# A Norwegian message


def test_norwegian_message() -> None:
    result = mapped(message(NORWEGIAN))
    bundle = entries(result)
    assert result.msg_id == "MSG0001" and result.version == "2.5.1" and result.message_type == "ORU^R01"
    assert result.report_ids == ["LAB-1"]
    assert resources(bundle, "Patient") == []  # national ids are resolved by the store
    subject = {"type": "Patient", "identifier": {"system": OID_FNR, "value": "13116900216"}}
    (report,) = resources(bundle, "DiagnosticReport")
    assert report["subject"] == subject
    assert report["status"] == "final"
    assert report["issued"] == "2024-01-05T10:00:00+01:00"
    assert report["effectiveDateTime"] == "2024-01-05T08:00:00+01:00"
    assert report["performer"] == [{"type": "Organization", "display": "OUS-MIKRO"}]
    assert report["extension"][0]["valueAnnotation"] == {"text": "Prøven var lett hemolysert"}
    assert report["presentedForm"] == [
        {"contentType": "application/pdf", "data": base64.b64encode(b"%PDF-1.4\n").decode(), "title": "Rapport"}
    ]
    dr_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert dr_entry["request"]["url"] == "DiagnosticReport?identifier=urn:kjerne:hl7v2:OUS-MIKRO:filler-order:LIS|LAB-1"

    (request,) = resources(bundle, "ServiceRequest")
    roles = {
        e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "PractitionerRole"
    }
    requester = roles[request["requester"]["reference"]]
    assert requester["practitioner"]["identifier"] == {"system": OID_HPR, "value": "9144889"}
    assert requester["practitioner"]["display"] == "Lise Lege"

    (specimen,) = resources(bundle, "Specimen")
    assert specimen["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0487",
        "code": "BLD",
        "display": "Blood",
    }
    assert specimen["collection"]["collectedDateTime"] == "2024-01-05T08:00:00+01:00"
    assert specimen["receivedTime"] == "2024-01-05T09:00:00+01:00"

    obs = {o["code"]["coding"][0]["code"]: o for o in resources(bundle, "Observation")}
    assert len(obs) == 10  # the ED value is an attachment, not a result
    hb = obs["NPU02319"]
    assert hb["code"]["coding"][0]["system"] == "urn:oid:1.2.208.176.2.1"
    assert hb["valueQuantity"] == {"value": 13.4, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}
    assert hb["referenceRange"][0]["low"]["value"] == 11.7 and hb["referenceRange"][0]["high"]["value"] == 15.3
    assert hb["interpretation"][0]["coding"][0] == {"system": V3, "code": "N", "display": "Normal"}
    assert hb["specimen"] == {"reference": next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is specimen)}
    assert hb["subject"] == subject
    assert obs["NPU19748"]["valueQuantity"] == {
        "value": 5,
        "comparator": "<",
        "unit": "mg/L",
        "system": "http://unitsofmeasure.org",
        "code": "mg/L",
    }
    assert obs["NPU19748"]["referenceRange"] == [
        {"text": "<5", "high": {"value": 5, "unit": "mg/L", "system": "http://unitsofmeasure.org", "code": "mg/L"}}
    ]
    assert obs["NPU01685"]["valueRatio"] == {"numerator": {"value": 1}, "denominator": {"value": 128}}
    assert obs["NPU03568"]["valueRange"]["low"]["value"] == 150
    assert obs["NPU03568"]["valueRange"]["high"]["code"] == "10*9/L"
    assert obs["X1"]["valueString"] == "Positiv"
    assert obs["X1"]["note"] == [{"text": "Kontroll om 3 mnd"}]
    assert obs["X1"]["code"]["coding"][0]["system"] == f"{LOCAL_CODES}:OUS-MIKRO"
    assert obs["X2"]["valueString"] == "Linje en\nLinje to"
    assert obs["X3"]["valueString"] == "Første\nandre & tredje"
    assert obs["X4"]["valueCodeableConcept"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "260373001", "display": "Detected"}
    ]
    assert obs["X4"]["interpretation"][0]["coding"][0]["code"] == "A"
    assert obs["X5"]["valueDateTime"] == "2024-01-04"
    leuko = obs["NPU02593"]
    assert leuko["status"] == "corrected"
    assert leuko["valueQuantity"]["code"] == "10*9/L" and leuko["valueQuantity"]["unit"] == "10E9/l"
    assert leuko["interpretation"][0]["coding"][0] == {"system": V3, "code": "H", "display": "High"}
    for o in obs.values():
        assert o["basedOn"] == [{"reference": next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is request)}]
        assert o["identifier"][-1]["system"] == KEY_SYSTEM
    assert [r["reference"] for r in report["result"]] == [
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    assert result.warnings == []


def test_a_d_number_typed_as_fnr_is_referenced_as_a_d_number() -> None:
    lines = replace(NORWEGIAN, "PID", "PID|1||53116910000^^^^FNR||Nordmann^Kari||19691113|F")
    result = mapped(message(lines))
    (report,) = resources(entries(result), "DiagnosticReport")
    assert report["subject"]["identifier"] == {"system": OID_DNR, "value": "53116910000"}
    assert any("D-number" in w for w in result.warnings)


def test_national_id_typed_nnnor() -> None:
    lines = replace(NORWEGIAN, "PID", "PID|1||LOCAL-7^^^OUS^MR~13116900216^^^^NNNOR||Nordmann^Kari||19691113|F")
    result = mapped(message(lines))
    assert resources(entries(result), "Patient") == []
    (report,) = resources(entries(result), "DiagnosticReport")
    assert report["subject"]["identifier"] == {"system": OID_FNR, "value": "13116900216"}


def test_note_between_obr_and_obx_and_specimen_notes() -> None:
    lines = [*NORWEGIAN, "NTE|1||Prøven ankom sent"]
    bundle = bundle_of(message(lines))
    (specimen,) = resources(bundle, "Specimen")
    assert specimen["note"] == [{"text": "Prøven ankom sent"}]


def test_unsupported_value_type_is_stored_without_value_and_warned() -> None:
    result = mapped(GLUCOSE.read_bytes())
    second = resources(entries(result), "Observation")[1]
    assert second["dataAbsentReason"]["coding"][0]["code"] == "unsupported"
    assert "valueQuantity" not in second
    assert any("value type FN" in w for w in result.warnings)


def test_pending_result_keeps_no_value() -> None:
    lines = replace(NORWEGIAN, "OBX|1|", "OBX|1|NM|NPU02319^B-Hemoglobin^NPU||||||||I")
    bundle = bundle_of(message(lines))
    hb = next(o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "NPU02319")
    assert hb["status"] == "registered"
    assert "valueQuantity" not in hb
    assert hb["effectiveDateTime"] == "2024-01-05T08:00:00+01:00"  # from OBR-7


def test_hl7_times() -> None:
    assert fhir_time("20141006064500+0700") == "2014-10-06T06:45:00+07:00"
    assert fhir_time("201203141259-0215") == "2012-03-14T12:59:00-02:15"
    assert fhir_time("20240105101500.1234+0100") == "2024-01-05T10:15:00.1234+01:00"
    assert fhir_time("20240701120000") == "2024-07-01T12:00:00+02:00"  # no offset: Norwegian time
    assert fhir_time("19241010") == "1924-10-10"
    assert fhir_time("202401") == "2024-01"
    assert read_ts("") is None


# --------------------------------------------------------------------------------------------------
# Faults: the message is refused and nothing is mapped


def refused(raw: bytes | str) -> MappingResult:
    result = map_oru(raw, received_at=RECEIVED)
    assert not result.ok
    assert result.bundle is None
    assert result.errors and len(result.errors) == len(result.error_faults)
    return result


@pytest.mark.parametrize(
    "raw",
    [b"", b"hello", b"<?xml version='1.0'?><Message/>", b"PID|1||123", b"\xef\xbb\xbf   "],
    ids=["empty", "text", "xml", "no-msh", "bom-only"],
)
def test_not_a_v2_message(raw: bytes) -> None:
    result = refused(raw)
    assert result.error_faults[0].code == "200"
    assert "not an HL7 v2 message" in result.errors[0]


def test_a_batch_is_refused() -> None:
    raw = (PEER / "ORU-R01-RMGEAD.hl7").read_bytes()
    result = refused(raw + b"\r" + raw)
    assert "more than one message" in result.errors[0]


@pytest.mark.parametrize("path", OUL_FILES, ids=lambda p: p.name)
def test_oul_is_refused_naming_the_type(path: Path) -> None:
    result = refused(path.read_bytes())
    assert [f.code for f in result.error_faults] == ["200"]
    assert result.errors[0].startswith("MSH[1]-9: message type OUL^R2")


def test_other_event_and_version_are_refused() -> None:
    result = refused(message([set_field(NORWEGIAN[0], 9, "ORU^R30^ORU_R30"), *NORWEGIAN[1:]]))
    assert result.error_faults[0].code == "201"
    result = refused(message([set_field(NORWEGIAN[0], 12, "2.2"), *NORWEGIAN[1:]]))
    assert result.error_faults[0].code == "203"
    assert "version '2.2'" in result.errors[0]


@pytest.mark.parametrize(
    ("segment", "where"),
    [("PID", "PID: PID segment missing"), ("OBR", "OBR: OBR segment missing"), ("OBX", "OBX: OBX segment missing")],
)
def test_missing_segments(segment: str, where: str) -> None:
    lines = [line for line in NORWEGIAN if not line.startswith(segment)]
    if segment == "OBR":
        lines = [line for line in lines if not line.startswith("ORC")]
    result = refused(message(lines))
    assert any(e.startswith(where) for e in result.errors), result.errors
    assert all(f.code == "100" for f in result.error_faults if f.where == segment)


@pytest.mark.parametrize(
    ("pid3", "text"),
    [
        ("13116900217^^^^FNR", "check digits wrong in 13116900217"),
        ("13116900216^^^^DNR", "is typed DNR but is not a D-number"),
        ("1311690021^^^^FNR", "is not an 11-digit national identity number"),
        ("LOCAL-1^^^OUS^MR~13116900217^^^^NNNOR", "check digits wrong in 13116900217"),
    ],
)
def test_invalid_national_id(pid3: str, text: str) -> None:
    result = refused(message(replace(NORWEGIAN, "PID", f"PID|1||{pid3}||Nordmann^Kari||19691113|F")))
    assert result.errors == [f"PID[1]-3: {result.error_faults[0].text}"]
    assert text in result.errors[0]
    assert result.error_faults[0].code == "102"


@pytest.mark.parametrize(
    ("prefix", "field", "value", "where"),
    [
        ("OBX|1|", 14, "20990101080000+0100", "OBX[1]-14"),
        ("OBR|", 7, "20990101080000+0100", "OBR[1]-7"),
        ("OBR|", 22, "20991231", "OBR[1]-22"),
        ("SPM|", 17, "20990101080000+0100", "SPM[1]-17"),
    ],
)
def test_result_times_in_the_future(prefix: str, field: int, value: str, where: str) -> None:
    line = next(line for line in NORWEGIAN if line.startswith(prefix))
    result = refused(message(replace(NORWEGIAN, prefix, set_field(line, field, value))))
    assert any(e.startswith(where) and "is in the future" in e for e in result.errors), result.errors


def test_a_time_just_inside_the_clock_skew_is_accepted() -> None:
    soon = (RECEIVED + dt.timedelta(minutes=5)).strftime("%Y%m%d%H%M%S+0000")
    line = next(line for line in NORWEGIAN if line.startswith("OBX|1|"))
    assert map_oru(message(replace(NORWEGIAN, "OBX|1|", set_field(line, 14, soon))), received_at=RECEIVED).ok


@pytest.mark.parametrize("value", ["abc", "<5", "13.4.1", "1e3x", "13.4~14.0"])
def test_nm_value_that_is_not_a_number(value: str) -> None:
    line = next(line for line in NORWEGIAN if line.startswith("OBX|1|"))
    result = refused(message(replace(NORWEGIAN, "OBX|1|", set_field(line, 5, value))))
    assert result.error_faults[0].where == "OBX[1]-5"
    assert result.error_faults[0].code == "102"


def test_decimal_comma_is_read_with_a_warning() -> None:
    line = next(line for line in NORWEGIAN if line.startswith("OBX|1|"))
    result = mapped(message(replace(NORWEGIAN, "OBX|1|", set_field(line, 5, "13,4"))))
    hb = next(o for o in resources(entries(result), "Observation") if o["code"]["coding"][0]["code"] == "NPU02319")
    assert hb["valueQuantity"]["value"] == 13.4
    assert any("decimal comma" in w for w in result.warnings)


def test_unit_that_cannot_be_read() -> None:
    line = next(line for line in NORWEGIAN if line.startswith("OBX|1|"))
    result = refused(message(replace(NORWEGIAN, "OBX|1|", set_field(line, 6, "gram pr desiliter"))))
    assert result.error_faults[0].where == "OBX[1]-6"
    assert "not UCUM" in result.errors[0]


@pytest.mark.parametrize(
    ("prefix", "field", "value", "where", "code"),
    [
        ("OBX|1|", 11, "Q", "OBX[1]-11", "103"),
        ("OBR|", 25, "Q", "OBR[1]-25", "103"),
        ("OBX|1|", 3, "", "OBX[1]-3", "101"),
        ("OBR|", 4, "", "OBR[1]-4", "101"),
        ("OBX|2|", 5, "<>^5", "OBX[2]-5", "102"),
    ],
)
def test_other_content_faults(prefix: str, field: int, value: str, where: str, code: str) -> None:
    line = next(line for line in NORWEGIAN if line.startswith(prefix))
    result = refused(message(replace(NORWEGIAN, prefix, set_field(line, field, value))))
    assert (result.error_faults[0].where, result.error_faults[0].code) == (where, code), result.errors


def test_an_order_without_order_numbers_is_refused() -> None:
    lines = [line for line in NORWEGIAN if not line.startswith("ORC")]
    obr = next(line for line in lines if line.startswith("OBR"))
    result = refused(message(replace(lines, "OBR", set_field(set_field(obr, 2, ""), 3, ""))))
    assert result.error_faults[0].where == "OBR[1]-3"


def test_two_reports_with_the_same_filler_number_are_refused() -> None:
    obr_at = next(i for i, line in enumerate(NORWEGIAN) if line.startswith("OBR"))
    lines = [*NORWEGIAN, NORWEGIAN[obr_at], NORWEGIAN[obr_at + 2]]
    result = refused(message(lines))
    assert result.error_faults[0].code == "205"


# --------------------------------------------------------------------------------------------------
# ACK / NAK


def parse_ack(text: str) -> hl7.Message:
    assert "\n" not in text
    assert text.endswith("\r")
    return hl7.parse(text)


def test_ack_accepts() -> None:
    raw = message(NORWEGIAN)
    result = mapped(raw)
    text = ack(raw, result, now=RECEIVED)
    parsed = parse_ack(text)
    assert [str(s[0]) for s in parsed] == ["MSH", "MSA"]
    msh = parsed.segment("MSH")
    assert str(msh[3]) == "KJERNE" and str(msh[4]) == "NHN"  # receiver of the original is the sender
    assert str(msh[5]) == "LIS" and str(msh[6]) == "OUS-MIKRO"
    assert str(msh[7]) == "20250101130000+0100"
    assert str(msh[9]) == "ACK^R01^ACK"
    assert str(msh[11]) == "P" and str(msh[12]) == "2.5.1"
    msa = parsed.segment("MSA")
    assert (str(msa[1]), str(msa[2])) == ("AA", "MSG0001")
    assert ack(raw, result, now=RECEIVED) == text  # deterministic for a given time


def test_ack_carries_warnings_from_v25() -> None:
    raw = (PEER / "LRI_2.0-NG_CBC_Typ_Message.hl7").read_bytes()
    parsed = parse_ack(ack(raw, mapped(raw), now=RECEIVED))
    assert str(parsed.segment("MSA")[1]) == "AA"
    err = parsed.segment("ERR")
    assert str(err[4]) == "W"
    assert str(err[2]) == "PID^1^3"


def test_nak_for_content_faults_names_each_fault() -> None:
    lines = replace(NORWEGIAN, "PID", "PID|1||13116900217^^^^FNR||Nordmann^Kari||19691113|F")
    line = next(line for line in lines if line.startswith("OBX|1|"))
    raw = message(replace(lines, "OBX|1|", set_field(line, 5, "abc")))
    result = refused(raw)
    parsed = parse_ack(ack(raw, result, now=RECEIVED))
    assert str(parsed.segment("MSA")[1]) == "AE"
    assert str(parsed.segment("MSA")[2]) == "MSG0001"
    errors = [s for s in parsed.segments("ERR") if str(s[4]) == "E"]
    assert len(errors) == len(result.error_faults) == 2
    assert [str(e[2]) for e in errors] == ["PID^1^3", "OBX^1^5"]
    assert [str(e[3]) for e in errors] == ["102^Data type error^HL70357"] * 2
    assert "check digits wrong" in parsed.unescape(str(errors[0][8]))
    assert "'abc' is not a number" in parsed.unescape(str(errors[1][8]))


@pytest.mark.parametrize("path", OUL_FILES[:1], ids=lambda p: p.name)
def test_nak_rejects_an_unsupported_type(path: Path) -> None:
    raw = path.read_bytes()
    parsed = parse_ack(ack(raw, refused(raw), now=RECEIVED))
    msh, msa, err = parsed.segment("MSH"), parsed.segment("MSA"), parsed.segment("ERR")
    assert str(msh[9]) == "ACK^R22^ACK" and str(msh[12]) == "2.8"
    assert (str(msa[1]), str(msa[2])) == ("AR", "1932")
    assert str(err[3]) == "200^Unsupported message type^HL70357"
    assert "OUL^R22" in parsed.unescape(str(err[8]))


def test_nak_in_v24_uses_one_err_segment_and_msa_text() -> None:
    lines = (PEER / "ORU-R01-RMGEAD.hl7").read_text().replace("\n", "\r").split("\r")
    lines = [line for line in lines if line and not line.startswith("OBX")]
    raw = message(lines)
    result = refused(raw)
    parsed = parse_ack(ack(raw, result, now=RECEIVED))
    assert str(parsed.segment("MSH")[12]) == "2.4"
    msa = parsed.segment("MSA")
    assert (str(msa[1]), str(msa[2])) == ("AE", "CNTRL-3456")
    assert "OBX segment missing" in str(msa[3])
    (err,) = parsed.segments("ERR")
    assert str(err[1]).startswith("OBX^^^100&Segment sequence error&HL70357")


def test_ack_uses_the_message_delimiters() -> None:
    lines = [line.replace("|", "#").replace("^", "$") for line in NORWEGIAN]
    lines[0] = lines[0].replace("MSH#$~\\&#", "MSH#$~\\&#", 1)
    raw = message(lines)
    result = mapped(raw)
    assert result.bundle == bundle_of(message(NORWEGIAN))
    text = ack(raw, result, now=RECEIVED)
    assert text.startswith("MSH#$~\\&#KJERNE#NHN#LIS#OUS-MIKRO#")
    parsed = parse_ack(text)
    assert str(parsed.segment("MSH")[9]) == "ACK$R01$ACK"
    assert str(parsed.segment("MSA")[2]) == "MSG0001"


def test_ack_for_input_that_is_not_hl7() -> None:
    result = refused(b"not a message")
    parsed = parse_ack(ack(b"not a message", result, now=RECEIVED))
    assert str(parsed.segment("MSA")[1]) == "AR"
    assert str(parsed.segment("ERR")[3]).startswith("200^")


# --------------------------------------------------------------------------------------------------
# More structure


def test_patient_observations_before_the_first_order() -> None:
    lines = [NORWEGIAN[0], NORWEGIAN[1], "OBX|1|NM|8302-2^Body height^LN||172|cm|||||F|||20240105080000+0100"]
    bundle = bundle_of(message(lines + NORWEGIAN[2:]))
    height = next(o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "8302-2")
    assert "basedOn" not in height
    assert height["valueQuantity"]["code"] == "cm"
    (report,) = resources(bundle, "DiagnosticReport")
    urls = {e["fullUrl"] for e in bundle["entry"] if e["resource"] is height}
    assert not urls & {r["reference"] for r in report["result"]}


def test_one_specimen_number_in_two_orders_is_one_specimen() -> None:
    bundle = bundle_of((PEER / "LAB-ORU-1.hl7").read_bytes())
    (specimen,) = resources(bundle, "Specimen")
    url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is specimen)
    reports = resources(bundle, "DiagnosticReport")
    assert [r["specimen"] for r in reports] == [[{"reference": url}]] * 2
    assert specimen["collection"]["collectedDateTime"] == "2014-10-06T05:35:00+07:00"


def test_hex_escapes_and_unescaped_components_in_text() -> None:
    lines = replace(NORWEGIAN, "OBX|5|", "OBX|5|ST|X1^Tolkning^L||Sv\\XC3A6\\rt positiv ^ sterk||||||F")
    obs = resources(bundle_of(message(lines)), "Observation")
    assert next(o for o in obs if o["code"]["coding"][0]["code"] == "X1")["valueString"] == "Svært positiv ^ sterk"


# --------------------------------------------------------------------------------------------------
# The store takes the Bundles


def test_the_store_accepts_every_bundle(sqlite_template: Path, tmp_path: Path) -> None:
    import shutil

    from kjerne.access.context import UNRESTRICTED
    from kjerne.store.bundles import BundleProcessor
    from kjerne.store.db import make_engine
    from kjerne.store.repository import Repository

    shutil.copy(sqlite_template, tmp_path / "k.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        repo = Repository(engine, UNRESTRICTED)
        for raw in [p.read_bytes() for p in ORU_FILES] + [message(NORWEGIAN)]:
            bundle = bundle_of(raw)
            first = BundleProcessor(repo).transaction(json.loads(json.dumps(bundle)))
            again = BundleProcessor(repo).transaction(json.loads(json.dumps(bundle)))
            assert all(e["response"]["status"] == "200 OK" for e in again["entry"])
            assert len(first["entry"]) == len(bundle["entry"])
        # LAB-ORU-2 updated what LAB-ORU-1 wrote; the national id resolved to one Patient
        with engine.connect() as conn:
            from sqlalchemy import func, select

            from kjerne.store.schema import resource

            def count(resource_type: str) -> int:
                query = select(func.count()).select_from(resource).where(resource.c.res_type == resource_type)
                return conn.execute(query).scalar_one()

            assert count("DiagnosticReport") == 2 + 1 + 1 + 1 + 1  # LAB-ORU-1/2, LRI, ORU-R01-01, GHH/RMGEAD, NO
            assert count("Patient") == 5  # 4 local patients (GHH = RMGEAD) and one created for the FNR
    finally:
        engine.dispose()
