"""BotDetector: request signals (sync, no I/O), behaviour signals (shared storage), the score.

Score: ``clamp(prior - sum(weight of every signal), 1, 99)`` with ``prior`` 50. Positive
weights pull toward "automated" (1), negative ones toward "human" (99). When a signal cannot be
computed the score is None (UNKNOWN) and ``upper_bound`` keeps what the computed signals gave.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from ..doorkeeper import Doorkeeper
from ..request import RequestView
from .behaviour import BehaviourTracker
from .config import BotConfig, Crawler
from .model import SCORE_MAX, SCORE_MIN, BotVerdict, RequestLike, Signal
from .networks import client_key, parse_ip
from .useragent import BrowserInfo, parse_browser

__all__ = ["BotDetector", "score_of"]

_UA_SCAN_CHARS: Final = 1024  # longer User-Agents are classified on their first 1024 chars
_CACHE_SIZE: Final = 4096  # entries per cache (user agents, signals, verdicts); cleared when full
_REQUEST_CACHE_SIZE: Final = 4096  # request verdicts by their inputs (LRU, see _request_key)
_PATH_MEMO_SIZE: Final = 4096  # trap-path answers by path; cleared when full
# Verdicts by the whole request head (RequestView.head_key), once seen twice (see
# doorkeeper.py): a repeated request costs one lookup. Cleared when full; heads over
# _HEAD_MAX_BYTES are not remembered.
_HEAD_MEMO_SIZE: Final = 4096
_HEAD_MAX_BYTES: Final = 4096
_CLIENT_MEMO_SIZE: Final = 4096  # behaviour identities by client address; cleared when full
_SECURE_SCHEMES: Final = ("https", "wss")
_HEADER_SIGNALS: Final = frozenset(range(913110, 913118))
_BRAND: Final = re.compile(r'"([^"]{0,64})"\s*;\s*v\s*=\s*"([^"]{0,32})"')
_LOCAL_HOSTS: Final = ("localhost", "127.0.0.1", "[::1]")

# What a User-Agent is, in the order it is decided.
_SCANNER, _AUTOMATION, _LIBRARY, _CRAWLER, _DECLARED, _BROWSER, _UNKNOWN = range(7)
_KIND_NAMES: Final = (
    "scanner", "automation", "library", "crawler", "declared-bot", "browser", "unknown"
)  # fmt: skip

Emits = tuple[tuple[int, str, str, int | None], ...]  # (signal id, name, detail, weight or None)
RequestKey = tuple[object, ...]

# In the request cache: "this key's verdict depends on the client address" (a crawler's
# User-Agent is verified against its networks), so it is computed every time.
_PER_ADDRESS: Final = BotVerdict(None, (), None, False, None, "crawler")


def _wants_fetch_metadata(browser: BrowserInfo) -> bool:
    """Sec-Fetch-* ship in Chromium 80 (Site/Mode since 76), Firefox 90, Safari 16.4."""
    family = browser.family
    if family == "chromium":
        return browser.major >= 80 and not browser.webview
    if family == "firefox":
        return browser.major >= 90
    return family == "safari" and (browser.major, browser.minor) >= (16, 4)


def _brand_signals(value: str, major: int) -> list[tuple[int, str, str, int | None]]:
    brands = dict(_BRAND.findall(value[:512]))
    for brand in brands:
        if "headless" in brand.lower():
            return [(913102, "automation-user-agent", f"sec-ch-ua names {brand!r}", None)]
    version = brands.get("Chromium") or brands.get("Google Chrome")
    if version is not None and version.split(".", 1)[0] != str(major):
        detail = f"sec-ch-ua says version {version}, the user-agent {major}"
        return [(913116, "client-hints-mismatch", detail, None)]
    return []


@dataclass(frozen=True, slots=True)
class _UAClass:
    kind: int
    token: str
    crawler: Crawler | None
    browser: BrowserInfo | None


def score_of(prior: int, signals: tuple[Signal, ...]) -> int:
    value = prior - sum([s.weight for s in signals])
    return max(SCORE_MIN, min(SCORE_MAX, value))


class BotDetector:
    """One per ruleset, shared by all requests; per-request state stays in locals."""

    def __init__(self, config: BotConfig, storage_uri: str = "memory://") -> None:
        self.config = config
        self._weights = dict(config.weights)
        self._disabled = config.disabled
        self._ua_cache: dict[str, _UAClass] = {}
        self._signal_cache: dict[tuple[int, str], Signal] = {}
        self._browser_memo: dict[tuple[object, ...], Emits] = {}
        self._verdict_cache: dict[
            tuple[tuple[tuple[int, str], ...], str | None, bool, bool, str], BotVerdict
        ] = {}
        self._request_cache: OrderedDict[RequestKey, BotVerdict] = OrderedDict()
        # Each verdict beside the key it was remembered by (see assess).
        self._head_memo: dict[tuple[object, ...], tuple[tuple[object, ...], BotVerdict]] = {}
        self._head_door = Doorkeeper(_HEAD_MEMO_SIZE)
        self._trap_memo: dict[str, bool] = {}
        self._client_memo: dict[str, str] = {}
        # Verdicts with behaviour folded in, by the identities of the two parts (each entry
        # holds both, so neither id can be reused while it is there): a client tripping a
        # behaviour signal keeps its signals for up to sync_s, and its requests their head's
        # verdict, so the same pair recurs.
        self._combined: dict[tuple[int, int], tuple[BotVerdict, tuple[Signal, ...], BotVerdict]]
        self._combined = {}
        self._behaviour: BehaviourTracker | None = None
        if config.enabled and config.behaviour.enabled:
            self._behaviour = BehaviourTracker(
                config.behaviour, storage_uri, self._weights, config.disabled
            )

    # -- user agent -----------------------------------------------------------------------------

    def _classify(self, user_agent: str) -> _UAClass:
        cached = self._ua_cache.get(user_agent)
        if cached is not None:
            return cached
        ua = user_agent[:_UA_SCAN_CHARS]
        cfg = self.config
        result: _UAClass | None = None
        for kind, lst in (
            (_SCANNER, cfg.scanners),
            (_AUTOMATION, cfg.automation),
            (_LIBRARY, cfg.http_libraries),
        ):
            token = lst.search(ua)
            if token is not None:
                result = _UAClass(kind, token, None, None)
                break
        if result is None:
            for crawler in cfg.crawlers:
                token = crawler.user_agents.search(ua)
                if token is not None:
                    result = _UAClass(_CRAWLER, token, crawler, None)
                    break
        if result is None:
            token = cfg.declared_bots.search(ua)
            if token is not None:
                result = _UAClass(_DECLARED, token, None, None)
        if result is None:
            browser = parse_browser(ua)
            result = _UAClass(_BROWSER if browser else _UNKNOWN, "", None, browser)
        if len(self._ua_cache) >= _CACHE_SIZE:
            self._ua_cache.clear()  # cheap and bounded; a busy site refills it in moments
        self._ua_cache[user_agent] = result
        return result

    # -- request signals ------------------------------------------------------------------------

    def assess(self, view: RequestLike) -> BotVerdict:
        """Signals from the request alone (User-Agent, headers, protocol, network, path)."""
        if not self.config.enabled:
            return BotVerdict(None, (), None, False, None, "unknown")
        if not isinstance(view, RequestView):
            return self._assess_by_inputs(view)
        head = view.head_key
        try:
            found = self._head_memo.get(head)
        except TypeError:  # header pairs that are not hashable: assessed every time
            return self._assess_by_inputs(view)
        if found is not None:
            # The remembered key is equal to this one: handed to the view, the next memory
            # of heads to look it up (the engine's) finds its own key by identity instead of
            # comparing every header, about 0.5 µs when the server made new bytes objects.
            remembered, verdict = found
            view.adopt_head_key(remembered)
            return verdict
        verdict = self._assess_by_inputs(view)
        # A crawler's verdict depends on the client address too: never remembered here.
        if (
            verdict.kind != "crawler"
            and self._head_door.admits(head)
            and view.head_size() <= _HEAD_MAX_BYTES
        ):
            memo = self._head_memo
            if len(memo) >= _HEAD_MEMO_SIZE:
                memo.clear()
            memo[head] = (head, verdict)
        return verdict

    def _assess_by_inputs(self, view: RequestLike) -> BotVerdict:
        """assess() through the cache keyed by what the verdict reads (see _request_key)."""
        trap = self._trap_memo.get(view.path)
        if trap is None:
            trap = self._is_trap(view.path)
        key = self._request_key(view, trap)
        if key is None:
            return self._assess(view, trap)
        cache = self._request_cache
        try:
            verdict = cache.get(key)
        except TypeError:  # an unhashable header value (not bytes, against the ASGI spec)
            return self._assess(view, trap)
        if verdict is not None:
            if verdict is _PER_ADDRESS:
                return self._assess(view, trap)
            cache.move_to_end(key)
            return verdict
        verdict = self._assess(view, trap)
        cache[key] = _PER_ADDRESS if verdict.kind == "crawler" else verdict
        if len(cache) > _REQUEST_CACHE_SIZE:
            cache.popitem(last=False)
        return verdict

    def _is_trap(self, path: str) -> bool:
        """Whether the path is a trap path; memoised, as the same paths recur all day."""
        memo = self._trap_memo
        trap = memo.get(path)
        if trap is None:
            trap_glob = self.config.trap_glob
            trap = trap_glob is not None and trap_glob.match(path) is not None
            if len(memo) >= _PATH_MEMO_SIZE:
                memo.clear()
            memo[path] = trap
        return trap

    @staticmethod
    def _request_key(view: RequestLike, trap: bool) -> RequestKey | None:
        """Everything `_assess` reads from a request except the client address, which only a
        crawler's verdict depends on; None when the request is not a RequestView over a list
        of ASGI header pairs (then `_assess` runs every time).

        Read from the raw header bytes: decoding every header costs more than the whole
        lookup. `dict` keeps the last of a repeated header and `view.header()` the first, hence
        the reversed copy in that (rare) case. The header *values* of Accept, Accept-Language
        and so on are left out on purpose: only their presence counts, and keeping the values
        would multiply the entries per User-Agent. The path is part of the key only for a trap
        path, whose signal names it."""
        if type(view) is not RequestView:
            return None
        scope = view.scope
        raw = scope.get("headers", ())
        if type(raw) is not list and type(raw) is not tuple:
            return None
        try:
            first = dict(raw)
            if len(first) != len(raw):
                first = dict(reversed(raw))
        except (TypeError, ValueError):
            return None  # malformed pairs: `_assess` deals with them as it always did
        get = first.get
        return (
            get(b"user-agent"),
            get(b"sec-ch-ua"),
            get(b"host"),
            get(b"x-forwarded-proto"),
            b"accept" in first,
            b"accept-language" in first,
            b"accept-encoding" in first,
            b"sec-fetch-site" in first,
            b"sec-fetch-mode" in first,
            view.method == "OPTIONS" and b"access-control-request-method" in first,
            view.http_version == "1.0",
            scope.get("scheme") in _SECURE_SCHEMES,
            view.path if trap else None,  # a trap signal's detail names the path
        )

    def _assess(self, view: RequestLike, trap: bool) -> BotVerdict:
        cfg = self.config
        signals: list[Signal] = []
        keys: list[tuple[int, str]] = []
        weights = self._weights
        disabled = self._disabled
        cache = self._signal_cache

        def add(sid: int, name: str, detail: str, weight: int | None = None) -> None:
            if sid in disabled:
                return
            key = (sid, detail)
            signal = cache.get(key)
            if signal is None:
                # Building a frozen dataclass costs ~2 µs; the same signals recur constantly.
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                signal = Signal(sid, name, weights[sid] if weight is None else weight, detail)
                cache[key] = signal
            signals.append(signal)
            keys.append(key)

        verified: str | None = None
        impostor = False
        unknown = False
        kind_name = "missing"
        user_agent = view.header("user-agent")
        if user_agent is None or not user_agent.strip():
            add(
                913103,
                "missing-user-agent",
                "no User-Agent header" if user_agent is None else "empty User-Agent",
            )
        else:
            cls = self._classify(user_agent)
            kind = cls.kind
            kind_name = _KIND_NAMES[kind]
            if kind == _SCANNER:
                add(913100, "scanner-user-agent", f"user-agent contains {cls.token!r}")
            elif kind == _AUTOMATION:
                add(913102, "automation-user-agent", f"user-agent contains {cls.token!r}")
            elif kind == _LIBRARY:
                add(913101, "http-library-user-agent", f"user-agent contains {cls.token!r}")
            elif kind == _CRAWLER:
                assert cls.crawler is not None  # set together with kind
                crawler = cls.crawler
                address = parse_ip(view.client_ip) if view.client_ip else None
                if address is None:
                    unknown = True  # cannot tell a real crawler from an impostor
                elif address in crawler.networks:
                    verified = crawler.name
                    add(
                        913120,
                        "verified-crawler",
                        f"{crawler.name} user-agent from {address}, a published "
                        f"{crawler.name} network",
                    )
                else:
                    impostor = True
                    add(
                        913121,
                        "crawler-impostor",
                        f"user-agent contains {cls.token!r} but {address} is not in "
                        f"{crawler.name}'s published networks",
                    )
            elif kind == _DECLARED:
                add(913105, "declared-bot-user-agent", f"user-agent contains {cls.token!r}")
            elif kind == _BROWSER:
                assert cls.browser is not None
                for sid, name, detail, weight in self._browser_signals(
                    view, user_agent, cls.browser
                ):
                    add(sid, name, detail, weight)
            else:
                add(
                    913104,
                    "unrecognised-user-agent",
                    "user-agent is neither a known browser nor a known client",
                )
        if trap:
            add(913130, "trap-path-request", f"request to trap path {view.path[:100]!r}")
        verdict_key = (tuple(keys), verified, impostor, unknown, kind_name)
        verdict = self._verdict_cache.get(verdict_key)
        if verdict is not None:
            return verdict
        found = tuple(signals)
        bound = score_of(cfg.prior, found)
        if unknown:
            verdict = BotVerdict(None, found, None, False, None, kind_name)
        else:
            verdict = BotVerdict(bound, found, verified, impostor, bound, kind_name)
        if len(self._verdict_cache) >= _CACHE_SIZE:
            self._verdict_cache.clear()
        self._verdict_cache[verdict_key] = verdict
        return verdict

    def _secure(self, view: RequestLike) -> bool:
        mode = self.config.secure_context
        if mode != "auto":
            return mode == "always"
        if view.scope.get("scheme") in ("https", "wss"):
            return True
        proto = view.header("x-forwarded-proto")
        if proto is not None and proto.split(",", 1)[0].strip().lower() == "https":
            return True
        host = (view.header("host") or "").lower()
        host = host[: host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
        return host in _LOCAL_HOSTS or host.endswith(".localhost")

    def _browser_signals(self, view: RequestLike, user_agent: str, browser: BrowserInfo) -> Emits:
        """The header-consistency signals of a browser request, memoised on what they depend
        on (the same few header sets recur all day)."""
        names = {name for name, _ in view.headers}
        preflight = view.method == "OPTIONS" and "access-control-request-method" in names
        hints = view.header("sec-ch-ua") if "sec-ch-ua" in names else None
        has_fetch = "sec-fetch-site" in names and "sec-fetch-mode" in names
        needs_secure = (
            not preflight
            and hints is None
            and browser.family == "chromium"
            and browser.major >= 89
            and not browser.webview
        ) or (not has_fetch and _wants_fetch_metadata(browser))
        key = (
            user_agent,
            "accept" in names,
            preflight or "accept-language" in names,
            preflight or "accept-encoding" in names,
            hints,
            has_fetch,
            preflight,
            view.http_version == "1.0",
            self._secure(view) if needs_secure else False,
        )
        emits = self._browser_memo.get(key)
        if emits is None:
            emits = self._browser_emits(browser, *key[1:])
            if len(self._browser_memo) >= _CACHE_SIZE:
                self._browser_memo.clear()
            self._browser_memo[key] = emits
        return emits

    def _browser_emits(
        self,
        browser: BrowserInfo,
        has_accept: bool,
        has_language: bool,
        has_encoding: bool,
        hints: str | None,
        has_fetch: bool,
        preflight: bool,
        http10: bool,
        secure: bool,
    ) -> Emits:
        out: list[tuple[int, str, str, int | None]] = []
        family, major = browser.family, browser.major
        if not has_accept:
            out.append(
                (913110, "browser-missing-accept", f"{family} user-agent without Accept", None)
            )
        if not has_language:
            detail = f"{family} user-agent without Accept-Language"
            out.append((913111, "browser-missing-accept-language", detail, None))
        if not has_encoding:
            detail = f"{family} user-agent without Accept-Encoding"
            out.append((913112, "browser-missing-accept-encoding", detail, None))
        if family == "chromium":
            if hints is not None:
                out.extend(_brand_signals(hints, major))
            elif secure and major >= 89 and not browser.webview and not preflight:
                detail = f"Chromium {major} user-agent without sec-ch-ua in a secure context"
                out.append((913113, "chromium-missing-client-hints", detail, None))
        elif hints is not None:
            detail = f"{family} user-agent sends sec-ch-ua, which {family} never sends"
            out.append((913115, "impossible-client-hints", detail, None))
        if secure and not has_fetch and _wants_fetch_metadata(browser):
            detail = f"{family} {major} user-agent without Sec-Fetch-Site/Mode in a secure context"
            out.append((913114, "browser-missing-fetch-metadata", detail, None))
        if http10:
            detail = f"HTTP/1.0 with a {family} {major} user-agent"
            out.append((913117, "http10-browser", detail, None))
        header = [e for e in out if e[0] in _HEADER_SIGNALS and e[0] not in self._disabled]
        penalty = sum(self._weights[e[0]] for e in header)
        if not header:
            detail = f"{family} user-agent with the headers {family} sends"
            out.append((913119, "consistent-browser", detail, None))
        elif penalty > self.config.max_header_penalty:
            # Header inconsistencies alone are doubt, not proof (proxies and privacy tools strip
            # headers): they can bring a browser into the challenge band but never below it.
            cap = self.config.max_header_penalty
            detail = f"header signals add up to {penalty}, capped at {cap}"
            out.append((913118, "header-penalty-capped", detail, cap - penalty))
        return tuple(out)

    # -- behaviour ------------------------------------------------------------------------------

    def _behaviour_client(self, view: RequestLike, verdict: BotVerdict | None) -> str | None:
        if verdict is None:
            attached = view.scope.get("wafmw.bot")
            verdict = attached if isinstance(attached, BotVerdict) else self.assess(view)
        if verdict.verified_crawler is not None:
            return None  # a crawler's many paths and 404s are its job, not a signal
        text = view.client_ip
        if not text:
            return None
        return self._client_memo.get(text) or self._client_of(text)

    def _client_of(self, text: str) -> str:
        """client_key of a non-empty address, memoised: it parses the address (and for IPv6
        builds its /64) on every call, and a site's clients come back."""
        client = client_key(text)
        assert client is not None  # a non-empty address always has a key
        memo = self._client_memo
        if len(memo) >= _CLIENT_MEMO_SIZE:
            memo.clear()
        memo[text] = client
        return client

    async def observe(self, view: RequestLike, status: int) -> None:
        """Record the answer for this client (after the response). Never raises for storage
        trouble: it is logged at most once per interval and counted as unavailable."""
        if self.observe_local(view, status):
            return
        tracker = self._behaviour
        assert tracker is not None  # observe_local handled the case without one
        if not tracker.available:
            return
        client = self._behaviour_client(view, None)
        if client is None:
            return
        await tracker.observe(client, view.path, status, self._is_trap(view.path))

    def observe_local(self, view: RequestLike, status: int) -> bool:
        """`observe` when it needs no I/O (no behaviour tracking, or ``memory://`` storage):
        done, True; else False, and the caller awaits `observe`. Spares the per-request
        coroutine on the usual set-up."""
        tracker = self._behaviour
        if tracker is None:
            return True
        if not tracker.local:
            return False
        if isinstance(view, RequestView) and view.behaviour_counted:
            # Counted as it arrived (evaluate_local): only a 4xx answer is left to count.
            if 400 <= status < 500:
                client = self._behaviour_client(view, None)
                if client is not None:
                    tracker.note_client_error_local(client)
            return True
        client = self._behaviour_client(view, None)
        if client is not None:
            path = view.path
            trap = self._trap_memo.get(path)
            if trap is None:
                trap = self._is_trap(path)
            tracker.observe_local(client, path, status, trap)
        return True

    async def assess_behaviour(
        self, view: RequestLike, verdict: BotVerdict | None = None
    ) -> tuple[Signal, ...] | None:
        """Behaviour signals from the shared storage; None when it is unavailable (UNKNOWN).
        A request without a client address, or from a verified crawler, has none: ().
        ``verdict``, when given, is this request's `assess` result (saves recomputing it)."""
        tracker = self._behaviour
        if tracker is None:
            return ()
        client = self._behaviour_client(view, verdict)
        if client is None:
            return ()
        return await tracker.signals(client)

    def combine(self, verdict: BotVerdict, behaviour: tuple[Signal, ...] | None) -> BotVerdict:
        """The verdict with behaviour signals folded in; None behaviour makes the score UNKNOWN
        (``upper_bound`` keeps the request-only score: behaviour can only lower it)."""
        if behaviour is None:
            return BotVerdict(
                None,
                verdict.signals,
                verdict.verified_crawler,
                verdict.impostor,
                verdict.upper_bound,
                verdict.kind,
            )
        if not behaviour:
            return verdict
        signals = verdict.signals + behaviour
        bound = score_of(self.config.prior, signals)
        score = None if verdict.score is None else bound
        upper = None if verdict.upper_bound is None else bound
        return BotVerdict(
            score, signals, verdict.verified_crawler, verdict.impostor, upper, verdict.kind
        )

    async def evaluate(self, view: RequestLike) -> BotVerdict:
        """assess + assess_behaviour + combine: the full verdict for one request."""
        verdict = self.evaluate_local(view)
        if verdict is not None:
            return verdict
        verdict = self.assess(view)
        return self.combine(verdict, await self.assess_behaviour(view, verdict))

    def evaluate_local(self, view: RequestLike, *, count: bool = False) -> BotVerdict | None:
        """`evaluate` when it needs no I/O (no behaviour tracking, or ``memory://`` storage),
        else None, and the caller awaits `evaluate`. Spares the per-request coroutines on the
        usual set-up.

        ``count`` (a RequestView only): count the request in its client's behaviour now,
        after reading the signals, and mark the view `behaviour_counted`; `observe_local` then
        has only a 4xx answer left to count. The middleware's choice: nearly all answers are
        not 4xx, and it then skips the observation after the response altogether."""
        tracker = self._behaviour
        if tracker is None:
            return self.assess(view)
        if not tracker.local:
            return None
        verdict = self.assess(view)
        counting = view if count and isinstance(view, RequestView) else None
        text = view.client_ip  # as _behaviour_client, inlined: this runs on every request
        if not text or verdict.verified_crawler is not None:
            if counting is not None:
                counting.behaviour_counted = True  # nothing to count, now or once answered
            return verdict
        client = self._client_memo.get(text) or self._client_of(text)
        if counting is not None:
            path = view.path
            trap = self._trap_memo.get(path)
            if trap is None:
                trap = self._is_trap(path)
            behaviour = tracker.arrive_local(client, path, trap)
            counting.behaviour_counted = True
        else:
            behaviour = tracker.local_signals(client)
        if not behaviour:
            return verdict
        memo = self._combined
        key = (id(verdict), id(behaviour))
        found = memo.get(key)
        if found is not None:
            return found[2]
        combined = self.combine(verdict, behaviour)
        if len(memo) >= _CACHE_SIZE:
            memo.clear()
        memo[key] = (verdict, behaviour, combined)
        return combined

    @property
    def tracks_behaviour(self) -> bool:
        """Whether answers are counted (`observe` does anything at all)."""
        return self._behaviour is not None

    @property
    def local(self) -> bool:
        """Whether evaluate and observe need no I/O (then their _local forms always answer)."""
        return self._behaviour is None or self._behaviour.local

    @property
    def behaviour_available(self) -> bool | None:
        """None without behaviour tracking, else whether the storage is believed up."""
        return None if self._behaviour is None else self._behaviour.available

    async def flush(self) -> None:
        """Write this process's batched behaviour counts to shared storage now."""
        if self._behaviour is not None:
            await self._behaviour.flush()

    async def close(self) -> None:
        """Flush batched counts; call on shutdown (lifespan)."""
        if self._behaviour is not None:
            await self._behaviour.close()
