"""Result hierarchies: nested ResultItems and microbiology isolate/resistance links become hasMember, and the
top observation's meta.tag carries every code in its hierarchy."""

from __future__ import annotations

import base64

from provesvar_helpers import (
    DYRKNING_14,
    HISTOLOGI_14_A,
    RADIOLOGI_14,
    RECEIVED,
    by_url,
    edit,
    first,
    resources,
    the_report,
)

from kjerne.services.provesvar.svarrapport_map import map_svarrapport

NLK = "urn:oid:2.16.578.1.12.4.1.1.7280"
SIR = "urn:oid:2.16.578.1.12.4.1.1.8271"


def _top_observations(bundle: dict) -> list[dict]:
    urls = by_url(bundle)
    return [urls[r["reference"]] for r in the_report(bundle)["result"]]


def test_isolates_hold_their_resistance_results() -> None:
    result = map_svarrapport(DYRKNING_14.read_bytes(), received_at=RECEIVED)
    assert result.ok, result.errors
    urls = by_url(result.bundle)
    tops = _top_observations(result.bundle)
    assert [t["valueCodeableConcept"]["text"] for t in tops] == ["Escherichia coli", "Klebsiella pneumoniae"]
    e_coli, klebsiella = tops
    members = [urls[m["reference"]] for m in e_coli["hasMember"]]
    # the nested quantity item plus five susceptibility results referring to IdResultItem 1
    assert members[0]["code"]["text"] == "Mengde"
    susceptibility = {
        m["code"]["coding"][0]["code"]: m["valueCodeableConcept"]["coding"][0]["code"] for m in members[1:]
    }
    assert susceptibility == {"NPU54371": "R", "NPU54389": "S", "NPU54403": "S", "NPU57715": "I", "NPU54393": "R"}
    assert len(klebsiella["hasMember"]) == 3
    # resistance results are not listed as separate report results
    assert len(the_report(result.bundle)["result"]) == 2


def test_top_observation_tags_aggregate_the_hierarchy() -> None:
    result = map_svarrapport(DYRKNING_14.read_bytes(), received_at=RECEIVED)
    e_coli = _top_observations(result.bundle)[0]
    tags = {(t["system"], t["code"]) for t in e_coli["meta"]["tag"]}
    assert (NLK, "NPU06061") in tags  # the culture itself
    assert {(NLK, c) for c in ("NPU54371", "NPU54389", "NPU54403", "NPU57715", "NPU54393")} <= tags
    assert {(SIR, "R"), (SIR, "S"), (SIR, "I")} <= tags
    # members carry no tags of their own: a tag search returns the top observation
    urls = by_url(result.bundle)
    assert all("meta" not in urls[m["reference"]] for m in e_coli["hasMember"])


def test_nested_pathology_items() -> None:
    result = map_svarrapport(HISTOLOGI_14_A.read_bytes(), received_at=RECEIVED)
    assert result.ok, result.errors
    tops = _top_observations(result.bundle)
    assert len(tops) == 3
    assert [t["status"] for t in tops] == ["final", "final", "preliminary"]  # N+4, H+3, H+2
    urls = by_url(result.bundle)
    second = [urls[m["reference"]] for m in tops[1]["hasMember"]]
    norpat = {c["code"] for m in second for c in m.get("valueCodeableConcept", {}).get("coding", [])}
    assert {"T01000", "M38000", "M40000", "M41000", "M47190"} <= norpat
    tag_codes = {t["code"] for t in tops[1]["meta"]["tag"]}
    assert {"A", "T01000", "M47190"} <= tag_codes
    assert the_report(result.bundle)["status"] == "appended"


def test_radiology_group_and_presented_form() -> None:
    result = map_svarrapport(RADIOLOGI_14.read_bytes(), received_at=RECEIVED)
    assert result.ok, result.errors
    (top,) = _top_observations(result.bundle)
    assert top["code"]["coding"][0]["code"] == "GR"
    assert "Svært forstørret lever" in top["valueCodeableConcept"]["text"]
    urls = by_url(result.bundle)
    members = [urls[m["reference"]]["code"]["coding"][0]["code"] for m in top["hasMember"]]
    assert members == ["SJJ0AK", "SJM0AK"]
    assert {t["code"] for t in top["meta"]["tag"]} == {"SJJ0AK", "SJM0AK"}
    # the group has no time of its own; its effective comes from its members' InvDate
    assert top["effectiveDateTime"] == "2017-09-27T09:30:00+02:00"
    form = the_report(result.bundle)["presentedForm"][0]
    assert form["contentType"] == "text/html"
    html = base64.b64decode(form["data"]).decode()
    assert "Svært forstørret lever" in html and "UL Lever" in html
    assert "15076500565" not in html


def test_empty_link_is_refused() -> None:
    xml = edit(
        DYRKNING_14,
        lambda root, ns: setattr(
            first(root, ns, "s:ServReport/s:Patient/s:ResultItem[3]/s:RefIdResultItem"), "text", ""
        ),
    )
    result = map_svarrapport(xml, received_at=RECEIVED)
    assert not result.ok
    assert result.errors == [
        "Patient/ResultItem[3]/RefIdResultItem: empty reference: the result cannot be linked to the finding it "
        "belongs to"
    ]


def test_link_to_unknown_isolate_is_refused() -> None:
    xml = edit(
        DYRKNING_14,
        lambda root, ns: setattr(
            first(root, ns, "s:ServReport/s:Patient/s:ResultItem[3]/s:RefIdResultItem"), "text", "9"
        ),
    )
    result = map_svarrapport(xml, received_at=RECEIVED)
    assert not result.ok
    assert "IdResultItem '9'" in result.errors[0]


def test_cyclic_links_are_refused() -> None:
    def change(root, ns) -> None:
        # isolate 1 refers to a susceptibility result that refers back to isolate 1
        items = root.xpath("s:ServReport/s:Patient/s:ResultItem", namespaces=ns)
        target = items[2]
        rid = target.makeelement(f"{{{ns['s']}}}IdResultItem")
        rid.text = "R1"
        target.find(f"{{{ns['s']}}}RefIdResultItem").addprevious(rid)
        ref = items[0].makeelement(f"{{{ns['s']}}}RefIdResultItem")
        ref.text = "R1"
        items[0].find(f"{{{ns['s']}}}IdResultItem").addnext(ref)

    result = map_svarrapport(edit(DYRKNING_14, change), received_at=RECEIVED)
    assert not result.ok
    assert any("cycle" in e for e in result.errors)


def test_every_observation_points_back_to_its_report() -> None:
    result = map_svarrapport(DYRKNING_14.read_bytes(), received_at=RECEIVED)
    report_url = next(
        e["fullUrl"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    )
    for obs in resources(result.bundle, "Observation"):
        ext = [x for x in obs["extension"] if x["url"].endswith("nilar-diagnostic-report-ref")]
        assert ext == [
            {
                "url": "http://nhn.no/fhir/nilar/StructureDefinition/nilar-diagnostic-report-ref",
                "valueReference": {"reference": report_url},
            }
        ]
