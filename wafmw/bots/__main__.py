"""``python -m wafmw.bots``: explain bot scores.

    python -m wafmw.bots explain -H 'User-Agent: curl/8.5.0' -H 'Accept: */*' [--ip A] [--path P]
    python -m wafmw.bots corpus FILE.jsonl [--show N]

``explain`` prints the verdict of one request and the bot rule it would meet. ``corpus`` scores
every record of a JSON Lines corpus (the format of ../shared/corpus: method, path, query,
headers) with the shipped configuration and prints how many browser-like and other requests
the shipped rules would block or challenge, and which signals did it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from ..request import RequestView
from .config import default_bot_config
from .detector import BotDetector
from .model import BotVerdict
from .rules import decide


def _scope(
    method: str, raw_path: str, query: str, headers: Sequence[tuple[str, str]], ip: str, scheme: str
) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1", "replace"),
        "query_string": query.encode("latin-1", "replace"),
        "headers": [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in headers],
        "client": (ip, 50000),
    }


def _explain(args: argparse.Namespace) -> int:
    headers: list[tuple[str, str]] = []
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            print(f"bad header {item!r}: expected 'Name: value'", file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    detector = BotDetector(default_bot_config())
    view = RequestView(_scope(args.method, args.path, "", headers, args.ip, args.scheme))
    verdict = detector.assess(view)
    print(verdict.explain())
    action = decide(detector.config.rules, verdict, view.method, view.path)
    print(
        "rule: none"
        if action is None
        else f"rule: {action.rule.id} {action.action} ({action.reason})"
    )
    return 0


def _browser_like(verdict: BotVerdict) -> bool:
    return verdict.kind == "browser"


def _corpus(args: argparse.Namespace) -> int:
    detector = BotDetector(default_bot_config())
    rules = detector.config.rules
    totals: Counter[str] = Counter()
    signals: Counter[str] = Counter()
    scores: dict[str, Counter[int]] = {"browser-like": Counter(), "other": Counter()}
    shown = 0
    with open(args.file, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            view = RequestView(
                _scope(
                    record["method"],
                    record["path"],
                    record.get("query", ""),
                    [(k, v) for k, v in record["headers"]],
                    "203.0.113.10",
                    "http",
                )
            )
            verdict = detector.assess(view)
            group = "browser-like" if _browser_like(verdict) else "other"
            totals[group] += 1
            assert verdict.score is not None
            scores[group][verdict.score] += 1
            action = decide(rules, verdict, view.method, view.path)
            outcome = "pass" if action is None else action.action
            totals[f"{group} {outcome}"] += 1
            if action is not None:
                for signal in verdict.signals:
                    signals[f"{group} {outcome}: {signal.id} {signal.name}"] += 1
                if shown < args.show:
                    shown += 1
                    print(f"{record.get('id')}: {outcome}: {verdict.explain()}")
    all_records = totals["browser-like"] + totals["other"]
    print(f"records: {all_records}")
    for group in ("browser-like", "other"):
        n = totals[group]
        print(
            f"{group}: {n} ({n / max(all_records, 1):.1%}); "
            + ", ".join(
                f"{o} {totals[f'{group} {o}']} ({totals[f'{group} {o}'] / max(n, 1):.1%})"
                for o in ("block", "challenge", "log", "pass")
            )
        )
        print(f"  scores: {dict(sorted(scores[group].items()))}")
    for key, count in sorted(signals.items()):
        print(f"  {count:5d}  {key}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wafmw.bots")
    sub = parser.add_subparsers(dest="command", required=True)
    explain = sub.add_parser("explain", help="score one request")
    explain.add_argument("-H", "--header", action="append", default=[])
    explain.add_argument("--ip", default="198.51.100.7")
    explain.add_argument("--path", default="/")
    explain.add_argument("--method", default="GET")
    explain.add_argument("--scheme", default="https")
    corpus = sub.add_parser("corpus", help="score a JSON Lines corpus")
    corpus.add_argument("file")
    corpus.add_argument("--show", type=int, default=0, help="print N acted-on records")
    args = parser.parse_args(argv)
    return _explain(args) if args.command == "explain" else _corpus(args)


if __name__ == "__main__":
    raise SystemExit(main())
