"""`wafmw bench`: what each rule costs per request, so users see it before deploying.

Each rule is compiled alone and timed over the sample requests; its cost is its time minus that
of an empty ruleset over the same requests (the request view, body parsing and bookkeeping that
every ruleset pays). The whole ruleset is timed the same way. Figures are medians over repeats.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .casetest import case_scope
from .engine import Engine
from .loader import load_rules
from .model import Case, FilterRule
from .request import RequestView

SAMPLE_REQUESTS: tuple[Case, ...] = (
    Case(
        "GET",
        "/",
        (
            ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"),
            ("Accept", "text/html"),
            ("Accept-Language", "en-US,en;q=0.5"),
            ("Cookie", "session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"),
        ),
    ),
    Case("GET", "/search?q=union+station&page=2&sort=price", (("User-Agent", "Mozilla/5.0"),)),
    Case("GET", "/products/blue-shirt-42?ref=homepage&utm_source=newsletter"),
    Case(
        "POST",
        "/api/comments",
        (("Content-Type", "application/json"),),
        json.dumps(
            {
                "author": "Ann O'Brien",
                "text": "Select the best option; see <b>docs</b>.",
                "tags": ["help", "question"],
                "rating": 5,
            }
        ),
    ),
    Case(
        "POST",
        "/login",
        (("Content-Type", "application/x-www-form-urlencoded"),),
        "username=jdoe&password=correct+horse+battery&remember=1",
    ),
    Case("GET", "/static/app.3f2a9c.js"),
)


@dataclass(frozen=True, slots=True)
class RuleCost:
    rule: FilterRule
    us_per_request: float


@dataclass(frozen=True, slots=True)
class BenchReport:
    requests: int
    baseline_us: float
    total_us: float
    rules: tuple[RuleCost, ...]


def corpus_requests(path: str | os.PathLike[str], limit: int = 500) -> list[Case]:
    """Requests from a JSON Lines corpus (the format of the evaluation corpus)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            record = json.loads(line)
            target = record["path"] + (f"?{record['query']}" if record.get("query") else "")
            headers = tuple((str(k), str(v)) for k, v in record.get("headers", []))
            out.append(Case(record.get("method", "GET"), target, headers, record.get("body", "")))
            if len(out) >= limit:
                break
    return out


def _time(
    engine: Engine, prepared: Sequence[tuple[dict[str, object], bytes]], repeats: int
) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for scope, body in prepared:
            view = RequestView(scope)
            deadline = time.perf_counter() + 1.0
            engine.evaluate_head(view, deadline)
            if body and engine.needs_body:
                view.body = body
                engine.evaluate_body(view, deadline)
        samples.append((time.perf_counter() - start) / len(prepared) * 1e6)
    return statistics.median(samples)


def bench(
    paths: Sequence[str | os.PathLike[str]] | None,
    requests: Iterable[Case] = SAMPLE_REQUESTS,
    *,
    repeats: int = 5,
) -> BenchReport:
    ruleset = load_rules(paths)
    prepared = [case_scope(case) for case in requests]
    if not prepared:
        raise ValueError("no requests to measure with")
    empty = Engine(dataclasses.replace(ruleset, filters=()))
    baseline = _time(empty, prepared, repeats)
    total = _time(Engine(ruleset), prepared, repeats) - baseline
    costs = []
    for rule in ruleset.filters:
        alone = Engine(dataclasses.replace(ruleset, filters=(rule,)))
        costs.append(RuleCost(rule, _time(alone, prepared, repeats) - baseline))
    costs.sort(key=lambda c: c.us_per_request, reverse=True)
    return BenchReport(len(prepared), baseline, total, tuple(costs))


def format_report(report: BenchReport, top: int | None = None) -> str:
    lines = [
        f"{report.requests} requests; medians of repeated runs",
        f"whole ruleset: {report.total_us:.1f} µs per request "
        f"(on top of {report.baseline_us:.1f} µs that any ruleset pays)",
        "",
        f"{'rule':>10} {'µs/req':>8}  message",
    ]
    shown = report.rules if top is None else report.rules[:top]
    for cost in shown:
        lines.append(f"{cost.rule.id:>10} {cost.us_per_request:8.2f}  {cost.rule.msg[:70]}")
    lines.append("")
    lines.append(
        "A rule alone pays for its own scan; in the whole ruleset rules that share a "
        "transform chain share one scan, so the total is less than the sum."
    )
    return "\n".join(lines)
