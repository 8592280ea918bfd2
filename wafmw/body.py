"""Bounded request body parsing: urlencoded forms, JSON, multipart/form-data and XML.

`parse_body` never raises: a body that cannot be parsed comes back as kind "raw" with
``parse_error=True`` and its text in ``raw``, so rules can still look at it. Every parser is
bounded by `BodyLimits` (fields, JSON depth) and by the body itself, which the caller has already
cut to the configured number of bytes.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, islice, repeat
from typing import Any
from urllib.parse import unquote
from xml.parsers import expat

from .transforms import form_unquote

__all__ = ["BodyLimits", "ParsedBody", "parse_body"]


@dataclass(frozen=True, slots=True)
class BodyLimits:
    json_max_depth: int = 32
    max_fields: int = 1000


@dataclass(frozen=True, slots=True)
class ParsedBody:
    kind: str  # "form" | "json" | "multipart" | "xml" | "raw" | "binary" | "empty"
    # (name, value): form fields; JSON leaves (name = the nearest object key, "" at top level;
    # strings as is, numbers/bools as their JSON text, null skipped); multipart non-file parts;
    # XML attribute values (name = the attribute's) and non-blank text runs (name = the
    # enclosing element's), entities and character references decoded.
    fields: tuple[tuple[str, str], ...]
    # Form field names; all JSON object keys at any depth; multipart part names; XML element
    # and attribute names (with their prefixes, as written).
    names: tuple[str, ...]
    # Multipart file names (filename= and filename*=).
    files: tuple[str, ...]
    # The body bytes decoded as UTF-8 with errors="replace".
    raw: str
    parse_error: bool
    # More fields or depth than the limits allowed (or a multipart body cut short): what was
    # parsed is kept.
    truncated: bool


def parse_body(content_type: str | None, body: bytes, limits: BodyLimits) -> ParsedBody:
    """Parse a (possibly truncated) request body. Never raises."""
    try:
        raw = body.decode("utf-8", "replace")
    except Exception:  # only MemoryError is conceivable; never let it reach the app
        raw = ""
    if not body:
        return ParsedBody("empty", (), (), (), raw, parse_error=False, truncated=False)
    try:
        media_type, params = _parse_content_type(content_type or "")
        if media_type == "application/x-www-form-urlencoded":
            return _parse_form(raw, limits)
        if is_json(media_type):
            return _parse_json(raw, limits)
        if media_type == "multipart/form-data":
            return _parse_multipart(body, params.get("boundary", ""), raw, limits)
        # Only a declared XML type is parsed as XML, never a body sniffed as one: the app picks
        # its parser by Content-Type too, and a raw body keeps its markup (a "<script>" posted
        # as text/plain is well-formed XML, and parsed it would be an element name).
        if is_xml(media_type):
            return _parse_xml(body, raw, limits)
        if may_be_binary(media_type) and is_binary(body):
            return ParsedBody("binary", (), (), (), raw, parse_error=False, truncated=False)
        return _raw(raw, parse_error=False)
    except Exception:
        # RecursionError, MemoryError and any parser bug end here; BaseException (cancellation)
        # is deliberately not caught.
        return _raw(raw, parse_error=True)


def _raw(raw: str, *, parse_error: bool, truncated: bool = False) -> ParsedBody:
    return ParsedBody("raw", (), (), (), raw, parse_error=parse_error, truncated=truncated)


# --------------------------------------------------------------------------- header parameters

# A parameter is name=token or name="quoted string" (with backslash escapes).
_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))', re.DOTALL)


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for m in _PARAM_RE.finditer(text):
        name = m.group(1).lower()
        quoted = m.group(2)
        # Only \" is unescaped: browsers send Windows paths ("C:\dir\a.txt") unescaped.
        value = quoted.replace('\\"', '"') if quoted is not None else m.group(3).strip()
        # The first occurrence wins, as in most servers; later duplicates are ignored.
        params.setdefault(name, value)
    return params


def media_type_of(content_type: str | None) -> str:
    """The media type of a Content-Type value, lowercased, as parse_body reads it."""
    return (content_type or "").partition(";")[0].strip().lower()


def is_json(media_type: str) -> bool:
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


def is_xml(media_type: str) -> bool:
    return media_type in ("application/xml", "text/xml") or media_type.endswith("+xml")


# Media types that are never binary data (see may_be_binary): the ones most bodies have.
# A caller on the request path tests them first, as a set lookup costs less than a call.
TEXT_MEDIA_TYPES = frozenset(
    {
        "",
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    }
)


@lru_cache(maxsize=256)
def may_be_binary(media_type: str) -> bool:
    """Whether a body of this media type is read as binary data when its bytes are not text
    (see is_binary). Never a type wafmw parses, nor text/*, nor a body without a Content-Type:
    what those hold is read as text whatever their bytes, as CRS forces inspection of a body
    that declares no type. Cached: called on every body, with a handful of values."""
    return media_type not in TEXT_MEDIA_TYPES and not (
        media_type.startswith("text/") or is_json(media_type) or is_xml(media_type)
    )


def is_binary(body: bytes) -> bool:
    """Whether a body is binary data, not text: it holds a NUL byte or is not UTF-8 (a last
    character cut short by the inspection limit is not held against it). Text in UTF-16 or
    UTF-32 is text, though it holds NULs: json.loads reads bytes in those encodings when their
    first bytes say so (a byte-order mark, or a NUL in the first two bytes), and Starlette's
    request.json() hands it any body, whatever its Content-Type."""
    if body.find(b"\x00") < 0:
        if body.isascii():
            return False
        decode: Any = codecs.utf_8_decode
    else:
        decode = _sniffed_wide_text(body)
        if decode is None:
            return True
    try:
        decode(body, "strict", False)
    except UnicodeDecodeError:
        return True
    return False


def _sniffed_wide_text(body: bytes) -> Any:
    """The UTF-16 or UTF-32 decoder that a reader sniffing the first bytes (json's rules)
    would pick for this body, or None when the first bytes say UTF-8."""
    if body.startswith((codecs.BOM_UTF32_BE, codecs.BOM_UTF32_LE)):
        return codecs.utf_32_decode
    if body.startswith((codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)):
        return codecs.utf_16_decode
    if len(body) < 2 or (body[0] and body[1]):
        return None
    if not body[0]:
        return codecs.utf_16_be_decode if body[1] else codecs.utf_32_be_decode
    return (
        codecs.utf_16_le_decode
        if body[2:3] != b"\x00" or body[3:4] != b"\x00"
        else codecs.utf_32_le_decode
    )


def _parse_content_type(content_type: str) -> tuple[str, dict[str, str]]:
    media_type, sep, _ = content_type.partition(";")
    params = _parse_params(content_type[len(media_type) :]) if sep else {}
    return media_type.strip().lower(), params


# --------------------------------------------------------------------------- urlencoded


def parse_query(query: str) -> tuple[tuple[str, str], ...]:
    """(name, value) pairs of a query string or form body, as
    `parse_qsl(keep_blank_values=True, errors="replace")` gives them, at C speed where
    parse_qsl loops in Python over every escape (form_unquote)."""
    out = []
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name = form_unquote(name)
            value = form_unquote(value)
        out.append((name, value))
    return tuple(out)


def _parse_form(raw: str, limits: BodyLimits) -> ParsedBody:
    # parse_qsl's own max_num_fields raises instead of truncating, so the pairs are cut here,
    # counting only the non-empty ones, as parse_qsl does.
    pairs = [p for p in raw.split("&") if p]
    truncated = len(pairs) > limits.max_fields
    if truncated:
        pairs = pairs[: limits.max_fields]
    fields = parse_query("&".join(pairs))
    names = tuple(name for name, _ in fields)
    return ParsedBody("form", fields, names, (), raw, parse_error=False, truncated=truncated)


# --------------------------------------------------------------------------- JSON

# json.loads recurses once per nesting level and raises RecursionError somewhere near the
# interpreter's recursion limit, depending on the caller's stack. Documents nested deeper than
# this are refused before json.loads sees them.
_JSON_HARD_DEPTH = 500
# A JSON string; one left open runs to the end of the text (as in a body cut short). Were it
# not matched, each escaped quote inside it would begin a search that runs to the end and
# fails: a document 501 brackets deep with a 48 KB open string of \" took 23 s to parse,
# and the time grew with the square of its length.
_JSON_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_JSON_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_JSON_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
# JSON's tokens other than its syntax (numbers only by their characters), and its syntax.
_JSON_TOKEN_RE = re.compile(_JSON_STRING_RE.pattern + r"|true|false|null|[0-9.eE+\-]+", re.DOTALL)
_JSON_ONLY_SYNTAX_RE = re.compile(r"[\s\[\]{}:,]*")


def _json_too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= _JSON_HARD_DEPTH:
        return False
    # Brackets inside strings do not nest; neither do those after a string left open, which
    # only matters for a document json.loads refuses anyway. The running depth is
    # computed by map/accumulate/max, all in C: a Python loop over 100k brackets costs ~0.1 s.
    brackets = _JSON_NOT_BRACKET_RE.sub("", _JSON_STRING_RE.sub("", text))
    return max(accumulate(map(_JSON_DELTA.__getitem__, brackets)), default=0) > _JSON_HARD_DEPTH


def _json_strings(raw: str, text: str, limits: BodyLimits) -> ParsedBody:
    """A document nested too deep to parse: if it is made of JSON's tokens, each of its
    strings is a value (up to max_fields, without a name, since where it sits is not known)
    and the document is truncated, like one nested deeper than json_max_depth; else it is raw
    text with a parse error, as any body that is not JSON. Not a parse error for being deep:
    then the raw text, quotes and all, would be the value, and the body sieve, which does not
    parse, would have to count the nesting of every large document to know."""
    if not _JSON_ONLY_SYNTAX_RE.fullmatch(_JSON_TOKEN_RE.sub(" ", text)):
        return _raw(raw, parse_error=True, truncated=True)  # not even JSON's tokens
    fields: list[tuple[str, str]] = []
    for m in _JSON_STRING_RE.finditer(text):
        if len(fields) >= limits.max_fields:
            break
        try:
            fields.append(("", json.loads(m.group())))
        except ValueError:  # a bad escape: not JSON after all
            return _raw(raw, parse_error=True, truncated=True)
    return ParsedBody("json", tuple(fields), (), (), raw, parse_error=False, truncated=True)


def _keep_text(text: str) -> str:
    return text


class _WalkEnd(Exception):
    """A JSON walk ran out of its budget or reached max_fields: the document is truncated."""


def _json_fields(doc: Any, limits: BodyLimits) -> tuple[list[tuple[str, str]], list[str], bool]:
    """The leaves of a parsed document as (nearest object key, text) and its object keys, in
    document order and within the limits; and whether the limits cut the walk short.

    Depth first, recursing into objects and arrays only, at most json_max_depth deep (the rule
    file bounds it at 256, and deeper documents are not parsed at all: _json_too_deep): a leaf
    costs a type test and an append. The values are what json.loads makes, numbers and
    constants kept as their text: exact types. (A loop over a stack of every node, leaves
    included, walked the 2 KB benchmark body in 58 µs, this walk in 35 µs; one-off.)"""
    fields: list[tuple[str, str]] = []
    names: list[str] = []
    add = fields.append
    max_fields = limits.max_fields
    max_depth = limits.json_max_depth
    # Empty arrays and nulls are neither fields nor names, yet each costs a step: without a
    # budget of its own, 60k "[]," would keep the walk busy for a long time.
    budget = 4 * max_fields + 64
    truncated = False

    def walk(container: Any, key: str, depth: int) -> None:
        nonlocal budget, truncated
        if depth > max_depth:
            truncated = True
            return
        items: Any
        if type(container) is dict:
            room = max_fields - len(names)
            if len(container) > room:  # the keys past max_fields are neither names nor walked
                truncated = True
                container = dict(islice(container.items(), max(room, 0)))
            names.extend(container)
            items = container.items()
        else:
            if len(container) > budget:
                truncated = True
                container = container[:budget]
            items = zip(repeat(key), container)
        child = depth + 1
        for name, value in items:
            budget -= 1
            if budget < 0:
                truncated = True
                raise _WalkEnd
            kind = type(value)
            if kind is dict or kind is list:
                walk(value, name, child)
            elif value is not None:
                if len(fields) >= max_fields:
                    truncated = True
                    raise _WalkEnd
                add((name, value if kind is str else "true" if value is True else "false"))

    budget -= 1  # the document is a step, as each value in it is
    try:
        kind = type(doc)
        if kind is dict or kind is list:
            walk(doc, "", 1)
        elif doc is not None:
            add(("", doc if kind is str else "true" if doc is True else "false"))
    except _WalkEnd:
        pass
    except RecursionError:  # called from deep in a stack: what was read, cut short there
        truncated = True
    return fields, names, truncated


def _without_bom(text: str) -> str:
    """A JSON text as json.loads reads it: a leading byte order mark is no part of it."""
    return text[1:] if text.startswith("\ufeff") else text


def json_object_keys(body: bytes) -> list[str] | None:
    """Every object key of a JSON body, repeats included (each object's as it closes, inner
    ones first): the names that parse_body gives such a body and more (it drops repeats and
    what its limits cut, and gives none for a document too deep or that does not parse).
    None when json.loads fails.

    Decoded and read as parse_body reads the body, by json.loads alone: C collects the keys
    (one call back per object) where the walk over every value runs in Python, and numbers
    are not kept as their text (a 2 KB body: 16 µs, against 46 µs for parse_body; one-off)."""
    text = _without_bom(body.decode("utf-8", "replace"))
    objects: list[list[tuple[str, Any]]] = []
    try:
        json.loads(text, object_pairs_hook=objects.append)
    except (ValueError, RecursionError):
        return None
    return [key for pairs in objects for key, _ in pairs]


def json_texts(body: bytes) -> list[str] | None:
    """Every string of a JSON body that holds no backslash (object keys included), the text
    of each of its numbers, and "true" and "false": the values and names that parse_body
    gives such a body, and more. None when the body holds a backslash (its strings would
    need decoding) or json.loads refuses it (parse_body then gives it as raw text).

    Without a backslash, every double quote delimits a string: splitting the text at them
    gives each string as it is, in C. json.loads checks that the body parses and hands over
    each number's text, as parse_body keeps it; its walk over every value in Python, which
    costs parse_body two thirds of its time, is spared."""
    if b"\\" in body:
        return None
    text = _without_bom(body.decode("utf-8", "replace"))
    numbers: list[str] = []
    keep = numbers.append
    try:
        json.loads(text, parse_int=keep, parse_float=keep, parse_constant=keep)
    except (ValueError, RecursionError):
        return None
    return [*text.split('"')[1::2], *numbers, "true", "false"]


def _parse_json(raw: str, limits: BodyLimits) -> ParsedBody:
    text = _without_bom(raw)
    if _json_too_deep(text):
        return _json_strings(raw, text, limits)
    try:
        # Numbers stay as their JSON text: no float formatting drift, and no ValueError from
        # int() on thousands of digits. NaN/Infinity likewise.
        doc = json.loads(
            text, parse_int=_keep_text, parse_float=_keep_text, parse_constant=_keep_text
        )
    except (ValueError, RecursionError):
        return _raw(raw, parse_error=True)

    fields, names, truncated = _json_fields(doc, limits)
    return ParsedBody(
        "json", tuple(fields), tuple(names), (), raw, parse_error=False, truncated=truncated
    )


# --------------------------------------------------------------------------- multipart

_LINE_SPLIT_RE = re.compile(rb"\r?\n")
_HEADERS_END_RE = re.compile(rb"\r?\n\r?\n")


def _decode_ext_value(value: str) -> str:
    # RFC 5987 ext-value: charset'language'percent-encoded
    charset, sep, rest = value.partition("'")
    if not sep:
        return unquote(value, errors="replace")
    _, sep, encoded = rest.partition("'")
    if not sep:
        encoded = rest
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="replace")
    except LookupError:
        return unquote(encoded, encoding="utf-8", errors="replace")


# What may follow a boundary on its line: "--" (the close) or transport padding and the line end.
# A line that merely starts with the boundary ("--BOUNDARYxyz") is content, as it is for the
# app's parser; treating it as a delimiter would let a crafted body hide a field's value from
# the WAF in what it took for part headers.
_AFTER_DELIMITER_RE = re.compile(rb"--|[ \t]*(?:\r?\n|\Z)")


def _find_delimiter(body: bytes, delimiter: bytes, start: int) -> int:
    """Index of the next delimiter line at or after `start` (at a line start), or -1."""
    pos = start
    while True:
        if pos == 0 and body.startswith(delimiter):
            found = 0
        else:
            nl = body.find(b"\n" + delimiter, max(pos - 1, 0))
            if nl < 0:
                return -1
            found = nl + 1
        if _AFTER_DELIMITER_RE.match(body, found + len(delimiter)):
            return found
        pos = found + 1


def _parse_multipart(body: bytes, boundary: str, raw: str, limits: BodyLimits) -> ParsedBody:
    boundary = boundary.strip()
    if not boundary:
        return _raw(raw, parse_error=True)
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    # Anything before the first delimiter is a preamble and ignored.
    pos = _find_delimiter(body, delimiter, 0)
    if pos < 0:
        return _raw(raw, parse_error=True)

    fields: list[tuple[str, str]] = []
    names: list[str] = []
    files: list[str] = []
    truncated = False
    closed = False
    parts = 0
    n = len(body)
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):
            closed = True
            break
        eol = body.find(b"\n", pos)
        if eol < 0:
            break
        start = eol + 1
        nxt = _find_delimiter(body, delimiter, start)
        end = n if nxt < 0 else nxt
        part = body[start:end]
        # The line break before the next delimiter belongs to it; bare LF is tolerated.
        if nxt >= 0:
            part = part[:-2] if part.endswith(b"\r\n") else part[:-1]
        if parts >= limits.max_fields:
            truncated = True
            break
        parts += 1
        _add_part(part, fields, names, files)
        if nxt < 0:
            break
        pos = nxt
    if not closed:
        # The body ended inside a part: most often the caller cut it at the inspection limit.
        truncated = True
    return ParsedBody(
        "multipart",
        tuple(fields),
        tuple(names),
        tuple(files),
        raw,
        parse_error=False,
        truncated=truncated,
    )


def _add_part(
    part: bytes, fields: list[tuple[str, str]], names: list[str], files: list[str]
) -> None:
    if part.startswith(b"\n") or part.startswith(b"\r\n"):
        head, content = b"", part[part.index(b"\n") + 1 :]
    else:
        m = _HEADERS_END_RE.search(part)
        if m is None:
            head, content = part, b""
        else:
            head, content = part[: m.start()], part[m.end() :]

    disposition = ""
    for line in _LINE_SPLIT_RE.split(head):
        hname, sep, hvalue = line.partition(b":")
        if sep and hname.strip().lower() == b"content-disposition":
            disposition = hvalue.decode("utf-8", "replace")
            break
    params = _parse_params(disposition[disposition.find(";") :]) if ";" in disposition else {}
    name = params.get("name", "")
    names.append(name)

    filenames: list[str] = []
    if "filename" in params:
        filenames.append(params["filename"])
    if "filename*" in params:
        ext = _decode_ext_value(params["filename*"])
        if ext not in filenames:
            filenames.append(ext)
    filenames = [f for f in filenames if f]
    if filenames:
        files.extend(filenames)
    else:
        # A part with an empty or no filename is a field: its content must not escape
        # inspection just because the sender declared it a file.
        fields.append((name, content.decode("utf-8", "replace")))


# --------------------------------------------------------------------------- XML


class _XMLRefused(Exception):
    """Raised from an expat handler to stop parsing; `truncated` says why."""

    def __init__(self, *, truncated: bool) -> None:
        super().__init__()
        self.truncated = truncated


def _parse_xml(body: bytes, raw: str, limits: BodyLimits) -> ParsedBody:
    """Attribute values and text of an XML document, parsed by expat without any DTD.

    Expat does no I/O and, with no external entity handler set, never reads an external
    entity or DTD. A document with an internal DTD subset is refused (kind "raw",
    parse_error=True): entity declarations are what billion-laughs and XXE documents are made
    of, and attribute defaults would copy a declared value into every element. Such documents
    stay whole for the rules, which is what the XXE rules want. A document past the limits is
    also left whole (kind "raw", truncated=True) rather than cut: nothing in it escapes the
    rules that read whole values, as before XML was parsed at all.
    """
    fields: list[tuple[str, str]] = []
    names: list[str] = []
    text: list[str] = []
    # The open elements: the innermost one names the text it holds.
    stack: list[str] = []
    max_fields = limits.max_fields
    max_depth = limits.json_max_depth

    def flush(element: str) -> None:
        # A text run is everything between two tags: character data, CDATA sections and
        # entities, across comments and processing instructions, as a tree builder (the
        # app's) joins them. Splitting at a CDATA boundary or a comment would let a payload
        # be cut in two pieces that no rule sees whole.
        if text:
            value = "".join(text)
            text.clear()
            if value.strip():
                if len(fields) >= max_fields:
                    raise _XMLRefused(truncated=True)
                fields.append((element, value))

    def start(name: str, attributes: list[str]) -> None:
        # Only whitespace can precede the root element (anything else is malformed).
        flush(stack[-1] if stack else "")
        if len(stack) >= max_depth or len(names) + 1 + len(attributes) // 2 > max_fields:
            raise _XMLRefused(truncated=True)
        stack.append(name)
        names.append(name)
        # ordered_attributes: [name1, value1, name2, value2, ...] in document order.
        for i in range(0, len(attributes), 2):
            names.append(attributes[i])
            if len(fields) >= max_fields:
                raise _XMLRefused(truncated=True)
            fields.append((attributes[i], attributes[i + 1]))

    def end(name: str) -> None:
        flush(name)
        stack.pop()

    def doctype(name: str, system_id: str | None, public_id: str | None, internal: int) -> None:
        if internal:
            raise _XMLRefused(truncated=False)

    def refuse(*_: object) -> None:
        raise _XMLRefused(truncated=False)

    def skipped(name: str, is_parameter_entity: int) -> None:
        # An entity the document uses but never declares (it would be in an external DTD,
        # which is never read): kept as written, as an app that does not resolve it sees it.
        if not is_parameter_entity:
            text.append(f"&{name};")

    parser = expat.ParserCreate()
    # Parameter entities (and with them any external DTD subset) are never parsed.
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.ordered_attributes = True
    # Defaults declared for attributes are not reported (and internal subsets are refused
    # anyway): only what the document itself holds becomes a field.
    parser.specified_attributes = True
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.SkippedEntityHandler = skipped
    try:
        parser.Parse(body, True)
    except _XMLRefused as refused:
        return _raw(raw, parse_error=not refused.truncated, truncated=refused.truncated)
    except (expat.ExpatError, ValueError, RecursionError):
        # ValueError: an encoding declaration naming a codec expat cannot use.
        return _raw(raw, parse_error=True)
    return ParsedBody(
        "xml", tuple(fields), tuple(names), (), raw, parse_error=False, truncated=False
    )
