"""The matching engine: a Ruleset compiled for fast evaluation.

Filters are grouped by transform chain. Within a group, every filter whose operator RE2 can
express (regex on RE2, contains, contains_any, a detector's prefilter) goes into one RE2 set,
which scans the group's targets joined by a control character (anchors widened to match at
the joins) after the group's transforms; the few filters it flags are then confirmed value by
value — that is where the matched target, exclusions and detectors are resolved. Each group
picks a joining character that none of its patterns matches on its own (see
_scanner_with_separator), so that a rule about NUL bytes or control characters does not flag
every request for confirmation.

In front of the groups stands the sieve (sieve.py): one set over the raw request that speaks
for every group at once, so that a benign request costs one C call (or, for head parts seen
before, a few dictionary lookups) instead of a join and a transform chain per group. A group
runs its own scan only when the sieve cannot speak for it on this request (one of its
transforms' triggers fired); otherwise only the filters the sieve flagged are confirmed.

Operators that are not patterns (equals, lengths, counts) and patterns that need the
backtracking engine are checked value by value, the latter with a timeout. Those that read
only the request line and named headers are decided once per distinct set of those values.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import re2

from .body import (
    TEXT_MEDIA_TYPES,
    BodyLimits,
    is_json,
    json_object_keys,
    json_texts,
    may_be_binary,
)
from .decision import Decision, Match, truncate
from .detect import get_detector
from .doorkeeper import Doorkeeper
from .errors import EvaluationTimeout
from .globs import compile_globs
from .model import Comparison, FilterRule, Ruleset, Settings, Target
from .patterns import (
    CompiledPattern,
    OnePattern,
    Scanner,
    anchored_at_joins,
    compile_pattern,
    re2_options,
    tolerating,
    tolerating_cmdline,
)
from .request import (
    LONG_TEXT_CHARS,
    SEPARATOR,
    URL_DECODE,
    RequestView,
    decode_header_value,
    may_have_body,
)
from .sieve import (
    BODY_KINDS,
    FIRST_HEADER_PART,
    HEAD_KINDS,
    JSON_JUNK_ENTRY,
    JSON_JUNK_SOURCE,
    STAND_INS,
    Flagged,
    Sieve,
    SieveEntry,
    compile_passes,
    json_pass_of,
    kinds_of_parts,
    looks_benign,
    plan_group,
    sieve_pattern,
)
from .transforms import AMPERSAND, BACKSLASH, JOIN_CHARACTERS, PERCENT, PLUS, TRANSFORMS

PathMatcher = Callable[[str], bool]


class RuleFailure(Exception):
    """An exception raised while evaluating one rule, carrying the rule for the on_error choice."""

    def __init__(self, rule: FilterRule, cause: BaseException) -> None:
        super().__init__(f"rule {rule.id} failed: {cause!r}")
        self.rule = rule
        self.cause = cause


def _path_matcher(pattern: str) -> PathMatcher:
    compiled = compile_globs([pattern])
    assert compiled is not None
    return lambda path: compiled.match(path) is not None


@dataclass(slots=True, eq=False)
class CompiledFilter:
    rule: FilterRule
    chain: tuple[str, ...]
    pattern: CompiledPattern | None = None
    words: tuple[str, ...] = ()
    detector: Any = None
    detector_check: Callable[[str], bool] | None = None
    # (path matcher or None for every path, excluded targets or None for the whole rule)
    exclusions: tuple[tuple[PathMatcher | None, frozenset[Target] | None], ...] = ()
    # A one-pattern RE2 set: a yes/no answer costs one C call, where the `re2` module's
    # search spends several µs in Python. The full search runs only to report a match.
    probe: Any = None
    # The same pattern for a whole target's values joined as the group joins them: one call
    # rules out a target with many values (all the headers, say) before probing each.
    unit_probe: Any = None
    group: ChainGroup | None = None
    # Whether the filter's verdict on a header value depends on that value alone (no negation,
    # count or exclusion), so that it may be checked on just the header values the sieve
    # flagged; and which header-derived targets it reads.
    header_values_only: bool = False
    reads_all_headers: bool = False
    header_names: frozenset[bytes] = frozenset()  # the named header targets, as ASGI spells them
    reads_cookies: bool = False
    # The argument and body field names it reads, when it reads nothing else: the filter has
    # nothing to look at when none of them is in the request (see _args_absent).
    named_args: tuple[bytes, ...] = ()
    # Whether the body targets it reads are uploaded file names only (multipart bodies).
    files_only: bool = False
    # What a JSON body is checked for before its parse (see Engine._json_may_match), for a
    # filter whose verdict more text to look at could only turn into a match (no negation, no
    # count) and that reads nothing else of the body: "keys" when it reads the body's names
    # only, "texts" when it reads its values too; "" for any other.
    json_precheck: str = ""
    # Its place among its group's scanned filters (scanned: it is one of them).
    position: int = 0
    scanned: bool = False
    # The operator bound to its argument at compile time: (value, deadline) -> matched text.
    test: Callable[[str, float], str | None] = field(default=lambda subject, deadline: None)


@dataclass(slots=True)
class ChainGroup:
    chain: tuple[str, ...]
    # The chain split for the scan: `per_value` runs on each value (transforms that are not
    # local, and everything before them), `on_joined` once over the joined result.
    per_value: tuple[str, ...]
    on_joined: tuple[str, ...]
    # What the group's scanner reads: whole kinds ("headers") or single members
    # ("headers:user-agent") when no filter of the group needs the whole kind.
    head_units: tuple[Target, ...] = ()
    body_units: tuple[Target, ...] = ()
    scanner: Scanner | None = None
    separator: str = SEPARATOR
    set_filters: list[CompiledFilter] = field(default_factory=list)
    direct_head: list[CompiledFilter] = field(default_factory=list)
    direct_body: list[CompiledFilter] = field(default_factory=list)
    # direct_head less the filters decided by the request's signature (Engine._by_signature).
    direct_rest: list[CompiledFilter] = field(default_factory=list)


# Detector verdicts are pure functions of the value. Header values (User-Agent, Accept,
# sec-ch-ua…) recur across requests from the same browsers, so a small per-engine memory of
# recent short values saves the tokenizer on most benign traffic. Bounded in entries and in the
# length of what is remembered; long values are always checked afresh.
_DETECTOR_MEMORY = 4096
_VERDICT_MEMORY = 8192
_VERDICT_MAX_BYTES = 512
_UNKNOWN: Any = object()
_DETECTOR_MEMORY_MAX_CHARS = 512
# Heads found clean, remembered whole (see Engine.evaluate_head) once seen twice (see
# doorkeeper.py): a client repeating a request (a page reloaded, an API polled, a health check)
# costs one lookup. Bounded in entries and in head size; a head with any match is never
# remembered, so every match is found and logged.
_CLEAN_HEAD_MEMORY = 4096
_CLEAN_HEAD_MAX_BYTES = 4096
# A request's memo keys for its JSON body's object keys, and for all its texts (see
# Engine._json_may_match).
_JSON_KEYS: Any = object()
_JSON_TEXTS: Any = object()
# From how many values on a target's values are checked only where its unit probe finds
# something (see OnePattern.pieces_holding): a check costs about 0.5 µs a value, finding
# where the probe matches a few µs.
_VALUES_LISTED_FROM = 16


def _operator(cf: CompiledFilter) -> Callable[[str, float], str | None]:
    """The filter's operator as one function, so the per-value loop does no dispatching."""
    rule = cf.rule
    op, arg = rule.operator, rule.argument
    if op == "regex":
        pattern = cf.pattern
        assert pattern is not None

        def regex_test(subject: str, deadline: float) -> str | None:
            probe = cf.probe
            if probe is not None and not probe.found(subject):
                return None
            return pattern.search(subject, deadline - time.perf_counter())

        return regex_test
    if op == "contains":
        return lambda subject, deadline: arg if arg in subject else None
    if op == "contains_any":
        words = cf.words
        return lambda subject, deadline: next((w for w in words if w in subject), None)
    if op == "equals":
        return lambda subject, deadline: subject if subject == arg else None
    if op == "starts_with":
        return lambda subject, deadline: subject if subject.startswith(arg) else None
    if op == "ends_with":
        return lambda subject, deadline: subject if subject.endswith(arg) else None
    if op == "length":
        return lambda subject, deadline: subject if arg.holds(len(subject)) else None
    if op == "detect":
        # The remembered verdict covers the prefilter too (see _remembering).
        check = cf.detector_check
        assert check is not None
        return lambda subject, deadline: subject if check(subject) else None
    if op == "count":
        return lambda subject, deadline: None  # counted by _check, not per value
    raise ValueError(f"unknown operator {op}")  # pragma: no cover - validated at load


# Targets that hold one value (or a named member of a collection, usually one value too).
_SINGLE_VALUED = frozenset({"path", "raw_path", "query", "uri", "method", "http_version"})


def _narrow(rule: FilterRule) -> bool:
    """Whether a rule only reads a few single values (the method, one header…). Such a rule is
    checked directly — one probe per value — rather than joining the group's scan: protocol
    checks written as "anything but…" would match the joined text on every request and cost a
    confirmation each time."""
    return all(t.name is not None or t.kind in _SINGLE_VALUED for t in rule.targets)


def _prefiltered(probe: OnePattern, check: Callable[[str], bool]) -> Callable[[str], bool]:
    """A detector's check, run only where its cheap prefilter matches."""

    def prefiltered_check(value: str) -> bool:
        return probe.found(value) and check(value)

    return prefiltered_check


def _remembering(check: Callable[[str], bool]) -> tuple[Callable[[str], bool], Callable[[], None]]:
    """`check` through the memory of short values, and of the last long one: the rules that
    use one detector share its check (see detector_checks in Engine), and several of them
    may read the same value in one request, so a long value is read once, not once per rule.
    Returned with the function that drops both memories (see Engine.forget)."""
    remembered = functools.lru_cache(maxsize=_DETECTOR_MEMORY)(check)
    last: tuple[str, bool] = ("", False)

    def cached_check(value: str) -> bool:
        nonlocal last
        if len(value) > _DETECTOR_MEMORY_MAX_CHARS:
            seen = last  # one read: another thread may replace it meanwhile
            if seen[0] == value:
                return seen[1]
            verdict = check(value)
            last = (value, verdict)
            return verdict
        return remembered(value)

    def forget() -> None:
        nonlocal last
        remembered.cache_clear()
        last = ("", False)

    return cached_check, forget


_CMDLINE_CHAINS = (("cmdline",), ("url_decode", "cmdline"))


def _tolerates_cmdline(group: ChainGroup) -> bool:
    """Whether every pattern of the group can be rewritten by tolerating_cmdline."""
    try:
        for cf in (*group.set_filters, *group.direct_head, *group.direct_body):
            source = _set_pattern(cf)
            if source is not None:
                tolerating_cmdline(source)
    except ValueError:
        return False
    return True


def _tolerant(source: str, tolerant: bool) -> str:
    return tolerating_cmdline(source) if tolerant else source


def _set_pattern(cf: CompiledFilter) -> str | None:
    rule = cf.rule
    if rule.negate:
        return None
    if rule.operator == "regex":
        assert cf.pattern is not None
        return cf.pattern.source if cf.pattern.engine == "re2" else None
    if rule.operator == "contains":
        return str(re2.escape(rule.argument))
    if rule.operator == "contains_any":
        return "|".join(re2.escape(w) for w in rule.argument)
    if rule.operator == "detect":
        return str(cf.detector.prefilter)
    return None


class Engine:
    """A compiled, immutable ruleset. Safe to share between concurrent requests."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.settings = ruleset.settings
        self.time_budget_s = ruleset.settings.time_budget_ms / 1000.0  # per request
        body = ruleset.settings.body
        self.body_limits = BodyLimits(
            json_max_depth=body.json_max_depth, max_fields=body.max_fields
        )
        groups: dict[tuple[str, ...], ChainGroup] = {}
        # One remembering check per detector, shared by the rules that use it.
        detector_checks: dict[str, tuple[Callable[[str], bool], Callable[[], None]]] = {}
        # Where a request's view remembers what each sieve flagged in it: a second try after
        # an overrun (see the middleware) finds those scans done, as it finds the transformed
        # values and the groups' own scans; on text new to the automata they are most of the
        # first try. Objects of this engine's own, as a candidate ruleset's engine reads the
        # same view.
        self._head_flags = object()
        self._body_flags = object()
        # The filters that read the raw body, in rule-file order: all that can match a binary
        # body (see _evaluate_binary).
        self._raw_body_filters: list[CompiledFilter] = []
        # The filters whose match allows a request, in rule-file order (see overrun_matches).
        self._allow_filters: list[CompiledFilter] = []
        for rule in ruleset.filters:
            cf = self._compile_filter(rule, ruleset, detector_checks)
            if rule.action == "allow":
                self._allow_filters.append(cf)
            if any(target.kind == "body_raw" for target in rule.targets):
                self._raw_body_filters.append(cf)
            group = groups.get(cf.chain)
            if group is None:
                split = max(
                    (i + 1 for i, name in enumerate(cf.chain) if not TRANSFORMS[name].local),
                    default=0,
                )
                group = groups[cf.chain] = ChainGroup(cf.chain, cf.chain[:split], cf.chain[split:])
            source = _set_pattern(cf)
            if source is not None and not _narrow(rule):
                group.set_filters.append(cf)
            elif rule.needs_body:
                group.direct_body.append(cf)
                if any(not t.needs_body for t in rule.targets):
                    group.direct_head.append(cf)
            else:
                group.direct_head.append(cf)
        self._detector_forgets = [forget for _, forget in detector_checks.values()]
        for group in groups.values():
            self._build_scanner(group)
        self.groups = tuple(groups.values())
        self.needs_body = any(group.body_units or group.direct_body for group in self.groups)
        # (filter, header name, header value) -> what the filter matched in it, or None.
        self._header_verdicts: dict[tuple[CompiledFilter, bytes, bytes], str | None] = {}
        self.head_sieve = self._build_sieve(body=False)
        self.body_sieve = self._build_sieve(body=True)
        skippable = self.head_sieve.skippable if self.head_sieve is not None else frozenset()
        # Direct filters of the head that read only the request line and named headers: their
        # verdicts depend on those values alone, which repeat across requests (a browser's
        # method, Content-Type, Accept…), so all of them are decided at once per distinct set
        # of values and remembered.
        self._by_signature = tuple(
            cf
            for group in self.groups
            for cf in group.direct_head
            if cf not in skippable and _signature_only(cf)
        )
        self._signature_headers = frozenset(
            t.name.encode("latin-1")
            for cf in self._by_signature
            for t in cf.rule.targets
            if t.kind == "headers" and t.name is not None
        )
        self._signature_verdicts: dict[tuple[Any, ...], list[Match]] = {}
        # Heads found clean, each with whether it frames a body and its media type (see
        # evaluate_head).
        self._clean_heads: dict[tuple[Any, ...], tuple[bool, str]] = {}
        self._clean_heads_door = Doorkeeper(_CLEAN_HEAD_MEMORY)
        # Finds any argument name the head's direct filters read (see _no_head_args).
        query_names = tuple(
            sorted(
                {
                    name
                    for group in self.groups
                    for cf in group.direct_head
                    if cf.named_args
                    for name in cf.named_args
                }
            )
        )
        self._query_names = OnePattern(_names_probe(query_names)) if query_names else None
        for group in self.groups:
            group.direct_rest = [cf for cf in group.direct_head if cf not in self._by_signature]
        # The direct filters that run whatever the sieve says, in rule-file order.
        self._direct_head = [
            cf for group in self.groups for cf in group.direct_rest if cf not in skippable
        ]
        # The same less those that read only named arguments: what runs when the query holds
        # none of their names.
        self._direct_head_without_args = [cf for cf in self._direct_head if not cf.named_args]
        self._head_args_only = len(self._direct_head_without_args) < len(self._direct_head)
        body_skippable = self.body_sieve.skippable if self.body_sieve is not None else frozenset()
        self._direct_body = [
            cf for group in self.groups for cf in group.direct_body if cf not in body_skippable
        ]
        # Whether the body sieve's answer alone decides a body in which it flags nothing: no
        # group scans on its own and no direct filter reads the body (file-name filters aside,
        # which only a multipart body wakes).
        self._body_sieve_decides = (
            self.body_sieve is not None and not self.body_sieve.unsieved and not self._direct_body
        )
        for group in self.groups:
            for position, cf in enumerate(group.set_filters):
                cf.position = position
                cf.scanned = True

    @staticmethod
    def _compile_filter(
        rule: FilterRule,
        ruleset: Ruleset,
        detector_checks: dict[str, tuple[Callable[[str], bool], Callable[[], None]]],
    ) -> CompiledFilter:
        cf = CompiledFilter(rule=rule, chain=rule.transforms)
        if rule.operator == "regex":
            cf.pattern = compile_pattern(rule.argument)
            if cf.pattern.engine == "re2":
                cf.probe = OnePattern(cf.pattern.source)
        elif rule.operator == "contains_any":
            cf.words = tuple(rule.argument)
        elif rule.operator == "detect":
            cf.detector = get_detector(rule.argument)
            cf.probe = OnePattern(cf.detector.prefilter)
            remembering = detector_checks.get(rule.argument)
            if remembering is None:
                remembering = _remembering(_prefiltered(cf.probe, cf.detector.check))
                detector_checks[rule.argument] = remembering
            cf.detector_check = remembering[0]
        cf.test = _operator(cf)
        exclusions = []
        for ex in ruleset.exclusions:
            if ex.applies_to(rule):
                matcher = _path_matcher(ex.path) if ex.path else None
                exclusions.append((matcher, frozenset(ex.targets) if ex.targets else None))
        cf.exclusions = tuple(exclusions)
        cf.header_values_only = not (rule.negate or rule.operator == "count" or exclusions)
        cf.reads_all_headers = Target("headers") in rule.targets
        cf.header_names = frozenset(
            t.name.encode("latin-1", "replace")
            for t in rule.targets
            if t.kind == "headers" and t.name is not None
        )
        cf.reads_cookies = any(t.kind in ("cookies", "cookie_names") for t in rule.targets)
        if (
            rule.operator != "count"
            and all(t.kind in ("args", "body") and t.name for t in rule.targets)
            and all(t.name and t.name.isascii() for t in rule.targets)
        ):
            cf.named_args = tuple({str(t.name).encode() for t in rule.targets})
        cf.files_only = all(t.kind == "files" for t in rule.targets if t.needs_body)
        body_kinds = {t.kind for t in rule.targets if t.needs_body}
        if body_kinds and not (rule.negate or rule.operator == "count"):
            if body_kinds == {"body_names"}:
                cf.json_precheck = "keys"
            elif body_kinds <= {"body", "body_names"}:
                cf.json_precheck = "texts"
        return cf

    @staticmethod
    def _build_scanner(group: ChainGroup) -> None:
        if not group.set_filters:
            return
        sources = [str(_set_pattern(cf)) for cf in group.set_filters]
        group.scanner, group.separator = _scanner_with_separator(sources, group.chain)
        for cf, source in zip(group.set_filters, sources, strict=True):
            if cf.probe is not None:
                cf.group = group
                cf.unit_probe = OnePattern(anchored_at_joins(source, group.separator))
        targets = {t for cf in group.set_filters for t in cf.rule.targets}
        whole = {t.kind for t in targets if t.name is None}
        units = sorted((t for t in targets if t.name is None or t.kind not in whole), key=str)
        group.head_units = tuple(t for t in units if not t.needs_body)
        group.body_units = tuple(t for t in units if t.needs_body)

    def _build_sieve(self, *, body: bool) -> Sieve | None:
        """The sieve of one phase (see sieve.py): each pattern filter that reads only parts the
        sieve text holds, and each group's triggers. A group some of whose scanned filters
        cannot join is left to its own scan on every request."""
        kinds = BODY_KINDS if body else HEAD_KINDS
        members: dict[tuple[str, ...], tuple[list[str], list[SieveEntry]]] = {}
        unsieved: set[int] = set()
        skippable: set[Any] = set()
        # A JSON body's quotes and backslashes are scanned as stand-ins when every pattern on
        # the raw body can be made to match them (see Sieve.scan_body).
        stand_in = body
        files_direct: list[tuple[int, CompiledFilter]] = []
        for gi, group in enumerate(self.groups):
            plan = plan_group(group.chain)
            if plan is None:
                unsieved.add(gi)
                continue
            # A cmdline chain is scanned in the raw pass, its patterns made to tolerate what
            # cmdline would have changed: no transform of the text, and one set scan fewer.
            tolerant = plan.applied in _CMDLINE_CHAINS and _tolerates_cmdline(group)
            sources, entries = members.setdefault(() if tolerant else plan.applied or (), ([], []))
            units = group.body_units if body else group.head_units
            for trigger in plan.triggers:
                sources.append(trigger)
                entries.append(SieveEntry(gi, None))
            for cf in group.set_filters:
                if not _reads_phase(cf.rule, body):
                    continue
                if body and cf.files_only:
                    # File names exist only in multipart bodies, which are rare: checked there
                    # directly, they cost other bodies nothing. In the set, their quote and
                    # control-character classes woke on every JSON body's quotes.
                    files_direct.append((gi, cf))
                    continue
                source = _set_pattern(cf)
                if source is None or not _sievable(cf.rule, kinds, body):
                    if units:
                        unsieved.add(gi)
                    continue
                if plan.erasing:
                    # It reads only what the group's trigger finds, which flags the whole
                    # group: its own pattern would only wake on plain text it never reads.
                    # One that matches an emptied value matches every request.
                    if _matches_empty(source):
                        unsieved.add(gi)
                    continue
                pattern = sieve_pattern(_tolerant(source, tolerant), group.chain, body=body)
                if body and Target("body_raw") in cf.rule.targets:
                    if plan.applied is not None:
                        stand_in = False
                    else:
                        try:
                            for char, stand_in_char in STAND_INS.items():
                                pattern = tolerating(pattern, char, stand_in_char)
                        except ValueError:
                            stand_in = False
                sources.append(pattern)
                entries.append(SieveEntry(gi, cf))
            for cf in group.direct_body if body else group.direct_head:
                source = _set_pattern(cf)
                if source is None or not _sievable(cf.rule, kinds, body):
                    continue
                pattern = sieve_pattern(_tolerant(source, tolerant), group.chain, body=body)
                if body and Target("body_raw") in cf.rule.targets:
                    continue  # stays direct: keeps the quote stand-in simple
                # A check written as "anything but…" matches every request: it stays direct,
                # unless it reads only named body fields: then the sieve flags it where one of
                # the names, or anything encoded that could spell one, is in the body (what
                # _args_absent looks for, found by the scan the body gets anyway).
                if not looks_benign(pattern):
                    if body and _reads_named_body_fields_only(cf):
                        sources.append(_names_probe(cf.named_args))
                        entries.append(SieveEntry(gi, cf))
                        skippable.add(cf)
                    continue
                sources.append(pattern)
                entries.append(SieveEntry(gi, cf))
                skippable.add(cf)
        if body and stand_in:
            sources, entries = members.setdefault((), ([], []))
            sources.append(JSON_JUNK_SOURCE)
            entries.append(JSON_JUNK_ENTRY)
        try:
            passes, separator = compile_passes(members)
        except re2.error:
            return None  # every group scans on its own, as without a sieve
        if not passes:
            return None
        folds = any(
            "lowercase" in g.chain or "cmdline" in g.chain
            for gi, g in enumerate(self.groups)
            if gi not in unsieved
        )
        sieve = Sieve(passes, separator, folds, frozenset(unsieved), frozenset(skippable))
        sieve.quote_stand_in = stand_in and separator.decode() not in STAND_INS.values()
        sieve.files_direct = tuple(files_direct)
        if body and sieve.quote_stand_in and len(passes) == 1 and not passes[0].chain:
            sieve.json_pass = json_pass_of(*members[()])
        return sieve

    def forget(self) -> None:
        """Drop the memories of recurring heads, parts, header and detector verdicts: the next
        requests cost what first sight costs (the worst-case benchmark measures that; with the
        detectors' memory of the last long value kept, a shape repeated request after request
        read as costing a third of what it costs between other requests)."""
        for forget_verdicts in self._detector_forgets:
            forget_verdicts()
        self._clean_heads.clear()
        self._clean_heads_door.clear()
        self._header_verdicts.clear()
        self._signature_verdicts.clear()
        for sieve in (self.head_sieve, self.body_sieve):
            if sieve is not None:
                sieve.parts_seen.clear()

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate_head(self, view: RequestView, deadline: float) -> list[Match]:
        """Phase 1: everything but the body. The head targets are pure functions of the head,
        so a head this engine found clean before is clean again."""
        if not self.ruleset.filters:
            return []  # rate limits or bots alone: nothing to evaluate, no head to remember
        key = view.head_key
        clean = self._clean_heads
        try:
            known = clean.get(key)
        except TypeError:  # header pairs that are not hashable: evaluated every time
            return self._evaluate(view, deadline, body=False)
        if known is not None:
            # Whether the head frames a body, and its media type, are remembered with it, pure
            # functions of the head too: what the middleware and the body phase ask next,
            # spared a pass over the headers each.
            view.known_may_have_body, view.known_media_type = known
            return []
        matches = self._evaluate(view, deadline, body=False)
        if (
            not matches
            and self._clean_heads_door.admits(key)
            and view.head_size() <= _CLEAN_HEAD_MAX_BYTES
        ):
            if len(clean) >= _CLEAN_HEAD_MEMORY:
                clean.clear()
            clean[key] = (may_have_body(view), view.media_type)
        return matches

    def evaluate_body(
        self, view: RequestView, deadline: float, *, again: bool = False
    ) -> list[Match]:
        """Phase 2: body targets; only called once the body has been read. `again`: a second
        try after an overrun, which takes up what the first one remembered."""
        media_type = view.media_type
        if (
            media_type not in TEXT_MEDIA_TYPES
            and may_be_binary(media_type)
            and view.parsed_body.kind == "binary"
        ):
            return self._evaluate_binary(view, deadline)
        sieve = self.body_sieve
        if self._body_sieve_decides and sieve is not None:
            # The usual case, kept short: a body in which the sieve flags nothing. Its scan is
            # remembered only when it overran or flagged something, for a second try (see
            # _head_flags).
            found = view.memo.get(self._body_flags) if again else None
            if found is None:
                found = sieve.scan_body(view, media_type)
            # _has_files, with the media type at hand: no call to ask for it again.
            if not found and not (sieve.files_direct and media_type == _FILES_MEDIA_TYPE):
                if time.perf_counter() > deadline:
                    view.memo[self._body_flags] = found
                    raise EvaluationTimeout()
                return []
            view.memo[self._body_flags] = found  # flagged: the rest may overrun
            return self._evaluate(view, deadline, body=True, found=found)
        return self._evaluate(view, deadline, body=True)

    def _evaluate_binary(self, view: RequestView, deadline: float) -> list[Match]:
        """A binary body (see body.is_binary): it has no values, names or files, so only the
        filters that read the raw body can match, each checked on its own. Not through the
        sieve: binary data is new text to its automaton at almost every byte (tens of
        milliseconds for 4 KB), where each filter's own automaton stays small."""
        matches: list[Match] = []
        try:
            for cf in self._raw_body_filters:
                self._confirm(cf, view, deadline, matches, body=True)
            if time.perf_counter() > deadline:
                raise EvaluationTimeout()
        except EvaluationTimeout as exc:
            exc.matches = matches
            raise
        return matches

    def _evaluate(
        self, view: RequestView, deadline: float, *, body: bool, found: Flagged | None = None
    ) -> list[Match]:
        """Evaluate one phase; `found`: what the phase's sieve flagged, when already asked. An
        overrun carries what was found before it (EvaluationTimeout.matches)."""
        matches: list[Match] = []
        try:
            self._evaluate_into(matches, view, deadline, body=body, found=found)
        except EvaluationTimeout as exc:
            exc.matches = matches
            raise
        return matches

    def _evaluate_into(
        self,
        matches: list[Match],
        view: RequestView,
        deadline: float,
        *,
        body: bool,
        found: Flagged | None,
    ) -> None:
        sieve = self.body_sieve if body else self.head_sieve
        # The filters the sieve flagged, per group, with the head parts that flagged each, and
        # the groups it cannot speak for this time (a trigger fired): those run their own scan.
        flagged: dict[int, dict[CompiledFilter, list[int]]] = {}
        # Groups to scan on their own, each with the kinds of target whose values a trigger
        # could have changed (None: all of them; the sieve's flags speak for the others).
        whole: dict[int, frozenset[str] | None] = {}
        if sieve is not None:
            whole = dict.fromkeys(sieve.unsieved)
            if found is None:
                memo = view.memo
                flags = self._body_flags if body else self._head_flags
                found = memo.get(flags)
                if found is None:
                    found = memo[flags] = (
                        sieve.scan_body(view, view.media_type) if body else sieve.scan_head(view)
                    )
            for entry, parts in found.items():
                cf = entry.filter
                if cf is None:
                    gi = entry.group
                    kinds = None if body else kinds_of_parts(parts)
                    if gi in whole:
                        known = whole[gi]
                        kinds = None if known is None or kinds is None else known | kinds
                    whole[gi] = kinds
                else:
                    flagged.setdefault(entry.group, {})[cf] = parts
            if body and sieve.files_direct and _has_files(view):
                # The file-name filters the sieve does not scan for: checked wherever a body
                # holds files, in their place among the flagged ones.
                for gi, cf in sieve.files_direct:
                    flagged.setdefault(gi, {})[cf] = []
        if not body and self._by_signature:
            matches.extend(self._signature_matches(view, deadline))
        if sieve is not None and not flagged and not whole:
            # The usual case: nothing flagged, so only the direct filters can match.
            direct = self._direct_body if body else self._direct_head
            if not body and self._head_args_only and self._no_head_args(view):
                direct = self._direct_head_without_args
            for cf in direct:
                self._check_direct(cf, view, deadline, matches, body=body)
            if time.perf_counter() > deadline:
                raise EvaluationTimeout()
            return
        no_hits: dict[CompiledFilter, list[int]] = {}
        for gi, group in enumerate(self.groups):
            units = group.body_units if body else group.head_units
            hits = flagged.get(gi, no_hits)
            if group.scanner is not None and units:
                if sieve is None or whole.get(gi, _NOT_WHOLE) is None:
                    self._scan(group, units, view, deadline, matches, body=body)
                elif gi in whole:
                    self._scan_some(group, units, whole[gi], hits, view, deadline, matches)
                elif hits:
                    # In the order of the rule files, as the group's own scan would report them.
                    for cf in sorted(hits, key=_position):
                        if cf.scanned:
                            self._confirm(cf, view, deadline, matches, body=body, parts=hits[cf])
            # The sieve speaks for a direct filter unless the group's trigger fired in a part
            # holding something it reads.
            partial = whole.get(gi, _NOT_WHOLE)
            skippable = sieve.skippable if sieve is not None and partial is not None else ()
            for cf in group.direct_body if body else group.direct_rest:
                if cf in skippable and partial is not None and not _reads_any(cf, partial):
                    if cf in hits:
                        self._confirm(cf, view, deadline, matches, body=body, parts=hits[cf])
                else:
                    self._check_direct(cf, view, deadline, matches, body=body)
            if time.perf_counter() > deadline:
                raise EvaluationTimeout()
        if not body and flagged and sieve is not None and found is not None and not whole:
            self._note_confirmed_headers(sieve, view, found)

    def _note_confirmed_headers(self, sieve: Sieve, view: RequestView, found: Flagged) -> None:
        """Tell the sieve which flagged header values were checked and found clean by every
        filter that flagged them, so that it stops flagging them."""
        headers = view.scope["headers"]
        by_part: dict[int, list[CompiledFilter | None]] = {}
        for entry, parts in found.items():
            for i in parts:
                by_part.setdefault(i, []).append(entry.filter)
        verdicts = self._header_verdicts
        for i, filters in by_part.items():
            offset = i - FIRST_HEADER_PART
            if offset < 0 or not offset & 1:
                continue
            name, value = headers[offset >> 1]
            clean = True
            for cf in filters:
                if (
                    cf is None
                    or not cf.header_values_only
                    or (name == b"cookie" and cf.reads_cookies)
                ):
                    clean = False
                elif cf.reads_all_headers or name in cf.header_names:
                    clean = verdicts.get((cf, name, value), _UNKNOWN) is None
                if not clean:
                    break
            if clean:
                sieve.confirm_header(name, value)

    def _scan(
        self,
        group: ChainGroup,
        units: tuple[Target, ...],
        view: RequestView,
        deadline: float,
        matches: list[Match],
        *,
        body: bool,
    ) -> None:
        for index in sorted(self._scan_hits(group, units, view)):
            self._confirm(group.set_filters[index], view, deadline, matches, body=body)

    @staticmethod
    def _scan_hits(group: ChainGroup, units: tuple[Target, ...], view: RequestView) -> list[int]:
        """The indices of the group's set filters its own scan finds in these targets."""
        if not units:
            return []
        key = (id(group), units)  # the group lives as long as its engine, beyond the request
        found: list[int] | None = view.memo.get(key)
        if found is None:
            found = view.memo[key] = Engine._scan_text(group, units, view)
        return found

    @staticmethod
    def _scan_text(group: ChainGroup, units: tuple[Target, ...], view: RequestView) -> list[int]:
        if group.per_value:
            text = Engine._joined_as_scanned(
                group, view, (value for unit in units for _, value in view.target_items(unit))
            )
        else:
            chain = group.on_joined
            joined = view.joined(units, group.separator)
            if chain[:1] == URL_DECODE and len(joined) >= LONG_TEXT_CHARS and "%" in joined:
                # Decoded target by target, as the sieve decodes the same texts: the view
                # decodes each long one once (see RequestView.url_decoded).
                texts = view.target_texts(units, group.separator)
                joined = view.url_decoded(texts, group.separator)
                chain = chain[1:]
            # Local transforms give the same text once over the join as value by value.
            text = view.transformed(joined, chain)
        if not text:
            return []
        assert group.scanner is not None  # callers scan only groups that have one
        return group.scanner.match(text)

    def _scan_some(
        self,
        group: ChainGroup,
        units: tuple[Target, ...],
        kinds: frozenset[str] | None,
        hits: dict[CompiledFilter, list[int]],
        view: RequestView,
        deadline: float,
        matches: list[Match],
    ) -> None:
        """A head group whose trigger fired only in some parts: its own scan over the targets
        those parts hold, the sieve's flags for the rest; each filter found either way is
        confirmed once, on every target it reads, in the order of the rule files."""
        scanned = tuple(
            u for u in units if kinds is None or u.kind in kinds or u.kind not in HEAD_KINDS
        )
        found = {group.set_filters[i] for i in self._scan_hits(group, scanned, view)}
        for cf in sorted(found | hits.keys(), key=_position):
            if cf in found:
                self._confirm(cf, view, deadline, matches, body=False)
            elif cf.scanned:
                self._confirm(cf, view, deadline, matches, body=False, parts=hits[cf])

    def _confirm(
        self,
        cf: CompiledFilter,
        view: RequestView,
        deadline: float,
        matches: list[Match],
        *,
        body: bool,
        parts: list[int] | None = None,
    ) -> None:
        try:
            found = (
                self._check_header_values(cf, view, deadline, parts)
                if parts and cf.header_values_only
                else self._check(cf, view, deadline, body)
            )
        except EvaluationTimeout as exc:
            exc.rule_id = cf.rule.id
            raise
        except Exception as exc:
            raise RuleFailure(cf.rule, exc) from exc
        if found is not None:
            rule = cf.rule
            target, value = found
            detect_only = rule.mode == "detect" or self.settings.mode == "detect"
            matches.append(
                Match(
                    rule.id,
                    rule.msg,
                    target,
                    truncate(value),
                    rule.score,
                    rule.action,
                    detect_only,
                    rule.tags,
                )
            )

    def _check_direct(
        self,
        cf: CompiledFilter,
        view: RequestView,
        deadline: float,
        matches: list[Match],
        *,
        body: bool,
    ) -> None:
        """Check a direct filter, unless what it reads is plainly absent from the request."""
        if cf.named_args:
            if body:
                if _args_absent(cf, view.body or b""):
                    return
            elif self._no_head_args(view):
                return  # none of the head's named arguments, and nothing encoded
        if body and cf.files_only and not _has_files(view):
            return
        self._confirm(cf, view, deadline, matches, body=body)

    def _no_head_args(self, view: RequestView) -> bool:
        """Whether none of the argument names the head's direct filters read can be in the
        query (one search for all of them)."""
        query = view.query_string
        if not query:
            return True
        # Asked by the fast path and again by each such filter: searched once per request.
        absent: bool | None = view.memo.get(self)
        if absent is None:
            probe = self._query_names
            absent = view.memo[self] = probe is not None and not probe.found(query)
        return absent

    def _signature_matches(self, view: RequestView, deadline: float) -> list[Match]:
        """The matches of the signature filters, remembered per request line and headers."""
        names = self._signature_headers
        signature = (
            view.method,
            view.http_version,
            *[(name, value) for name, value in view.scope.get("headers", ()) if name in names],
        )
        verdicts = self._signature_verdicts
        found = verdicts.get(signature)
        if found is None:
            found = []
            for cf in self._by_signature:
                self._confirm(cf, view, deadline, found, body=False)
            if sum(len(part[1]) for part in signature[2:]) <= _VERDICT_MAX_BYTES * 2:
                if len(verdicts) >= _VERDICT_MEMORY:
                    verdicts.clear()
                verdicts[signature] = found
        return found

    def _check_header_values(
        self, cf: CompiledFilter, view: RequestView, deadline: float, parts: list[int]
    ) -> tuple[str, str] | None:
        """Check a filter that the sieve flagged in header values only: every other value of
        every target sits in a part the sieve found clean for it, so only those header values
        can match. Verdicts per (filter, header name, value) are remembered, since header values
        recur across requests; a value the filter does not read is skipped."""
        first = FIRST_HEADER_PART
        if min(parts) < first or any((i - first) % 2 == 0 for i in parts):
            return self._check(cf, view, deadline, False)  # a request line part or a name
        headers = view.scope["headers"]
        verdicts = self._header_verdicts
        for i in parts:
            raw_name, raw_value = headers[(i - first) // 2]
            if raw_name == b"cookie" and cf.reads_cookies:
                return self._check(cf, view, deadline, False)
            if not (cf.reads_all_headers or raw_name in cf.header_names):
                continue
            key = (cf, raw_name, raw_value)
            hit = verdicts.get(key, _UNKNOWN)
            if hit is _UNKNOWN:
                hit = cf.test(view.transformed(decode_header_value(raw_value), cf.chain), deadline)
                if len(raw_value) <= _VERDICT_MAX_BYTES:
                    if len(verdicts) >= _VERDICT_MEMORY:
                        verdicts.clear()
                    verdicts[key] = hit
            if hit is not None:
                return (f"headers:{raw_name.decode('latin-1')}", str(hit))
        return None

    def _excluded(self, cf: CompiledFilter, view: RequestView) -> frozenset[Target] | None:
        """Targets removed for this request, or None when the whole rule is off here."""
        removed: frozenset[Target] = frozenset()
        for matcher, targets in cf.exclusions:
            if matcher is not None and not matcher(view.path):
                continue
            if targets is None:
                return None
            removed = removed | targets
        return removed

    def _check(
        self, cf: CompiledFilter, view: RequestView, deadline: float, body: bool
    ) -> tuple[str, str] | None:
        if (
            body
            and cf.json_precheck
            and not view.body_parsed
            and not self._json_may_match(cf, view, deadline)
        ):
            return None
        rule = cf.rule
        removed = self._excluded(cf, view) if cf.exclusions else frozenset()
        if removed is None:
            return None
        chain = cf.chain
        counted = 0
        for target in rule.targets:
            if target.needs_body != body:
                continue
            if target in removed:
                continue
            items = view.target_items(target)
            subjects: list[str] | None = None
            holding: list[int] | None = None
            if len(items) > 2 and cf.unit_probe is not None and not rule.negate:
                unit_text = self._unit_text(cf, view, target)
                if not cf.unit_probe.found(unit_text):
                    continue
                # The group's transforms commute with the join, so the transformed values are
                # the pieces of the transformed join — unless a value held the join character.
                separator = cf.group.separator  # type: ignore[union-attr]
                pieces = unit_text.split(separator)
                if len(pieces) == len(items):
                    subjects = pieces
                    if len(items) >= _VALUES_LISTED_FROM:
                        # Only a value the probe finds something in can match: a JSON body
                        # with one apostrophe had each of its hundred values checked.
                        holding = cf.unit_probe.pieces_holding(unit_text, separator)
            for index, (name, value) in (
                enumerate(items) if holding is None else ((i, items[i]) for i in holding)
            ):
                if (
                    removed
                    and Target(target.kind, name.lower() if target.kind == "headers" else name)
                    in removed
                ):
                    continue
                counted += 1
                if rule.operator == "count":
                    continue
                subject = (
                    subjects[index] if subjects is not None else view.transformed(value, chain)
                )
                hit = cf.test(subject, deadline)
                if rule.negate:
                    hit = None if hit is not None else subject
                if hit is not None:
                    return (_label(target, name), hit)
        if rule.operator == "count":
            comparison: Comparison = rule.argument
            holds = comparison.holds(counted)
            if holds != rule.negate:
                return (" ".join(str(t) for t in rule.targets), f"count={counted}")
        return None

    @staticmethod
    def _json_may_match(cf: CompiledFilter, view: RequestView, deadline: float) -> bool:
        """Whether a filter that reads only a body's values and names (see json_precheck) may
        match one of them; False only when it cannot, and the body is then not parsed. In a
        JSON body, it is checked on texts that hold every value and name parse_body gives:
        each object key json.loads finds, for a filter on names only (json_object_keys), else
        every string and number of a body without escapes (json_texts). What parse_body costs
        is its walk over every value in Python, two thirds of it on a 2 KB body: a newline
        anywhere wakes the filter for CR or LF in a name (921110), an apostrophe the SQL
        tokenizer's filter (942100). True for anything else: the full check decides."""
        if not is_json(view.media_type):
            return True
        keys = cf.json_precheck == "keys"
        memo_key = _JSON_KEYS if keys else _JSON_TEXTS
        memo = view.memo
        texts: dict[str, None] | None = memo.get(memo_key, _UNKNOWN)
        if texts is _UNKNOWN:
            found = (json_object_keys if keys else json_texts)(view.body or b"")
            texts = memo[memo_key] = None if found is None else dict.fromkeys(found)
        if texts is None:
            return True
        group = cf.group
        probe = cf.unit_probe
        if probe is not None and group is not None:
            # As _check rules out a target's values: one probe over the texts joined, then
            # only the texts it finds something in, checked.
            joined = Engine._joined_as_scanned(group, view, texts)
            if not probe.found(joined):
                return False
            pieces = joined.split(group.separator)
            holding = (
                probe.pieces_holding(joined, group.separator) if len(pieces) == len(texts) else None
            )
            if holding is None:
                return True
            return any(cf.test(pieces[i], deadline) is not None for i in holding)
        if not keys:
            return True  # a check per text, of some hundreds, would cost what the parse does
        chain = cf.chain
        test = cf.test
        return any(test(view.transformed(key, chain), deadline) is not None for key in texts)

    @staticmethod
    def _unit_text(cf: CompiledFilter, view: RequestView, target: Target) -> str:
        """One target's values, transformed and joined the way its group scans them."""
        group = cf.group
        assert group is not None
        if group.per_value:
            return Engine._joined_as_scanned(
                group, view, [value for _, value in view.target_items(target)]
            )
        return view.transformed(view.joined((target,), group.separator), group.on_joined)

    @staticmethod
    def _joined_as_scanned(group: ChainGroup, view: RequestView, values: Iterable[str]) -> str:
        """Values transformed and joined the way the group scans them."""
        per_value = group.per_value
        joined = group.separator.join([view.transformed(value, per_value) for value in values])
        return view.transformed(joined, group.on_joined)

    # -- decision -------------------------------------------------------------------------------

    def decide(self, matches: list[Match]) -> Decision:
        """Turn matches into a decision: allow rules win, then block actions, then the score."""
        threshold = self.settings.anomaly_threshold
        score = enforced_score = 0
        would_block = enforced_block = False
        for m in matches:
            if m.action == "allow" and not m.detect_only:
                return Decision(
                    "allow", 200, 0, False, matches, reason=f"allowed by rule {m.rule_id}"
                )
            if m.action == "block":
                would_block = True
                enforced_block = enforced_block or not m.detect_only
            elif m.action == "score":
                score += m.score
                if not m.detect_only:
                    enforced_score += m.score
        would_block = would_block or score >= threshold
        if enforced_block or enforced_score >= threshold:
            return Decision("block", 403, score, True, matches)
        if matches:
            return Decision("log", 200, score, would_block, matches)
        return Decision("allow", 200, 0, False, matches)

    def overrun_matches(
        self, view: RequestView, prior: list[Match], found: list[Match], *, body: bool
    ) -> list[Match] | None:
        """What decides a request whose evaluation of a phase overran its time budget, when
        what it found before the overrun (`found`, after the earlier phase's `prior`) does:
        those matches, when they already make a block, as the filters not yet evaluated can
        only add to a score or a block. The one thing that could still undo a block is an
        allow filter: those of the phase are checked here, each within a fresh budget, and
        their matches returned with the rest (the decision then allows). None when the
        matches found do not block, or an allow filter overruns too: on_error decides.

        Why: an overrun that let through what was already found would make padding an attack
        with text slow to inspect a way past the WAF, with `on_error: open`."""
        if self.decide(prior + found).outcome != "block":
            return None
        allowed: list[Match] = []
        deadline = time.perf_counter() + self.time_budget_s
        for cf in self._allow_filters:
            if _reads_phase(cf.rule, body):
                try:
                    self._confirm(cf, view, deadline, allowed, body=body)
                except EvaluationTimeout:
                    return None
        return found + allowed


def _compile_set(sources: list[str], separator: str) -> Scanner:
    return Scanner([anchored_at_joins(source, separator) for source in sources])


def _scanner_with_separator(sources: list[str], chain: tuple[str, ...]) -> tuple[Scanner, str]:
    """The group's RE2 set and the character that joins values for it.

    Any joining character gives correct results (a match across a join is dropped by the
    confirmation, and anchors are widened to match at joins); the one chosen is one that no
    pattern matches on its own or between ordinary characters, so that a rule about NUL bytes
    or control characters does not flag every request for confirmation."""
    for sep in JOIN_CHARACTERS:
        if sep == "\x00" and "remove_nulls" in chain:
            continue
        scanner = _compile_set(sources, sep)
        probes = (sep, sep * 3, f"a{sep}a", f"a {sep} a", f"1{sep}1")
        if not any(scanner.Match(probe.encode()) for probe in probes):
            return scanner, sep
    return _compile_set(sources, SEPARATOR), SEPARATOR


def _matches_empty(source: str) -> bool:
    return re2.compile(source, re2_options()).search("") is not None


def _signature_only(cf: CompiledFilter) -> bool:
    """Whether the filter's verdict depends on the request line and named headers alone."""
    rule = cf.rule
    return (
        not cf.exclusions
        and rule.operator != "count"
        and all(
            t.kind in ("method", "http_version") or (t.kind == "headers" and t.name is not None)
            for t in rule.targets
        )
    )


def _args_absent(cf: CompiledFilter, raw: bytes) -> bool:
    """Whether none of the named body fields the filter reads can be in the body: a name
    appears in it as it is, unless something there is encoded."""
    if not raw:
        return True
    # A one-byte search runs at memchr speed, a two-byte one several times slower: "&" first.
    # raw.find(x), not `x in raw`, for the reason transforms.PERCENT gives.
    find = raw.find
    if PERCENT in raw or PLUS in raw or BACKSLASH in raw or (AMPERSAND in raw and find(b"&#") >= 0):
        return False  # a name could be spelled encoded: parse and look
    return all(find(name) < 0 for name in cf.named_args)


def _reads_named_body_fields_only(cf: CompiledFilter) -> bool:
    targets = [t for t in cf.rule.targets if t.needs_body]
    return bool(targets) and all(t.kind == "body" and t.name is not None for t in targets)


def _names_probe(names: tuple[bytes, ...]) -> str:
    """An RE2 pattern for _args_absent's test, and _no_head_args's: a name as it is, or an
    encoding (then a name could be spelled otherwise). One pass in C: a Python regex
    alternating them tried every branch at every position (about 10k instructions for a
    60-byte query)."""
    spelled = "|".join(re.escape(name.decode("latin-1")) for name in sorted(names))
    return r"[%+\\]|&#|" + spelled


def _position(cf: CompiledFilter) -> int:
    return cf.position


# whole.get()'s answer for a group not scanned on its own (a set no kind is in).
_NOT_WHOLE: frozenset[str] = frozenset({"(not scanned on its own)"})


def _reads_any(cf: CompiledFilter, kinds: frozenset[str]) -> bool:
    """Whether a filter reads a head target of these kinds (or one the parts do not map)."""
    return any(
        t.kind in kinds or t.kind not in HEAD_KINDS for t in cf.rule.targets if not t.needs_body
    )


# The one media type whose body can hold uploaded files.
_FILES_MEDIA_TYPE = "multipart/form-data"


def _has_files(view: RequestView) -> bool:
    """Whether the body can hold uploaded files (see _FILES_MEDIA_TYPE)."""
    return view.media_type == _FILES_MEDIA_TYPE


def _reads_phase(rule: FilterRule, body: bool) -> bool:
    return any(t.needs_body == body for t in rule.targets)


def _sievable(rule: FilterRule, kinds: frozenset[str], body: bool) -> bool:
    """Whether every target the rule reads in this phase is held by the phase's sieve text."""
    return all(t.kind in kinds for t in rule.targets if t.needs_body == body)


def _label(target: Target, name: str) -> str:
    if target.name is not None:
        return str(target)
    if target.kind in ("args", "headers", "cookies", "body") and name:
        return f"{target.kind}:{name}"
    return target.kind


def compile_condition(rule: FilterRule) -> Callable[[RequestView], bool]:
    """A filter as a yes/no condition on the request head (a rate limit's `match.when`)."""
    engine = Engine(Ruleset(settings=Settings(), filters=(rule,)))
    (group,) = engine.groups
    (compiled,) = (*group.set_filters, *group.direct_head)

    def condition(view: RequestView) -> bool:
        deadline = time.perf_counter() + 0.05
        return engine._check(compiled, view, deadline, False) is not None

    return condition
