"""Damaged messages are mapped or refused with named faults; the mapper never fails on them."""

from __future__ import annotations

import random
import zlib

import pytest
from lxml import etree
from provesvar_helpers import RECEIVED, example_files, references

from kjerne.services.provesvar.apprec import apprec
from kjerne.services.provesvar.svarrapport_map import INTERNAL_ERROR, map_svarrapport
from kjerne.services.provesvar.svarrapport_schema import apprec_validator

VALUES = ["", " ", "0", "-1", "x", "1,5", "2017-02-30", "99999999999", "ÆØÅ", "N", "M", "C", "1e309", "<"]


def _mutations(data: bytes, seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        root = etree.fromstring(data)
        elements = [e for e in root.iter() if isinstance(e.tag, str) and e is not root]
        for _ in range(rng.randint(1, 3)):
            el = rng.choice(elements)
            action = rng.random()
            if action < 0.35 and el.getparent() is not None:
                el.getparent().remove(el)
                elements = [e for e in root.iter() if isinstance(e.tag, str) and e is not root]
            elif action < 0.7 and el.attrib:
                el.set(rng.choice(list(el.attrib)), rng.choice(VALUES))
            else:
                el.text = rng.choice(VALUES)
        out.append(etree.tostring(root))
    return out


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_damaged_messages(path) -> None:
    for i, data in enumerate(_mutations(path.read_bytes(), seed=zlib.crc32(path.name.encode()), count=15)):
        result = map_svarrapport(data, received_at=RECEIVED)
        assert not any(INTERNAL_ERROR in e for e in result.errors), (i, result.errors)
        if result.ok:
            urls = {e["fullUrl"] for e in result.bundle["entry"]}
            assert set(references(result.bundle)) <= urls
        else:
            assert result.errors and all(": " in e for e in result.errors)
        assert apprec_validator().validate(etree.fromstring(apprec(result, data)))
