"""First sight of requests that wake more than the sieve: evaluation µs per request.

    python benchmarks/first_sight.py [--repeats 5] [--requests 2000]

Through the engine alone (default ruleset), each request seen for the first time:
- a browser GET whose query differs every time, with a parameter named `page`, or with one
  that html_entity_decode reads as an entity (`notify` as `&not`, `region` as `&reg`,
  `section` as `&sect`), which wakes that transform's trigger;
- the in-process benchmark's 2 KB JSON body, as it is, with one escape (`\\u00e9`, `\\/`,
  `\\n`, `\\"`) in one value, pretty-printed (its newlines wake the filter for CR or LF in
  a body's names), and with an apostrophe in one value (which wakes the SQL tokenizer's).
Printed: the best of `--repeats` means, in µs. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inprocess

from wafmw import load_rules
from wafmw.engine import Engine
from wafmw.request import RequestView

ESCAPES = {
    "no escape": b"Blue cotton shirt, size M",
    "one \\u00e9": b"Blue \\u00e9",
    "one \\/": b"Blue \\/ x",
    "one \\n": b"Blue cotton shirt,\\nsize M",
    'one \\"': b'Blue \\"q\\"',
}


def _best(run: Any, repeats: int, n: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(n)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    engine = Engine(load_rules([inprocess.SHIPPED_RULES]))
    counter = iter(range(10**9))

    def queries(name: str) -> Any:
        def run(n: int) -> None:
            for _ in range(n):
                target = f"/products?category=shirts&{name}={next(counter)}&sort=price"
                scope = inprocess.scope_for("GET", target, inprocess.BROWSER_HEADERS)
                engine.evaluate_head(RequestView(scope), time.perf_counter() + 5)

        return run

    print(f"µs per request, best of {args.repeats}; each request seen for the first time")
    for name in ("page", "notify", "region", "section"):
        best = _best(queries(name), args.repeats, args.requests)
        print(f"GET, new query with &{name + '=':9} {best:8.1f}")
    scope, body = inprocess.make_cases()["2 KB JSON POST"]
    bodies = {
        label: body.replace(ESCAPES["no escape"], value, 1) for label, value in ESCAPES.items()
    }
    bodies["indented"] = json.dumps(json.loads(body), indent=2).encode()
    bodies["apostrophe"] = body.replace(ESCAPES["no escape"], b"Blue cotton, don't wash", 1)
    for label, data in bodies.items():

        def run(n: int, data: bytes = data) -> None:
            for _ in range(n):
                view = RequestView(scope)
                view.body = data
                view.body_limits = engine.body_limits
                engine.evaluate_body(view, time.perf_counter() + 5)

        best = _best(run, args.repeats, args.requests // 4)
        print(f"2 KB JSON body, {label:12} {best:8.1f}")


if __name__ == "__main__":
    main()
