"""Pattern compilation: RE2 (linear time) wherever it can express the pattern, `regex` otherwise.

RE2 cannot express look-around or back-references. Such patterns run on the backtracking `regex`
module, always with a timeout taken from the request's time budget, so a pathological pattern
costs one request its on_error outcome instead of a pinned CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2
import regex

from .errors import EvaluationTimeout


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
