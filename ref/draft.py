"""Readers for the Internet-Draft ``spec/rfc-serval-dht.md``.

The draft is Markdown with a kramdown-rfc style YAML front matter and a few
conventions (``docs/conventions.md``): hand-numbered ATX headings, a
requirement ID such as ``[SAL-EXT-3]`` on every sentence with a BCP 14
keyword, packet diagrams and test vectors as captioned MyST ``code-block``
directives.  This module reads those conventions back out: requirements,
figures and their bit-ruler fields, test vectors, a lint in the spirit of
idnits, the JSON export behind the ``serval-requirements`` command and the
MyST text that the documentation renders.

Only the standard library is needed, except that YAML (front matter, test
vectors) is parsed with PyYAML, imported when first used.
"""

from __future__ import annotations

import argparse
import bisect
import ipaddress
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_DRAFT = Path(__file__).resolve().parent.parent / "spec" / "rfc-serval-dht.md"

TAG_RE = re.compile(r"\[([A-Z]{2,}-[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-[0-9]+)\]")
KEYWORD_RE = re.compile(
    r"\b(?:MUST NOT|MUST|REQUIRED|SHALL NOT|SHALL|SHOULD NOT|SHOULD"
    r"|NOT RECOMMENDED|RECOMMENDED|MAY|OPTIONAL)\b"
)
LEVELS = ("MUST", "SHOULD", "MAY")
MAX_FIGURE_COLUMNS = 72
REQUIRED_SECTIONS = (
    "Abstract",
    "Introduction",
    "Requirements Language",
    "Terminology",
    "Security Considerations",
    "IANA Considerations",
    "Implementation Status",
    "Normative References",
    "Informative References",
)
CATEGORIES = {
    "std": "Standards Track",
    "bcp": "Best Current Practice",
    "info": "Informational",
    "exp": "Experimental",
    "historic": "Historic",
}
BCP14_BOILERPLATE = (
    'The key words "MUST", "MUST NOT", "REQUIRED", "SHALL", "SHALL NOT", '
    '"SHOULD", "SHOULD NOT", "RECOMMENDED", "NOT RECOMMENDED", "MAY", and '
    '"OPTIONAL" in this document are to be interpreted as described in '
    "BCP 14 [RFC2119] [RFC8174] when, and only when, they appear in all "
    "capitals, as shown here."
)


# --------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class Requirement:
    """One tagged BCP 14 sentence of the draft."""

    id: str
    level: str  # "MUST", "SHOULD" or "MAY": the strongest keyword
    section: str  # "4.2", "A.1", or "" under an unnumbered heading
    section_title: str
    text: str  # the sentence, tag removed, whitespace collapsed
    anchor: str  # the ID lower-cased: the HTML id in the rendered draft


@dataclass(frozen=True)
class Figure:
    """A ``{code-block} text`` directive with a caption.

    ``line_number`` is the 1-based line of the draft that holds ``lines[0]``.
    """

    caption: str
    lines: tuple[str, ...]
    line_number: int


@dataclass(frozen=True)
class FieldSpec:
    """A field of a bit-ruler diagram; ``bits`` is None for variable length."""

    name: str
    bits: int | None


@dataclass(frozen=True)
class Vector:
    """A test vector: a ``{code-block} yaml`` whose caption starts ``Test Vector:``.

    ``line_number`` is the 1-based line of the draft where the YAML starts.
    """

    caption: str
    data: dict[str, Any]
    line_number: int

    @property
    def octets(self) -> bytes:
        """The bytes spelled by the ``hex`` key (whitespace ignored).

        Raise KeyError without the key, ValueError if it is not a string of
        hex digit pairs (YAML reads an unquoted ``0011`` as a number).
        """
        value = self.data["hex"]
        if not isinstance(value, str):
            raise ValueError("hex is not a string: quote it or use a | block")
        return bytes.fromhex("".join(value.split()))


# --------------------------------------------------------------------------
# Scanning the Markdown into front matter, headings, fences and prose


@dataclass(frozen=True)
class _Heading:
    index: int  # 0-based line index
    level: int
    number: str
    title: str


@dataclass(frozen=True)
class _Fence:
    index: int  # 0-based line index of the opening fence
    info: str
    body: tuple[str, ...]
    closed: bool


@dataclass(frozen=True)
class _Sentence:
    text: str
    line: int  # 1-based
    keywords: tuple[str, ...]
    tags: tuple[tuple[str, int], ...]  # (ID, 1-based line of the tag)
    heading: _Heading | None
    boilerplate: bool  # inside the Requirements Language section


@dataclass(frozen=True)
class _Document:
    lines: tuple[str, ...]
    front: tuple[str, ...]
    body_start: int
    headings: tuple[_Heading, ...]
    fences: tuple[_Fence, ...]
    code_lines: frozenset[int]  # fence lines, delimiters included


_FENCE_OPEN_RE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_NUMBER_RE = re.compile(r"^(?:Appendix\s+)?((?:[0-9]+|[A-Z])(?:\.[0-9]+)*)\.\s+(.*)$")
_KRAMDOWN_ATTR_RE = re.compile(r"\s*\{[#:][^}]*\}\s*$")


def _split_heading(raw: str) -> tuple[str, str]:
    title = _KRAMDOWN_ATTR_RE.sub("", re.sub(r"\s#+$", "", raw)).strip()
    match = _NUMBER_RE.match(title)
    if match:
        return match.group(1), match.group(2).strip()
    return "", title


def _scan(text: str) -> _Document:
    lines = tuple(text.splitlines())
    front: tuple[str, ...] = ()
    start = 0
    if lines and lines[0].rstrip() == "---":
        for i in range(1, len(lines)):
            if lines[i].rstrip() in ("---", "..."):
                front, start = lines[1:i], i + 1
                break
    headings: list[_Heading] = []
    fences: list[_Fence] = []
    code: set[int] = set()
    i = start
    while i < len(lines):
        line = lines[i]
        opening = _FENCE_OPEN_RE.match(line)
        if opening and not (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            marker = opening.group(1)
            closer = re.compile(rf"^\s*{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            j = i + 1
            while j < len(lines) and not closer.match(lines[j]):
                j += 1
            fences.append(_Fence(i, opening.group(2).strip(), lines[i + 1 : j], j < len(lines)))
            code.update(range(i, min(j, len(lines) - 1) + 1))
            i = j + 1
            continue
        heading = _HEADING_RE.match(line)
        if heading:
            number, title = _split_heading(heading.group(2) or "")
            headings.append(_Heading(i, len(heading.group(1)), number, title))
        i += 1
    return _Document(lines, front, start, tuple(headings), tuple(fences), frozenset(code))


def _normal_title(title: str) -> str:
    return " ".join(title.split()).casefold()


def _boilerplate_lines(doc: _Document) -> set[int]:
    """Line indices of the Requirements Language section (the BCP 14 text)."""
    skipped: set[int] = set()
    for k, heading in enumerate(doc.headings):
        if _normal_title(heading.title) != "requirements language":
            continue
        end = len(doc.lines)
        for later in doc.headings[k + 1 :]:
            if later.level <= heading.level:
                end = later.index
                break
        skipped.update(range(heading.index, end))
    return skipped


_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_LIST_MARK_RE = re.compile(r"^\s*(?:[-*+]|[0-9]+[.)])\s+")
_QUOTE_MARK_RE = re.compile(r"^\s*(?:>\s?)+")
_DEFINITION_MARK_RE = re.compile(r"^\s*:\s+")
_SKIP_LINE_RE = re.compile(
    r"^\s*(?::{3,}.*|\(.*\)=|\{[^}]*\}|\[[^\]]+\]:\s.*|-{3}\s*(?:abstract|middle|back)?)\s*$"
)
_TABLE_RULE_RE = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "cf", "vs", "viz", "al", "fig", "sec", "resp"})
_SENTENCE_END_RE = re.compile(r"[.!?][)\]\"'*_`]*\s+(?=[\[(\"'*_`]*[A-Z\[])")


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def _prose_units(doc: _Document) -> Iterator[tuple[int, str]]:
    """Yield (0-based first line, text) of each paragraph, list item or cell.

    HTML comments become blanks; newlines are kept so that offsets map back
    to lines.
    """
    visible = _COMMENT_RE.sub(_blank, "\n".join(doc.lines)).split("\n")
    heading_lines = {h.index for h in doc.headings}
    unit: list[str] = []
    first = 0

    def flush() -> Iterator[tuple[int, str]]:
        if any(part.strip() for part in unit):
            yield first, "\n".join(unit)
        unit.clear()

    for i in range(doc.body_start, len(visible)):
        line = visible[i]
        if i in doc.code_lines or i in heading_lines or not line.strip():
            yield from flush()
            continue
        if _SKIP_LINE_RE.match(line) or (_TABLE_RULE_RE.match(line) and "-" in line):
            yield from flush()
            continue
        line = _QUOTE_MARK_RE.sub("", line)
        if line.lstrip().startswith("|"):
            yield from flush()
            for cell in line.strip().strip("|").split("|"):
                yield i, cell
            continue
        marker = _LIST_MARK_RE.match(line) or _DEFINITION_MARK_RE.match(line)
        if marker:
            yield from flush()
            line = " " * marker.end() + line[marker.end() :]
        if not unit:
            first = i
        unit.append(line)
    yield from flush()


def _split_sentences(text: str) -> Iterator[tuple[int, str]]:
    """Yield (offset, sentence) pairs; abbreviations such as "e.g." don't end one."""
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        words = text[start : match.start()].split()
        last = words[-1].lstrip("([*_`\"'").casefold() if words else ""
        if last in _ABBREVIATIONS:
            continue
        yield start, text[start : match.start() + 1]
        start = match.end()
    yield start, text[start:]


def _sentences(doc: _Document) -> Iterator[_Sentence]:
    boilerplate = _boilerplate_lines(doc)
    heading_index = [h.index for h in doc.headings]
    for first, unit in _prose_units(doc):
        masked = _CODE_SPAN_RE.sub(_blank, unit)
        newlines = [k for k, c in enumerate(unit) if c == "\n"]
        for offset, sentence in _split_sentences(unit):
            if not sentence.strip():
                continue
            seen = masked[offset : offset + len(sentence)]
            start = offset + len(sentence) - len(sentence.lstrip())
            line = first + bisect.bisect_left(newlines, start)
            tags = tuple(
                (m.group(1), first + bisect.bisect_left(newlines, offset + m.start()) + 1)
                for m in TAG_RE.finditer(seen)
            )
            k = bisect.bisect_right(heading_index, line) - 1
            yield _Sentence(
                text=sentence,
                line=line + 1,
                keywords=tuple(KEYWORD_RE.findall(seen)),
                tags=tags,
                heading=doc.headings[k] if k >= 0 else None,
                boilerplate=line in boilerplate,
            )


def _level(keywords: Sequence[str]) -> str:
    def strength(keyword: str) -> int:
        if keyword.startswith(("MUST", "SHALL")) or keyword == "REQUIRED":
            return 0
        if keyword.startswith("SHOULD") or keyword.endswith("RECOMMENDED"):
            return 1
        return 2

    return LEVELS[min(strength(k) for k in keywords)]


def _collapse(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------
# Public readers


def front_matter(text: str) -> dict[str, Any]:
    """Return the YAML front matter as a mapping ({} when there is none)."""
    import yaml

    doc = _scan(text)
    if not doc.front:
        return {}
    data = yaml.safe_load("\n".join(doc.front))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the front matter is not a YAML mapping")
    return data


def sections(text: str) -> list[tuple[str, str]]:
    """Return (number, title) of every heading in order; number "" if unnumbered."""
    return [(h.number, h.title) for h in _scan(text).headings]


def requirements(text: str) -> list[Requirement]:
    """Return the requirements in document order.

    A requirement is a sentence with a BCP 14 keyword and exactly one tag,
    outside code, headings and the Requirements Language section.  Sentences
    that break the one-tag rule are left out; :func:`lint` reports them.
    """
    found = []
    for sentence in _sentences(_scan(text)):
        if not sentence.keywords or sentence.boilerplate or len(sentence.tags) != 1:
            continue
        ident = sentence.tags[0][0]
        heading = sentence.heading
        found.append(
            Requirement(
                id=ident,
                level=_level(sentence.keywords),
                section=heading.number if heading else "",
                section_title=heading.title if heading else "",
                text=_collapse(TAG_RE.sub("", sentence.text)),
                anchor=ident.lower(),
            )
        )
    return found


_OPTION_RE = re.compile(r"^\s*:([A-Za-z][\w-]*):\s*(.*?)\s*$")
_CODE_BLOCK_RE = re.compile(r"^\{(?:code-block|code|sourcecode)\}\s+(\S+)\s*$")


def _code_blocks(
    doc: _Document, language: str
) -> Iterator[tuple[dict[str, str], int, tuple[str, ...]]]:
    """Yield (options, 0-based index of the first body line, body) per directive."""
    for fence in doc.fences:
        match = _CODE_BLOCK_RE.match(fence.info)
        if not match or match.group(1) != language:
            continue
        options: dict[str, str] = {}
        k = 0
        while k < len(fence.body) and (option := _OPTION_RE.match(fence.body[k])):
            options[option.group(1)] = _unquote(option.group(2))
            k += 1
        if k < len(fence.body) and not fence.body[k].strip():
            k += 1
        body = list(fence.body[k:])
        while body and not body[-1].strip():
            body.pop()
        yield options, fence.index + 1 + k, tuple(body)


def _unquote(value: str) -> str:
    """An option value as MyST reads it: YAML quotes around it removed."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def figures(text: str) -> list[Figure]:
    """Return every ``{code-block} text`` directive that has a ``:caption:``."""
    return [
        Figure(options["caption"], body, index + 1)
        for options, index, body in _code_blocks(_scan(text), "text")
        if options.get("caption")
    ]


def vectors(text: str) -> list[Vector]:
    """Return the test vectors; raise ValueError if one is not a YAML mapping."""
    import yaml

    found = []
    for options, index, body in _code_blocks(_scan(text), "yaml"):
        caption = options.get("caption", "")
        if not caption.startswith("Test Vector:"):
            continue
        try:
            data = yaml.safe_load("\n".join(body))
        except yaml.YAMLError as error:
            raise ValueError(f"{caption!r}, line {index + 1}: bad YAML: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{caption!r}, line {index + 1}: a test vector must be a mapping")
        found.append(Vector(caption, data, index + 1))
    return found


# --------------------------------------------------------------------------
# Bit-ruler diagrams

_RULER_RE = re.compile(r"^[0-9 ]+$")
_BORDER_RE = re.compile(r"^\+(?:-\+)+$")


def normalise_field_name(name: str) -> str:
    """Lower-case, runs of non-alphanumerics to ``_``: "Hdr Len (SHL)" -> hdr_len_shl."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def parse_bit_ruler(fig: Figure) -> list[FieldSpec]:
    """Read the fields of a classic RFC 32-bit bit-ruler diagram, top to bottom.

    The ruler lines are skipped; ``+-+-+`` borders separate rows.  A row with
    interior ``|`` separators is split into fields of (columns between the
    separators) / 2 bits.  Lines between two borders without separators are
    one field of (row width) x (number of ``|`` lines): ``+  Name  +``
    lines continue it.  A row with a ``/`` edge is one variable-length field.
    Raise ValueError naming the caption and line for a malformed drawing.
    """

    def fail(line: int, problem: str) -> ValueError:
        return ValueError(f"figure {fig.caption!r}, line {line}: {problem}")

    rows = [(fig.line_number + k, line.rstrip()) for k, line in enumerate(fig.lines)]
    rows = [(n, line) for n, line in rows if line.strip()]
    for _ in range(2):
        if rows and _RULER_RE.match(rows[0][1]):
            rows.pop(0)
    if not rows:
        raise fail(fig.line_number, "no drawing below the bit ruler")
    first_line, first = rows[0]
    margin = len(first) - len(first.lstrip())
    if not _BORDER_RE.match(first[margin:]):
        raise fail(first_line, "the drawing must start with a +-+ border line")
    fields: list[FieldSpec] = []
    group: list[tuple[int, str]] = []
    for n, line in rows:
        if line[:margin].strip():
            raise fail(n, "text left of the drawing")
        body = line[margin:]
        if not _BORDER_RE.match(body):
            group.append((n, body))
            continue
        if len(body) > 65:
            raise fail(n, f"border is {(len(body) - 1) // 2} bits wide, more than 32")
        if group:
            fields.extend(_parse_group(group, len(body), fail))
            group = []
    if group:
        raise fail(group[-1][0], "the drawing must end with a +-+ border line")
    return fields


def _parse_group(
    group: list[tuple[int, str]], width: int, fail: Callable[[int, str], ValueError]
) -> list[FieldSpec]:
    for n, body in group:
        if len(body) != width:
            raise fail(n, f"line is {len(body)} columns wide, the border below {width}")
        if body[0] not in "|+/" or body[-1] not in "|+/":
            raise fail(n, "a row must start and end with |, + or /")
    texts = [body[1:-1].strip() for _, body in group]
    name = " ".join(t for t in texts if t)
    if any("/" in (body[0], body[-1]) for _, body in group):
        if not name:
            raise fail(group[0][0], "variable-length field without a name")
        return [FieldSpec(normalise_field_name(name), None)]
    split = [(n, body) for n, body in group if "|" in body[1:-1]]
    if split:
        n, body = split[0]
        if len(group) != 1:
            raise fail(n, "a row with field separators must be one line high")
        cuts = [k for k, c in enumerate(body) if c == "|"]
        if cuts[0] != 0:
            raise fail(n, "a row with field separators must start with |")
        fields = []
        for left, right in itertools.pairwise(cuts):
            if (right - left) % 2:
                raise fail(n, f"field at column {left + 1} is an odd number of columns wide")
            cell = body[left + 1 : right].strip()
            if not cell:
                raise fail(n, f"field at column {left + 1} has no name")
            fields.append(FieldSpec(normalise_field_name(cell), (right - left) // 2))
        return fields
    rows = sum(1 for _, body in group if body[0] == "|")
    if not rows:
        raise fail(group[0][0], "a field needs at least one line starting with |")
    if not name:
        raise fail(group[0][0], "field without a name")
    return [FieldSpec(normalise_field_name(name), (width - 1) // 2 * rows)]


# --------------------------------------------------------------------------
# Lint

_ALLOWED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "127.0.0.0/8",
        "0.0.0.0/32",
        "2001:db8::/32",
        "::1/128",
        "::/128",
    )
)
_IPV4_RE = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\w]|\.\d)")
_IPV6_RE = re.compile(
    r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}))"
    r"(?:/(\d{1,3}))?(?![\w:])"
)
_SECTION_REF_RE = re.compile(
    r"(?:Sections?|Appendix|Appendices)\s+(?:[\w.]+(?:,\s*|\s+(?:and|or|to)\s+))*$"
)
# The domain check is conservative: only hostnames that end in one of these
# common TLDs count, so file names (.md, .py, .sh, .rs) and module paths pass.
_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|io|uk|de|fr|nl|jp|cn|eu|example|test|invalid|localhost"
)
_DOMAIN_RE = re.compile(
    rf"(?<![\w.@/-])((?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+(?:{_TLDS}))\b(?![.-]\w)",
    re.IGNORECASE,
)
_ALLOWED_DOMAIN_RE = re.compile(
    r"^(?:(?:.+\.)?example\.(?:com|net|org)|(?:.+\.)?(?:example|test|invalid|localhost)|localhost)$"
)
_URL_OR_EMAIL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>)\]]+|[\w.+-]+@[\w.-]+")
_BAD_KEYWORD_RE = re.compile(r"\bMAY NOT\b|\b(?:MUST|SHALL|SHOULD|MAY) not\b")


def _allowed_address(address: str, prefix: str | None) -> bool:
    try:
        network = ipaddress.ip_network(f"{address}/{prefix}" if prefix else address, strict=False)
    except ValueError:
        return True  # not an address after all (e.g. 300.1.2.3); nothing to flag
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return any(
        network.version == allowed.version and network.subnet_of(allowed)  # type: ignore[arg-type]
        for allowed in _ALLOWED_NETWORKS
    )


def _address_problems(line_number: int, line: str) -> Iterator[str]:
    line = _URL_OR_EMAIL_RE.sub(lambda m: " " * len(m.group(0)), line)
    for match in _IPV4_RE.finditer(line):
        if _SECTION_REF_RE.search(line[: match.start()]):
            continue
        if not _allowed_address(match.group(1), match.group(2)):
            yield f"line {line_number}: address {match.group(0)} is not a documentation address"
    for match in _IPV6_RE.finditer(line):
        candidate = match.group(1)
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if not _allowed_address(candidate, match.group(2)):
            yield f"line {line_number}: address {match.group(0)} is not a documentation address"
    for match in _DOMAIN_RE.finditer(line):
        if not _ALLOWED_DOMAIN_RE.match(match.group(1).lower()):
            yield (
                f"line {line_number}: domain {match.group(1)} is not reserved for "
                "documentation (use example.com, *.example, *.test or *.invalid)"
            )


def lint(text: str) -> list[str]:
    """Return human-readable problems with the draft (an empty list if none).

    Checks: the required sections exist; every BCP 14 sentence carries
    exactly one requirement ID and no ID marks two requirements; tags
    without a keyword refer to an existing requirement; no "MAY NOT" or
    "MUST not"; fenced lines fit in 72 columns; bit-ruler figures parse and
    test vectors are YAML mappings with hex; addresses and domain names are
    the ones reserved for documentation (hostnames in URLs and e-mail
    addresses, which cite real documents and people, are not checked); no
    TODO or TBD outside code.
    """
    doc = _scan(text)
    problems: list[str] = []

    titles = {_normal_title(h.title) for h in doc.headings}
    problems += [
        f"missing section: {name}"
        for name in REQUIRED_SECTIONS
        if _normal_title(name) not in titles
    ]

    defined: dict[str, int] = {}
    references: list[tuple[str, int]] = []
    for sentence in _sentences(doc):
        if sentence.boilerplate:
            continue
        excerpt = _collapse(sentence.text)[:60]
        if sentence.keywords and not sentence.tags:
            problems.append(
                f"line {sentence.line}: BCP 14 keyword without a requirement ID: {excerpt}"
            )
        elif sentence.keywords and len(sentence.tags) > 1:
            ids = ", ".join(ident for ident, _ in sentence.tags)
            problems.append(f"line {sentence.line}: one sentence, several requirement IDs ({ids})")
        elif sentence.keywords:
            ident, tag_line = sentence.tags[0]
            if ident in defined:
                problems.append(
                    f"line {tag_line}: duplicate requirement ID {ident}"
                    f" (first on line {defined[ident]})"
                )
            else:
                defined[ident] = tag_line
        else:
            references.extend(sentence.tags)
        for match in _BAD_KEYWORD_RE.finditer(_CODE_SPAN_RE.sub(_blank, sentence.text)):
            problems.append(
                f"line {sentence.line}: write BCP 14 negations in capitals, not {match.group(0)!r}"
            )
    problems += [
        f"line {tag_line}: [{ident}] refers to no requirement"
        for ident, tag_line in references
        if ident not in defined
    ]

    for fence in doc.fences:
        if not fence.closed:
            problems.append(f"line {fence.index + 1}: code fence is never closed")
        for k, line in enumerate(fence.body):
            if len(line.rstrip()) > MAX_FIGURE_COLUMNS:
                problems.append(
                    f"line {fence.index + 2 + k}: code line is {len(line.rstrip())} columns,"
                    f" more than {MAX_FIGURE_COLUMNS}"
                )
    for fig in figures(text):
        if fig.lines and _RULER_RE.match(fig.lines[0].rstrip() or "x"):
            try:
                parse_bit_ruler(fig)
            except ValueError as error:
                problems.append(str(error))
    if any(_code_block_is_vector(fence) for fence in doc.fences):
        problems += _vector_problems(text)

    visible = _COMMENT_RE.sub(_blank, "\n".join(doc.lines)).split("\n")
    for i in range(doc.body_start, len(doc.lines)):
        checked = doc.lines[i] if i in doc.code_lines else visible[i]
        problems += _address_problems(i + 1, checked)
    for i, raw in enumerate(doc.lines):
        if i not in doc.code_lines and re.search(r"TODO|TBD", raw):
            problems.append(f"line {i + 1}: TODO/TBD left in the text")
    problems += _cross_reference_problems(doc)
    return problems


# "Section 5.3", "Sections 6.1 to 6.4", "Appendix A"; a citation of another
# document's section ("[RFC4291], Section 2.5.5.2", "Section 3 of [RFC9000]")
# is not checked.
_CROSS_REF_RE = re.compile(
    r"(?<!\], )\b(Sections?|Appendix) ((?:[0-9]+|[A-Z]\b)(?:\.[0-9]+)*"
    r"(?:(?:,| and| to| or) (?:Section )?(?:[0-9]+|[A-Z]\b)(?:\.[0-9]+)*)*)(?!\.?[0-9])(?! of \[)"
)
_SECTION_NUMBER_RE = re.compile(r"(?:[0-9]+|\b[A-Z]\b)(?:\.[0-9]+)*")


def _cross_reference_problems(doc: _Document) -> list[str]:
    """References to sections of this draft that do not exist."""
    numbers = {h.number for h in doc.headings if h.number}
    problems = []
    for i in range(doc.body_start, len(doc.lines)):
        if i in doc.code_lines:
            continue
        for match in _CROSS_REF_RE.finditer(doc.lines[i]):
            for number in _SECTION_NUMBER_RE.findall(match.group(2)):
                if number not in numbers:
                    problems.append(f"line {i + 1}: Section {number} does not exist")
    return problems


def _vector_problems(text: str) -> list[str]:
    try:
        found = vectors(text)
    except ValueError as error:
        return [f"test vector {error}"]
    problems = []
    for vector in found:
        where = f"test vector {vector.caption!r}, line {vector.line_number}"
        if "hex" not in vector.data:
            problems.append(f"{where}: no hex key")
            continue
        if not isinstance(vector.data["hex"], str):
            problems.append(f"{where}: hex is not a string: quote it or use a | block")
            continue
        try:
            vector.octets  # noqa: B018 - decoding is the check
        except ValueError:
            problems.append(f"{where}: hex is not an even number of hex digits")
    return problems


def _code_block_is_vector(fence: _Fence) -> bool:
    return bool(_CODE_BLOCK_RE.match(fence.info)) and any(
        line.strip().startswith(":caption: Test Vector:") for line in fence.body
    )


# --------------------------------------------------------------------------
# Export, command line and rendering


def export_json(text: str) -> str:
    """Return the requirements as stable JSON (the format of spec/requirements.json)."""
    return json.dumps([asdict(r) for r in requirements(text)], indent=1, ensure_ascii=False) + "\n"


def summary(text: str) -> str:
    """Return a table of MUST/SHOULD/MAY counts per section."""
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for req in requirements(text):
        counts = rows.setdefault((req.section, req.section_title), dict.fromkeys(LEVELS, 0))
        counts[req.level] += 1
    labels = [f"{number}. {title}" if number else title for number, title in rows]
    width = max([len(label) for label in labels] + [len("Total")])
    lines = [f"{'Section':<{width}}  " + " ".join(f"{level:>6}" for level in LEVELS)]
    totals = dict.fromkeys(LEVELS, 0)
    for label, counts in zip(labels, rows.values(), strict=True):
        lines.append(f"{label:<{width}}  " + " ".join(f"{counts[level]:>6}" for level in LEVELS))
        for level in LEVELS:
            totals[level] += counts[level]
    lines.append(f"{'Total':<{width}}  " + " ".join(f"{totals[level]:>6}" for level in LEVELS))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``serval-requirements``: export the draft's requirements."""
    parser = argparse.ArgumentParser(
        prog="serval-requirements",
        description="List the requirements (tagged BCP 14 sentences) of the Serval draft.",
    )
    parser.add_argument(
        "--draft",
        type=Path,
        help="the draft to read (default: spec/rfc-serval-dht.md of the source tree,"
        " else of the current directory)",
    )
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the JSON export (the default)")
    form.add_argument(
        "--summary", action="store_true", help="print MUST/SHOULD/MAY counts per section"
    )
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead")
    args = parser.parse_args(argv)

    draft: Path = args.draft or (
        DEFAULT_DRAFT if DEFAULT_DRAFT.exists() else Path("spec", "rfc-serval-dht.md")
    )
    try:
        text = draft.read_text(encoding="utf-8")
    except OSError as error:
        print(f"serval-requirements: cannot read draft {draft}: {error.strerror}", file=sys.stderr)
        return 2
    output = summary(text) if args.summary else export_json(text)
    if args.output:
        args.output.write_text(output, encoding="utf-8")
    else:
        sys.stdout.write(output)
    return 0


def _title_block(meta: dict[str, Any]) -> list[str]:
    title = str(meta.get("title", "Internet-Draft"))
    lines = [f"# {title}", ""]
    facts = []
    if meta.get("docname"):
        facts.append(("Internet-Draft", f"`{meta['docname']}`"))
    category = str(meta.get("category", ""))
    if category:
        facts.append(("Category", CATEGORIES.get(category, category)))
    authors = meta.get("author") or []
    if isinstance(authors, dict):
        authors = [authors]
    names = [
        f"{a.get('name', '')} ({a['org']})" if a.get("org") else str(a.get("name", ""))
        for a in authors
        if isinstance(a, dict)
    ]
    if names:
        facts.append(("Authors" if len(names) > 1 else "Author", ", ".join(names)))
    if meta.get("date"):
        facts.append(("Date", str(meta["date"])))
    for term, value in facts:
        lines += [term, f": {value}", ""]
    return lines


_KRAMDOWN_CITE_RE = re.compile(r"\{\{[!?]?(?:[^}=]+=)?([^}]+)\}\}")


def myst_source(text: str) -> str:
    """Return the draft as MyST for the documentation.

    A title block built from the front matter replaces it (MyST drops front
    matter on include); headings move down one level under that title; the
    first tag of each requirement becomes a span with the requirement's
    anchor as id (needs MyST's attrs_inline) and other tags link to it;
    kramdown-rfc syntax (``{{RFC2119}}``, ``{#id}`` after a heading, IAL
    lines, ``--- middle``, the bcp14 boilerplate macro) becomes MyST.
    """
    doc = _scan(text)
    first_tag: dict[str, int] = {}
    for sentence in _sentences(doc):
        if sentence.keywords and not sentence.boilerplate and len(sentence.tags) == 1:
            ident, tag_line = sentence.tags[0]
            first_tag.setdefault(ident, tag_line - 1)
    heading_lines = {h.index for h in doc.headings}
    out = _title_block(front_matter(text)) if doc.front else []
    for index in range(doc.body_start, len(doc.lines)):
        line = doc.lines[index]
        if index in doc.code_lines:
            out.append(line)
        elif index in heading_lines:
            anchor = re.search(r"\{#([\w-]+)\}\s*$", line)
            if anchor:
                out += [f"({anchor.group(1)})=", ""]
            out.append("#" + _KRAMDOWN_ATTR_RE.sub("", line.strip()))
        elif re.match(r"^\s*\{::boilerplate\s+bcp14(?:-tagged)?\}\s*$", line):
            out.append(BCP14_BOILERPLATE)
        elif re.match(r"^\s*(?:\{:[^}]*\}|-{3}\s*(?:abstract|middle|back))\s*$", line):
            out.append("")
        else:
            defined = {ident for ident, k in first_tag.items() if k == index}
            out.append(_render_prose_line(line, defined))
    return "\n".join(out) + "\n"


def _render_prose_line(line: str, defined: set[str]) -> str:
    """Turn tags into anchors (IDs in ``defined``) or links; translate citations."""

    def tag(match: re.Match[str]) -> str:
        ident = match.group(1)
        if ident in defined:
            defined.discard(ident)
            return f"[\\[{ident}\\]]{{#{ident.lower()} .req}}"
        return f'<a class="reqref" href="#{ident.lower()}">[{ident}]</a>'

    pieces = re.split(r"(`+[^`]*`+)", line)
    return "".join(
        piece if piece.startswith("`") else TAG_RE.sub(tag, _KRAMDOWN_CITE_RE.sub(r"[\1]", piece))
        for piece in pieces
    )


if __name__ == "__main__":
    sys.exit(main())
