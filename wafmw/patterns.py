"""Pattern compilation: RE2 (linear time) wherever it can express the pattern, `regex` otherwise.

RE2 cannot express look-around or back-references. Such patterns run on the backtracking `regex`
module, always with a timeout taken from the request's time budget, so a pathological pattern
costs one request its on_error outcome instead of a pinned CPU.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import re2
import regex

from .errors import EvaluationTimeout
from .transforms import CMDLINE_DELETED, CMDLINE_SEPARATORS


class PatternError(ValueError):
    """A pattern neither engine accepts."""


def re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = 64 << 20
    return options


_RE2_OPTIONS = re2_options()
# Where Scanner.knows probes: not to be foretold by a sender.
_random = random.Random(random.SystemRandom().getrandbits(64)).random


def re2_accepts(pattern: str) -> bool:
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return False
    return True


def check_pattern(pattern: str) -> str:
    """Return the engine that will run `pattern` ("re2" or "regex"); raise PatternError."""
    if re2_accepts(pattern):
        return "re2"
    try:
        regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise PatternError(str(exc)) from None
    return "regex"


class _Quoted(Exception):
    """A \\Q...\\E quote: without_upper_bounds leaves the pattern as it is."""


def _unbounded(m: re.Match[str]) -> str:
    low = m.group(1)
    if low is not None:
        return "{" + low + ",}"
    if m.group() == "\\Q":
        raise _Quoted
    return m.group()


def without_upper_bounds(pattern: str) -> str:
    """The pattern with the upper bound of every counted repetition dropped (`{m,n}` becomes
    `{m,}`): it matches wherever the pattern matches, and more.

    For the scans whose every match is confirmed by the filter's own pattern (the sieve, a
    group's set, a unit probe). RE2's automaton for a bounded repetition of characters that
    can also begin it, as in `[a-z][a-z0-9.-]{1,20}://`, must tell apart every count in
    flight at once: on text made of those characters (hex digests, base64 blobs, tokens) it
    meets a new state at almost every byte, and each costs tens of microseconds to build.
    Unbounded, the counts in flight past `m` are one state. Patterns with `\\Q...\\E` are
    returned as they are."""
    if "{" not in pattern:
        return pattern
    try:
        return _COUNTED.sub(_unbounded, pattern)
    except _Quoted:
        return pattern


# Scans of texts new to a set's automaton (see Scanner): texts this long or longer are probed
# first, at this many windows of this many bytes each; windows that take this long in all
# (the probing included) are text the set's automaton does not know. Through states already
# built a window costs about a microsecond; a new state costs 20-70 µs to build, benign
# text needs one now and then, random text at almost every byte (2-9 ms a window through a
# sieve's set).
PROBE_MIN_BYTES = 4096
_PROBES = 3
_PROBE_BYTES = 128
_COLD_PROBE_NS = 400_000
# How many of the first window's bytes are looked at first (see Scanner.knows): random
# printable text costs a sieve's set 8-16 µs a byte while new, so it runs past the bound
# within them, where a whole window cost 1-2 ms.
_FIRST_LOOKS = (32, 64)
# Where a window begins: just after one of these (what bounds values in the sieve's texts,
# a form's "+" for a space among them), or at a "%" escape, so that the window's start reads
# as the text does there, not as a start of text. A window that begins mid-token meets states
# the scans of whole texts never built, and url-encoded text has no other delimiter. In a
# 64 KB form body of one repeated phrase, windows begun at any of its 60 bytes still cost up
# to 100-180 µs a probe after 40 probes; begun at its 10 escapes, mostly under 65 µs, and
# 7 µs at best against 13 µs (one-off).
_WINDOW_START = re.compile(rb"[\x00-\x20\x7f=&;?\",:\[{}\]+]|(?=%)")
# A shorter text goes through the set unprobed, as probing would cost a benign scan more than
# it saves; but one that took longer than this per byte makes the scanner wary: for its next
# _WARY_SCANS texts of WARY_MIN_BYTES or more, it probes them first, as a long one. Random
# text costs the head sieve's set tens of µs a byte (printable: 26 ms for a 1 KB query in
# all), a head group's set 4.3-4.7 µs (a 1.3 KB query's in 5.5-6.2 ms: under a bound of 5 µs
# it never grew wary, and each new random query paid that whole); English prose about 1-2
# µs while the set is new to it, and the set learns faster by reading it whole (a fresh
# process's first 300 pieces of 1 KB cost 1.4 ms each unprobed, 2.4 ms probed at a lower
# bound; 2.26-2.29 ms each at this bound and at 5 µs alike, on a later machine); text it
# knows, 1.5 ns.
_COLD_SCAN_NS_PER_BYTE = 3_000
WARY_MIN_BYTES = 512
_WARY_SCANS = 64
# A probe's pattern searched alone (OnePattern) keeps its own automaton: its memory is bounded
# lower than a set's, as there is one per pattern (the shipped rules' 332 patterns, after 20
# random texts of 64 KB each through all of them: 13 MB more in all).
_SINGLE_MAX_MEM = 4 << 20


class Scanner:
    """An RE2 set of patterns, each without upper bounds (see without_upper_bounds), for
    scans that only flag what the filters' own patterns then confirm. `Match` is the set's
    own (the binding's C function: bytes only); `match` takes str too, finds the same
    patterns, and reports every pattern, unsearched, where the set would be slow.

    RE2 builds a set's automaton lazily, a state at a time as text first needs it, and a
    state of a set of a hundred patterns costs tens of microseconds to build. Random text
    needs a new one at almost every byte: 64 KB of printable characters took 1.1 s through
    the head sieve's set (benign text it knows: 0.1 ms). So a text of PROBE_MIN_BYTES or
    more is probed first: a few short windows at random places (which a sender cannot aim
    for or around) go through the set, timed; when they are slow, the set's automaton does
    not know the text, and every pattern is reported as found. Whatever a scanner reports is
    confirmed: a sieve's flags by the scans of the groups they wake, a group's by each
    filter's own probe and pattern. Searching the patterns one at a time instead, each with
    its own small automaton, cost more than those confirmations: such text wakes nearly
    every group and many filters anyway (one-off: a 64 KB JSON body of random printable
    text cost 84 ms, then 37 ms with the sieves reporting all; in a run of its own, 41 ms
    and 36 ms with the groups reporting all too; a JSON list of 1,000 random base64 tokens
    18.8 ms and 13.0 ms).

    A stretch of new text that every window misses still goes through the set: the larger
    it is, the likelier a window lands in it. A shorter text is probed only while the
    scanner is wary, after one took long (see _WARY_SCANS): a stream of random texts pays
    for the first, not for each."""

    __slots__ = ("Match", "_everything", "_set", "_wary")

    def __init__(self, sources: list[str]) -> None:
        self._set = re2.Set.SearchSet(_RE2_OPTIONS)
        for source in sources:
            self._set.Add(without_upper_bounds(source))
        self._set.Compile()
        # Takes bytes (or another buffer) only; `match` takes str too.
        self.Match: Callable[[Any], list[int]] = _matcher(self._set)
        # What a text new to the set is reported to hold.
        self._everything = range(len(sources))
        # How many more texts shorter than PROBE_MIN_BYTES to probe (see _WARY_SCANS). Read
        # and written without a lock: a lost update only probes a text more or less.
        self._wary = 0

    def match(self, text: bytes | str) -> list[int]:
        """The indices of the patterns found in `text`, as `Match` finds them; of every
        pattern, unsearched, in a text the set does not know (see the class)."""
        data = text.encode("utf-8") if isinstance(text, str) else text  # as RE2 reads a str
        size = len(data)
        if size < WARY_MIN_BYTES:
            return self.Match(data) or []
        if size < PROBE_MIN_BYTES:
            if self._wary:
                self._wary -= 1
                if not self.knows(data):
                    self._wary = _WARY_SCANS
                    return list(self._everything)
                return self.Match(data) or []
            began = time.perf_counter_ns()
            found = self.Match(data) or []
            if time.perf_counter_ns() - began > size * _COLD_SCAN_NS_PER_BYTE:
                self._wary = _WARY_SCANS
            return found
        if self.knows(data):
            return self.Match(data) or []
        return list(self._everything)

    def knows(self, text: bytes) -> bool:
        """Whether the set's automaton has the states for text like this: probed at windows
        that begin at random places (just past a delimiter, when one is near)."""
        span = len(text) - 2 * _PROBE_BYTES
        window = memoryview(text)
        match = self.Match
        search = _WINDOW_START.search
        clock = time.perf_counter_ns
        began = clock()
        for probe in range(_PROBES):
            at = int(_random() * span)
            start = search(text, at, at + _PROBE_BYTES)
            if start is not None:
                at = start.end()
            if not probe:
                # The first window's first bytes first, timed against the same bound: random
                # text, which needs a new state at almost every byte, runs past it within
                # them, where a whole window cost 1-2 ms. Each longer look goes on from the
                # states the shorter one built; on known text they cost a call each.
                for size in _FIRST_LOOKS:
                    match(window[at : at + size])
                    if clock() - began > _COLD_PROBE_NS:
                        return False
            match(window[at : at + _PROBE_BYTES])
            if clock() - began > _COLD_PROBE_NS:
                return False
        return True


class OnePattern:
    """One pattern, without upper bounds (see without_upper_bounds), for a probe whose
    matches are confirmed: `found(text)` says whether it occurs. A text shorter than
    PROBE_MIN_BYTES goes through a set of the one pattern, a call straight into C (a regex's
    Python wrapper costs about 0.6 µs more); a longer one through a regex, which stops at the
    first match where a set reads the whole text, and which builds fewer states on text new
    to it (16 KB of random text through each of the shipped rules' 178 probes: 42 ms as
    sets, 23 ms as regexes). The regex is compiled when first needed."""

    __slots__ = ("_match", "_regex", "_source")

    def __init__(self, pattern: str) -> None:
        self._source = without_upper_bounds(pattern)
        one = re2.Set.SearchSet(_RE2_OPTIONS)
        one.Add(self._source)
        one.Compile()
        self._match = _matcher(one)
        self._regex: Any = None

    def found(self, text: bytes | str) -> bool:
        if len(text) < PROBE_MIN_BYTES:
            return bool(self._match(text.encode("utf-8") if type(text) is str else text))
        regex = self._regex or self._compiled()
        if type(text) is str:
            global _last_encoded
            last = _last_encoded  # one read: another thread may replace it meanwhile
            if last[0] == text:
                text = last[1]
            else:
                encoded = text.encode("utf-8")  # as the regex's wrapper encodes a str
                _last_encoded = (text, encoded)
                text = encoded
        return regex.search(text) is not None

    def _compiled(self) -> Any:
        """The regex, compiled when first needed."""
        self._regex = _single(self._source)
        return self._regex

    def pieces_holding(self, text: str, separator: str) -> list[int] | None:
        """The indices, in order, of the pieces of `text` (split at `separator`) that a match
        of the pattern lies in or runs through; None when some match is empty or more than
        PIECES_LISTED pieces hold one: listing them would cost more than it saves.

        Matches are searched for from left to right, each from the separator that closes the
        piece the last one ended in (the rest of a piece listed need not be searched, and a
        match of the next piece may begin at that separator): every match the pattern has
        within one piece overlaps one found here, or lies in a piece listed, so a piece left
        out holds none. A long value that holds the pattern many times costs one search. In
        the text's UTF-8 bytes, as RE2 reads it, encoded once."""
        regex = self._regex or self._compiled()
        data = text.encode("utf-8")
        sep = separator.encode("utf-8")
        holding: list[int] = []
        pos = 0
        piece = 0  # the piece `pos` lies in: how many separators come before it
        # Each search lists a piece, or passes over the separator it began at: a bound that
        # is never reached but by a bug.
        for _ in range(2 * PIECES_LISTED + 2):
            found = regex.search(data, pos)
            if found is None:
                return holding
            start, end = found.span()
            if end == start:
                return None
            first = piece + data.count(sep, pos, start)
            last = first + data.count(sep, start, end - 1)  # where the match's last byte is
            if holding and holding[-1] == first:
                first += 1
            holding.extend(range(first, last + 1))
            if len(holding) > PIECES_LISTED:
                return None
            closing = data.find(sep, end - 1)
            if closing < 0:
                return holding
            pos = max(closing, start + 1)
            piece = last + data.count(sep, end - 1, pos)
        return None


# How many pieces OnePattern.pieces_holding lists at most: each match costs a search through
# the regex's Python wrapper, some µs, about what checking a few pieces costs.
PIECES_LISTED = 8


# The last long text a probe searched, with its encoding: the filters that read a value probe
# it one after another (text new to a group's set wakes them all), and the regex's wrapper
# encoded it again for each, and counted its characters up to the match.
_last_encoded: tuple[str, bytes] = ("", b"")


def _matcher(compiled: Any) -> Callable[[Any], list[int]]:
    """A compiled set's Match as the binding's C function, which takes bytes only: the Python
    method around it (which also takes str) costs a call and a type test on every scan. The
    method itself where the binding is laid out otherwise than google-re2 1.1."""
    inner = getattr(compiled, "_set", None)
    match: Callable[[Any], list[int]] | None = getattr(inner, "Match", None)
    return match if match is not None else compiled.Match


def _single_options() -> Any:
    options = re2_options()
    options.max_mem = _SINGLE_MAX_MEM
    return options


_SINGLE_OPTIONS = _single_options()


def _single(source: str) -> Any:
    """One pattern of a set compiled alone, with the lower memory bound of a single pattern
    where its program fits in it, else with a set's (which it fits: the set compiled)."""
    try:
        return re2.compile(source, _SINGLE_OPTIONS)
    except re2.error:
        return re2.compile(source, _RE2_OPTIONS)


def _rewrite_anchors(
    pattern: str, separator: str | None, *, delimiters: str | None = None
) -> tuple[str, bool]:
    """Find ^, $, \\A and \\z outside character classes; with a separator, make each also
    match that character; with `delimiters` (a character class), make each also match one of
    them instead. Returns (pattern, whether it had anchors)."""
    out: list[str] = []
    i, n, in_class, anchored = 0, len(pattern), False, False
    sep = "" if separator is None else f"\\x{ord(separator):02x}"
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            pair = pattern[i : i + 2]
            if not in_class and pair in ("\\A", "\\z", "\\Z"):
                anchored = True
                out.append(
                    f"(?:{pair}|{delimiters})"
                    if delimiters
                    else f"(?:{pair}|{sep})"
                    if sep
                    else pair
                )
            else:
                out.append(pair)
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
            # "]" right after "[" or "[^" is a literal member, not the end of the class.
            if pattern[i + 1 : i + 2] == "^":
                i += 1
                out.append("^")
            if pattern[i + 1 : i + 2] == "]":
                i += 1
                out.append("]")
        elif ch in "^$":
            anchored = True
            out.append(f"(?:{ch}|{delimiters})" if delimiters else f"(?:{ch}|{sep})" if sep else ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out), anchored


def anchored_at_joins(pattern: str, separator: str) -> str:
    """The pattern for a scan over values joined by `separator`: each anchor also matches at
    a join, so that a value's own start and end still count as such. The scan then finds every
    per-value match (and a few more, which the engine's confirmation drops)."""
    return _rewrite_anchors(pattern, separator)[0]


def anchored_at_delimiters(pattern: str, delimiters: str) -> str:
    """The pattern for a text in which each subject is a substring bounded by the characters
    of `delimiters` (a character class): each anchor also matches one of them."""
    return _rewrite_anchors(pattern, None, delimiters=delimiters)[0]


def tolerating(pattern: str, char: str, stand_in: str) -> str:
    """The pattern for a text in which each `char` was replaced by `stand_in`: wherever the
    pattern could match `char`, it also matches the stand-in. Atoms that can match `char` are
    the character itself, its escapes and positive classes that hold it (alone, in a range or
    in a named class); the wildcards and negated classes already match the stand-in, a control
    character."""
    code = ord(char)
    spelled = {"\\" + char, f"\\x{code:02x}", f"\\x{code:02X}", f"\\x{{{code:x}}}"}
    if char != "\\":  # a lone backslash is no atom: it always begins an escape
        spelled.add(char)
    sub = f"\\x{ord(stand_in):02x}"
    out: list[str] = []
    for atom in _atoms(pattern):
        if atom.startswith("["):
            body = atom[1:-1]
            if not body.startswith("^") and _class_may_hold(body, code, spelled):
                atom = "[" + _class_with(body, sub) + "]"
        elif atom in spelled:
            atom = f"(?:{atom}|{sub})"
        out.append(atom)
    return "".join(out)


def _atoms(pattern: str) -> Iterator[str]:
    """The pattern cut into what the rewrites below look at: bracketed classes, escapes and
    single characters (group syntax and quantifiers come as characters, and are kept)."""
    if "\\Q" in pattern:
        raise ValueError("\\Q...\\E quoting is not rewritten")
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            end = _class_end(pattern, i) + 1
        elif pattern[i] == "\\":
            m = _ESCAPE.match(pattern, i)
            end = m.end() if m else i + 2
        else:
            end = i + 1
        yield pattern[i:end]
        i = end


# A class that matches nothing: what an atom becomes where no character of the text can stand.
_NOTHING = r"[^\x00-\x{10ffff}]"
# Which characters the named classes hold, as RE2 reads them, for the ASCII characters that
# as_if_stood_in() rewrites (a class not listed here, such as \p{P}, cannot be told).
_NAMED_HOLDS: dict[str, Callable[[int], bool]] = {
    "\\d": lambda code: 0x30 <= code <= 0x39,
    "\\w": lambda code: (chr(code).isalnum() and code < 0x80) or code == 0x5F,
    "\\s": lambda code: code in (0x09, 0x0A, 0x0C, 0x0D, 0x20),
    "[:alnum:]": lambda code: chr(code).isalnum() and code < 0x80,
    "[:alpha:]": lambda code: chr(code).isalpha() and code < 0x80,
    "[:ascii:]": lambda code: code < 0x80,
    "[:blank:]": lambda code: code in (0x09, 0x20),
    "[:cntrl:]": lambda code: code < 0x20 or code == 0x7F,
    "[:digit:]": lambda code: 0x30 <= code <= 0x39,
    "[:graph:]": lambda code: 0x21 <= code <= 0x7E,
    "[:lower:]": lambda code: 0x61 <= code <= 0x7A,
    "[:print:]": lambda code: 0x20 <= code <= 0x7E,
    "[:punct:]": lambda code: 0x21 <= code <= 0x7E and not chr(code).isalnum(),
    "[:space:]": lambda code: code in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20),
    "[:upper:]": lambda code: 0x41 <= code <= 0x5A,
    "[:word:]": lambda code: (chr(code).isalnum() and code < 0x80) or code == 0x5F,
    "[:xdigit:]": lambda code: chr(code) in "0123456789abcdefABCDEF",
}
_CLASS_TOKEN = re.compile(
    r"\[:\^?[a-z]+:\]|\\(?:x\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|[pP](?:\{[^}]*\}|.)|.)|.", re.S
)
_SIMPLE_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "f": 0x0C, "v": 0x0B, "a": 0x07}


def as_if_stood_in(pattern: str, char: str, stand_in: str) -> str:
    """The pattern for a text as it is, matching wherever `pattern` matches the text with
    each `char` replaced by `stand_in` (the inverse of that replacement, so that the text
    need not be copied): an atom that matches the stand-in also matches `char`, and one that
    matches `char` stops matching it. It may match more than that, never less: where it
    cannot tell whether a named class holds `char`, the class keeps it. Raises ValueError on
    syntax it does not rewrite, or where it would have to drop `char` from a class it cannot
    take apart."""
    c, s = ord(char), ord(stand_in)
    either = f"[\\x{{{s:x}}}\\x{{{c:x}}}]"
    out: list[str] = []
    for atom in _atoms(pattern):
        if atom.startswith("["):
            out.append(_class_as_if_stood_in(atom, c, s))
            continue
        code = _escape_code(atom) if atom.startswith("\\") else ord(atom)
        if code == c:
            atom = _NOTHING
        elif code == s:
            atom = either
        elif atom[1:2] in ("p", "P"):
            atom = f"(?:{atom}|\\x{{{c:x}}})"  # may hold the stand-in: keep char too
        # Any other atom is kept: \s \w \d hold neither, \S \W \D both; assertions; others.
        out.append(atom)
    return "".join(out)


def _escape_code(atom: str) -> int | None:
    """The character an escape outside a class stands for; None for a named class or an
    assertion. Octal escapes and back-references are refused."""
    kind = atom[1:2]
    if kind == "x":
        return int(atom[2:].strip("{}"), 16)
    if kind.isdigit():
        raise ValueError(f"escape {atom!r} is not rewritten")
    if kind in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[kind]
    if kind.isalnum():
        return None
    return ord(kind)


def _class_as_if_stood_in(atom: str, c: int, s: int) -> str:
    """as_if_stood_in() for one bracketed class: it must hold `c` wherever it held `s`, and
    should not hold `c` otherwise."""
    negated = atom.startswith("[^")
    body = atom[2:-1] if negated else atom[1:-1]
    ranges: list[tuple[int, int]] = []
    named: list[str] = []
    tokens = _CLASS_TOKEN.findall(body)
    k = 0
    while k < len(tokens):
        token = tokens[k]
        if token.startswith("[:") or (token.startswith("\\") and _escape_code(token) is None):
            named.append(token)
            k += 1
            continue
        lo = hi = _member_code(token, atom)
        if k + 2 < len(tokens) and tokens[k + 1] == "-":
            hi = _member_code(tokens[k + 2], atom)
            k += 2
        ranges.append((lo, hi))
        k += 1

    def members_hold(code: int) -> bool | None:
        if any(lo <= code <= hi for lo, hi in ranges):
            return True
        answers = [_named_holds(token, code) for token in named]
        if True in answers:
            return True
        return None if None in answers else False

    held_c, held_s = members_hold(c), members_hold(s)
    # A changed class is written anew from its members: appending to the body as written
    # could join a trailing "-" into a range.
    with_char = _class_body([*ranges, (c, c)], named)
    if not negated:
        if held_s is not False:  # holds the stand-in (or may): must hold char too
            return atom if held_c is True else f"[{with_char}]"
        if held_c is False or any(_named_holds(t, c) is not False for t in named):
            return atom  # holds no char, or a named class does: kept (it may match more)
        rest = _class_body(_without(ranges, c), named)
        return f"[{rest}]" if rest else _NOTHING
    # Negated: it holds what its members do not.
    if held_s is None:
        raise ValueError(f"class {atom!r} is not rewritten")
    if held_s:  # it does not hold the stand-in: must not hold char
        return atom if held_c is True else f"[^{with_char}]"
    # It holds the stand-in: must hold char, so its members must not.
    if held_c is False:
        return atom
    if any(_named_holds(t, c) is not False for t in named):
        raise ValueError(f"class {atom!r} is not rewritten")
    rest = _class_body(_without(ranges, c), named)
    return f"[^{rest}]" if rest else r"[\x00-\x{10ffff}]"  # nothing excluded: any character


def _member_code(token: str, atom: str) -> int:
    """The character a class member stands for; ValueError for a named class."""
    if token.startswith("[:"):
        raise ValueError(f"class {atom!r} is not rewritten")
    code = _escape_code(token) if token.startswith("\\") else ord(token)
    if code is None:
        raise ValueError(f"class {atom!r} is not rewritten")
    return code


def _named_holds(token: str, code: int) -> bool | None:
    """Whether a named class (\\d, [:alpha:], their negations) holds `code`; None for one not
    known here."""
    if token.startswith("[:^"):
        negated, name = True, "[:" + token[3:]
    elif token.startswith("\\") and token[1:2] in ("D", "S", "W"):
        negated, name = True, token.lower()
    else:
        negated, name = False, token
    rule = _NAMED_HOLDS.get(name)
    return None if rule is None else rule(code) != negated


def _without(ranges: list[tuple[int, int]], code: int) -> list[tuple[int, int]]:
    """The ranges with `code` taken out."""
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        out.extend((a, b) for a, b in ((lo, min(hi, code - 1)), (max(lo, code + 1), hi)) if a <= b)
    return out


def _class_body(ranges: list[tuple[int, int]], named: list[str]) -> str:
    """A class body of the given ranges (each written as escapes) and named classes; empty
    when there are none."""
    parts = [f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges]
    return "".join(parts) + "".join(named)


# What `cmdline` deletes and what it turns into spaces (it also folds runs of spaces into one
# and drops the spaces before "/" and "("), as RE2 class members.
_CMD_DELETED = "".join(f"\\x{{{ord(ch):x}}}" for ch in CMDLINE_DELETED)
_CMD_SPACED = "".join(f"\\x{{{ord(ch):x}}}" for ch in CMDLINE_SEPARATORS)
_QUANTIFIER = re.compile(r"[*+?]|\{\d+(?:,\d*)?\}")
_ESCAPE = re.compile(r"\\(?:x\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|[pP](?:\{[^}]*\}|.)|[0-7]{1,3}|.)")
# What without_upper_bounds reads: quoting (which it leaves alone), an escape (as _atoms
# reads one) or a class (as _class_end bounds a well-formed one), both kept as they are, or
# a counted repetition with an upper bound (rewritten).
_COUNTED = re.compile(
    rf"\\Q|{_ESCAPE.pattern}|\[\^?\]?(?:\[:\^?[a-z]+:\]|\\.|[^\]\\])*\]|\{{(\d+),\d+\}}"
)


def _class_with(body: str, member: str) -> str:
    """A class body with one more member, written where it cannot join a range: before a
    trailing "-" (which the class reads as itself, and which would else read as a range)."""
    trailing_dash = body.endswith("-") and (len(body) - len(body[:-1].rstrip("\\")) - 1) % 2 == 0
    return body[:-1] + member + "-" if trailing_dash else body + member


def tolerating_cmdline(pattern: str) -> str:
    """The pattern for the raw text of what `pattern` reads after the `cmdline` transform (any
    case, the quoting characters still in, separators unfolded): wherever `pattern` matches
    cmdline(text), the result matches text. It may match more; the sieve's confirmation drops
    those. Each atom may be preceded by deleted characters; one that can match a space also
    matches a run of separators; one that can match "/" or "(" may follow such a run; a word
    boundary may sit on either side of deleted characters. Raises ValueError on syntax it does
    not rewrite."""
    deleted, spaced = f"[{_CMD_DELETED}]", f"[{_CMD_DELETED}{_CMD_SPACED}]"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "(":
            if pattern.startswith("(?", i):
                m = re.match(r"\(\?(?:[a-zA-Z-]*:|P?<\w+>|[a-zA-Z-]+\))", pattern[i:])
                if m is None:
                    raise ValueError(f"group syntax at {i} is not rewritten")
                atom = m.group()
            else:
                atom = "("
            out.append(atom)
            i += len(atom)
            continue
        if ch in ")|":
            out.append(ch)
            i += 1
            continue
        m = _QUANTIFIER.match(pattern, i)
        if m is not None:
            atom = m.group()
            if pattern[m.end() : m.end() + 1] == "?":
                atom += "?"  # lazy
            out.append(atom)
            i += len(atom)
            continue
        if ch in "^$":
            out.append(ch if ch == "^" else f"{deleted}*$")
            i += 1
            continue
        if ch == "[":
            end = _class_end(pattern, i)
            atom = pattern[i : end + 1]
        elif ch == "\\":
            m = _ESCAPE.match(pattern, i)
            atom = m.group() if m else pattern[i : i + 2]
            if atom in ("\\Q", "\\E"):
                raise ValueError("\\Q...\\E quoting is not rewritten")
            if atom in ("\\b", "\\B"):
                out.append(f"(?:{atom}|{deleted}+)")
                i += len(atom)
                continue
            if atom in ("\\A", "\\z"):
                out.append(atom if atom == "\\A" else f"{deleted}*\\z")
                i += len(atom)
                continue
        else:
            atom = ch
        spaces = _may_match(atom, " ")
        before = spaced if _may_match(atom, "/") or _may_match(atom, "(") else deleted
        core = f"(?:{atom}|[{_CMD_SPACED}])" if spaces else atom
        out.append(f"(?:{before}*{core}{spaced + '*' if spaces else ''})")
        i += len(atom)
    return "".join(out)


def _may_match(atom: str, char: str) -> bool:
    """Whether a single-character atom may match `char` (a space, "/" or "("): conservative,
    any doubt counts as yes."""
    code = ord(char)
    if atom == ".":
        return True
    if atom.startswith("["):
        negated = atom.startswith("[^")
        body = atom[2:-1] if negated else atom[1:-1]
        spelled = {char, "\\" + char, f"\\x{code:02x}", f"\\x{code:02X}", f"\\x{{{code:x}}}"}
        if negated:
            named = char == " " and ("\\s" in body or "[:space:]" in body)
            return not (named or any(s in body for s in spelled))
        if char == " " and ("\\s" in body or "[:space:]" in body or "[:blank:]" in body):
            return True
        return _class_may_hold(body, code, spelled)
    if atom.startswith("\\"):
        kind = atom[1:2]
        if kind == "s":
            return char == " "
        if kind in "SWDpPC":
            return not (kind == "S" and char == " ")
        if kind in "wdtnrfva":
            return False
        value: int | None = None
        if kind == "x":
            value = int(atom[2:].strip("{}"), 16)
        elif kind.isdigit():
            value = int(atom[1:], 8)
        elif not kind.isalnum():
            value = ord(kind)
        return value is None or value == code
    return atom == char


def _class_end(pattern: str, start: int) -> int:
    """The index of the "]" that closes the class opened at `start`."""
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":
        i += 1  # a literal "]" first in the class
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            if close != -1:
                i = close + 2
                continue
        if pattern[i] == "]":
            return i
        i += 1
    return len(pattern) - 1


def _class_may_hold(body: str, code: int, spelled: set[str]) -> bool:
    """Whether a class body may hold the character `code`: conservative, so that any doubt
    (named classes, ranges written with escapes) counts as yes."""
    if any(s in body for s in spelled) or "\\p" in body or "\\P" in body or "[:" in body:
        return True
    if "\\W" in body or "\\S" in body or "\\D" in body:
        return True
    for m in re.finditer(r"(\\x[0-9a-fA-F]{2}|\\.|[^\\])-(\\x[0-9a-fA-F]{2}|\\.|[^\\])", body):
        lo, hi = (_class_char(x) for x in m.groups())
        if lo is None or hi is None or lo <= code <= hi:
            return True
    return False


def _class_char(atom: str) -> int | None:
    if len(atom) == 1:
        return ord(atom)
    if atom.startswith("\\x"):
        return int(atom[2:], 16)
    if len(atom) == 2 and not atom[1].isalnum():
        return ord(atom[1])
    return None


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    source: str
    engine: str  # "re2" | "regex"
    compiled: Any

    def search(self, text: str, timeout: float) -> str | None:
        """The matched text, or None. Raises EvaluationTimeout past `timeout` seconds (regex)."""
        if self.engine == "re2":
            m = self.compiled.search(text)
        else:
            try:
                m = self.compiled.search(text, timeout=max(timeout, 0.0001))
            except TimeoutError:
                raise EvaluationTimeout() from None
        return None if m is None else str(m.group(0))


def compile_pattern(pattern: str) -> CompiledPattern:
    engine = check_pattern(pattern)
    if engine == "re2":
        return CompiledPattern(pattern, engine, re2.compile(pattern, _RE2_OPTIONS))
    return CompiledPattern(pattern, engine, regex.compile(pattern))


# Probe inputs for the backtracking screen: runs of one or two characters the pattern mentions,
# ended by a character that makes the match fail late — the classic trigger of exponential
# backtracking in nested or overlapping quantifiers.
_SCREEN_LENGTHS = (12, 24, 48)
_SCREEN_TIMEOUT_S = 0.05


def screen_backtracking(pattern: str) -> str | None:
    """A reason to refuse a `regex`-engine pattern, or None when it passed the screen."""
    compiled = regex.compile(pattern)
    letters: list[str] = []
    for ch in pattern:
        if ch.isalnum() and ch not in letters:
            letters.append(ch)
    for ch in ("a", "0", " "):
        if ch not in letters:
            letters.append(ch)
    letters = letters[:8]
    units = letters + [a + b for a in letters[:3] for b in letters[:3] if a != b]
    for n in _SCREEN_LENGTHS:
        for unit in units:
            probe = unit * (n // len(unit)) + "\x00!"
            try:
                compiled.search(probe, timeout=_SCREEN_TIMEOUT_S)
            except TimeoutError:
                return (
                    f"pattern backtracks catastrophically: {len(probe)} characters of "
                    f"{unit!r} take over {_SCREEN_TIMEOUT_S * 1000:.0f} ms on the `regex` "
                    "engine; rewrite it without nested or overlapping quantifiers, or in RE2 "
                    "syntax"
                )
    return None
