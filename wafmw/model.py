"""The validated, immutable form of a ruleset: what the loader produces and the engine compiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .client_ip import ClientIPConfig

if TYPE_CHECKING:
    from .bots import BotConfig
    from .iplist import IPLists
    from .ratelimit import RateLimitRule

Mode = Literal["enforce", "detect", "off"]
OnError = Literal["open", "closed"]
Action = Literal["score", "block", "log", "allow"]

SEVERITY_SCORES: dict[str, int] = {"critical": 5, "error": 4, "warning": 3, "notice": 2}

# Targets read before the body (phase 1) and those that need it (phase 2).
HEAD_TARGETS = frozenset(
    {
        "path",
        "raw_path",
        "query",
        "uri",
        "method",
        "http_version",
        "args",
        "args_names",
        "headers",
        "header_names",
        "cookies",
        "cookie_names",
    }
)
BODY_TARGETS = frozenset({"body", "body_names", "body_raw", "files"})
ALL_TARGETS = HEAD_TARGETS | BODY_TARGETS
# Collections that can be narrowed to one member: "args:id", "headers:user-agent".
NAMED_TARGETS = frozenset({"args", "body", "headers", "cookies"})

OPERATORS = (
    "regex",
    "contains",
    "contains_any",
    "equals",
    "starts_with",
    "ends_with",
    "length",
    "count",
    "detect",
)
COMPARATORS = ("gt", "ge", "lt", "le", "eq")


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    name: str | None = None  # lowercase for headers; exact for args, cookies and body fields

    def __str__(self) -> str:
        return self.kind if self.name is None else f"{self.kind}:{self.name}"

    @property
    def needs_body(self) -> bool:
        return self.kind in BODY_TARGETS


@dataclass(frozen=True, slots=True)
class Comparison:
    op: str
    value: int

    def holds(self, n: int) -> bool:
        if self.op == "gt":
            return n > self.value
        if self.op == "ge":
            return n >= self.value
        if self.op == "lt":
            return n < self.value
        if self.op == "le":
            return n <= self.value
        return n == self.value


@dataclass(frozen=True, slots=True)
class Case:
    """A request for a rule's own test cases."""

    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    line: int | None = None

    def describe(self) -> str:
        text = f"{self.method} {self.path}"
        if self.body:
            shown = self.body if len(self.body) <= 80 else self.body[:77] + "..."
            text += f" body={shown!r}"
        return text


@dataclass(frozen=True, slots=True)
class FilterRule:
    id: int
    msg: str
    targets: tuple[Target, ...]
    operator: str
    argument: Any  # str | tuple[str, ...] | Comparison, by operator
    transforms: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    paranoia: int = 1
    severity: str = "critical"
    score: int = 5
    action: Action = "score"
    mode: Literal["enforce", "detect"] | None = None
    on_error: OnError | None = None
    negate: bool = False
    match_cases: tuple[Case, ...] = ()
    no_match_cases: tuple[Case, ...] = ()
    file: str = ""
    line: int | None = None

    @property
    def needs_body(self) -> bool:
        return any(t.needs_body for t in self.targets)


@dataclass(frozen=True, slots=True)
class Exclusion:
    rule_ids: frozenset[int] = frozenset()
    tags: frozenset[str] = frozenset()
    path: str | None = None  # exact path, or a glob when it contains * ? [
    targets: tuple[Target, ...] = ()  # empty: the whole rule is off

    def applies_to(self, rule: FilterRule) -> bool:
        return rule.id in self.rule_ids or not self.tags.isdisjoint(rule.tags)


@dataclass(frozen=True, slots=True)
class BodySettings:
    inspect_bytes: int = 131072
    oversize: Literal["inspect_partial", "reject"] = "inspect_partial"
    json_max_depth: int = 32
    max_fields: int = 1000


@dataclass(frozen=True, slots=True)
class Settings:
    mode: Mode = "enforce"
    on_error: OnError = "open"
    paranoia: int = 1
    anomaly_threshold: int = 5
    time_budget_ms: float = 50.0
    body: BodySettings = field(default_factory=BodySettings)
    # Any `limits` storage URI: memory:// (one process) or redis:// and friends (shared).
    rate_limit_storage: str = "memory://"
    # A storage failure is an on_error event of the rate-limit group (see docs/rate-limits.md).
    rate_limit_on_error: OnError = "open"
    client_ip: ClientIPConfig = field(default_factory=ClientIPConfig)


@dataclass(frozen=True, slots=True)
class Ruleset:
    settings: Settings
    filters: tuple[FilterRule, ...]
    exclusions: tuple[Exclusion, ...] = ()
    lists: tuple[tuple[str, tuple[str, ...]], ...] = ()
    files: tuple[str, ...] = ()
    # Short sha256 over the loaded files' bytes: every decision and log line carries it.
    version: str = ""
    # Filters left out because their paranoia is above settings.paranoia.
    skipped_by_paranoia: int = 0
    rate_limits: tuple[RateLimitRule, ...] = ()
    ip_lists: IPLists | None = None
    bots: BotConfig | None = None
