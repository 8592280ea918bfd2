"""Run the `cases` of rule files: requests each rule must and must not match (`wafmw test`)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .body import BodyLimits
from .decision import Match
from .engine import Engine
from .loader import load_rules
from .model import Case, FilterRule
from .request import RequestView


@dataclass(frozen=True, slots=True)
class CaseFailure:
    rule: FilterRule
    case: Case
    expected_match: bool
    matched: tuple[int, ...]  # every rule id the request matched

    def __str__(self) -> str:
        where = f"{self.rule.file}:{self.case.line}" if self.case.line else self.rule.file
        expectation = "must match" if self.expected_match else "must not match"
        return (
            f"{where}: rule {self.rule.id} {expectation}: {self.case.describe()} "
            f"(matched: {list(self.matched) or 'nothing'})"
        )


@dataclass(frozen=True, slots=True)
class CaseReport:
    rules: int
    cases: int
    failures: tuple[CaseFailure, ...]
    rules_without_cases: tuple[FilterRule, ...]


def case_scope(case: Case) -> tuple[dict[str, Any], bytes]:
    """An ASGI scope and body for a case request, as a server would present it."""
    raw_path, _, query = case.path.partition("?")
    body = case.body.encode("utf-8")
    names = {name.lower() for name, _ in case.headers}
    headers = [(n.lower().encode("latin-1"), v.encode("utf-8")) for n, v in case.headers]
    if "host" not in names:
        headers.insert(0, (b"host", b"localhost"))
    if body and "content-type" not in names:
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    if (body or case.method in ("POST", "PUT", "PATCH")) and "content-length" not in names:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": case.method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1", "replace"),
        "query_string": query.encode("latin-1", "replace"),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    return scope, body


def case_matches(engine: Engine, case: Case) -> list[Match]:
    """What the engine finds in the case's request, head and body."""
    scope, body = case_scope(case)
    view = RequestView(scope, body_limits=BodyLimits())
    deadline = time.perf_counter() + 5.0
    matches = engine.evaluate_head(view, deadline)
    if body:
        view.body = body
        matches += engine.evaluate_body(view, deadline)
    return matches


def matched_rule_ids(engine: Engine, case: Case) -> tuple[int, ...]:
    return tuple(m.rule_id for m in case_matches(engine, case))


def run_cases(paths: Sequence[str | os.PathLike[str]] | None) -> CaseReport:
    """Load the files with every paranoia level enabled and run each rule's cases."""
    ruleset = load_rules(paths, paranoia=4, mode="enforce")
    engine = Engine(ruleset)
    failures: list[CaseFailure] = []
    total = 0
    for rule in ruleset.filters:
        for expected, cases in ((True, rule.match_cases), (False, rule.no_match_cases)):
            for case in cases:
                total += 1
                matched = matched_rule_ids(engine, case)
                if (rule.id in matched) != expected:
                    failures.append(CaseFailure(rule, case, expected, matched))
    missing = tuple(r for r in ruleset.filters if not r.match_cases or not r.no_match_cases)
    return CaseReport(len(ruleset.filters), total, tuple(failures), missing)
