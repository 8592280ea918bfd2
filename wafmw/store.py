"""The ruleset store: load → validate → compile → self-test → swap, and everything around it.

The middleware reads one engine snapshot per request from `RulesetStore.engine()`. Replacing
the active ruleset is one reference assignment, done only after the new files have passed every
step; a reload that fails anywhere keeps the last known good ruleset and says why in `status()`.

Around the swap: polling of the source files and of the kill-switch control file (a daemon
thread; no extra dependency), SIGHUP where the platform has it, a minimum interval between
reloads, flapping detection, kill switches, quarantine of rules that keep failing, and a shadow
candidate evaluated beside the active ruleset.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .casetest import matched_rule_ids
from .decision import Decision
from .engine import Engine
from .errors import Problem, RuleFileError
from .killswitch import NO_KILL, KillState, env_clear, env_key, from_env_key, read_control_file
from .loader import PathLike, default_rules_path, load_rules
from .patterns import screen_backtracking
from .rulefile import DEFAULT_LIMITS, Limits

logger = logging.getLogger("wafmw")

MINIMAL_RULES = Path(__file__).resolve().parent / "minimal.yaml"
# A rule that raised or timed out this many times within the window is quarantined.
QUARANTINE_FAILURES = 3
QUARANTINE_WINDOW_S = 60.0
_HISTORY = 20
_SHADOW_SAMPLES = 50


def self_test(engine: Engine) -> list[Problem]:
    """Run every active rule's own cases against the compiled engine."""
    problems: list[Problem] = []
    for rule in engine.ruleset.filters:
        for expected, cases, kind in (
            (True, rule.match_cases, "match"),
            (False, rule.no_match_cases, "no_match"),
        ):
            for i, case in enumerate(cases):
                if (rule.id in matched_rule_ids(engine, case)) != expected:
                    verb = "did not match" if expected else "matched"
                    problems.append(
                        Problem(
                            rule.file,
                            case.line,
                            rule.id,
                            f"cases.{kind}[{i}]",
                            f"self-test failed: the rule {verb} {case.describe()}",
                        )
                    )
    return problems


def screen(engine: Engine) -> list[Problem]:
    """Refuse patterns that run on the backtracking engine and blow up on probe inputs."""
    problems = []
    for group in engine.groups:
        for cf in (*group.direct_head, *group.direct_body):
            if cf.pattern is not None and cf.pattern.engine == "regex":
                problem = screen_backtracking(cf.pattern.source)
                if problem:
                    rule = cf.rule
                    problems.append(Problem(rule.file, rule.line, rule.id, "regex", problem))
    return problems


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


@dataclass
class ShadowStats:
    sample: float
    evaluated: int = 0
    agree: int = 0
    only_active_blocks: int = 0
    only_candidate_blocks: int = 0
    errors: int = 0
    samples: deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: deque(maxlen=_SHADOW_SAMPLES)
    )


class RulesetStore:
    def __init__(
        self,
        rules: PathLike | Sequence[PathLike] | None = None,
        *,
        mode: str | None = None,
        on_error: str | None = None,
        paranoia: int | None = None,
        limits: Limits = DEFAULT_LIMITS,
        on_invalid_start: str = "fail",
        control_file: PathLike | None = None,
        min_reload_interval_s: float = 1.0,
        run_self_test: bool = True,
    ) -> None:
        if on_invalid_start not in ("fail", "minimal"):
            raise ValueError("on_invalid_start must be 'fail' or 'minimal'")
        if rules is None:
            self.sources: list[Path] = [default_rules_path()]
        elif isinstance(rules, (str, os.PathLike)):
            self.sources = [Path(rules)]
        else:
            self.sources = [Path(p) for p in rules]
        self.overrides = {"mode": mode, "on_error": on_error, "paranoia": paranoia}
        self.limits = limits
        self.run_self_test = run_self_test
        self.min_reload_interval_s = min_reload_interval_s
        self.control_file = Path(control_file) if control_file is not None else None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fingerprint: tuple[Any, ...] = ()
        self.loaded_at: float = 0.0
        self.last_attempt: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.reloads = 0
        self.failed_reloads = 0
        self.skipped_reloads = 0
        self.history: deque[tuple[float, str]] = deque(maxlen=_HISTORY)
        self.flapping = False
        self.started_on_minimal = False
        # kill switches and quarantine
        self._env_key: tuple[str | None, ...] | None = None
        self._env_state = KillState()
        self._env_problem: str | None = None
        self._file_state = NO_KILL
        # (env state, file state, their merge): merged again only when either changed.
        self._merged: tuple[KillState, KillState, KillState] = (
            self._env_state,
            self._file_state,
            self._env_state,
        )
        self.control_error: str | None = None
        self._failures: dict[int, deque[float]] = {}
        self.quarantined: dict[int, str] = {}
        self._derived: tuple[tuple[Any, ...], Engine] | None = None
        # shadow rollout
        self.candidate: Engine | None = None
        self.shadow: ShadowStats | None = None

        try:
            self._active = self._build(self.sources, screen_patterns=False)
        except RuleFileError as exc:
            if on_invalid_start == "fail":
                raise
            logger.error(
                "wafmw: rule files refused at startup, running the built-in minimal ruleset: %s",
                exc,
            )
            self.last_error, self.last_error_at = str(exc), time.time()
            self._active = self._build([MINIMAL_RULES], screen_patterns=False)
            self.started_on_minimal = True
        # At startup the operator's files are trusted to run: a pattern that fails the
        # backtracking screen still runs, bounded by its timeout, and is reported. A *reload*
        # refuses it instead, so it can never replace a ruleset that works.
        for problem in screen(self._active):
            logger.warning("wafmw: %s (it runs with a timeout; a reload would refuse it)", problem)
        self.loaded_at = time.time()
        self.history.append((self.loaded_at, self._active.ruleset.version))
        self._fingerprint = self._stat_sources()
        if self.control_file is not None:
            self._read_control()

    # -- building -----------------------------------------------------------------------------

    def _build(self, sources: Sequence[Path], *, screen_patterns: bool) -> Engine:
        ruleset = load_rules(
            list(sources),
            mode=self.overrides["mode"],  # type: ignore[arg-type]
            on_error=self.overrides["on_error"],  # type: ignore[arg-type]
            paranoia=self.overrides["paranoia"],  # type: ignore[arg-type]
            limits=self.limits,
        )
        try:
            engine = Engine(ruleset)
        except Exception as exc:  # compile failures the validator did not foresee
            raise RuleFileError(
                [Problem(ruleset.files[0], None, None, None, f"compiling failed: {exc!r}")]
            ) from exc
        problems = screen(engine) if screen_patterns else []
        if self.run_self_test:
            problems += self_test(engine)
        if problems:
            raise RuleFileError(problems)
        return engine

    def _stat_sources(self) -> tuple[Any, ...]:
        paths = [Path(f) for f in self._active.ruleset.files] or self.sources
        out: list[tuple[str, int | None, int | None, int | None]] = []
        for path in paths:
            try:
                st = path.stat()
                out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((str(path), None, None, None))
        return tuple(out)

    # -- reloading ------------------------------------------------------------------------------

    def reload(self, *, force: bool = False) -> bool:
        """Try to replace the active ruleset from the sources. True when it was swapped.

        Rate-limited to one attempt per `min_reload_interval_s` unless `force`."""
        with self._lock:
            now = time.monotonic()
            if (
                not force
                and self.last_attempt is not None
                and now - self.last_attempt < self.min_reload_interval_s
            ):
                self.skipped_reloads += 1
                return False
            self.last_attempt = now
            try:
                engine = self._build(self.sources, screen_patterns=True)
            except RuleFileError as exc:
                self._refused(str(exc))
                return False
            except Exception as exc:  # never let a reload crash the poller
                self._refused(f"{type(exc).__name__}: {exc}")
                return False
            self._swap(engine)
            return True

    def _refused(self, why: str) -> None:
        self.failed_reloads += 1
        self.last_error, self.last_error_at = why, time.time()
        # Refresh the fingerprint so a broken file is reported once, not on every poll.
        self._fingerprint = self._stat_sources_of(self.sources)
        logger.error(
            "wafmw: reload refused, keeping ruleset %s: %s", self._active.ruleset.version, why
        )

    def _stat_sources_of(self, sources: Sequence[Path]) -> tuple[Any, ...]:
        current = self._stat_sources()
        known = {entry[0] for entry in current}
        extra: list[tuple[str, int | None, int | None, int | None]] = []
        for path in sources:
            if str(path) not in known:
                try:
                    st = path.stat()
                    extra.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
                except OSError:
                    extra.append((str(path), None, None, None))
        return current + tuple(extra)

    def _swap(self, engine: Engine) -> None:
        old = self._active.ruleset.version
        self._active = engine  # the atomic swap: one reference assignment
        self._derived = None
        self.quarantined.clear()
        self._failures.clear()
        self.reloads += 1
        self.loaded_at = time.time()
        self.started_on_minimal = False
        new = engine.ruleset.version
        self.history.append((self.loaded_at, new))
        self._fingerprint = self._stat_sources_of(self.sources)
        self._check_flapping()
        logger.warning(
            "wafmw: ruleset %s replaced by %s (%d filters)", old, new, len(engine.ruleset.filters)
        )

    def _check_flapping(self) -> None:
        # A source that keeps returning to versions it just left (A → B → A → B) is flapping:
        # the generator upstream is unstable, which an operator must hear about.
        recent = [v for t, v in self.history if time.time() - t < 600]
        returns = sum(1 for i in range(2, len(recent)) if recent[i] == recent[i - 2])
        flapping = returns >= 2
        if flapping and not self.flapping:
            logger.error("wafmw: rule source is flapping between versions: %s", recent[-6:])
        self.flapping = flapping

    def poll(self) -> None:
        """One polling step: reload when a source file changed; re-read the control file."""
        if self.control_file is not None:
            self._read_control()
        if self._stat_sources_of(self.sources) != self._fingerprint:
            self.reload()

    def _read_control(self) -> None:
        assert self.control_file is not None
        try:
            state = read_control_file(self.control_file)
        except ValueError as exc:
            message = f"{self.control_file}: {exc}"
            if message != self.control_error:
                logger.error("wafmw: control file ignored: %s", message)
            self.control_error = message
            return
        self.control_error = None
        self._file_state = NO_KILL if state.empty else state  # see engine()

    def start_polling(self, interval_s: float) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.poll()
                except Exception:  # the poller must outlive any failure
                    logger.exception("wafmw: polling failed")

        self._thread = threading.Thread(target=loop, name="wafmw-reload", daemon=True)
        self._thread.start()

    def install_sighup(self) -> bool:
        """Reload on SIGHUP, when the platform has it, we are in the main thread, and nobody else
        (gunicorn's master, say) handles it already."""
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None or threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(sighup) not in (signal.SIG_DFL, None):
            return False

        def on_hup(signum: int, frame: Any) -> None:
            threading.Thread(target=self.reload, kwargs={"force": True}, daemon=True).start()

        signal.signal(sighup, on_hup)
        return True

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    # -- per request ----------------------------------------------------------------------------

    @property
    def active(self) -> Engine:
        return self._active

    def kill_state(self) -> KillState:
        key = env_key()
        if key != self._env_key:
            self._env_state, self._env_problem = from_env_key(key)
            self._env_key = key
        merged = self._merged
        if merged[0] is not self._env_state or merged[1] is not self._file_state:
            merged = (
                self._env_state,
                self._file_state,
                self._env_state.merge(self._file_state),
            )
            self._merged = merged
        return merged[2]

    def engine(self) -> tuple[Engine, KillState]:
        """The engine to use for one request, with kill switches and quarantine applied."""
        if self._file_state is NO_KILL and not self.quarantined and env_clear():
            return self._active, NO_KILL  # the usual case: nothing thrown, nothing quarantined
        active = self._active
        kill = self.kill_state()
        if kill.empty and not self.quarantined:
            return active, kill
        key = (id(active), kill, frozenset(self.quarantined))
        derived = self._derived
        if derived is not None and derived[0] == key:
            return derived[1], kill
        with self._lock:
            engine = self._derive(active, kill)
            self._derived = (key, engine)
        return engine, kill

    def _derive(self, active: Engine, kill: KillState) -> Engine:
        ruleset = active.ruleset
        filters = tuple(
            f
            for f in ruleset.filters
            if f.id not in kill.rules
            and f.id not in self.quarantined
            and kill.tags.isdisjoint(f.tags)
            and Path(f.file).stem not in kill.groups
        )
        settings = ruleset.settings
        if kill.mode is not None:
            settings = dataclasses.replace(settings, mode=kill.mode)  # type: ignore[arg-type]
        return Engine(dataclasses.replace(ruleset, filters=filters, settings=settings))

    def record_failure(self, rule_id: int, why: str) -> None:
        """Count a rule's runtime failure; quarantine it when it keeps failing."""
        if rule_id in self.quarantined or rule_id not in self._active_ids():
            return
        now = time.monotonic()
        times = self._failures.setdefault(rule_id, deque(maxlen=QUARANTINE_FAILURES))
        times.append(now)
        if len(times) == QUARANTINE_FAILURES and now - times[0] <= QUARANTINE_WINDOW_S:
            self.quarantined[rule_id] = why
            logger.error(
                "wafmw: rule %s quarantined after %d failures in %.0f s: %s",
                rule_id,
                QUARANTINE_FAILURES,
                QUARANTINE_WINDOW_S,
                why,
            )

    def _active_ids(self) -> frozenset[int]:
        return frozenset(f.id for f in self._active.ruleset.filters)

    def release(self, rule_id: int) -> None:
        """Take a rule out of quarantine (an operator decision)."""
        self.quarantined.pop(rule_id, None)
        self._failures.pop(rule_id, None)

    # -- shadow rollout -------------------------------------------------------------------------

    def load_candidate(
        self, rules: PathLike | Sequence[PathLike], *, sample: float = 1.0
    ) -> Engine:
        """Load a candidate ruleset to run in shadow (detect mode) beside the active one."""
        if not 0.0 < sample <= 1.0:
            raise ValueError("sample must be in (0, 1]")
        paths = [Path(rules)] if isinstance(rules, (str, os.PathLike)) else [Path(p) for p in rules]
        engine = self._build(paths, screen_patterns=True)
        with self._lock:
            self.candidate = engine
            self.candidate_sources = paths
            self.shadow = ShadowStats(sample)
        return engine

    def shadow_engine(self) -> Engine | None:
        stats = self.shadow
        if self.candidate is None or stats is None:
            return None
        if stats.sample < 1.0 and random.random() >= stats.sample:
            return None
        return self.candidate

    def record_shadow(
        self, active: Decision, candidate: Decision | None, method: str, path: str
    ) -> None:
        stats = self.shadow
        if stats is None:
            return
        stats.evaluated += 1
        if candidate is None:
            stats.errors += 1
            return
        a, c = active.would_block, candidate.would_block
        if a == c:
            stats.agree += 1
            return
        if a:
            stats.only_active_blocks += 1
        else:
            stats.only_candidate_blocks += 1
        stats.samples.append(
            {
                "method": method,
                "path": path[:200],
                "active_rules": active.rule_ids,
                "candidate_rules": candidate.rule_ids,
                "active_blocks": a,
                "candidate_blocks": c,
            }
        )

    def promote(self) -> None:
        """Make the shadow candidate the active ruleset (and its files the sources)."""
        with self._lock:
            if self.candidate is None:
                raise RuntimeError("no candidate to promote")
            engine, self.candidate, self.shadow = self.candidate, None, None
            self.sources = self.candidate_sources
            self._swap(engine)

    def drop_candidate(self) -> None:
        with self._lock:
            self.candidate, self.shadow = None, None

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        ruleset = self._active.ruleset
        kill = self.kill_state()
        shadow = self.shadow
        return {
            "active": {
                "version": ruleset.version,
                "loaded_at": _iso(self.loaded_at),
                "files": list(ruleset.files),
                "filters": len(ruleset.filters),
                "filters_above_paranoia": ruleset.skipped_by_paranoia,
                "rate_limits": len(ruleset.rate_limits),
                "mode": ruleset.settings.mode,
                "on_error": ruleset.settings.on_error,
                "minimal_fallback": self.started_on_minimal,
            },
            "sources": [str(p) for p in self.sources],
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "reloads": self.reloads,
            "failed_reloads": self.failed_reloads,
            "skipped_reloads": self.skipped_reloads,
            "flapping": self.flapping,
            "history": [{"at": _iso(t), "version": v} for t, v in self.history],
            "kill_switches": {
                "mode": kill.mode,
                "rules": sorted(kill.rules),
                "tags": sorted(kill.tags),
                "groups": sorted(kill.groups),
                "env_problem": self._env_problem,
                "control_file": str(self.control_file) if self.control_file else None,
                "control_error": self.control_error,
            },
            "quarantined": {str(k): v for k, v in self.quarantined.items()},
            "candidate": None
            if shadow is None or self.candidate is None
            else {
                "version": self.candidate.ruleset.version,
                "sample": shadow.sample,
                "evaluated": shadow.evaluated,
                "agree": shadow.agree,
                "only_active_blocks": shadow.only_active_blocks,
                "only_candidate_blocks": shadow.only_candidate_blocks,
                "errors": shadow.errors,
                "samples": list(shadow.samples),
            },
        }
