"""The ResultItem tree of a report: nested items and RefIdResultItem links become `hasMember` hierarchies;
each item gets its code, a stable key, its specimen and its time."""

from __future__ import annotations

from typing import Any

from lxml import etree

from kjerne.services.provesvar import codes
from kjerne.services.provesvar.faults import where
from kjerne.services.provesvar.mapping import conditional
from kjerne.services.provesvar.svarrapport_context import Item
from kjerne.services.provesvar.svarrapport_fhir import KEY_SYSTEM, KEYS, tag
from kjerne.services.provesvar.svarrapport_observations import ObservationMixin
from kjerne.services.provesvar.tolerances import Moment

# TextResult headings (kodeverk 8243) whose text is a self-describing narrative.
NARRATIVE_HEADINGS = frozenset({"FU", "VU", "GR"})


class ResultMixin(ObservationMixin):
    def results(self, patient: etree._Element | None, performer_url: str | None) -> None:
        if patient is None:
            return
        tops = self.kids(patient, "ResultItem")
        self.collect(tops, parent=None, prefix="")
        by_id: dict[str, list[Item]] = {}
        for item in self.items:
            rid = self.text(item.el, "IdResultItem")
            if rid:
                by_id.setdefault(rid, []).append(item)
        for item in self.items:
            ref_el = self.child(item.el, "RefIdResultItem")
            if ref_el is None:
                continue
            ref = (ref_el.text or "").strip()
            w = where(ref_el)
            if not ref:
                self.error("X99", w, "empty reference: the result cannot be linked to the finding it belongs to")
                continue
            targets = by_id.get(ref, [])
            if not targets:
                self.error("X99", w, f"refers to IdResultItem '{ref}', which is not in the report")
            elif len(targets) > 1:
                self.error("X99", w, f"IdResultItem '{ref}' is used by {len(targets)} results; the link is ambiguous")
            elif targets[0] is item or self.is_ancestor(item, targets[0]):
                self.error("X99", w, f"reference to IdResultItem '{ref}' makes a cycle")
            else:
                targets[0].members.append(item)
                item.referenced = True
        self.check_cycles()
        for item in self.items:
            self.identify(item)
        for item in self.items:
            self.place(item)
        for item in self.items:
            self.observation(item, performer_url)
        for item in self.items:
            if item.parent is None and not item.referenced:
                self.aggregate_tags(item)
        for item in self.items:
            self.m.add(item.resource, item.full_url, conditional("Observation", KEY_SYSTEM, item.key))

    def collect(self, els: list[etree._Element], parent: Item | None, prefix: str) -> None:
        for i, el in enumerate(els, start=1):
            item = Item(el=el, parent=parent, index_path=f"{prefix}{i}")
            self.items.append(item)
            if parent:
                parent.children.append(item)
            self.collect(self.kids(el, "ResultItem"), item, f"{item.index_path}.")

    def is_ancestor(self, item: Item, candidate: Item) -> bool:
        node = item.parent
        while node is not None:
            if node is candidate:
                return True
            node = node.parent
        return False

    def check_cycles(self) -> None:
        state: dict[int, int] = {}

        def visit(it: Item) -> bool:
            s = state.get(id(it))
            if s == 1:
                return False
            if s == 2:
                return True
            state[id(it)] = 1
            for member in it.children + it.members:
                if not visit(member):
                    return False
            state[id(it)] = 2
            return True

        for it in self.items:
            if not visit(it):
                self.error("X99", where(it.el), "result references form a cycle")
                for item in self.items:
                    item.members = []
                return

    def identify(self, item: Item) -> None:
        """Observation.code and the key used for the conditional update."""
        el = item.el
        codings: list[dict[str, str]] = []
        texts: list[str] = []
        investigations = self.kids(el, "Investigation")
        for inv in investigations:
            ids = self.kids(inv, "Id")
            for id_el in ids:
                if not (id_el.get("V") or id_el.get("OT") or id_el.get("DN")):
                    s = id_el.get("S")
                    self.error(
                        "X99",
                        where(id_el),
                        f"code system {s} given without a code or text: the analysis is not identified"
                        if s
                        else "empty analysis code",
                    )
                    continue
                c = self.coding(id_el, codes.INVESTIGATION_SYSTEMS)
                if c:
                    codings.append(c)
                elif id_el.get("OT") or id_el.get("DN"):
                    texts.append((id_el.get("OT") or id_el.get("DN")).strip())
        item.own_codes = bool(codings or texts)
        heading = self.child(self.child(el, "TextResult"), "Heading")
        code: dict[str, Any] = {}
        if codings:
            code["coding"] = codings
            code["text"] = codings[0].get("display") or (texts[0] if texts else codings[0]["code"])
            item.code_key = f"{codings[0]['system'].rsplit('.', 1)[-1]}:{codings[0]['code']}"
        elif texts:
            code["text"] = texts[0]
            item.code_key = f"text:{texts[0]}"
        elif heading is not None and heading.get("V"):
            hv = heading.get("V").strip()
            code["coding"] = [
                {
                    "system": codes.kodeverk_system("8243"),
                    "code": hv,
                    "display": heading.get("DN") or codes.TEXT_HEADING_8243.get(hv, hv),
                }
            ]
            code["text"] = code["coding"][0]["display"]
            item.code_key = f"heading:{hv}"
        else:
            parent_text = item.parent.code.get("text") if item.parent and item.parent.code else None
            code["text"] = f"{parent_text} – delresultat" if parent_text else "Delresultat"
        item.code = code
        item.has_value = any(
            self.child(el, name) is not None for name in ("NumResult", "TextResult", "Interval", "DateResult")
        )
        # a value that belongs to no identified analysis (narrative findings and assessments describe
        # themselves and need no analysis code)
        narrative = heading is not None and (heading.get("V") or "").strip() in NARRATIVE_HEADINGS
        if item.has_value and not item.own_codes and not narrative and not self.context_codes(item):
            self.error("X99", where(el), "the analysis is not identified (no Investigation for this result)")
        # stable key: parent's key + code and occurrence among siblings with the same code
        siblings = item.parent.children if item.parent else [i for i in self.items if i.parent is None]
        same = [s for s in siblings if s.code_key == item.code_key]
        segment = f"{item.code_key}#{same.index(item) + 1 if item in same else 1}"
        base = item.parent.key if item.parent else (self.report_key or "")
        item.key = KEYS.uuid("Observation", base, segment)
        item.full_url = KEYS.full_url("Observation", item.key)

    def context_codes(self, item: Item) -> bool:
        node = item.parent
        while node is not None:
            if self.kids(node.el, "Investigation"):
                return True
            node = node.parent
        return any(
            it.el is not item.el and self.kids(it.el, "Investigation")
            for it in self.items
            if self.is_ancestor(it, item)
        )

    def place(self, item: Item) -> None:
        """Specimen and own time (sampling time, else investigation time) of a result."""
        item.specimen_url, collected = self.item_specimen(item)
        inv_date = self.moment(item.el, "InvDate")
        item.own_moment = collected or inv_date

    def item_specimen(self, item: Item) -> tuple[str | None, Moment | None]:
        refs = [(r.text or "").strip() for r in self.kids(item.el, "RefAnalysedSubject") if (r.text or "").strip()]
        if refs:
            if len(refs) > 1:
                self.warning(
                    "X99", where(item.el, "RefAnalysedSubject"), "several specimens referenced; the first is used"
                )
            found = self.specimens.get(refs[0])
            if found is None:
                self.error(
                    "X99",
                    where(item.el, "RefAnalysedSubject"),
                    f"refers to specimen '{refs[0]}', which is not in the report",
                )
                return None, None
            return found[0], found[1]
        if item.parent is not None and item.parent.specimen_url:
            parent_spec = item.parent.specimen_url
            return parent_spec, next((s[1] for s in self.specimens.values() if s[0] == parent_spec), None)
        if len(self.specimens) == 1:
            url, collected, _ = next(iter(self.specimens.values()))
            return url, collected
        return None, None

    def aggregate_tags(self, top: Item) -> None:
        tags: dict[tuple[str, str], dict[str, str]] = {}
        seen: set[int] = set()

        def walk(it: Item) -> None:
            if id(it) in seen:
                return
            seen.add(id(it))
            res = it.resource
            for coding in res.get("code", {}).get("coding", []):
                if coding["system"] != codes.kodeverk_system("8243"):
                    tags.setdefault((coding["system"], coding["code"]), tag(coding))
            for coding in res.get("valueCodeableConcept", {}).get("coding", []):
                tags.setdefault((coding["system"], coding["code"]), tag(coding))
            for member in it.children + it.members:
                walk(member)

        walk(top)
        if tags:
            top.resource["meta"] = {"tag": list(tags.values())}
