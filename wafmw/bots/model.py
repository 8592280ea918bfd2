"""Value types of the bot detector: signals, verdicts, the signal catalogue, the request type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "CLIENT_KINDS",
    "SCORE_MAX",
    "SCORE_MIN",
    "SIGNALS",
    "BotVerdict",
    "RequestLike",
    "Signal",
    "SignalSpec",
]

SCORE_MIN: Final = 1
SCORE_MAX: Final = 99

# What the User-Agent says the client is (BotVerdict.kind, and the `clients` key of bot rules).
CLIENT_KINDS: Final = (
    "browser",  # a browser User-Agent (its headers may still disagree)
    "library",  # an HTTP client library or command-line tool
    "scanner",  # a vulnerability scanner or attack tool
    "automation",  # a headless browser or automation framework
    "crawler",  # a configured crawler's User-Agent (verified or not: see verified_crawler)
    "declared-bot",  # a bot that names itself, not verifiable
    "unknown",  # any other User-Agent
    "missing",  # no or an empty User-Agent
)


class RequestLike(Protocol):
    """What the bot detector reads from a request (wafmw.request.RequestView provides it)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def client_ip(self) -> str | None: ...
    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...  # (lowercase name, value)
    @property
    def http_version(self) -> str: ...
    @property
    def scope(self) -> Mapping[str, Any]: ...
    def header(self, name: str) -> str | None: ...  # first value, lowercase name


@dataclass(frozen=True, slots=True)
class Signal:
    """One explainable contribution to a bot score.

    ``weight`` pulls the score toward "automated" (positive) or toward "human" (negative).
    """

    id: int
    name: str
    weight: int
    detail: str


@dataclass(frozen=True, slots=True)
class BotVerdict:
    """The bot detector's answer for one request.

    ``score`` is 1..99 (low = automated, high = human) or None when a signal could not be
    computed (UNKNOWN, never a default number). ``upper_bound`` is the score from the signals
    that were computed; every signal that can be missing only lowers a score, so when ``score``
    is None the real score is at most ``upper_bound`` (None when nothing bounds it).
    """

    score: int | None
    signals: tuple[Signal, ...]
    verified_crawler: str | None
    impostor: bool
    upper_bound: int | None = None
    kind: str = "unknown"  # one of CLIENT_KINDS

    @property
    def unknown(self) -> bool:
        return self.score is None

    def explain(self) -> str:
        """One line: the score and every signal that made it, e.g. for a log or the CLI."""
        head = "score unknown" if self.score is None else f"score {self.score}"
        if self.score is None and self.upper_bound is not None:
            head += f" (at most {self.upper_bound})"
        if self.verified_crawler:
            head += f", verified crawler {self.verified_crawler}"
        if self.impostor:
            head += ", crawler impostor"
        if not self.signals:
            return head
        parts = (f"{s.id} {s.name} ({s.weight:+d}): {s.detail}" for s in self.signals)
        return head + "; " + "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the decision log."""
        return {
            "score": self.score,
            "upper_bound": self.upper_bound,
            "verified_crawler": self.verified_crawler,
            "impostor": self.impostor,
            "kind": self.kind,
            "signals": [
                {"id": s.id, "name": s.name, "weight": s.weight, "detail": s.detail}
                for s in self.signals
            ],
        }


@dataclass(frozen=True, slots=True)
class SignalSpec:
    id: int
    name: str
    weight: int  # default weight; the rule file may override it
    kind: str  # "request" (computed by assess) or "behaviour" (computed from shared storage)
    description: str


# The catalogue of signals. Ids are stable and never reused; see docs/bots.md.
_CATALOGUE: Final = (
    SignalSpec(913100, "scanner-user-agent", 80, "request",
               "User-Agent of a vulnerability scanner or attack tool"),
    SignalSpec(913101, "http-library-user-agent", 35, "request",
               "User-Agent of an HTTP client library or command-line tool"),
    SignalSpec(913102, "automation-user-agent", 60, "request",
               "automation or headless-browser marker in User-Agent or sec-ch-ua"),
    # As strong as a library's name, not more: health checks, probes and simple scripts often
    # send none, and a missing header alone must not refuse them (it scores 15: automated).
    SignalSpec(913103, "missing-user-agent", 35, "request", "no or an empty User-Agent"),
    SignalSpec(913104, "unrecognised-user-agent", 10, "request",
               "a User-Agent that is neither a known browser nor a known client"),
    SignalSpec(913105, "declared-bot-user-agent", 25, "request",
               "a crawler or bot that names itself but is not verified"),
    SignalSpec(913110, "browser-missing-accept", 20, "request",
               "browser User-Agent without an Accept header"),
    SignalSpec(913111, "browser-missing-accept-language", 10, "request",
               "browser User-Agent without Accept-Language"),
    SignalSpec(913112, "browser-missing-accept-encoding", 10, "request",
               "browser User-Agent without Accept-Encoding"),
    SignalSpec(913113, "chromium-missing-client-hints", 10, "request",
               "Chromium >= 89 User-Agent without sec-ch-ua in a secure context"),
    SignalSpec(913114, "browser-missing-fetch-metadata", 5, "request",
               "current browser User-Agent without Sec-Fetch-* in a secure context"),
    SignalSpec(913115, "impossible-client-hints", 30, "request",
               "sec-ch-ua from a browser that never sends it (Firefox, Safari)"),
    SignalSpec(913116, "client-hints-mismatch", 20, "request",
               "sec-ch-ua brand version differs from the User-Agent's version"),
    SignalSpec(913117, "http10-browser", 15, "request",
               "HTTP/1.0 with a current browser User-Agent"),
    SignalSpec(913118, "header-penalty-capped", 0, "request",
               "header signals 913110-913117 together never take more than max_header_penalty"),
    SignalSpec(913119, "consistent-browser", -25, "request",
               "browser User-Agent with the complete header set that browser sends"),
    SignalSpec(913120, "verified-crawler", -30, "request",
               "crawler User-Agent from the crawler's published network"),
    SignalSpec(913121, "crawler-impostor", 70, "request",
               "crawler User-Agent from outside the crawler's published network"),
    SignalSpec(913130, "trap-path-request", 30, "request", "request to a trap path"),
    SignalSpec(913140, "behaviour-request-rate", 15, "behaviour",
               "more requests in the window than behaviour.max_requests"),
    SignalSpec(913141, "behaviour-4xx-share", 20, "behaviour",
               "share of 4xx answers in the window at or above behaviour.max_4xx_share"),
    SignalSpec(913142, "behaviour-distinct-paths", 15, "behaviour",
               "more distinct paths in the window than behaviour.max_distinct_paths"),
    SignalSpec(913143, "behaviour-trap-paths", 40, "behaviour",
               "the client requested a trap path in the window"),
)  # fmt: skip

SIGNALS: Final[Mapping[int, SignalSpec]] = {spec.id: spec for spec in _CATALOGUE}
