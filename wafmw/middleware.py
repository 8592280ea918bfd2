"""WAFMiddleware: pure ASGI, one failure boundary, the body replayed byte for byte.

Request flow: build a lazy RequestView; the guards (IP lists, rate limits, bots) run first;
then phase 1 inspects everything but the body; only when no decision was reached and some rule
needs the body is the body read (up to the configured limit) and phase 2 run. All of that is
inside one failure boundary. The downstream app is called outside it: an exception from the app
is the app's own and passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .decision import Decision, Match
from .decision import Outcome as DecisionOutcome
from .engine import Engine, RuleFailure
from .errors import EvaluationTimeout
from .events import ErrorReporter, decision_event, emit, request_fields
from .guards import Guards, Outcome
from .killswitch import KillState
from .request import RequestView, may_have_body
from .responses import request_id, send_denial
from .store import RulesetStore


def _stops(outcome: Outcome | None, logged: list[Match]) -> bool:
    """Note a guard's match; True when its answer is to be sent instead of going on."""
    if outcome is None:
        return False
    if outcome.match is not None:
        logged.append(outcome.match)
    return not outcome.detect_only and bool(outcome.status)


def _last(outcome: Outcome | None, logged: list[Match]) -> tuple[Outcome | None, bool]:
    """The last guard's outcome: an answer when it refuses, or when it is the challenge
    verification endpoint's own answer."""
    if outcome is None:
        return None, False
    if outcome.match is not None:
        logged.append(outcome.match)
    if not outcome.detect_only and outcome.status and outcome.status != 200:
        return outcome, False
    if outcome.body is not None:
        return outcome, False
    return None, False


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive that first hands back what inspection consumed, then reads on."""
    pending = iter(messages)

    async def replay() -> Message:
        for message in pending:  # the next one, if any is left
            return message
        return await receive()

    return replay


class WAFMiddleware:
    """Wrap an ASGI app with the web application firewall.

    `rules` is a rule file path, a list of paths, or None for the shipped default ruleset.
    `mode` ("enforce" | "detect" | "off") and `on_error` ("open" | "closed") override the
    file's settings. An invalid rule file raises RuleFileError here, at startup — unless
    `on_invalid_start="minimal"`, which starts on the built-in minimal ruleset instead.
    `reload_interval` (seconds) polls the rule files and `control_file` (kill switches) and
    swaps in a new ruleset once it has passed validation, compilation and its self-test.
    """

    def __init__(
        self,
        app: ASGIApp,
        rules: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        *,
        mode: str | None = None,
        on_error: str | None = None,
        paranoia: int | None = None,
        reload_interval: float | None = None,
        control_file: str | os.PathLike[str] | None = None,
        on_invalid_start: str = "fail",
        reload_on_sighup: bool | None = None,
    ) -> None:
        self.app = app
        self.store = RulesetStore(
            rules,
            mode=mode,
            on_error=on_error,
            paranoia=paranoia,
            control_file=control_file,
            on_invalid_start=on_invalid_start,
        )
        if reload_interval is not None:
            if reload_interval <= 0:
                raise ValueError("reload_interval must be a positive number of seconds")
            self.store.start_polling(reload_interval)
        if reload_on_sighup or (reload_on_sighup is None and reload_interval is not None):
            self.store.install_sighup()
        self._errors = ErrorReporter()
        self._guards = Guards(self.store.active.ruleset)
        self._closing: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = {
            "inspected": 0,
            "blocked": 0,
            "logged": 0,
            "errors": 0,
            "timeouts": 0,
        }

    @property
    def engine(self) -> Engine:
        """The active engine (before kill switches)."""
        return self.store.active

    def reload(self, *, force: bool = True) -> bool:
        """Reload the rule files now; True when a new ruleset became active."""
        return self.store.reload(force=force)

    def close(self) -> None:
        """Stop the reload poller."""
        self.store.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        engine: Engine | None = None
        guards = self._guards
        view = RequestView(scope)
        consumed: list[Message] = []
        started = time.perf_counter()
        answer: Outcome | None = None
        decision: Decision | None = None
        clean = False  # inspected, and nothing matched anywhere: no decision to build
        # -- the failure boundary: nothing inside the WAF may reach the app or the server --
        try:
            engine, kill = self.store.engine()  # one snapshot for the whole request
            settings = engine.settings
            if settings.mode != "off":
                if guards.ruleset is not engine.ruleset:  # a reload, or a kill switch thrown
                    guards = self._guards_for_active()
                view.client_ip_resolver = guards.resolver
                view.body_limits = engine.body_limits
                guard_matches: list[Match] = []
                skip_filters = False
                if guards.active:
                    detect = settings.mode == "detect"
                    if guards.local:  # no storage I/O: no coroutines either
                        answer, skip_filters = self._guard_local(
                            guards, view, kill, detect, guard_matches
                        )
                    else:
                        answer, skip_filters = await self._guard(
                            guards, view, kill, detect, guard_matches
                        )
                if answer is not None or skip_filters:
                    decision = Decision("allow", 200, matches=guard_matches)
                else:
                    # Phase 1, which needs no I/O.
                    head_start = time.perf_counter()
                    try:
                        matches = engine.evaluate_head(view, head_start + engine.time_budget_s)
                    except EvaluationTimeout as overrun:
                        matches = self._overran(engine, view, overrun, [], body=False)
                    decision = engine.decide(matches) if matches else None
                    # A head the engine knows frames no body (the usual GET): no call to ask.
                    if view.known_may_have_body is not False and self._wants_body(
                        engine, view, decision
                    ):
                        decision = await self._inspect_body(
                            engine, view, receive, consumed, matches, head_start
                        )
                    if decision is not None:
                        decision.matches[:0] = guard_matches
                    elif guard_matches:
                        decision = Decision("allow", 200, matches=guard_matches)
                    else:
                        clean = True
        except Exception as exc:
            if await self._fail(engine or self.store.active, view, exc, started, send):
                return
        else:
            # -- outside the boundary --
            if clean:  # the usual case, kept short
                self.counters["inspected"] += 1
                if self.store.candidate is not None:
                    self._shadow(view, Decision())
            elif decision is None:  # mode off
                await self.app(scope, receive, send)
                return
            else:
                self.counters["inspected"] += 1
                if self.store.candidate is not None and answer is None:
                    self._shadow(view, decision)
                if answer is not None:
                    await self._answer(engine, guards, view, answer, decision, started, send)
                    return
                if decision.outcome in ("block", "reject"):
                    self.counters["blocked"] += 1
                    rid = request_id(view)
                    self._log(engine, decision, view, started, rid, logging.WARNING)
                    await send_denial(send, view, decision.status, rid)
                    await guards.observe(view, decision.status)
                    return
                if decision.matches:
                    self.counters["logged"] += 1
                    scope["wafmw.decision"] = decision
                    self._log(engine, decision, view, started, request_id(view), logging.INFO)
        # -- the app: a request let through, or one the WAF failed open on --
        # Called here, in this coroutine, rather than from one of its own: that one more
        # coroutine cost 1.1k instructions a GET, 1.4k a 2 KB POST.
        if consumed:
            receive = _replaying(consumed, receive)
        if not guards.observes:
            await self.app(scope, receive, send)
            return
        # With bot behaviour on, the status the app answers with is noted (0: none yet).
        status = 0

        # Not a coroutine function: it hands back the server's own awaitable, which the app
        # awaits, so that each message costs no coroutine of ours (an `async def` wrapper
        # cost 1.6k instructions a request more). ASGI asks send for an awaitable callable.
        def noting_send(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            if guards.local:
                # A request the bot detector counted as it arrived needs observing for a 4xx
                # answer only: the rest, nearly every request, skips the call.
                if not view.behaviour_counted or 400 <= status < 500:
                    guards.observe_local(view, status or 500)
            else:
                await guards.observe(view, status or 500)

    def _guards_for_active(self) -> Guards:
        """The guards of the active ruleset; rebuilt after a reload, keeping counters and
        behaviour state whose configuration did not change."""
        active = self.store.active.ruleset
        guards = self._guards
        if guards.ruleset is not active:
            fresh = Guards(active)
            fresh.carry_over(guards)
            # The old limiter's and detector's connections (those not carried over) are closed
            # in the background; the task is kept referenced until it is done.
            task = asyncio.get_running_loop().create_task(guards.close(keep=fresh))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            self._guards = guards = fresh
        return guards

    @staticmethod
    async def _guard(
        guards: Guards, view: RequestView, kill: KillState, detect: bool, logged: list[Match]
    ) -> tuple[Outcome | None, bool]:
        """IP lists, then rate limits, then bots. Returns an answer to send (or None) and
        whether the pattern filters are to be skipped (an allow-listed client)."""
        outcome = guards.ip_list(view, kill, detect)
        if outcome is not None and outcome.allow_rest:
            return None, True
        if _stops(outcome, logged):
            return outcome, False
        outcome = await guards.rate_limit(view, kill, detect)
        if _stops(outcome, logged):
            return outcome, False
        return _last(await guards.bot(view, kill, detect), logged)

    @staticmethod
    def _guard_local(
        guards: Guards, view: RequestView, kill: KillState, detect: bool, logged: list[Match]
    ) -> tuple[Outcome | None, bool]:
        """_guard() when no check needs I/O. Each check's usual answer is None (nothing to
        say): tested here before any helper is called."""
        if guards.ip_lists is not None:
            outcome = guards.ip_list(view, kill, detect)
            if outcome is not None:
                if outcome.allow_rest:
                    return None, True
                if _stops(outcome, logged):
                    return outcome, False
        outcome = guards.rate_limit_local(view, kill, detect)
        if outcome is not None and _stops(outcome, logged):
            return outcome, False
        outcome = guards.bot_local(view, kill, detect)
        return (None, False) if outcome is None else _last(outcome, logged)

    async def _answer(
        self,
        engine: Engine,
        guards: Guards,
        view: RequestView,
        answer: Outcome,
        decision: Decision,
        started: float,
        send: Send,
    ) -> None:
        """Send a guard's answer: a denial page, 429 with its headers, a challenge."""
        rid = request_id(view)
        kinds: dict[int, DecisionOutcome] = {403: "block", 429: "rate-limit", 503: "error"}
        if answer.match is not None and answer.match.action == "challenge":
            decision.outcome = "challenge"
        else:
            decision.outcome = kinds.get(answer.status, "allow")
        decision.status = answer.status
        decision.would_block = answer.status >= 400
        if answer.match is not None:
            self.counters["blocked"] += 1
            self._log(engine, decision, view, started, rid, logging.WARNING)
        if answer.body is None or view.scope["type"] == "websocket":
            await send_denial(send, view, answer.status, rid, answer.headers)
        else:
            headers = [*answer.headers, (b"content-length", str(len(answer.body)).encode())]
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
        await guards.observe(view, answer.status)

    @staticmethod
    def _wants_body(engine: Engine, view: RequestView, decision: Decision | None) -> bool:
        """Whether phase 2 runs: some rule reads the body, the request has one, and the head's
        decision (None: nothing matched) is neither a block nor an allow rule's."""
        if decision is not None and (decision.outcome == "block" or decision.reason):
            return False
        # known_may_have_body: handed over with a head the engine knows (a call the less).
        return (
            engine.needs_body
            and view.scope["type"] == "http"
            and (view.known_may_have_body or may_have_body(view))
        )

    async def _inspect_body(
        self,
        engine: Engine,
        view: RequestView,
        receive: Receive,
        consumed: list[Message],
        matches: list[Match],
        head_start: float,
    ) -> Decision | None:
        """Phase 2: read the body (up to the limit) and decide on head and body together;
        None when nothing matched in either (no decision to build)."""
        spent = time.perf_counter() - head_start  # phase 1's share of the time budget
        body_settings = engine.settings.body
        limit = body_settings.inspect_bytes
        message = await receive()
        consumed.append(message)
        if message["type"] == "http.request" and not message.get("more_body", False):
            # The usual case: the whole body in one message, no joining.
            data: bytes = message.get("body", b"")
            oversize = len(data) > limit
            view.body = data[:limit] if oversize else data
        else:
            oversize = await self._read_rest(message, receive, limit, consumed, view)
        if oversize and body_settings.oversize == "reject":
            return Decision("reject", 413, reason="body larger than inspect_bytes")
        # Waiting for the client's body is I/O, not evaluation: only CPU time counts.
        deadline = time.perf_counter() + engine.time_budget_s - spent
        try:
            found = engine.evaluate_body(view, deadline)
        except EvaluationTimeout as overrun:
            found = self._overran(engine, view, overrun, matches, body=True)
        if matches:
            found = matches + found
        return engine.decide(found) if found else None

    def _overran(
        self,
        engine: Engine,
        view: RequestView,
        overrun: EvaluationTimeout,
        prior: list[Match],
        *,
        body: bool,
    ) -> list[Match]:
        """The matches of a phase whose evaluation overran its time budget, after the earlier
        phase's `prior`: what it found, when that already blocks (Engine.overrun_matches);
        else those of a second try, with a fresh budget (the body's takes up what the first
        remembered). When that overruns too, what both tries found, if it blocks; else the
        overrun is raised, and on_error applies.

        The second try because the budget may have gone to work that is done by now: RE2
        builds its automata's states as text first needs them, and text unlike any seen
        before (a kilobyte of random characters padding an attack) cost tens of milliseconds
        the first time, one the next. And a ruleset built in another thread holds the GIL
        through its RE2 compiles.

        It runs the second try itself, rather than being handed a closure for it: one over
        `view` and `engine` in __call__ turned them into cell variables there, which cost
        every request (0.6k instructions a GET, 1.2k a 2 KB POST)."""
        decisive = engine.overrun_matches(view, prior, overrun.matches, body=body)
        if decisive is None:
            deadline = time.perf_counter() + engine.time_budget_s
            try:
                if body:
                    return engine.evaluate_body(view, deadline, again=True)
                return engine.evaluate_head(view, deadline)
            except EvaluationTimeout as second:
                found = second.matches + [m for m in overrun.matches if m not in second.matches]
                decisive = engine.overrun_matches(view, prior, found, body=body)
                if decisive is None:
                    raise
                overrun = second
        self.counters["timeouts"] += 1
        if overrun.rule_id is not None:  # a rule's own timeout counts towards its quarantine
            self._count_rule_failure(overrun.rule_id, overrun)
        return decisive

    def _count_rule_failure(self, rule_id: int, cause: BaseException) -> None:
        """Count a rule's failure towards its quarantine; a failing store must not break the
        failure boundary."""
        with contextlib.suppress(Exception):
            self.store.record_failure(rule_id, f"{type(cause).__name__}: {cause}"[:200])

    @staticmethod
    async def _read_rest(
        message: Message, receive: Receive, limit: int, consumed: list[Message], view: RequestView
    ) -> bool:
        """Read the body from its first message (consumed already) up to `limit` bytes into
        view.body; True when more body remains beyond it."""
        chunks: list[bytes] = []
        size = 0
        while message["type"] == "http.request":  # else the client went away: the app sees it
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False) or size > limit:
                break
            message = await receive()
            consumed.append(message)
        data = b"".join(chunks)
        last = consumed[-1]
        oversize = size > limit or (last["type"] == "http.request" and last.get("more_body", False))
        view.body = data[:limit]
        return oversize

    async def _fail(
        self, engine: Engine, view: RequestView, exc: Exception, started: float, send: Send
    ) -> bool:
        """Apply on_error to a failure inside the WAF. True when the request was answered."""
        settings = engine.settings
        rule = exc.rule if isinstance(exc, RuleFailure) else None
        on_error = (rule.on_error if rule is not None else None) or settings.on_error
        timeout = isinstance(exc, EvaluationTimeout)
        self.counters["timeouts" if timeout else "errors"] += 1
        rule_id = rule.id if rule is not None else getattr(exc, "rule_id", None)
        cause = exc.cause if isinstance(exc, RuleFailure) else exc
        if rule_id is not None:
            self._count_rule_failure(rule_id, cause)
        event = {
            "event": "timeout" if timeout else "error",
            "action": "error-" + on_error,
            "rule_id": rule_id,
            "error": f"{type(cause).__name__}: {cause}"[:300],
            **request_fields(view),
            "ruleset": engine.ruleset.version,
            "eval_us": round((time.perf_counter() - started) * 1e6, 1),
        }
        # A broken log handler must not break the boundary.
        with contextlib.suppress(Exception):
            self._errors.report(event, (rule_id, type(cause).__name__))
        if on_error == "closed" and settings.mode == "enforce":
            await send_denial(send, view, 503, request_id(view))
            return True
        return False

    def _log(
        self,
        engine: Engine,
        decision: Decision,
        view: RequestView,
        started: float,
        rid: str,
        level: int,
    ) -> None:
        try:
            event = decision_event(
                decision,
                view,
                version=engine.ruleset.version,
                elapsed_us=(time.perf_counter() - started) * 1e6,
                request_id=rid,
            )
            emit(event, level)
        except Exception:  # logging must never turn a decision into an error
            pass

    def _shadow(self, view: RequestView, active: Decision) -> None:
        """Evaluate the shadow candidate on the same request; it never affects the answer.
        It sees the body only when the active ruleset read it."""
        candidate = self.store.shadow_engine()
        if candidate is None:
            return
        result: Decision | None
        try:
            deadline = time.perf_counter() + candidate.time_budget_s
            matches = candidate.evaluate_head(view, deadline)
            if view.body is not None:
                matches += candidate.evaluate_body(view, deadline)
            result = candidate.decide(matches)
        except Exception:
            result = None
        with contextlib.suppress(Exception):
            self.store.record_shadow(active, result, view.method, view.path)

    def status(self) -> dict[str, Any]:
        """What is active and how it got there (see RulesetStore.status), plus counters."""
        counters = {**self.counters, "rate_limit_storage_errors": self._guards.storage_errors}
        return {**self.store.status(), "counters": counters}
