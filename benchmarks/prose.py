"""False positives on English prose: the standard library's docstrings, cut into pieces, sent
as a query argument and as a form body through the shipped rules.

    python benchmarks/prose.py [--size 300] [--paranoia N]

The corpus's benign requests are the project's measure of false positives; this one asks
the same of text no rule was written against: technical English, with words that are also
SQL, shell and JavaScript (select, from, process, exec, env). All of it is sent, in pieces
of `--size` characters one after the other (about 2,800 of 300), every other one as a
query argument and the rest as a form field. Printed: how many pieces were blocked, and
each rule that matched, with how often and what it matched first. Never part of the test
run.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hostile import prose, request_for

from wafmw import load_rules
from wafmw.casetest import case_matches
from wafmw.engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=300, help="characters per piece")
    parser.add_argument("--paranoia", type=int, default=None)
    args = parser.parse_args()
    engine = Engine(load_rules(None, paranoia=args.paranoia))
    text = prose()
    pieces = [text[at : at + args.size] for at in range(0, len(text), args.size)]
    blocked = 0
    matched: Counter[int] = Counter()
    first: dict[int, tuple[str, str]] = {}
    for i, piece in enumerate(pieces):
        matches = case_matches(engine, request_for(piece, args.size, body=i % 2 == 1))
        blocked += engine.decide(matches).outcome == "block"
        for m in matches:
            matched[m.rule_id] += 1
            first.setdefault(m.rule_id, (m.value, piece))
    level = "the rule files'" if args.paranoia is None else str(args.paranoia)
    print(f"{blocked} of {len(pieces)} pieces blocked (paranoia level: {level})")
    for rule_id, count in matched.most_common():
        value, piece = first[rule_id]
        print(f"  {rule_id}: {count} matched, first {value!r} in {piece[:100]!r}")


if __name__ == "__main__":
    main()
