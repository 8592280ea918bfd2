"""Cost per request as the rule count grows, and load time.

    python benchmarks/scaling.py [--counts 10,100,1000,5000] [--rounds 9] [--requests 1000]

Generated rule files (distinct patterns over three transform chains, targets as the shipped
rules use them) are timed on a benign browser GET, interleaved with a bare Starlette app in the
same run. Also prints how long loading + compiling takes for the shipped default ruleset and for
each generated file. Never part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inprocess import bare_app, make_cases, measure

from wafmw import WAFMiddleware, load_rules
from wafmw.engine import Engine

CHAINS = (
    "[url_decode, html_entity_decode, lowercase]",
    "[url_decode, lowercase, compress_whitespace]",
    "[url_decode, cmdline]",
)
WORDS = ("select", "script", "passwd", "eval", "union", "exec", "iframe", "system", "concat")


def generated_rules(count: int) -> str:
    lines = ["wafmw: 1", "filters:"]
    for i in range(count):
        word = WORDS[i % len(WORDS)]
        lines += [
            f"  - id: {1_000_000 + i}",
            f"    msg: generated rule {i}",
            "    targets: [args, args_names, cookies, path, body]",
            f"    transforms: {CHAINS[i % len(CHAINS)]}",
            f"    regex: '\\b{word}[_-]?{i}x[a-z]{{0,8}}\\(\\s*\\d+'",
        ]
    return "\n".join(lines) + "\n"


def load_time(paths: list[Path] | None, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        Engine(load_rules(paths))
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10,100,1000,5000")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    cases = {"benign GET": make_cases()["benign GET"]}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for count in counts:
            path = Path(tmp) / f"generated-{count}.yaml"
            path.write_text(generated_rules(count))
            files[count] = path
        configs = {"bare": bare_app()}
        for count in counts:
            configs[f"{count} rules"] = WAFMiddleware(bare_app(), rules=files[count])
        results = measure(configs, cases, args.rounds, args.requests)
        bare = results[("bare", "benign GET")]
        print(f"benign GET, median µs per request over {args.rounds} interleaved rounds")
        print(f"{'configuration':14} {'µs':>8} {'added':>8} {'ratio':>7}")
        print(f"{'bare':14} {bare:8.1f}")
        added = {}
        for count in counts:
            value = results[(f"{count} rules", "benign GET")]
            added[count] = value - bare
            print(f"{count:>6} rules   {value:8.1f} {value - bare:+8.1f} {value / bare:7.2f}")
        if 100 in added and 1000 in added and added[100] > 0:
            print(
                f"\n1000 rules cost {added[1000] / added[100]:.2f}x what 100 rules cost "
                "(added µs over bare)"
            )
        print("\nload + compile, best of 5:")
        print(f"  shipped default ruleset: {load_time(None):8.1f} ms")
        for count in counts:
            print(f"  {count:>5} generated rules: {load_time([files[count]]):8.1f} ms")


if __name__ == "__main__":
    main()
