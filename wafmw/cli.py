"""The `wafmw` command: validate, test, schema, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import RuleFileError


def _validate(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .loader import load_rules

    status = 0
    for path in args.files:
        try:
            ruleset = load_rules([path], paranoia=4)
            Engine(ruleset)  # compiling is part of being valid
        except RuleFileError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = 1
        else:
            print(f"{path}: ok ({len(ruleset.filters)} filters, version {ruleset.version})")
    return status


def _test(args: argparse.Namespace) -> int:
    from .casetest import run_cases

    status = 0
    for path in args.files:
        try:
            report = run_cases([path])
        except RuleFileError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = 1
            continue
        for failure in report.failures:
            print(f"FAIL {failure}", file=sys.stderr)
        for rule in report.rules_without_cases:
            print(f"note: {rule.file}: rule {rule.id} has no match/no_match cases", file=sys.stderr)
        passed = report.cases - len(report.failures)
        print(f"{path}: {passed} passed, {len(report.failures)} failed ({report.rules} rules)")
        if report.failures:
            status = 1
    return status


def _bench(args: argparse.Namespace) -> int:
    from .bench import SAMPLE_REQUESTS, bench, corpus_requests, format_report

    requests = SAMPLE_REQUESTS
    if args.corpus:
        requests = tuple(r for path in args.corpus for r in corpus_requests(path, args.limit))
    try:
        report = bench(args.files, requests, repeats=args.repeats)
    except RuleFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(format_report(report, args.top))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from .rulefile import json_schema_text

    sys.stdout.write(json_schema_text())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, serve

    if args.serve:
        return serve(args.rules, args.host, args.port)
    return run_demo(args.rules)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wafmw", description="wafmw: a WAF for ASGI apps")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check rule files; exit 1 with every problem on stderr")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_validate)
    p = sub.add_parser("test", help="run the match/no_match cases of rule files")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_test)
    p = sub.add_parser("bench", help="the cost of each rule per request, slowest first")
    p.add_argument("files", nargs="+")
    p.add_argument("--corpus", action="append", help="JSON Lines requests (default: samples)")
    p.add_argument("--limit", type=int, default=500, help="requests read per corpus file")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--top", type=int, default=None, help="show only the N slowest rules")
    p.set_defaults(func=_bench)
    p = sub.add_parser("schema", help="print the JSON Schema of the rule file format")
    p.set_defaults(func=_schema)
    p = sub.add_parser("demo", help="send sample requests through an example app")
    p.add_argument("--rules", action="append", help="rule file (default: the shipped rules)")
    p.add_argument("--serve", action="store_true", help="serve the example app with uvicorn")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
