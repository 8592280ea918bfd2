"""Bot rules: what a bot score means for a request.

A rule fires when ``score < below`` for a matching path and method. An UNKNOWN score is never
read as a number: when the computed signals alone already put the client below the threshold
(``upper_bound < below``; the missing signals could only lower it further) the rule fires as
usual, otherwise the rule's ``on_unknown`` decides.

Verified crawlers are never acted on by bot rules. A valid challenge pass skips ``challenge``
outcomes only; it never lifts a ``block``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .config import BotRule
from .model import BotVerdict

__all__ = ["BotAction", "decide"]

_STRENGTH: Final = {"block": 3, "challenge": 2, "log": 1}


@dataclass(frozen=True, slots=True)
class BotAction:
    """The outcome of the bot rules for one request."""

    rule: BotRule
    action: Literal["block", "challenge", "log"]
    unknown: bool  # decided by on_unknown because the score was UNKNOWN
    reason: str  # for the decision log, e.g. "bot score 5 < 20"


def decide(
    rules: Sequence[BotRule],
    verdict: BotVerdict,
    method: str,
    path: str,
    *,
    has_pass: bool = False,
) -> BotAction | None:
    """The strongest action (block > challenge > log) of the rules that fire, or None.

    Rules in ``mode: detect`` still come back (the core logs them as would-be actions); among
    equally strong actions the first rule wins."""
    if verdict.verified_crawler is not None:
        return None
    best: BotAction | None = None
    score = verdict.score
    for rule in rules:
        # The score test first: it is the cheap one, and most requests pass every threshold.
        if score is not None and score >= rule.below:
            continue
        if not rule.applies_to(method, path, verdict.kind):
            continue
        action: str
        if score is not None:
            action, unknown = rule.action, False
            reason = f"bot score {score} < {rule.below}"
        elif verdict.upper_bound is not None and verdict.upper_bound < rule.below:
            action, unknown = rule.action, False
            reason = f"bot score unknown but at most {verdict.upper_bound} < {rule.below}"
        else:
            if rule.on_unknown == "allow":
                continue
            action, unknown = rule.on_unknown, True
            reason = f"bot score unknown; on_unknown: {rule.on_unknown}"
        if action == "challenge" and has_pass:
            continue
        candidate = BotAction(rule, action, unknown, reason)
        if best is None or _STRENGTH[action] > _STRENGTH[best.action]:
            best = candidate
    return best
