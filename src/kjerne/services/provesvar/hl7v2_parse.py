"""Reading one HL7 v2 message: encoding and byte order mark, segment separators and MLLP framing, the
delimiters in MSH-1/MSH-2, escape sequences, and the ORU^R01 segment groups the mapper walks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import hl7


class NotHL7v2(ValueError):
    """The input is not one HL7 v2 message."""


@dataclass
class Syntax:
    """The message's delimiters (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    encoding_characters: str = "^~\\&"

    def unescape(self, text: str) -> str:
        """Resolve escape sequences (HL7 v2 chapter 2): delimiters, hex data, formatting commands."""
        e = self.escape
        if not e or e not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch != e:
                out.append(ch)
                i += 1
                continue
            j = text.find(e, i + 1)
            if j < 0:
                out.append(text[i:])
                break
            out.append(self._sequence(text[i + 1 : j]))
            i = j + 1
        return "".join(out)

    def _sequence(self, seq: str) -> str:
        simple = {
            "F": self.field,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": self.escape,
            "P": "#",
            "H": "",
            "N": "",
        }
        if seq in simple:
            return simple[seq]
        if seq == ".br":
            return "\n"
        if seq.startswith(".sp"):
            n = seq[3:].strip().lstrip("+")
            return "\n" * (int(n) if n.isdigit() else 1)
        if seq[:3] in (".in", ".ti", ".sk", ".ce", ".fi", ".nf"):
            return ""
        if seq.startswith("X") and len(seq) > 1:
            try:
                raw = bytes.fromhex(seq[1:])
            except ValueError:
                return f"{self.escape}{seq}{self.escape}"
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        if seq[:1] in ("C", "M", "Z"):
            return ""
        return f"{self.escape}{seq}{self.escape}"

    def escape_text(self, text: str) -> str:
        """Text for a field of an outgoing segment: delimiters escaped, line breaks as spaces."""
        e = self.escape
        out = text.replace(e, f"{e}E{e}")
        for ch, code in (
            (self.field, "F"),
            (self.component, "S"),
            (self.repetition, "R"),
            (self.subcomponent, "T"),
        ):
            out = out.replace(ch, f"{e}{code}{e}")
        return re.sub(r"[\r\n]+", " ", out)


@dataclass
class Rep:
    """One repetition of a field: its components, each a list of (still escaped) subcomponents."""

    comps: list[list[str]]
    syntax: Syntax

    def c(self, n: int, s: int = 1) -> str:
        """Component n (1-based), subcomponent s; unescaped and stripped; the HL7 null '""' is empty."""
        if n < 1 or n > len(self.comps):
            return ""
        subs = self.comps[n - 1]
        if s < 1 or s > len(subs):
            return ""
        value = subs[s - 1].strip()
        return "" if value == '""' else self.syntax.unescape(value).strip()

    def text(self) -> str:
        """The whole repetition as text (components joined again, for values a sender left unescaped)."""
        syntax = self.syntax
        parts = [syntax.subcomponent.join(syntax.unescape(s) for s in subs) for subs in self.comps]
        while parts and not parts[-1].strip():
            parts.pop()
        text = syntax.component.join(parts).strip()
        return "" if text == '""' else text

    def subs(self, n: int) -> list[str]:
        if n < 1 or n > len(self.comps):
            return []
        return [self.c(n, s) for s in range(1, len(self.comps[n - 1]) + 1)]

    def sub_rep(self, n: int) -> Rep:
        """Component n read as a repetition whose components are its subcomponents (e.g. CX-4 as an HD)."""
        if n < 1 or n > len(self.comps):
            return Rep([], self.syntax)
        return Rep([[s] for s in self.comps[n - 1]], self.syntax)

    @property
    def empty(self) -> bool:
        return not any(
            self.c(i, s) for i in range(1, len(self.comps) + 1) for s in range(1, 1 + len(self.comps[i - 1]))
        )


@dataclass
class Seg:
    name: str
    occurrence: int  # 1-based among segments with this name
    fields: list[list[Rep]]  # index = field number; fields[0] is the segment name
    raw_fields: list[str]

    def reps(self, n: int) -> list[Rep]:
        """The non-empty repetitions of field n."""
        if n < 1 or n >= len(self.fields):
            return []
        return [r for r in self.fields[n] if not r.empty]

    def rep(self, n: int) -> Rep:
        reps = self.reps(n)
        return reps[0] if reps else Rep([], Syntax())

    def v(self, n: int, c: int = 1, s: int = 1) -> str:
        return self.rep(n).c(c, s)

    def raw(self, n: int) -> str:
        return self.raw_fields[n] if 0 <= n < len(self.raw_fields) else ""

    def where(self, n: int | None = None, c: int | None = None) -> str:
        out = f"{self.name}[{self.occurrence}]"
        if n is not None:
            out += f"-{n}"
            if c is not None:
                out += f".{c}"
        return out


@dataclass
class Message:
    syntax: Syntax
    segments: list[Seg]
    text: str

    @property
    def msh(self) -> Seg:
        return self.segments[0]


def _decode(message: bytes | str) -> tuple[str, list[str]]:
    notes: list[str] = []
    if isinstance(message, str):
        return message.lstrip("\ufeff"), notes
    data = bytes(message)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), notes
    try:
        return data.decode("utf-8"), notes
    except UnicodeDecodeError:
        notes.append("the message is not UTF-8; read as ISO 8859-1")
        return data.decode("latin-1"), notes


def normalise(message: bytes | str) -> tuple[str, list[str]]:
    """One message as text with CR segment separators: byte order mark, MLLP framing, blank lines and
    surrounding whitespace removed; LF and CRLF turned into CR."""
    text, notes = _decode(message)
    text = text.strip().strip("\x0b\x1c").replace("\r\n", "\r").replace("\n", "\r")
    lines = [line.strip("\x0b\x1c") for line in text.split("\r")]
    lines = [line.rstrip() if line.strip() else "" for line in lines]
    return "\r".join(line for line in lines if line), notes


def _norm_field(f: Any, syntax: Syntax) -> list[Rep]:
    if isinstance(f, str):
        return [Rep([[f]], syntax)]
    reps: list[Rep] = []
    for rep in f:
        if isinstance(rep, str):
            reps.append(Rep([[rep]], syntax))
            continue
        comps: list[list[str]] = []
        for comp in rep:
            comps.append([comp] if isinstance(comp, str) else [str(s) for s in comp])
        reps.append(Rep(comps, syntax))
    return reps


def read_message(message: bytes | str) -> tuple[Message, list[str]]:
    """Parse one HL7 v2 message. Raises NotHL7v2 when the input is not one."""
    text, notes = normalise(message)
    if text.startswith(("FHS", "BHS")) or sum(1 for line in text.split("\r") if line.startswith("MSH")) > 1:
        raise NotHL7v2("the input holds more than one message (batches are not accepted)")
    if not text.startswith("MSH") or len(text) < 8:
        raise NotHL7v2("the input is not an HL7 v2 message (it does not start with an MSH segment)")
    field_sep = text[3]
    if field_sep.isalnum() or field_sep.isspace():
        raise NotHL7v2("the MSH segment has no valid field separator")
    end = text.find(field_sep, 4)
    enc = text[4:end] if end > 0 else text[4:]
    if (
        not 4 <= len(enc) <= 5
        or field_sep in enc
        or len(set(enc)) != len(enc)
        or any(ch.isalnum() or ch.isspace() for ch in enc)
    ):
        raise NotHL7v2(
            "MSH-2 (encoding characters) must hold the component, repetition, escape and subcomponent separators"
        )
    syntax = Syntax(field_sep, enc[0], enc[1], enc[2], enc[3], enc)
    try:
        parsed = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises several types on malformed input
        raise NotHL7v2(f"the message cannot be parsed: {exc}") from None
    counts: dict[str, int] = {}
    segments: list[Seg] = []
    for seg in parsed:
        name = str(seg[0]).strip()
        counts[name] = counts.get(name, 0) + 1
        raw = [str(f) for f in seg]
        if name == "MSH":
            fields = [[Rep([[name]], syntax)], [Rep([[field_sep]], syntax)], [Rep([[enc]], syntax)]]
            fields += [_norm_field(f, syntax) for f in seg[3:]]
        else:
            fields = [_norm_field(f, syntax) for f in seg]
        segments.append(Seg(name, counts[name], fields, raw))
    return Message(syntax, segments, text), notes


# --------------------------------------------------------------------------------------------------
# Segment groups of ORU^R01


@dataclass
class ObxItem:
    seg: Seg
    notes: list[Seg] = field(default_factory=list)
    before_obr: bool = False


@dataclass
class SpecimenGroup:
    seg: Seg
    notes: list[Seg] = field(default_factory=list)
    obx: list[ObxItem] = field(default_factory=list)


@dataclass
class OrderGroup:
    orc: Seg | None = None
    obr: Seg | None = None
    notes: list[Seg] = field(default_factory=list)
    obx: list[ObxItem] = field(default_factory=list)
    specimens: list[SpecimenGroup] = field(default_factory=list)


@dataclass
class PatientGroup:
    pid: Seg
    obx: list[ObxItem] = field(default_factory=list)
    orders: list[OrderGroup] = field(default_factory=list)
