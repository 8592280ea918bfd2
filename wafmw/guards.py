"""The checks that run before the pattern filters: client identity, IP lists, rate limits, bots.

One `Guards` per active ruleset holds the stateful parts — the rate limiter's counters and the
bot detector's behaviour store — so that they survive kill-switch changes; a reload builds new
ones only when their configuration changed (`carry_over`). Each check returns an `Outcome` (an
answer to send instead of the app, with what to log) or None.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from functools import partial

from .bots import BotDetector, BotVerdict, decide
from .challenge import challenge_response, has_valid_pass, verification_response
from .client_ip import resolve_client_ip
from .decision import Match
from .killswitch import KillState
from .model import Ruleset
from .ratelimit import RateLimiter, RateLimitResult, StorageUnavailable
from .request import RequestView

logger = logging.getLogger("wafmw")


@dataclass(slots=True)
class Outcome:
    """What a guard decided: an answer (unless detect-only) and the match to log."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None  # None: the standard denial page for the status
    match: Match | None = None
    detect_only: bool = False
    allow_rest: bool = False  # an allow-listed client: skip the remaining checks


class Guards:
    def __init__(self, ruleset: Ruleset) -> None:
        settings = ruleset.settings
        self.ruleset = ruleset
        self.client_ip = settings.client_ip
        self.resolver = (
            partial(resolve_client_ip, config=self.client_ip)
            if self.client_ip.trusted_proxies
            else None
        )
        self.ip_lists = ruleset.ip_lists
        self.limiter: RateLimiter | None = (
            RateLimiter(ruleset.rate_limits, settings.rate_limit_storage)
            if ruleset.rate_limits
            else None
        )
        bots = ruleset.bots
        self.bots = bots if bots is not None and bots.enabled else None
        self.detector: BotDetector | None = (
            BotDetector(self.bots, settings.rate_limit_storage) if self.bots is not None else None
        )
        self.storage_errors = 0
        self.local = self._all_local()
        self.active = bool(self.ip_lists or self.limiter or self.detector)
        # Whether the answer's status is wanted (bot behaviour counts 4xx answers): without
        # it, the middleware calls the app with the server's own send.
        self.observes = self.detector is not None and self.detector.tracks_behaviour
        # The highest score any bot rule acts below: a verdict scoring at least this fires
        # no rule, and the rules need not be walked (None: no rules at all).
        self._bot_floor = (
            max((r.below for r in self.bots.rules), default=None) if self.bots else None
        )

    def _all_local(self) -> bool:
        """Whether no check needs I/O (memory storage or none): the middleware then runs them
        without coroutines (rate_limit_local, bot_local, observe_local)."""
        return (self.limiter is None or self.limiter.local) and (
            self.detector is None or self.detector.local
        )

    def carry_over(self, old: Guards) -> None:
        """Keep the old stateful parts when their configuration did not change."""
        same_storage = (
            old.ruleset.settings.rate_limit_storage == self.ruleset.settings.rate_limit_storage
        )
        if same_storage and old.ruleset.rate_limits == self.ruleset.rate_limits:
            self.limiter = old.limiter
        if same_storage and old.bots == self.bots:
            self.detector = old.detector
        self.local = self._all_local()

    # -- checks, in the order the middleware runs them -----------------------------------------

    def ip_list(self, view: RequestView, kill: KillState, detect: bool) -> Outcome | None:
        if self.ip_lists is None or "ip_lists" in kill.groups:
            return None
        verdict = self.ip_lists.decide(view.client_ip)
        if verdict == "allow":
            return Outcome(0, allow_rest=self.ip_lists.allow_skips_rules)
        if verdict == "deny":
            match = Match(
                0,
                "client address on the deny list",
                "client_ip",
                str(view.client_ip),
                0,
                "block",
                detect,
            )
            return Outcome(403, match=match, detect_only=detect)
        return None

    async def rate_limit(self, view: RequestView, kill: KillState, detect: bool) -> Outcome | None:
        limiter = self.limiter
        if limiter is None or "rate_limits" in kill.groups:
            return None
        try:
            result = await limiter.check(view)
        except StorageUnavailable:
            return self._storage_failed(detect)
        return self._rate_outcome(result, kill, detect)

    def rate_limit_local(self, view: RequestView, kill: KillState, detect: bool) -> Outcome | None:
        """rate_limit() when the limiter needs no I/O (see `local`)."""
        limiter = self.limiter
        if limiter is None or "rate_limits" in kill.groups:
            return None
        result = limiter.check_local(view)
        return None if result is None else self._rate_outcome(result, kill, detect)

    def _storage_failed(self, detect: bool) -> Outcome | None:
        # The storage is an on_error event of the rate-limit group: counted here, logged (once
        # per interval) by the limiter, never an error for the request.
        self.storage_errors += 1
        if self.ruleset.settings.rate_limit_on_error == "closed" and not detect:
            return Outcome(503)
        return None

    @staticmethod
    def _rate_outcome(
        result: RateLimitResult | None, kill: KillState, detect: bool
    ) -> Outcome | None:
        if result is None or not result.limited:
            return None
        rule = result.rule
        if rule.id in kill.rules or not kill.tags.isdisjoint(rule.tags):
            return None
        detect_only = detect or rule.mode == "detect"
        match = Match(
            rule.id,
            rule.msg,
            "rate_limit",
            f"retry after {result.retry_after}s",
            0,
            "rate-limit",
            detect_only,
            rule.tags,
        )
        return Outcome(429, headers=result.headers, match=match, detect_only=detect_only)

    async def bot(self, view: RequestView, kill: KillState, detect: bool) -> Outcome | None:
        detector, config = self.detector, self.bots
        if detector is None or config is None or "bots" in kill.groups:
            return None
        if view.path == config.challenge.path:
            status, headers, body = verification_response(view, config.challenge, time.time())
            return Outcome(status, tuple(headers), body)
        # Most set-ups: no I/O, so no coroutine; counted now, and observed after for a 4xx only.
        verdict = detector.evaluate_local(view, count=True)
        if verdict is None:
            verdict = await detector.evaluate(view)
        return self._bot_outcome(view, verdict, kill, detect)

    def bot_local(self, view: RequestView, kill: KillState, detect: bool) -> Outcome | None:
        """bot() when the detector needs no I/O (see `local`)."""
        detector, config = self.detector, self.bots
        if detector is None or config is None or "bots" in kill.groups:
            return None
        if view.path == config.challenge.path:
            status, headers, body = verification_response(view, config.challenge, time.time())
            return Outcome(status, tuple(headers), body)
        verdict = detector.evaluate_local(view, count=True)  # observed after for a 4xx only
        assert verdict is not None  # local: evaluate_local always answers
        floor = self._bot_floor
        if floor is None or (verdict.score is not None and verdict.score >= floor):
            view.scope["wafmw.bot"] = verdict  # type: ignore[index]
            return None  # _bot_outcome's usual answer, spared its call on every request
        return self._bot_outcome(view, verdict, kill, detect)

    def _bot_outcome(
        self, view: RequestView, verdict: BotVerdict, kill: KillState, detect: bool
    ) -> Outcome | None:
        config = self.bots
        assert config is not None
        view.scope["wafmw.bot"] = verdict  # type: ignore[index]
        floor = self._bot_floor
        if floor is None or (verdict.score is not None and verdict.score >= floor):
            return None  # what decide() would find, without walking the rules
        action = decide(config.rules, verdict, view.method, view.path)
        if action is None:
            return None  # a pass only ever removes actions: no need to check the cookie
        now = time.time()
        if has_valid_pass(view, config.challenge, now):
            action = decide(config.rules, verdict, view.method, view.path, has_pass=True)
            if action is None:
                return None
        rule = action.rule
        if rule.id in kill.rules or not kill.tags.isdisjoint(rule.tags):
            return None
        detect_only = detect or rule.mode == "detect" or action.action == "log"
        match = Match(
            rule.id,
            rule.msg,
            "bot",
            f"{action.reason}; {verdict.explain()}"[:200],
            0,
            action.action,
            detect_only,
            rule.tags,
        )
        if action.action == "challenge":
            status, headers, body = challenge_response(view, config.challenge, now)
            return Outcome(status, tuple(headers), body, match, detect_only)
        return Outcome(
            403 if action.action == "block" else 200, match=match, detect_only=detect_only
        )

    async def observe(self, view: RequestView, status: int) -> None:
        """Feed the answer's status into the bot behaviour counters (bounded, never raises)."""
        if self.detector is not None:
            # Not contextlib.suppress: this runs on every request, and a bare try costs less.
            try:
                if not self.detector.observe_local(view, status):
                    await self.detector.observe(view, status)
            except Exception:
                pass

    def observe_local(self, view: RequestView, status: int) -> None:
        """observe() when the detector needs no I/O (see `local`)."""
        if self.detector is not None:
            # A bare try, not contextlib.suppress: it runs on every request.
            try:
                self.detector.observe_local(view, status)
            except Exception:
                return

    async def close(self, keep: Guards | None = None) -> None:
        """Close the storage connections, except those `keep` took over."""
        kept = (keep.limiter, keep.detector) if keep is not None else ()
        for part in (self.limiter, self.detector):
            if part is not None and not any(part is k for k in kept):
                with contextlib.suppress(Exception):
                    await part.close()
