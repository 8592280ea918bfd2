"""Instructions per request under callgrind: a figure that machine noise does not move.

    python benchmarks/instructions.py [--requests 2000] [--parts] [--varied]

The wall clock on a shared 2-core machine drifts by tens of percent from run to run;
instructions executed do not. Each configuration and case of benchmarks/inprocess.py (the
bare app, wafmw with the default ruleset plus one rate limit, and with --parts each part
alone) runs in its own process under `valgrind --tool=callgrind`, counting only while
`--requests` requests run, once 1,000 have warmed the app up; with `--varied`, no request
repeats an earlier one, as in `inprocess.py --varied`. Printed: instructions per
request and what wafmw adds to the bare app. Needs valgrind and a C compiler with valgrind's
headers (Debian: valgrind, gcc); the counting switch is a few lines of C built at start.
The clocks wafmw reads are stopped under callgrind (see `child`), so that requests take the
paths a native run takes. Instructions are not time (cache misses and branch mispredictions
cost time and are not counted): use this to compare changes, inprocess.py for what users will
see.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import itertools
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inprocess

SWITCH = """
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void stop(void) { CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }
"""
CASES = ("benign GET", "2 KB JSON POST")
WARM_UP = 1000


def child(switch: str, config: str, case: str, requests: int, varied: bool) -> None:
    """Inside valgrind: build the app, warm it up, count `requests` requests."""
    logging.getLogger("wafmw").setLevel(logging.ERROR)
    # The scanners time their scans to tell text new to RE2 from text it knows
    # (patterns.Scanner), on a clock that callgrind slows some fifty times: a scan of a
    # text the set knows could read as one of new text, and the count then depended on the
    # run (the 2 KB POST: 309k, 341k and 672k instructions). On a clock that reads every
    # scan as instant, the counted requests take the path a native run takes for them once
    # warmed up: through the set.
    time.perf_counter_ns = itertools.repeat(0).__next__  # a C callable, as the clock is
    # The rate limiter's and the bot behaviour's clocks, frozen. Callgrind runs some fifty
    # times slower than a native run: each of the 1,000 clients' requests, some 15 µs x 1,000
    # apart natively, would land in a new bucket of the moving-window limit (0.6 s) every time,
    # a path a native run seldom takes; the count then rose when the usual, same-bucket path
    # was made shorter. Frozen, every request takes the same-bucket path, as nearly all do
    # natively within a benchmark's seconds.
    import wafmw.bots.behaviour
    import wafmw.ratelimit

    frozen = time.monotonic()
    wafmw.ratelimit._monotonic = itertools.repeat(frozen).__next__
    wafmw.bots.behaviour._monotonic = itertools.repeat(frozen).__next__
    wafmw.bots.behaviour._wall = itertools.repeat(time.time()).__next__
    with tempfile.TemporaryDirectory() as tmp:
        configs = inprocess.part_rules(Path(tmp))
        from wafmw import WAFMiddleware

        app = (
            inprocess.bare_app()
            if config == "bare"
            else WAFMiddleware(inprocess.bare_app(), rules=configs[config])
        )
    scope, body = inprocess.make_cases()[case]
    # --varied: no request repeats an earlier one (inprocess.varied), warm-up included.
    scopes = [inprocess.varied(scope, i) for i in range(WARM_UP + requests)] if varied else [scope]
    run = inprocess.make_runner(app, scopes, body, 1000)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(run(WARM_UP))
    # A full collection walks every object the process holds (the ruleset's among them): one
    # falling inside the counted window or not moved the count by ~8k instructions a request
    # from one change to the next. Frozen, the objects that exist by now are left alone, and
    # what collections remain follow this run's own allocations.
    gc.collect()
    gc.freeze()
    counter = ctypes.CDLL(switch)
    counter.start()
    loop.run_until_complete(run(requests))
    counter.stop()


def count(switch: str, config: str, case: str, requests: int, varied: bool, tmp: Path) -> float:
    out = tmp / f"{config}-{case}".replace(" ", "_")
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}.%p",
            sys.executable,
            __file__,
            "--child",
            switch,
            config,
            case,
            str(requests),
            "varied" if varied else "repeated",
        ],
        check=True,
        capture_output=True,
    )
    dump = next(tmp.glob(f"{out.name}.*.1"))  # the dump taken at stop()
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1]) / requests
    raise RuntimeError(f"no totals in {dump}")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6] == "varied")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--parts", action="store_true", help="each part of wafmw alone too")
    parser.add_argument("--varied", action="store_true", help="every request a different one")
    args = parser.parse_args()
    configs = ["bare", "everything"]
    if args.parts:
        configs[1:1] = ["no rules", "rate limit only", "bots only", "filters only"]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        switch = tmp / "switch.so"
        (tmp / "switch.c").write_text(SWITCH)
        subprocess.run(
            ["gcc", "-O2", "-shared", "-fPIC", "-o", str(switch), str(tmp / "switch.c")],
            check=True,
        )
        kind = "no request repeating an earlier one" if args.varied else "one request repeated"
        print(f"instructions per request under callgrind, {args.requests} requests each ({kind})")
        print(f"{'configuration':18} " + " ".join(f"{case:>24}" for case in CASES))
        bare: dict[str, float] = {}
        for config in configs:
            cells = []
            for case in CASES:
                n = count(str(switch), config, case, args.requests, args.varied, tmp)
                if config == "bare":
                    bare[case] = n
                    cells.append(f"{n / 1000:10.1f}k{'':13}")
                else:
                    cells.append(f"{n / 1000:10.1f}k {(n - bare[case]) / 1000:+9.1f}k   ")
            print(f"{config:18} " + " ".join(cells))


if __name__ == "__main__":
    main()
