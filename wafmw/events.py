"""Structured events on the `wafmw` logger: one per blocked, logged or errored request.

Each record's message is a compact JSON object (so plain text handlers print something a log
pipeline can parse) and the same dict is attached as `record.wafmw` for structured handlers.
Errors are deduplicated: the same (rule, error type) is logged at most once per interval, with a
count of what was suppressed, and the table that tracks this is bounded.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .decision import Decision, truncate
from .request import RequestView

logger = logging.getLogger("wafmw")

_ERROR_INTERVAL_S = 10.0
_MAX_ERROR_KEYS = 256


def request_fields(view: RequestView) -> dict[str, Any]:
    return {
        "client": view.client_ip,
        "method": view.method,
        "path": truncate(view.path, 200),
    }


def decision_event(
    decision: Decision, view: RequestView, *, version: str, elapsed_us: float, request_id: str
) -> dict[str, Any]:
    return {
        "event": "decision",
        "action": decision.outcome,
        "would_block": decision.would_block,
        "status": decision.status,
        "score": decision.score,
        "rule_ids": decision.rule_ids,
        "matches": [
            {
                "rule_id": m.rule_id,
                "msg": m.msg,
                "target": m.target,
                "value": m.value,
                "score": m.score,
                "action": m.action,
                "detect_only": m.detect_only,
            }
            for m in decision.matches
        ],
        **request_fields(view),
        "request_id": request_id,
        "ruleset": version,
        "eval_us": round(elapsed_us, 1),
    }


def emit(event: dict[str, Any], level: int) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, "%s", json.dumps(event, default=str), extra={"wafmw": event})


class ErrorReporter:
    """Logs WAF failures without letting a failure storm flood the log or grow memory."""

    def __init__(self, interval_s: float = _ERROR_INTERVAL_S, max_keys: int = _MAX_ERROR_KEYS):
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[tuple[Any, ...], tuple[float, int]] = {}
        self.total = 0

    def report(self, event: dict[str, Any], key: tuple[Any, ...]) -> bool:
        """Count the failure; log it unless the same key was logged within the interval."""
        self.total += 1
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._last) >= self.max_keys:
            # Forget the oldest key rather than grow: at worst a key is logged again early.
            self._last.pop(next(iter(self._last)))
        suppressed = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        if suppressed:
            event = {**event, "suppressed_since_last": suppressed}
        emit(event, logging.ERROR)
        return True
