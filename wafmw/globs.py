"""Path and host globs, with one meaning everywhere in a rule file.

`*` matches any run of characters, `/` included; `?` matches one character; nothing else is
special (so `[::1]` is a literal IPv6 host and `/a[1]` a literal path).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import re2


class GlobMatcher(Protocol):
    """Globs compiled into one: `match(text)` is not None when the text matches one of them
    in full. A compiled `re` pattern is one; so is RE2Globs. Equal for equal globs, so that
    rules compare by them (a reload keeps the counters of rules it did not change)."""

    def match(self, string: str) -> object: ...


def compile_globs(globs: Sequence[str], *, ignore_case: bool = False) -> GlobMatcher | None:
    """One matcher for all the globs, or None for no globs.

    A glob with two `*` or more runs on RE2: with `re`'s backtracking, `/api/*/users/*/edit`
    took time in the square of the path's length on a path of many `/users/` and no `/edit`
    (1 s for 32 KB), and with k stars in its k-th power. The rest stay on `re`, linear for
    them, and called straight into C."""
    if not globs:
        return None
    if any(glob.count("*") >= 2 for glob in globs):
        return RE2Globs(tuple(globs), ignore_case)
    alternatives = (
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
        for glob in globs
    )
    body = "|".join(f"(?:{alt})" for alt in alternatives)
    return re.compile(f"(?s:{body})\\Z", re.IGNORECASE if ignore_case else 0)


class RE2Globs:
    """Globs on RE2, for those with two `*` or more (see compile_globs)."""

    __slots__ = ("_fullmatch", "_key")

    def __init__(self, globs: tuple[str, ...], ignore_case: bool) -> None:
        options = re2.Options()
        options.dot_nl = True
        options.case_sensitive = not ignore_case
        body = "|".join(f"(?:{_re2_source(glob)})" for glob in globs)
        self._fullmatch = re2.compile(body, options).fullmatch
        self._key = (globs, ignore_case)

    def match(self, string: str) -> object:
        # RE2 reads UTF-8, which a lone surrogate (an undecodable byte of a path) cannot be
        # encoded in: it becomes "?", which a glob matches as it matches the surrogate, by a
        # wildcard only ("?" is one).
        return self._fullmatch(string.encode("utf-8", "replace"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RE2Globs) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)


def _re2_source(glob: str) -> str:
    """The glob in RE2's syntax; every character other than a letter or digit is written as
    its code point, which RE2 reads as that character whatever it is."""
    return "".join(
        ".*"
        if c == "*"
        else "."
        if c == "?"
        else c
        if c.isascii() and c.isalnum()
        else f"\\x{{{ord(c):x}}}"
        for c in glob
    )
