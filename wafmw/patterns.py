"""Pattern compilation: RE2 (linear time) wherever it can express the pattern, `regex` otherwise.

RE2 cannot express look-around or back-references. Such patterns run on the backtracking `regex`
module, always with a timeout taken from the request's time budget, so a pathological pattern
costs one request its on_error outcome instead of a pinned CPU.
"""

from __future__ import annotations

import re
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
    if "\\Q" in pattern:
        raise ValueError("\\Q...\\E quoting is not rewritten")
    code = ord(char)
    spelled = {"\\" + char, f"\\x{code:02x}", f"\\x{code:02X}", f"\\x{{{code:x}}}"}
    if char != "\\":  # a lone backslash is no atom: it always begins an escape
        spelled.add(char)
    sub = f"\\x{ord(stand_in):02x}"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            # \x22 and \x{22} are four or more characters; any other escape is two.
            m = re.match(r"\\x(?:\{[0-9a-fA-F]+\}|[0-9a-fA-F]{2})", pattern[i:])
            atom = m.group() if m else pattern[i : i + 2]
            out.append(f"(?:{atom}|{sub})" if atom in spelled else atom)
            i += len(atom)
            continue
        if ch == "[":
            end = _class_end(pattern, i)
            body = pattern[i + 1 : end]
            if not body.startswith("^") and _class_may_hold(body, code, spelled):
                out.append("[" + body + sub + "]")
            else:
                out.append(pattern[i : end + 1])
            i = end + 1
            continue
        out.append(f"(?:{ch}|{sub})" if ch == char else ch)
        i += 1
    return "".join(out)


# What `cmdline` deletes and what it turns into spaces (it also folds runs of spaces into one
# and drops the spaces before "/" and "("), as RE2 class members.
_CMD_DELETED = "".join(f"\\x{{{ord(ch):x}}}" for ch in CMDLINE_DELETED)
_CMD_SPACED = "".join(f"\\x{{{ord(ch):x}}}" for ch in CMDLINE_SEPARATORS)
_QUANTIFIER = re.compile(r"[*+?]|\{\d+(?:,\d*)?\}")
_ESCAPE = re.compile(r"\\(?:x\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|[pP](?:\{[^}]*\}|.)|[0-7]{1,3}|.)")


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
