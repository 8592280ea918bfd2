"""What a JSON body costs the engine, part by part, alone (no app, no middleware).

    python benchmarks/body_scan.py [--repeat 7] [--number 2000]

For the in-process benchmark's 2 KB and 64 KB JSON bodies and the shipped default ruleset:
the one RE2 set pass of the body sieve over the body (the floor: the set's DFA reads every
byte), the sieve's whole scan of the body, and the engine's whole body phase. Best of
`--repeat` timings of `--number` calls each, µs per call. Caches stay warm between calls, so
these are lower bounds of what the same work costs inside a request. Never part of the test
run.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inprocess

from wafmw import load_rules
from wafmw.engine import Engine
from wafmw.request import RequestView


def measure(engine: Engine, scope: dict[str, Any], body: bytes, number: int, repeat: int) -> str:
    """One row: the RE2 pass, the sieve's scan and the body phase, µs per call."""
    sieve = engine.body_sieve
    assert sieve is not None and sieve.json_pass is not None
    scanner = sieve.json_pass.scanner

    def view() -> RequestView:
        v = RequestView(scope, body_limits=engine.body_limits)
        v.body = body
        return v

    def best(call: Callable[[], object]) -> float:
        return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6

    scan = best(lambda: scanner.Match(body))

    def sieve_scan() -> object:
        v = view()
        return sieve.scan_body(v, v.media_type)

    whole = best(sieve_scan)
    phase = best(lambda: engine.evaluate_body(view(), time.perf_counter() + 1))
    return f"{len(body):7} {scan:9.1f} {whole:11.1f} {phase:11.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    engine = Engine(load_rules([inprocess.SHIPPED_RULES]))
    cases = inprocess.make_cases()
    print(f"µs per call, best of {args.repeat}")
    print(f"{'body':16} {'bytes':>7} {'RE2 pass':>9} {'sieve scan':>11} {'body phase':>11}")
    for name in ("2 KB JSON POST", "64 KB JSON POST"):
        scope, body = cases[name]
        number = args.number if len(body) < 8192 else max(args.number // 20, 50)
        print(f"{name:16} " + measure(engine, scope, body, number, args.repeat))


if __name__ == "__main__":
    main()
