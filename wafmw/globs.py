"""Path and host globs, with one meaning everywhere in a rule file.

`*` matches any run of characters, `/` included; `?` matches one character; nothing else is
special (so `[::1]` is a literal IPv6 host and `/a[1]` a literal path).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import re2

# Whether a text matches one of a list of globs in full.
GlobMatcher = Callable[[str], bool]


def compile_globs(globs: Sequence[str], *, ignore_case: bool = False) -> GlobMatcher | None:
    """One matcher for all the globs, or None for no globs.

    A glob with two `*` or more runs on RE2: with `re`'s backtracking, `/api/*/users/*/edit`
    took time in the square of the path's length on a path of many `/users/` and no `/edit`
    (1 s for 32 KB), and with k stars in its k-th power. The rest stay on `re`, linear for
    them and cheaper to call."""
    if not globs:
        return None
    if any(glob.count("*") >= 2 for glob in globs):
        options = re2.Options()
        options.dot_nl = True
        options.case_sensitive = not ignore_case
        body = "|".join(f"(?:{_re2_source(glob)})" for glob in globs)
        fullmatch = re2.compile(body, options).fullmatch
        # RE2 reads UTF-8, which a lone surrogate (an undecodable byte of a path) cannot be
        # encoded in: it becomes "?", which a glob matches as it matches the surrogate, by a
        # wildcard only ("?" is one).
        return lambda text: fullmatch(text.encode("utf-8", "replace")) is not None
    alternatives = (
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
        for glob in globs
    )
    body = "|".join(f"(?:{alt})" for alt in alternatives)
    match = re.compile(f"(?s:{body})\\Z", re.IGNORECASE if ignore_case else 0).match
    return lambda text: match(text) is not None


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
