"""Detection rate of a ruleset on labelled JSON Lines request corpora.

    python benchmarks/detection.py CORPUS.jsonl [CORPUS.jsonl ...]
        [--rules PATH ...] [--paranoia N] [--max-pl N] [--misses CATEGORY] [--fps]

Each record (format: the corpus README) is replayed in-process through a tiny
Starlette app wrapped with the real WAFMiddleware: the raw path goes into ASGI
`raw_path`, its percent-decoding into `path`, the query string as is, the
headers in order, and a Content-Length computed from the body. A request is
counted as blocked when the app was not reached. The report gives, per
category, the detection rate on attacks and the false-positive rate on benign
records, then overall TPR, FPR and balanced accuracy.

`--max-pl N` drops CRS attack records whose rule sits above paranoia level N
(records without a level are kept). Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wafmw import WAFMiddleware


class _App:
    """The protected app: records that it was reached."""

    def __init__(self) -> None:
        self.reached = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached = True
        while True:
            msg = await receive()
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                break
        await PlainTextResponse("ok")(scope, receive, send)


def _scope(rec: dict[str, Any], body: bytes, n: int) -> Scope:
    raw_path = rec["path"].encode("utf-8")
    path = unquote_to_bytes(rec["path"]).decode("utf-8", "replace")
    headers = [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in rec["headers"]]
    if body or rec["method"].upper() in ("POST", "PUT", "PATCH", "DELETE"):
        headers.append((b"content-length", str(len(body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": rec["method"],
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "root_path": "",
        "query_string": rec.get("query", "").encode("utf-8"),
        "headers": headers,
        # one client per record: the records are independent requests, and per-client state
        # (rate limits, bot scores) must not carry over from one record to the next
        "client": (f"198.18.{(n >> 8) & 255}.{n & 255}", 50000),
        "server": ("localhost", 80),
    }


async def _replay(mw: WAFMiddleware, app: _App, rec: dict[str, Any], n: int) -> tuple[bool, int]:
    body = rec.get("body", "").encode("utf-8")
    sent = False
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: Message) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = int(msg["status"])

    app.reached = False
    await mw(_scope(rec, body, n), receive, send)
    return (not app.reached), status


def _load(paths: list[str], max_pl: int | None) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                if max_pl is not None and rec.get("pl") and int(rec["pl"]) > max_pl:
                    continue
                out.append(rec)
    return out


async def _main(args: argparse.Namespace) -> int:
    # one decision line per blocked request would drown the report
    logging.getLogger("wafmw").setLevel(logging.CRITICAL + 1)
    logging.getLogger("wafmw").propagate = False
    if args.no_bots:
        groups = [g for g in os.environ.get("WAFMW_DISABLE_GROUPS", "").split(",") if g]
        os.environ["WAFMW_DISABLE_GROUPS"] = ",".join([*groups, "bots"])
    records = _load(args.corpus, args.max_pl)
    app = _App()
    rules: Any = args.rules if args.rules else None
    t0 = time.perf_counter()
    mw = WAFMiddleware(app, rules=rules, paranoia=args.paranoia)
    load_s = time.perf_counter() - t0
    stats: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    statuses: collections.Counter[int] = collections.Counter()
    t0 = time.perf_counter()
    for n, rec in enumerate(records):
        blocked, status = await _replay(mw, app, rec, n)
        if blocked:
            statuses[status] += 1
        st = stats[rec.get("category", "other")]
        if rec["label"] == "attack":
            st[0] += 1
            st[1] += blocked
            if not blocked and args.misses in (rec.get("category"), "all"):
                print(
                    f"MISS {rec['id']} {rec['method']} {rec['path']}?{rec.get('query', '')}"[:300]
                )
        else:
            st[2] += 1
            st[3] += blocked
            if blocked and args.fps:
                print(
                    f"FP   {rec['id']} {rec['method']} {rec['path']}?{rec.get('query', '')}"[:300]
                )
    run_s = time.perf_counter() - t0

    print(
        f"ruleset loaded in {load_s * 1000:.0f} ms; {len(records)} requests replayed in "
        f"{run_s:.1f} s ({run_s / max(len(records), 1) * 1e6:.0f} µs/request incl. app)"
    )
    print(
        f"paranoia: {args.paranoia or 'from rules'}   max-pl: {args.max_pl or 'all'}   "
        f"block statuses: {dict(statuses)}"
    )
    print(
        f"{'category':16s} {'attacks':>9s} {'detected':>9s} {'TPR':>7s}   "
        f"{'benign':>7s} {'blocked':>8s} {'FPR':>7s}"
    )
    ta = na = fb = nb = 0
    for cat in sorted(stats):
        a, d, b, f = stats[cat]
        tpr = f"{100 * d / a:6.1f}%" if a else "     -"
        fpr = f"{100 * f / b:6.2f}%" if b else "     -"
        print(f"{cat:16s} {a:9d} {d:9d} {tpr:>7s}   {b:7d} {f:8d} {fpr:>7s}")
        na += a
        ta += d
        nb += b
        fb += f
    tpr_v = ta / na if na else 0.0
    fpr_v = fb / nb if nb else 0.0
    print(
        f"{'TOTAL':16s} {na:9d} {ta:9d} {100 * tpr_v:6.2f}%   {nb:7d} {fb:8d} {100 * fpr_v:6.2f}%"
    )
    print(
        f"TPR {100 * tpr_v:.2f}%  FPR {100 * fpr_v:.2f}%  "
        f"balanced accuracy {100 * (tpr_v + 1 - fpr_v) / 2:.2f}%"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="+", help="JSON Lines corpus file(s)")
    ap.add_argument("--rules", nargs="+", help="rule file(s); default: the shipped ruleset")
    ap.add_argument("--paranoia", type=int, choices=(1, 2, 3, 4), help="override settings.paranoia")
    ap.add_argument("--max-pl", type=int, choices=(1, 2, 3, 4), help="drop CRS attacks above PL N")
    ap.add_argument("--misses", metavar="CATEGORY", help="list missed attacks (or 'all')")
    ap.add_argument("--fps", action="store_true", help="list blocked benign requests")
    ap.add_argument(
        "--no-bots",
        action="store_true",
        help="bot heuristics off (kill switch WAFMW_DISABLE_GROUPS=bots): pattern rules only",
    )
    return asyncio.run(_main(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
