"""Path and host globs, with one meaning everywhere in a rule file.

`*` matches any run of characters, `/` included; `?` matches one character; nothing else is
special (so `[::1]` is a literal IPv6 host and `/a[1]` a literal path).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def compile_globs(globs: Sequence[str], *, ignore_case: bool = False) -> re.Pattern[str] | None:
    """One compiled pattern matching any of the globs in full, or None for no globs."""
    if not globs:
        return None
    alternatives = (
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
        for glob in globs
    )
    body = "|".join(f"(?:{alt})" for alt in alternatives)
    return re.compile(f"(?s:{body})\\Z", re.IGNORECASE if ignore_case else 0)
