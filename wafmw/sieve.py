"""The sieve: one RE2 set over the raw request that rules out most filters at once.

A benign request should cost one C call, not a join and a transform chain per group of rules.
The sieve is built from every pattern filter of the ruleset (and every filter whose operator a
pattern can express), made safe to run on the *raw* request text instead of the transformed
values:

- anchors also match at the characters that bound a value in the text (the joining
  character, "=", "&", ";", a quote…): a value's start and end are not the text's any more;
- patterns of chains that fold case (`lowercase`, `cmdline`) run case-insensitively; the
  parts of the text that are not ASCII are scanned lowercased too, since Python's and RE2's
  case rules differ outside ASCII;
- `url_decode` is applied to the text itself when it holds a "%", and the decoded text is
  scanned beside the raw one (it is local: decoding the joined text decodes each value);
- every other transform has a *trigger*, a pattern that matches wherever that transform could
  change a value. When a trigger fires, the sieve says nothing about that group: the engine
  runs the group's own scan over the transformed values, as it would without a sieve.

So when neither a filter's pattern nor its group's triggers match the sieve text, the filter
cannot match the request: each value of each target appears in the text (delimited by
characters that are not word characters, so `\\b` means the same), and the chain leaves it
unchanged up to case. When something does match, the engine confirms value by value, which is
where targets, transforms, exclusions and detectors are resolved exactly.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from .body import is_json, is_xml
from .model import Target
from .patterns import (
    WARY_MIN_BYTES,
    Scanner,
    anchored_at_delimiters,
    as_if_stood_in,
    re2_options,
)
from .request import LONG_TEXT_CHARS, RequestView
from .transforms import (
    BACKSLASH,
    JOIN_CHARACTERS,
    LEGACY_ENTITY_NAMES,
    PERCENT,
    PLUS,
    TRANSFORMS,
    apply_chain,
    cmdline_ascii,
    url_decode,
)

# Transforms that change letter case: their groups' patterns are matched case-insensitively.
_CASE_FOLDING = frozenset({"lowercase", "cmdline"})

# Where each transform could change a value, beyond letter case. url_decode and lowercase have
# none: the sieve text carries their effect itself (see the module docstring).
_ANY_CONTROL_OR_NON_ASCII = r"[\t\n\r\x0b\x0c\x1c-\x1f]|[^\x00-\x7f]"
# What a value can be bounded by in the sieve text: the joining characters, the query's and
# the cookie header's punctuation ("?", "=", "&", "; "), and in a body also JSON's.
_HEAD_DELIMITER = r"[\x00-\x20\x7f=&;?]"
_DELIMITER = r"[\x00-\x20\x7f=&;?\",:\[{}\]]"
TRIGGERS: dict[str, str] = {
    "html_entity_decode": r"(?i)&(?:#|[a-z][a-z0-9]{0,31};|"
    + "|".join(sorted(LEGACY_ENTITY_NAMES, key=len, reverse=True))
    + ")",
    "js_decode": r"\\",
    "remove_nulls": r"\x00",
    "compress_whitespace": r"\s\s|" + _ANY_CONTROL_OR_NON_ASCII,
    "remove_whitespace": r"\s|" + _ANY_CONTROL_OR_NON_ASCII,
    "trim": rf"(?:^|{_DELIMITER})\s|\s(?:$|{_DELIMITER})|" + _ANY_CONTROL_OR_NON_ASCII,
    "normalize_path": rf"\\|//|/\.|(?:^|{_DELIMITER})\.",
    "remove_comments": r"/\*|\*/|--|#|//",
    "replace_comments": r"/\*|\*/|--|#|//",
    "cmdline": r"[\\\"'^,;]|\s\s| /| \(|" + _ANY_CONTROL_OR_NON_ASCII,
    "nfkc": r"[^\x00-\x7f]",
}

_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _base64_text_trigger() -> str:
    """Where base64_decode could change a value: a value that starts with two groups of four
    characters that encode printable ASCII text (the only text base64_decode decodes to).
    Each position of a group draws on two decoded bytes; its class is every character those
    bytes can give, so the pattern admits every such value (and some others)."""
    printable = [9, 10, 13, *range(0x20, 0x7F)]
    positions: list[set[int]] = [set(), set(), set(), set()]
    for a in printable:
        positions[0].add(a >> 2)
        positions[3].add(a & 63)
        for b in printable:
            positions[1].add(((a & 3) << 4) | (b >> 4))
            positions[2].add(((a & 15) << 2) | (b >> 6))
    classes = []
    for members in positions:
        chars = {_B64_ALPHABET[i] for i in members}
        # The URL-safe alphabet has "-" and "_" where the standard one has "+" and "/".
        if "+" in chars:
            chars.add("-")
        if "/" in chars:
            chars.add("_")
        classes.append("[" + "".join(re2.escape(c) for c in sorted(chars)) + "]")
    group = "".join(classes)
    # The whole value is base64: it begins after a delimiter and its first run of base64
    # characters is not cut short by anything but a delimiter or padding.
    return rf"(?:^|{_DELIMITER})(?:{group}){{2}}[A-Za-z0-9+/_-]*=*(?:$|{_DELIMITER})"


TRIGGERS["base64_decode"] = _base64_text_trigger()
# base64_only changes the same values; every other value it empties (see ERASING).
TRIGGERS["base64_only"] = TRIGGERS["base64_decode"]
# Transforms that empty every value their trigger does not fire on: after one of them a filter
# reads nothing but what the trigger found, so the trigger speaks for the group's filters
# and their own patterns stay out of the sieve (unless one matches the empty value).
ERASING = frozenset({"base64_only"})

# The request parts the head text holds; a filter joins the sieve only when it reads nothing
# else. Each value of each of these kinds is a substring of the text: of the request line's
# parts (method and version, path, raw path and query) or of the headers' (names and values).
REQUEST_LINE_KINDS = frozenset(
    {"method", "http_version", "path", "raw_path", "query", "uri", "args", "args_names"}
)
HEADER_KINDS = frozenset({"headers", "header_names", "cookies", "cookie_names"})
HEAD_KINDS = REQUEST_LINE_KINDS | HEADER_KINDS
BODY_KINDS = frozenset({"body", "body_names", "body_raw", "files"})
_BODY_UNITS = (Target("body"), Target("body_names"), Target("files"))


@dataclass(slots=True, eq=False)
class SieveEntry:
    """What one member of the set stands for: a filter of a group, or a group's trigger."""

    group: int
    filter: Any  # the engine's CompiledFilter, or None for a trigger of the group


# Values every browser sends. A direct filter (one that reads a few named values) whose sieve
# pattern matches one of them would be flagged on every request: it is checked directly.
_BENIGN_SAMPLES = (
    "GET",
    "POST",
    "1.1",
    "/",
    "/index.html",
    "/api/v1/items/42",
    "page=2&sort=price",
    "shop.example.com",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:132.0) Gecko/20100101 Firefox/132.0",
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
    "gzip, deflate, br, zstd",
    "en-US,en;q=0.9",
    "keep-alive",
    "no-cache",
    "?0",
    "?1",
    "same-origin",
    "https://shop.example.com/catalog?page=2",
)


def looks_benign(pattern: str) -> bool:
    """Whether the pattern stays quiet on ordinary browser values."""
    compiled = re2.compile(pattern, re2_options())
    return not any(compiled.search(sample) for sample in _BENIGN_SAMPLES)


# Head parts (header values, paths, queries) recur across requests — the same browser sends
# the same User-Agent, Accept and client hints every time — so what the sieve found in each
# part is remembered: a part seen before costs a dictionary lookup instead of a scan. Bounded
# in entries and in the length of what is remembered, and forgotten wholesale when full.
PART_MEMORY = 8192
PART_MAX_BYTES = 512

# What a JSON body's quotes and backslashes become in the body sieve's text: a control
# character that is no joining character the sieve picks, no whitespace, and a delimiter of
# values. Both are JSON's own syntax there (a value's quote or backslash is escaped, and the
# body is then scanned parsed too): as they are, they would wake the rules that look for a
# quote, and the triggers that look for a backslash, on every such body.
QUOTE_STAND_IN = b"\x1a"
BACKSLASH_STAND_IN = b"\x1b"
STAND_INS = {'"': QUOTE_STAND_IN.decode(), "\\": BACKSLASH_STAND_IN.decode()}


def _json_junk(*, stood_in: bool) -> Any:
    """A pattern that matches, from the start, a body which is not lexically JSON: outside
    the strings a character or word JSON never has there, or a string holding a raw control
    character or a bad escape, or never ending. Exact for valid UTF-8 (RE2 matches no invalid
    byte at all), except that numbers are only checked for their characters. Two values with
    nothing between them are found; other tokens in an order JSON does not allow (a colon in
    an array, a key without a value, brackets that do not pair) are not: that needs the
    parser. `stood_in`: for the body with its quotes and backslashes as their STAND_INS (a
    control character in the original then reads as one of them), else for the body as is."""
    if stood_in:
        q, b = "\\x1a", "\\x1b"
        string_char, control = r"[^\x00-\x1f]", r"[\x00-\x19\x1c-\x1f]"
    else:
        q, b = "\\x22", "\\x5c"
        string_char, control = rf"[^\x00-\x1f{q}{b}]", r"[\x00-\x1f]"
    plain = r"\t\n\r {}\[\],:0-9.eE+\-"  # whitespace, syntax and the characters of numbers
    char = rf"{string_char}|{b}(?:[{q}{b}/bfnrt]|u[0-9a-fA-F]{{4}})"
    tokens = rf"\A(?:[{plain}]|true|false|null|{q}(?:{char})*{q})*"
    # After valid tokens: a stray character, a word that is not a literal, or a string cut
    # short (by the end, a control character other than its closing quote, or a backslash
    # with no valid escape after it).
    stray = rf"[^{plain}tfn{q}]"
    word = (
        r"t(?:\z|[^r]|r(?:\z|[^u]|u(?:\z|[^e])))"
        r"|f(?:\z|[^a]|a(?:\z|[^l]|l(?:\z|[^s]|s(?:\z|[^e]))))"
        r"|n(?:\z|[^u]|u(?:\z|[^l]|l(?:\z|[^l])))"
    )
    bad_escape = rf"{b}(?:[^{q}{b}/bfnrtu]|u[0-9a-fA-F]{{0,3}}(?:[^0-9a-fA-F]|\z)|\z)"
    cut = rf"\z|{control}|{bad_escape}"
    # Or two values with no comma or colon between them ("x" "y", 1 2, ]{).
    start = rf"[{q}tfn\[{{0-9\-]"
    ended = rf"(?:{q}(?:{char})*{q}|true|false|null|[\]}}])[\t\n\r ]*{start}"
    number = rf"[0-9.eE+\-](?:[\t\n\r ]+{start}|[{q}tfn\[{{])"
    junk = rf"{tokens}(?:{stray}|{word}|{ended}|{number}|{q}(?:{char})*(?:{cut}))"
    return re2.compile(junk, re2_options())


_JSON_JUNK = _json_junk(stood_in=True)
# The same pattern as a member of the body's raw pass, so that a JSON body scanned as it is
# (ASCII, no escape, nothing appended) learns whether it lexes in the same scan; and its form
# for the body as is, a member of the JSON pass (see Sieve.json_pass).
JSON_JUNK_SOURCE: str = _JSON_JUNK.pattern
JSON_JUNK_AS_IS_SOURCE: str = _json_junk(stood_in=False).pattern
JSON_JUNK_ENTRY = SieveEntry(-1, None)

# Where each part of the head text comes from: 0 the method and HTTP version, 1 the path (when
# it differs from the raw path), 2 the raw path and query; then, for header k, 3 + 2k its name
# and 4 + 2k its value.
_URI_PART = 2
_CMDLINE = ("cmdline",)
_JSON_SYNTAX_STOOD_IN = bytes.maketrans(b'"\\', QUOTE_STAND_IN + BACKSLASH_STAND_IN)
_REQUEST_LINE_PARTS = 3
FIRST_HEADER_PART = _REQUEST_LINE_PARTS
_FIRST_HEADER_KEY = _REQUEST_LINE_PARTS  # in scan_head's keys, header k is at 3 + k


@dataclass(slots=True)
class SievePass:
    """One RE2 set and the text it reads: the raw text (`chain` empty), or the raw text
    transformed by `chain` for the groups whose triggers would fire on ordinary values."""

    chain: tuple[str, ...]
    scanner: Scanner
    entries: list[SieveEntry]


# What the head scan flagged: each entry with the indices of the parts that flagged it.
Flagged = dict[SieveEntry, list[int]]


@dataclass(slots=True)
class Sieve:
    passes: tuple[SievePass, ...]
    separator: bytes
    # Whether some group folds case (then text that is not ASCII is scanned lowercased too).
    folds: bool
    # Groups the sieve cannot speak for (a pattern it could not take): always scanned.
    unsieved: frozenset[int] = field(default_factory=frozenset)
    # Direct filters (those checked on every request without a sieve) that the sieve speaks
    # for: checked only when flagged.
    skippable: frozenset[Any] = field(default_factory=frozenset)
    # What each head part held: by bytes for the request line parts, by (name, value) for
    # headers (see scan_head).
    parts_seen: dict[Any, Any] = field(default_factory=dict)
    # Whether a JSON body's quotes and backslashes may be scanned as their STAND_INS.
    quote_stand_in: bool = False
    # (group index, filter) of the body's file-name filters, which the sieve does not scan
    # for: the engine checks them directly on a body that can hold files.
    files_direct: tuple[tuple[int, Any], ...] = ()
    # The body's only pass rewritten to read a JSON body without escapes as it is, matching
    # where the pass matches the body with its quotes stood in (patterns.as_if_stood_in): the
    # copy that standing them in makes (a byte-by-byte translation, about a quarter of the
    # scan's own time) is spared. None where a pattern could not be rewritten.
    json_pass: SievePass | None = None

    def scan_head(self, view: RequestView) -> Flagged:
        """What the sieve flags in the request head, and in which parts."""
        scope = view.scope
        query: bytes = scope.get("query_string", b"")
        raw_path: bytes | None = scope.get("raw_path")
        path = view.path.encode("utf-8", "replace")
        if raw_path is None:
            raw_path = path
        elif raw_path == path:
            path = b""  # the next part holds it
        headers = scope.get("headers", ())
        # Request line parts are remembered by their bytes, headers by their (name, value).
        keys: list[Any] = [
            f"{view.method} {view.http_version}".encode("latin-1", "replace"),
            path,
            raw_path + b"?" + query if query else raw_path,
            *headers,
        ]
        seen = self.parts_seen
        try:
            known = list(map(seen.get, keys))
        except TypeError:  # headers given as lists (ASGI allows any iterable pair)
            keys[_FIRST_HEADER_KEY:] = [(name, value) for name, value in headers]
            known = list(map(seen.get, keys))
        flagged: Flagged = {}
        if None in known:
            self._scan_fresh(view, keys, known)
        elif not any(known):
            return flagged  # the usual case: every part seen before, all clean
        for i in itertools.compress(range(len(known)), known):
            hits: Any = known[i]
            if i < _FIRST_HEADER_KEY:
                for entry in hits:
                    flagged.setdefault(entry, []).append(i)
                continue
            part = FIRST_HEADER_PART + 2 * (i - _FIRST_HEADER_KEY)
            for entry in hits[0]:
                flagged.setdefault(entry, []).append(part)
            for entry in hits[1]:
                flagged.setdefault(entry, []).append(part + 1)
        return flagged

    def confirm_header(self, name: bytes, value: bytes) -> None:
        """The engine checked every flag on this header value and found it false: the value
        stops being flagged (its name's flags, if any, stay)."""
        key = (name, value)
        hits = self.parts_seen.get(key)
        if hits:
            self.parts_seen[key] = (hits[0], ()) if hits[0] else ()

    def _scan_fresh(self, view: RequestView, keys: list[Any], known: list[Any]) -> None:
        """Scan the parts not seen before (all at once, then one by one if anything matched)
        and remember what each holds: a tuple of entries for a request line part, a pair of
        them (name, value) for a header; () when nothing matched."""
        query: bytes = view.scope.get("query_string", b"")
        extra: tuple[str, ...] = ()
        if query and (PERCENT in query or PLUS in query):
            # The parsed arguments are no substrings of the raw query: scanned with it.
            extra = (self.separator.decode().join(itertools.chain.from_iterable(view.args)),)
        fresh = [i for i, hits in enumerate(known) if hits is None]
        uri = _URI_PART
        pieces: list[bytes] = []
        for i in fresh:
            if i < _FIRST_HEADER_KEY:
                pieces.append(keys[i])
            else:
                pieces.extend(keys[i])
        found = self._run(pieces, extra if uri in fresh else (), view=view)
        if not found:
            for i in fresh:
                known[i] = ()
        elif len(fresh) == 1 and fresh[0] < _FIRST_HEADER_KEY:
            # One part of the request line, the usual new part (headers recur): scanned part
            # by part, it would be the same scan of the same text again.
            known[fresh[0]] = tuple(found)
        else:
            # Something matched: scan part by part, to know which.
            for i in fresh:
                if i < _FIRST_HEADER_KEY:
                    known[i] = tuple(self._run((keys[i],), extra if i == uri else (), view=view))
                else:
                    name, value = keys[i]
                    pair = (tuple(self._run((name,))), tuple(self._run((value,))))
                    known[i] = pair if pair[0] or pair[1] else ()
        seen = self.parts_seen
        if len(seen) + len(fresh) > PART_MEMORY:
            seen.clear()
        for i in fresh:
            key = keys[i]
            size = len(key) if i < _FIRST_HEADER_KEY else len(key[0]) + len(key[1])
            if size <= PART_MAX_BYTES:
                seen[key] = known[i]

    def scan_body(self, view: RequestView, media_type: str) -> Flagged:
        """What the sieve flags in the body, of the view's media type (the caller has it: a
        property's call the less); never remembered: bodies rarely recur."""
        body = view.body or b""
        if not body:
            return {}
        extra: Sequence[str] = ()  # texts scanned beside the body
        # JSON strings without escapes, and forms without escapes, are substrings of the raw
        # body; anything else (escapes, multipart) is scanned as parsed, beside the raw body.
        if media_type == "multipart/form-data":
            extra = self._parsed(view)
        elif media_type == "application/x-www-form-urlencoded":
            if PERCENT in body or PLUS in body:
                extra = self._parsed(view)
        elif media_type == "application/json" or is_json(media_type):  # a call the less
            # JSON's own quotes and escapes would wake every rule that looks for a quote and
            # every trigger that looks for a backslash; in a body that parses, the values hold
            # neither (the strings with escapes are scanned decoded beside it), and rules on
            # the raw body were made to match the stand-ins too (tolerating()). A body that
            # does not parse is read by the rules as raw text, so it is scanned as it is.
            escaped = BACKSLASH in body
            if not self.quote_stand_in:
                if escaped:
                    extra = self._parsed(view)
            elif not escaped and body.isascii() and PERCENT not in body:
                # The usual case: one scan of the body as it is (nothing to append), with the
                # lexer in it, which tells whether the rules will read it as JSON; by the pass
                # that reads the quotes as stood in where there is one, which spares the copy.
                # A body that does not lex is scanned as it is, below.
                json_pass = self.json_pass
                if json_pass is not None:
                    scanner = json_pass.scanner
                    # Scanner.match's short-text branch, inlined: a short body's one scan is
                    # spared a Python call. From WARY_MIN_BYTES on, match() times the scan
                    # (random text in a 2 KB body: 36 ms unprobed, 5 ms once wary).
                    hits = (
                        scanner.Match(body) if len(body) < WARY_MIN_BYTES else scanner.match(body)
                    )
                    if not hits:  # the usual case: no comprehension's call to build {}
                        return {}
                    found = [json_pass.entries[i] for i in hits]
                else:
                    found = self._run((body.translate(_JSON_SYNTAX_STOOD_IN),), finished=True)
                if JSON_JUNK_ENTRY not in found:
                    return {entry: [] for entry in found}
            else:
                stood_in = body.translate(_JSON_SYNTAX_STOOD_IN)
                if (body.isascii() or _utf8(body)) and _JSON_JUNK.search(stood_in) is None:
                    # It lexes: each value is in the stood-in text, or a string with escapes,
                    # decoded here (no parse of the whole document).
                    if escaped:
                        decoded = self._escaped_strings(body)
                        extra = self._parsed(view) if decoded is None else (decoded,)
                    body = stood_in
                else:
                    # Bytes RE2 cannot read, or it does not lex: the parser tells how the rules
                    # read it (as raw text, scanned as it is, when it does not parse).
                    if escaped:
                        extra = self._parsed(view)
                    if not view.parsed_body.parse_error:
                        body = stood_in
        elif is_xml(media_type):
            # Entities, character references and CDATA make XML values differ from the raw
            # text; parsing is what finds them, so the parsed values are always scanned too.
            extra = self._parsed(view)
        return self._flag(self._run((body,), extra, view=view))

    @staticmethod
    def _flag(found: list[SieveEntry]) -> Flagged:
        return {entry: [] for entry in found if entry is not JSON_JUNK_ENTRY}

    def _escaped_strings(self, body: bytes) -> str | None:
        """The strings of a body that lexes as JSON that hold an escape, decoded and joined;
        None when there are more than _ESCAPED_STRINGS_MAX (one parse then costs less than a
        decode per string). Searched from each quote, a string is only found where one
        begins: between strings, valid JSON has no backslash, so a search from a closing
        quote fails at the next quote."""
        decoded: list[str] = []
        for m in _ESCAPED_STRING.finditer(body):
            if len(decoded) == _ESCAPED_STRINGS_MAX:
                return None
            decoded.append(json.loads(m.group()))
        return self.separator.decode().join(decoded)

    def _run(
        self,
        pieces: Sequence[bytes],
        extra: Sequence[str] = (),
        *,
        finished: bool = False,
        view: RequestView | None = None,
    ) -> list[SieveEntry]:
        """The entries the passes flag in the pieces joined (with the texts of `extra`);
        `finished`: the text is known to need no copies appended (see _finish), so it is not
        looked through again. `view`: the request the pieces come from (see _finish)."""
        text = self.separator.join(pieces) if finished else self._finish(pieces, extra, view)
        flagged: list[SieveEntry] = []
        for sieve_pass in self.passes:
            subject = text
            if sieve_pass.chain:
                # The text already holds its url-decoded copy (see _finish): a chain's leading
                # url_decode has nothing left to add.
                chain = sieve_pass.chain
                if chain[0] == "url_decode":
                    chain = chain[1:]
                if chain == _CMDLINE and text.isascii():
                    # A cmdline group whose patterns tolerating_cmdline could not rewrite:
                    # its pass over ASCII text, without str round trips.
                    subject = cmdline_ascii(text)
                else:
                    subject = apply_chain(text.decode("utf-8"), chain).encode("utf-8")
            hits = sieve_pass.scanner.match(subject)
            if hits:
                entries = sieve_pass.entries
                flagged.extend(entries[i] for i in hits)
        return flagged

    # -- the text ---------------------------------------------------------------------------

    def _parsed(self, view: RequestView) -> tuple[str, ...]:
        return view.target_texts(_BODY_UNITS, self.separator.decode())

    def _finish(
        self, pieces: Sequence[bytes], extra: Sequence[str], view: RequestView | None
    ) -> bytes:
        """The pieces joined and the texts of `extra`, plus their url-decoded, lowercased and
        transformed copies as needed. With the request's view, a long text is url-decoded
        piece by piece through it (RequestView.url_decoded): the head's sieve may scan a URI
        twice (in the join of the new parts, then alone) and the body groups' scans decode
        the body's texts too."""
        text = pieces[0] if len(pieces) == 1 else self.separator.join(pieces)
        if not extra and text.isascii() and PERCENT not in text:
            return text
        sep = self.separator.decode()
        if view is None or len(pieces) == 1 or len(text) < LONG_TEXT_CHARS or PERCENT not in text:
            texts = [text.decode("utf-8", "replace")]
        else:
            # Piece by piece, for the view to url-decode each (the separator is ASCII: the
            # pieces decode to the pieces of the whole), each decoded once.
            texts = [piece.decode("utf-8", "replace") for piece in pieces]
        parts = [sep.join(texts), *extra]
        s = sep.join(parts)
        if "%" in s:
            if view is None or len(s) < LONG_TEXT_CHARS:
                decoded = url_decode(s)
            else:
                decoded = view.url_decoded([*texts, *extra], sep)
            if decoded != s:  # a "%" that begins no escape ("100%", random text): no copy
                parts.append(decoded)
        if self.folds:
            # The parts that are not ASCII, lowercased: the case-insensitive patterns read
            # ASCII's case as lower() does. A part of ASCII beside one that is not (the raw
            # body beside its url-decoded copy, random text's escapes decoded) is not copied.
            parts += [part.lower() for part in parts if not part.isascii()]
        return sep.join(parts).encode("utf-8", "replace")


# A JSON string holding at least one escape (see Sieve._escaped_strings), and how many of
# them are decoded one by one before parsing the whole document is the cheaper way. The
# string's rest is read as runs of plain characters between escapes, a step a run: a step a
# character cost five times as long (64 KB of random text: 2.5 ms, one-off).
_ESCAPED_STRING = re.compile(rb'"[^"\\]*\\.[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_ESCAPED_STRINGS_MAX = 64


def kinds_of_parts(parts: list[int]) -> frozenset[str] | None:
    """The head target kinds whose values the given parts of the head text hold (None: any,
    when the parts are not known)."""
    if not parts:
        return None
    kinds: frozenset[str] = frozenset()
    if any(i < FIRST_HEADER_PART for i in parts):
        kinds |= REQUEST_LINE_KINDS
    if any(i >= FIRST_HEADER_PART for i in parts):
        kinds |= HEADER_KINDS
    return kinds


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def sieve_pattern(source: str, chain: Sequence[str], *, body: bool) -> str:
    """A filter's pattern as the sieve of the head or body phase runs it on raw text."""
    pattern = anchored_at_delimiters(source, _DELIMITER if body else _HEAD_DELIMITER)
    if _CASE_FOLDING.intersection(chain):
        pattern = "(?i:" + pattern + ")"
    return pattern


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """How the sieve speaks for one group: by its triggers, or by scanning the text once more
    through the group's chain (`applied`), which needs no trigger."""

    triggers: tuple[str, ...]
    applied: tuple[str, ...] | None = None
    # The chain empties every value its triggers do not fire on (see ERASING).
    erasing: bool = False


def plan_group(chain: Sequence[str]) -> GroupPlan | None:
    """The sieve's plan for a chain, or None when it cannot speak for it."""
    triggers: list[str] = []
    seen_url_decode = False
    folded = False
    for name in chain:
        if name == "url_decode":
            # The first url_decode is carried by the text; a second one would decode again.
            if seen_url_decode:
                triggers.append(r"%")
            seen_url_decode = True
        elif name == "lowercase":
            pass
        elif name in TRIGGERS:
            trigger = TRIGGERS[name]
            # After a case change the trigger must also match the other case.
            triggers.append("(?i:" + trigger + ")" if folded else trigger)
        else:
            return None
        if name in _CASE_FOLDING:
            folded = True
    # A trigger that fires on ordinary values would send the group to its own scan on every
    # request; a chain of local transforms can run over the joined text instead.
    if all(TRANSFORMS[name].local for name in chain) and not all(looks_benign(t) for t in triggers):
        return GroupPlan((), tuple(chain))
    return GroupPlan(tuple(triggers), erasing=not ERASING.isdisjoint(chain))


def compile_passes(
    members: dict[tuple[str, ...], tuple[list[str], list[SieveEntry]]],
) -> tuple[tuple[SievePass, ...], bytes]:
    """Compile each pass's set and pick a joining character that no member of any pass
    matches on its own (any would be correct; this one flags nothing by itself)."""
    passes = tuple(
        SievePass(chain, Scanner(sources), entries)
        for chain, (sources, entries) in members.items()
        if sources
    )
    for ch in JOIN_CHARACTERS:
        if ch == "\x00":
            continue
        probes = [p.encode() for p in (ch, ch * 3, f"a{ch}a", f"a {ch} a", f"1{ch}1")]
        if not any(
            p.entries[i] is not JSON_JUNK_ENTRY
            for p in passes
            for probe in probes
            for i in p.scanner.Match(probe) or ()
        ):
            return passes, ch.encode()
    return passes, b"\x01"


def json_pass_of(sources: list[str], entries: list[SieveEntry]) -> SievePass | None:
    """The body pass that reads a JSON body without escapes as it is (see Sieve.json_pass),
    from the sources and entries of the body's only pass; None when a pattern is not
    rewritten or the set does not compile."""
    rewritten: list[str] = []
    for source, entry in zip(sources, entries, strict=True):
        if entry is JSON_JUNK_ENTRY:
            rewritten.append(JSON_JUNK_AS_IS_SOURCE)
            continue
        try:
            rewritten.append(as_if_stood_in(source, '"', QUOTE_STAND_IN.decode()))
        except ValueError:
            return None
    try:
        return SievePass((), Scanner(rewritten), list(entries))
    except re2.error:
        return None
