"""Value transforms applied to request values before pattern matching.

Each transform is a pure ``str -> str`` function that never raises and never grows its input by
more than a small factor (4x at most), because it runs on attacker-controlled data on every
request. Each has a cheap fast path for the common benign value.

``Transform.local`` says whether a transform may be run once over values joined by a separator
instead of once per value. The engine joins values with an ASCII control character that is not
whitespace (``JOIN_CHARACTERS``); a transform is local when no decoding, comment, path segment or
trimming rule can reach across one. It is checked by a property test.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html.entities import html5 as _HTML5
from itertools import filterfalse
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

import re2

__all__ = ["TRANSFORMS", "Transform", "apply_chain"]


# Single bytes as ints, for membership tests on hot paths: `PERCENT in data` is a memchr,
# where `b"%" in data` first tries its argument as an int, and raises and clears a TypeError
# (about 130 ns and 1,900 instructions more per test). Longer bytes are searched with
# `data.find(...)` for the same reason.
PERCENT, PLUS, BACKSLASH, AMPERSAND = b"%+\\&"

# The characters the engine may join values with: ASCII control characters that no transform
# decodes, removes or treats as whitespace (Python counts \x1c-\x1f as whitespace). NUL is one
# of them except for chains with remove_nulls, which the engine checks itself.
JOIN_CHARACTERS = tuple(chr(c) for c in (*range(0, 9), *range(14, 28), 127))


@dataclass(frozen=True, slots=True)
class Transform:
    name: str
    apply: Callable[[str], str]
    # True when apply("a" + "\n" + "b") == apply("a") + "\n" + apply("b") for all a, b that
    # contain no "\n" of their own, i.e. the transform may be run once over values joined with
    # "\n" instead of once per value. The engine uses this for speed.
    local: bool


# --------------------------------------------------------------------------- url_decode

_URL_ROUNDS = 4

# Invalid UTF-8 after percent-decoding is decoded byte by byte as latin-1 (so "%ff" is "ÿ", never
# an opaque U+FFFD that hides how many bytes were sent), except overlong encodings of a code
# point, which are decoded to that code point: "%c0%af" is "/" and "%c0%ae" is ".", the classic
# IIS traversal evasions; a detector must see them as what a lenient decoder would.
_URL_ERRORS = "wafmw-url-lenient"


def _lenient_utf8_errors(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    data = exc.object
    i = exc.start
    b0 = data[i]
    n = len(data)

    def cont(k: int) -> int:
        # -1 when byte k is missing or not a continuation byte, so the checks below fail.
        return data[k] & 0x3F if k < n and 0x80 <= data[k] <= 0xBF else -1

    if b0 in (0xC0, 0xC1) and (c1 := cont(i + 1)) >= 0:
        return chr(((b0 & 0x1F) << 6) | c1), i + 2
    if b0 == 0xE0 and i + 1 < n and 0x80 <= data[i + 1] <= 0x9F and (c2 := cont(i + 2)) >= 0:
        return chr(((data[i + 1] & 0x3F) << 6) | c2), i + 3
    if b0 == 0xF0 and i + 1 < n and 0x80 <= data[i + 1] <= 0x8F:
        c2, c3 = cont(i + 2), cont(i + 3)
        if c2 >= 0 and c3 >= 0:
            cp = ((data[i + 1] & 0x3F) << 12) | (c2 << 6) | c3
            # A surrogate in a str would break UTF-8 encoding for RE2 later.
            if not 0xD800 <= cp <= 0xDFFF:
                return chr(cp), i + 4
    return chr(b0), i + 1


codecs.register_error(_URL_ERRORS, _lenient_utf8_errors)

_BAD_PCT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# The same, for RE2 (no look-ahead: the characters after the "%" are part of the match). RE2
# skips over valid escapes at C speed (about 6 ns each), where the `re` pattern above stops at
# each one (about 17 ns); but each RE2 call through its Python wrapper costs about 2 µs, where
# a `re` call costs a tenth of that.
_BAD_PCT_SCAN = re2.compile(rb"%(?:[^0-9A-Fa-f]|[0-9A-Fa-f](?:[^0-9A-Fa-f]|$)|$)")
# Below this many bytes, one `re` substitution costs less than one RE2 call.
_SHORT_ESCAPED = 512


def _spell_broken_escapes(data: bytes) -> bytes:
    """Every "%" not followed by two hex digits spelled "%25" (so that it decodes to itself).
    A long text is searched by RE2 once for its first broken escape: a text of valid escapes
    ends there. From that one on, the `re` substitution spells them all in one call (a loop of
    RE2 searches, one per broken escape, cost 2 µs each: 1 ms for a 1 KB value of them)."""
    if len(data) < _SHORT_ESCAPED:
        return _BAD_PCT.sub(b"%25", data)
    first = _BAD_PCT_SCAN.search(data)
    if first is None:
        return data
    # Every "%" before `first` begins a valid escape, which ends before it: the look-ahead
    # reads the same characters in the tail as in the whole.
    start = first.start()
    return data[:start] + _BAD_PCT.sub(b"%25", data[start:])


# A %uXXXX escape: (high, low) of a surrogate pair, or one code point.
_PCT_U = (
    r"%[uU]([dD][89abAB][0-9A-Fa-f]{2})%[uU]([dD][c-fC-F][0-9A-Fa-f]{2})"
    r"|%[uU]([0-9A-Fa-f]{4})"
)
_PCT_RE = re.compile(r"(?:%[0-9A-Fa-f]{2})+|" + _PCT_U)


def _surrogate_pair(hi: str, lo: str) -> str:
    return chr(0x10000 + ((int(hi, 16) - 0xD800) << 10) + (int(lo, 16) - 0xDC00))


def _code_point(cp: int) -> str:
    # Lone surrogates and out-of-range values become U+FFFD: a str holding a surrogate cannot be
    # encoded to UTF-8, which RE2 needs.
    if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
        return "\ufffd"
    return chr(cp)


def _pct_sub(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        return _surrogate_pair(m.group(1), m.group(2))
    if m.group(3) is not None:
        return _code_point(int(m.group(3), 16))
    return bytes.fromhex(m.group().replace("%", "")).decode("utf-8", _URL_ERRORS)


# The %u escapes of _PCT_RE alone, for re.split.
_PCT_U_RE = re.compile(_PCT_U)


def _url_decode_round(s: str) -> str:
    # A letter first: finding one character is a memchr, finding "%u" in a text dense in "%"
    # (nested encodings) is a step at each of them, about 100 µs for 64 KB, twice.
    if ("u" in s or "U" in s) and ("%u" in s or "%U" in s):
        # The %u escapes one by one, the text between them at C speed: a single "%u" once
        # sent the whole text through a callback per escape (tens of ms for 32 KB of them).
        pieces = _PCT_U_RE.split(s)
        out = [_url_decode_plain(pieces[0])]
        for i in range(1, len(pieces), 4):
            high, low, single = pieces[i : i + 3]
            out.append(
                _surrogate_pair(high, low) if single is None else _code_point(int(single, 16))
            )
            out.append(_url_decode_plain(pieces[i + 3]))
        return "".join(out)
    return _url_decode_plain(s)


def _url_decode_plain(s: str) -> str:
    """One round of %XX decoding of text that holds no %uXXXX escape: at C speed, whatever
    else the text holds (see _percent_bytes), then the bytes decoded as UTF-8 leniently (see
    _URL_ERRORS)."""
    if "%" not in s:
        return s
    try:
        data = s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return _PCT_RE.sub(_pct_sub, s)
    raw = _percent_bytes(data)
    if raw.isascii():
        return raw.decode("ascii")
    return raw.decode("utf-8", _URL_ERRORS)


def _percent_bytes(data: bytes) -> bytes:
    """One round of %XX decoding at C speed: "%XX" becomes "\\xXX" for the escape_decode
    codec, which yields one byte per escape. Backslashes are doubled so that only our escapes
    decode, and a "%" not followed by two hex digits is spelled "%25" so that it stays itself:
    a single broken escape must not send a long value down a slow path."""
    if BACKSLASH in data:
        data = data.replace(b"\\", b"\\\\")
    return codecs.escape_decode(_spell_broken_escapes(data).replace(b"%", b"\\x"))[0]


def form_unquote(s: str) -> str:
    """What `urllib.parse.unquote_plus(s, errors="replace")` gives (a query or form value:
    "+" is a space, one round of %XX, strict UTF-8), at C speed for ASCII text: urllib loops
    in Python over every escape, milliseconds for a long value made of them."""
    if "+" in s:
        s = s.replace("+", " ")
    if "%" not in s:
        return s
    if not s.isascii():
        return unquote(s, errors="replace")  # decoded run by run between the other characters
    raw = _percent_bytes(s.encode("ascii"))
    return raw.decode("ascii") if raw.isascii() else raw.decode("utf-8", "replace")


def url_decode(s: str) -> str:
    if "%" not in s:
        return s
    for _ in range(_URL_ROUNDS):
        # A round changes the text exactly when it holds an escape; the one that would find
        # none is not run (on a text of broken escapes, "%'(" say, it cost more than the
        # rounds before it, spelling each one "%25" to decode it back).
        if not _holds_escape(s):
            break
        s = _url_decode_round(s)
        if "%" not in s:
            break
    return s


# What a round decodes: %XX, or %uXXXX (see _url_decode_round).
_ESCAPE_SOURCE = r"%(?:[0-9A-Fa-f]{2}|[uU][0-9A-Fa-f]{4})"
_ESCAPE = re.compile(_ESCAPE_SOURCE)
_ESCAPE_SCAN = re2.compile(_ESCAPE_SOURCE.encode())


def _holds_escape(s: str) -> bool:
    """Whether `s` holds an escape that url_decode decodes: through RE2 on a long text (see
    _BAD_PCT_SCAN), through `re` on a short one."""
    if len(s) < _SHORT_ESCAPED:
        return _ESCAPE.search(s) is not None
    return _ESCAPE_SCAN.search(s.encode("utf-8", "surrogatepass")) is not None


# --------------------------------------------------------------------------- html_entity_decode

# Names HTML decodes without a trailing ";" (the legacy ones) appear in the table without it.
LEGACY_ENTITY_NAMES = frozenset(k for k in _HTML5 if not k.endswith(";"))
_LEGACY_MAX = max(len(k) for k in LEGACY_ENTITY_NAMES)


def _trie_pattern(words: frozenset[str]) -> str:
    # The names as a trie-shaped regex: Python's re tries a flat alternation one by one, and
    # the optional tails are greedy, so the longest name wins, as in HTML.
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


# Only what can decode is matched, so an "&" in "a=1&city=x" costs no Python callback. Entity
# names are at most 31 characters; bounding the run keeps the prefix search cheap.
def _entity_pattern(group: str) -> str:
    return (
        rf"&(?:#[xX]{group}[0-9A-Fa-f]+);?|#{group}[0-9]+);?|{group}[A-Za-z][A-Za-z0-9]{{0,31}});|"
        + group
        + _trie_pattern(LEGACY_ENTITY_NAMES)
        + "))"
    )


_ENTITY_RE = re.compile(_entity_pattern("("))
# The same, as one group: split() hands back the text between entities and the entities in
# turn, so that each entity is decoded by a dictionary lookup instead of a Python callback per
# match (text made of entities cost about 0.5 us per entity that way).
_ENTITY_SPLIT = re.compile("(" + _entity_pattern("(?:") + ")")
# Decoded entities (and, below, JavaScript escapes) by their text: bounded in entries and in
# the length of what is kept (see _decode_by_split).
_ENTITY_MEMO: dict[str, str] = {}
_DECODED_MEMORY = 4096
_DECODED_MAX_TEXT = 40
# _entities_by_pieces decodes a text whose first _PIECES_SAMPLE_CHARS hold at least
# _PIECES_MIN "&"s and at most _PIECES_NEW_MAX distinct pieces, unless more than that many of
# its pieces are new to its memory: each costs a Python step.
_PIECES_MIN = 64
_PIECES_SAMPLE_CHARS = 2048
_PIECES_NEW_MAX = 32


def _cp1252_c1() -> dict[int, str]:
    # HTML maps numeric references in 0x80-0x9F as if they were windows-1252 bytes.
    table: dict[int, str] = {}
    for b in range(0x80, 0xA0):
        try:
            table[b] = bytes([b]).decode("cp1252")
        except UnicodeDecodeError:
            table[b] = chr(b)
    return table


_C1_TABLE = _cp1252_c1()


def _numeric_ref(digits: str, base: int) -> str:
    digits = digits.lstrip("0")
    # Long digit strings are out of range anyway, and int() of thousands of digits raises.
    if len(digits) > 8:
        return "\ufffd"
    cp = int(digits, base) if digits else 0
    if cp == 0:
        return "\ufffd"
    if 0x80 <= cp <= 0x9F:
        return _C1_TABLE[cp]
    return _code_point(cp)


def _entity_sub(m: re.Match[str]) -> str:
    hex_digits, dec_digits, name, legacy = m.groups()
    if hex_digits is not None:
        return _numeric_ref(hex_digits, 16)
    if dec_digits is not None:
        return _numeric_ref(dec_digits, 10)
    if legacy is not None:
        return _HTML5[legacy]
    full = _HTML5.get(name + ";")
    if full is not None:
        return full
    # An unknown "name;": HTML still takes the longest legacy name that prefixes it.
    for k in range(min(len(name), _LEGACY_MAX), 1, -1):
        if name[:k] in LEGACY_ENTITY_NAMES:
            return _HTML5[name[:k]] + name[k:] + ";"
    return m.group()


# Where an entity can begin: the split tries its whole pattern at every "&", about 90 ns
# each, where this search steps over those that no "#" or letter follows.
_ENTITY_START = re.compile(r"&[#A-Za-z]")


# Decoded pieces of text (what follows one "&", up to the next) by their text, for
# _entities_by_pieces; bounded as _ENTITY_MEMO is (_remember).
_ENTITY_PIECE_MEMO: dict[str, str] = {}


def html_entity_decode(s: str) -> str:
    if "&" not in s or _ENTITY_START.search(s) is None:
        return s
    decoded = _entities_by_pieces(s)
    if decoded is None:
        return _decode_by_split(s, _ENTITY_SPLIT, _ENTITY_RE, _entity_sub, _ENTITY_MEMO)
    return decoded


def _entities_by_pieces(s: str) -> str | None:
    """html_entity_decode of a text dense in entities, or None for any other text.

    An entity begins at an "&" and holds none, so the text after each "&" decodes alone: its
    entity, if it begins with one, then the rest as it is. Such text repeats its pieces, and
    each is then a lookup, all of it in C (str.split, map, join), where a split on the entity
    pattern tries the pattern at every "&" (64 KB of "&#x26;x26;", 36 KB once form-decoded:
    0.6 ms a value, 0.24 ms by pieces).

    Other text is left to the split on the pattern, as a Python step for each piece would
    cost more: a query string's few "&"s, a long form's many fields each with a piece of its
    own (a 51 KB form of 2,000 fields: 0.23 ms split, 0.49 ms by pieces), told from the
    text's start, which is all a short text has; and text with more pieces new to the memory
    than _PIECES_NEW_MAX."""
    if (
        len(s) < 2 * _PIECES_MIN  # too short to hold as many "&"s, told at once
        or s.count("&", 0, _PIECES_SAMPLE_CHARS) < _PIECES_MIN
        or len(set(s[:_PIECES_SAMPLE_CHARS].split("&"))) > _PIECES_NEW_MAX
    ):
        return None
    pieces = s.split("&")
    rest = pieces[1:]
    memo = _ENTITY_PIECE_MEMO
    decoded = list(map(memo.get, rest))
    if None in decoded:
        new = list(filterfalse(memo.__contains__, set(rest)))
        if len(new) > _PIECES_NEW_MAX:
            return None
        values = {piece: _entity_piece(piece) for piece in new}
        for piece, value in values.items():
            _remember(memo, piece, value)
        decoded = list(map(values.get, rest, decoded))  # a new piece's value, else as found
    return pieces[0] + "".join(decoded)  # type: ignore[arg-type]


def _entity_piece(piece: str) -> str:
    """The text after one "&", up to the next, with the "&": decoded if an entity begins it."""
    match = _ENTITY_RE.match("&" + piece)
    if match is None:
        return "&" + piece
    return _entity_sub(match) + piece[match.end() - 1 :]


def _decode_by_split(
    s: str,
    split: re.Pattern[str],
    pattern: re.Pattern[str],
    sub: Callable[[re.Match[str]], str],
    memo: dict[str, str],
) -> str:
    """`s` with every match of `pattern` replaced by `sub` of it, as pattern.sub(sub, s) gives
    it, without a Python callback per match (text made of escapes or entities cost about
    0.5 µs each that way): `split` (the same pattern as one group) hands back the text between
    matches and the matches in turn, and each match is decoded through a bounded memory of
    decoded matches. Matched again alone, a match takes the same branch: the patterns look
    at nothing beyond what they match."""
    parts = split.split(s)
    if len(parts) == 1:
        return s
    found = parts[1::2]
    values = list(map(memo.get, found))
    if None in values:
        for i, text in enumerate(found):
            if values[i] is None:
                match = pattern.match(text)
                assert match is not None and match.end() == len(text)
                values[i] = value = sub(match)
                _remember(memo, text, value)
    parts[1::2] = values
    return "".join(parts)


def _remember(memo: dict[str, str], text: str, decoded: str) -> None:
    """Keep a decoded text in a memory of decodings, bounded in entries and in the length of
    what it keeps (forgotten wholesale when full)."""
    if len(text) <= _DECODED_MAX_TEXT:
        if len(memo) >= _DECODED_MEMORY:
            memo.clear()
        memo[text] = decoded


# --------------------------------------------------------------------------- js_decode


# Only real escapes are decoded. JavaScript also drops the backslash of any other "\X", but
# doing so here would wreck Windows paths ("..\..\windows\win.ini" -> "....windowswin.ini")
# for rules that chain js_decode before a traversal check; "al\ert" stays as it is instead.
# A backslash before "\n" is not an escape either (JavaScript would drop both as a line
# continuation): treating it as one would join two values and break `local`.
def _js_pattern(group: str) -> str:
    return (
        r"\\(?:"
        rf"u\{{0*{group}[0-9A-Fa-f]{{1,6}})\}}"
        rf"|u{group}[dD][89abAB][0-9A-Fa-f]{{2}})\\u{group}[dD][c-fC-F][0-9A-Fa-f]{{2}})"
        rf"|u{group}[0-9A-Fa-f]{{4}})"
        rf"|x{group}[0-9A-Fa-f]{{2}})"
        rf"|{group}[0-3][0-7]{{0,2}}|[4-7][0-7]?)"
        rf"|{group}[ntrbfv\\'\"/`])"
        r")"
    )


_JS_RE = re.compile(_js_pattern("("))
# The same as one group, for split() (see _decode_by_split).
_JS_SPLIT = re.compile("(" + _js_pattern("(?:") + ")")
_JS_MEMO: dict[str, str] = {}
_JS_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}


def _js_sub(m: re.Match[str]) -> str:
    braced, hi, lo, u4, x2, octal, other = m.groups()
    if other is not None:
        return _JS_SIMPLE.get(other, other)
    if x2 is not None:
        return chr(int(x2, 16))
    if u4 is not None:
        return _code_point(int(u4, 16))
    if octal is not None:
        return chr(int(octal, 8))
    if hi is not None:
        return _surrogate_pair(hi, lo)
    cp = int(braced, 16)
    # Beyond U+10FFFF JavaScript refuses the literal: leave it visible as written.
    return m.group() if cp > 0x10FFFF else _code_point(cp)


# The escapes of one backslash and one character, by str.replace (see _js_decode_simple).
_JS_ONE_CHAR = tuple(("\\" + c, _JS_SIMPLE.get(c, c)) for c in "ntrbfv'\"/`")
# After "\\" pairs are taken out: an escape that one replacement cannot decode.
_JS_LONGER_ESCAPE = re.compile(r"\\[xu0-7]")
# Stands in for "\\" pairs meanwhile: a noncharacter, in no text of ours but a hostile one.
_JS_PAIR = "\uffff"


def js_decode(s: str) -> str:
    if "\\" not in s:
        return s
    if _JS_PAIR not in s:
        simple = _js_decode_simple(s)
        if simple is not None:
            return simple
    return _decode_by_split(s, _JS_SPLIT, _JS_RE, _js_sub, _JS_MEMO)


def _js_decode_simple(s: str) -> str | None:
    """js_decode of a text whose escapes are one character each ("\\n", "\\/", "\\\\"...), by
    a few str.replace over the whole text: the split costs about 100 ns per escape, which a
    value made of them multiplies. None when the text holds a longer escape (\\x, \\u, octal).

    The decoder reads "\\\\" pairs from the left, as str.replace takes them: once they stand
    aside as _JS_PAIR, every backslash left is followed by something other than a backslash,
    so each escape is its own two characters and the replacements cannot meet."""
    pairs = "\\\\" in s
    text = s.replace("\\\\", _JS_PAIR) if pairs else s
    if "\\" in text:
        if _JS_LONGER_ESCAPE.search(text) is not None:
            return None
        for escape, decoded in _JS_ONE_CHAR:
            # The character alone first: a search for the pair slows down to about 1 ns a
            # character where backslashes are dense, one for a character takes memchr's pace.
            if escape[1] in text:
                text = text.replace(escape, decoded)
    return text.replace(_JS_PAIR, "\\") if pairs else text


# --------------------------------------------------------------------------- simple ones


def lowercase(s: str) -> str:
    return s.lower()


def remove_nulls(s: str) -> str:
    if "\x00" not in s:
        return s
    return s.replace("\x00", "")


_WHITESPACE_RUN = re.compile(r"\s+")
_OTHER_ASCII_WHITESPACE = ("\n", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def compress_whitespace(s: str) -> str:
    # Each run of whitespace (newlines included) becomes one space; nothing is trimmed, so that
    # the transform is local: "x " and " y" give the same text alone as joined.
    if s.isascii():
        if "  " not in s and not any(ch in s for ch in _OTHER_ASCII_WHITESPACE):
            return s
        return _WHITESPACE_RUN.sub(" ", s)
    return _WHITESPACE_RUN.sub(" ", s)


def remove_whitespace(s: str) -> str:
    if s.isascii() and s.isprintable():
        return s.replace(" ", "") if " " in s else s
    return "".join(s.split())


def trim(s: str) -> str:
    return s.strip()


# --------------------------------------------------------------------------- normalize_path


def normalize_path(s: str) -> str:
    if "\\" not in s and "//" not in s and "/." not in s and not s.startswith("."):
        return s
    s = s.replace("\\", "/")
    absolute = s.startswith("/")
    segments = s.split("/")
    # A trailing "/", "." or ".." names a directory: keep saying so.
    trailing = segments[-1] in ("", ".", "..") and len(segments) > 1
    out: list[str] = []
    for seg in segments:
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            else:
                # An unresolvable ".." is exactly what a traversal detector looks for, so it
                # stays, even above the root of an absolute path: "/../etc/passwd".
                out.append("..")
            continue
        out.append(seg)
    path = "/".join(out)
    if absolute:
        path = "/" + path
    if trailing and out:
        path += "/"
    return path


# --------------------------------------------------------------------------- comments

# One scanner for all comment kinds, so that a "--" inside a /* */ comment is not a line comment
# and vice versa. MySQL runs the content of /*! ... */ (and /*!50000 ... */), so for it only the
# markers go.
_COMMENT_RE = re.compile(
    r"/\*!\d{0,6}"  # MySQL executable comment opener
    r"|/\*.*?(?:\*/|\Z)"  # block comment, an unterminated one runs to the end
    r"|\*/"  # closer: of an executable comment if one is open, else plain text
    r"|--[^\n]*"
    r"|#[^\n]*"
    r"|(?<![:/])//[^\n]*",  # C++ comment, but not the "//" of "scheme://"
    re.DOTALL,
)
_COMMENT_START = re.compile(r"/\*|--|#|//")


def _comments(s: str, replacement: str) -> str:
    if _COMMENT_START.search(s) is None:
        return s
    open_exec = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal open_exec
        text = m.group()
        if text.startswith("/*!"):
            open_exec += 1
            return replacement
        if text == "*/":
            if open_exec:
                open_exec -= 1
                return replacement
            return text
        return replacement

    return _COMMENT_RE.sub(sub, s)


def remove_comments(s: str) -> str:
    return _comments(s, "")


def replace_comments(s: str) -> str:
    return _comments(s, " ")


# --------------------------------------------------------------------------- cmdline

# What cmdline deletes, and what it turns into a space (",", ";" and what Python's `\s`
# matches): the engine's sieve rewrites patterns from the same two lists
# (patterns.tolerating_cmdline).
CMDLINE_DELETED = "\\\"'^"
CMDLINE_SEPARATORS = (
    ",;\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CMD_SPACE = re.compile(r"\s+")


def cmdline(s: str) -> str:
    if s.isascii():
        return cmdline_ascii(s.encode("ascii")).decode("ascii")
    for ch in CMDLINE_DELETED:
        if ch in s:
            s = s.replace(ch, "")
    for ch in (",", ";"):
        if ch in s:
            s = s.replace(ch, " ")
    s = _CMD_SPACE.sub(" ", s)
    if " /" in s or " (" in s:
        s = s.replace(" /", "/").replace(" (", "(")
    return s.lower()


# One C pass for the ASCII case (long bodies go through here): the quoting characters go, the
# separators and every ASCII whitespace (Python's, so \x1c-\x1f too) become spaces, and
# upper-case letters become lower-case (lowering commutes with the other steps, so it is folded
# into the same pass instead of costing one of its own).
_CMD_ASCII_SEPARATORS = "".join(ch for ch in CMDLINE_SEPARATORS if ch.isascii()).encode()
_CMD_TABLE = bytes.maketrans(
    _CMD_ASCII_SEPARATORS + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    b" " * len(_CMD_ASCII_SEPARATORS) + b"abcdefghijklmnopqrstuvwxyz",
)
_CMD_DELETE = CMDLINE_DELETED.encode()


def cmdline_ascii(b: bytes) -> bytes:
    """`cmdline` of ASCII text, bytes in and out (the engine's sieve scans bytes)."""
    b = b.translate(_CMD_TABLE, _CMD_DELETE)
    # Halving runs of spaces is cheaper than a regex. find(), not `in`: see PERCENT.
    while b.find(b"  ") >= 0:
        b = b.replace(b"  ", b" ")
    if b.find(b" /") >= 0 or b.find(b" (") >= 0:
        b = b.replace(b" /", b"/").replace(b" (", b"(")
    return b


# --------------------------------------------------------------------------- base64_decode

_B64_MIN = 8
_B64_STD = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_B64_URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_B64_TEXT = re.compile(rb"[\t\n\r\x20-\x7e]*")


def _base64_text(s: str) -> str | None:
    """The text a base64 value encodes, or None when `s` is not one."""
    n = len(s)
    if n < _B64_MIN or not s.isascii():
        return None
    if _B64_STD.fullmatch(s):
        urlsafe = False
    elif _B64_URL.fullmatch(s):
        urlsafe = True
    else:
        return None
    data = s.rstrip("=")
    # With padding the length must be a multiple of 4; without, a remainder of 1 is impossible.
    if (n != len(data) and n % 4) or len(data) % 4 == 1:
        return None
    data += "=" * (-len(data) % 4)
    try:
        raw = base64.urlsafe_b64decode(data) if urlsafe else base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    # Only text is decoded: random tokens (session ids, hashes, keys) decode to binary noise
    # that can only confuse the rules after it, and the engine's sieve relies on this to
    # recognise, in raw text, the values this transform could change (sieve.py).
    if not _B64_TEXT.fullmatch(raw):
        return None
    return raw.decode("ascii")


def base64_decode(s: str) -> str:
    text = _base64_text(s)
    return s if text is None else text


def base64_only(s: str) -> str:
    """base64_decode, except that a value it leaves as it is becomes empty: the rules after it
    read only what base64 hid. A rule about encoded payloads then neither counts a plain
    attack a second time (the plain-text rules score it) nor costs a scan of every plain
    value: the engine's sieve looks only for base64 text for it (sieve.py)."""
    text = _base64_text(s)
    return "" if text is None else text


# --------------------------------------------------------------------------- nfkc

# The characters whose compatibility decomposition is longer than 4 characters (Unicode 14: a few
# squared katakana words and the Arabic ligatures U+FDFA/U+FDFB, up to 18 characters). They are
# kept as they are, so that NFKC output is never more than 4x its input; a test checks this list
# against the running Python's unicodedata.
_NFKC_LONG = re.compile(
    "[\u321d\u321e\u327c\u3300\u3302\u3304\u3307\u3313\u3315-\u3317\u3319\u331a\u3320\u3321"
    "\u332b\u332d\u332e\u3332\u3334\u3336\u333b\u333d\u3340\u3347\u334a\u334c\u3354\u3356"
    "\u33ae\u33af\ufdfa\ufdfb]"
)


def nfkc(s: str) -> str:
    if s.isascii():
        return s
    if _NFKC_LONG.search(s) is None:
        return unicodedata.normalize("NFKC", s)
    out: list[str] = []
    pos = 0
    for m in _NFKC_LONG.finditer(s):
        out.append(unicodedata.normalize("NFKC", s[pos : m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(unicodedata.normalize("NFKC", s[pos:]))
    return "".join(out)


# --------------------------------------------------------------------------- registry

TRANSFORMS: Mapping[str, Transform] = MappingProxyType(
    {
        t.name: t
        for t in (
            Transform("url_decode", url_decode, local=True),
            Transform("html_entity_decode", html_entity_decode, local=True),
            Transform("js_decode", js_decode, local=True),
            Transform("lowercase", lowercase, local=True),
            # Local for every join character but NUL (the engine never joins with NUL then).
            Transform("remove_nulls", remove_nulls, local=True),
            Transform("compress_whitespace", compress_whitespace, local=True),
            Transform("remove_whitespace", remove_whitespace, local=True),
            # Path segments and ".." resolution reach across a "\n" inside a segment.
            Transform("normalize_path", normalize_path, local=False),
            # A /* comment runs across lines.
            Transform("remove_comments", remove_comments, local=False),
            Transform("replace_comments", replace_comments, local=False),
            Transform("cmdline", cmdline, local=True),
            # A joined value is never valid base64 as a whole.
            Transform("base64_decode", base64_decode, local=False),
            Transform("base64_only", base64_only, local=False),
            Transform("nfkc", nfkc, local=True),
            # Trimming the joined text does not trim each value.
            Transform("trim", trim, local=False),
        )
    }
)


def apply_chain(value: str, chain: Sequence[str]) -> str:
    """Apply the named transforms in order. Raises KeyError on an unknown name."""
    for name in chain:
        value = TRANSFORMS[name].apply(value)
    return value
