"""What the engine concluded about one request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["allow", "block", "reject", "log", "error", "rate-limit", "challenge"]

# How much of a matched value a decision (and so a log line) keeps.
MAX_VALUE_CHARS = 80


def truncate(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Match:
    rule_id: int
    msg: str
    target: str  # e.g. "args:id", "headers:user-agent", "path"
    value: str  # the matched text, truncated
    score: int
    action: str
    detect_only: bool  # the rule (or the whole WAF) is in detect mode
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class Decision:
    """`outcome` is what happens to the request; `would_block` what enforce mode would do."""

    outcome: Outcome = "allow"
    status: int = 200
    score: int = 0
    would_block: bool = False
    matches: list[Match] = field(default_factory=list)
    reason: str = ""

    @property
    def rule_ids(self) -> list[int]:
        return [m.rule_id for m in self.matches]
