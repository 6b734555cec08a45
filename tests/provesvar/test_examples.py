"""Every official Svarrapport example (v1.3 and v1.4) maps to a consistent transaction Bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from provesvar_helpers import RECEIVED, example_files, references, resources, the_report

from kjerne.fhir.identifiers import PERSON_SYSTEMS
from kjerne.services.provesvar.apprec import apprec
from kjerne.services.provesvar.svarrapport_map import KEY_SYSTEM, map_svarrapport
from kjerne.services.provesvar.svarrapport_schema import apprec_validator

FILES = example_files()


def test_all_examples_are_found() -> None:
    assert len(FILES) == 41


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_maps(path: Path) -> None:
    xml = path.read_bytes()
    result = map_svarrapport(xml, received_at=RECEIVED)
    assert result.ok, result.errors
    assert result.version == ("1.3" if "v1-3" in path.name else "1.4")
    assert all(not w.startswith("Message") for w in result.warnings)
    bundle = result.bundle
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"

    # every reference inside the bundle resolves to an entry; every entry is a conditional update
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls))
    assert all(u.startswith("urn:uuid:") for u in urls)
    assert set(references(bundle)) <= set(urls)
    for entry in bundle["entry"]:
        assert entry["request"]["method"] == "PUT"
        assert entry["request"]["url"].startswith(entry["resource"]["resourceType"] + "?identifier=")
        assert "id" not in entry["resource"]

    report = the_report(bundle)
    assert report["issued"] == result.issued
    assert report["subject"]["type"] == "Patient"
    assert report["subject"]["identifier"]["system"] in PERSON_SYSTEMS
    assert "reference" not in report["subject"]
    tags = {t["system"].rsplit(".", 1)[-1]: t["code"] for t in report["meta"]["tag"]}
    assert tags["7309"] == result.service_type
    assert report["identifier"][0]["use"] == "official"
    assert report["identifier"][0]["value"] in result.report_ids

    observations = resources(bundle, "Observation")
    if result.service_type == "C":
        assert report["status"] == "cancelled"
        assert all(o["status"] == "cancelled" for o in observations)
    else:
        assert observations, "a report that is not a cancellation has results"
        assert report.get("result")
        assert report["effectiveDateTime"]
    for obs in observations:
        assert obs["subject"] == report["subject"]
        assert obs["code"].get("coding") or obs["code"].get("text")
        assert any(i["system"] == KEY_SYSTEM for i in obs["identifier"])
        assert obs["extension"][0]["valueReference"]["reference"] == next(
            e["fullUrl"] for e in bundle["entry"] if e["resource"] is report
        )

    receipt = etree.fromstring(apprec(result, xml))
    assert apprec_validator().validate(receipt)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_maps_the_same_twice(path: Path) -> None:
    xml = path.read_bytes()
    assert map_svarrapport(xml, received_at=RECEIVED).bundle == map_svarrapport(xml, received_at=RECEIVED).bundle


def test_v13_and_v14_examples_give_the_same_results() -> None:
    """The same biochemistry report in both versions maps to the same observations."""
    folder = FILES[0].parents[1]
    b13 = map_svarrapport((folder / "Svarrapport-v-1-3" / "Svar_biokjemi_v1-3_Ny.xml").read_bytes()).bundle
    b14 = map_svarrapport((folder / "Svarrapport-v-1-4" / "Svar_biokjemi_v1-4_Ny.xml").read_bytes()).bundle

    def summary(bundle: dict) -> list[tuple]:
        return sorted(
            (o["code"]["coding"][0]["code"], o["valueQuantity"]["value"], o["valueQuantity"].get("code"))
            for o in resources(bundle, "Observation")
        )

    assert summary(b13) == summary(b14)
