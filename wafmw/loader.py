"""Load rule files: read with limits, validate strictly, resolve includes and lists.

Every problem names file, line, rule id and field (see errors.Problem), and all problems of a
load are reported together, so one run of `wafmw validate` shows everything to fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .bots import BotConfig, parse_bot_config
from .client_ip import ClientIPConfig, parse_client_ip_config
from .errors import Problem, RuleFileError
from .iplist import IPLists, parse_ip_lists
from .model import (
    SEVERITY_SCORES,
    BodySettings,
    Case,
    Comparison,
    Exclusion,
    FilterRule,
    Ruleset,
    Settings,
    Target,
)
from .patterns import PatternError, check_pattern
from .ratelimit import RateLimitRule, parse_rate_limit_rule
from .rulefile import DEFAULT_LIMITS, Limits, rule_file_spec
from .yamlsafe import LDict, LList, YAMLProblem, load_yaml

PathLike = str | os.PathLike[str]

_NEGATABLE = frozenset({"equals", "starts_with", "ends_with", "length", "count"})
_FILTER_PATH = re.compile(r"^filters\[(\d+)\]\.?(.*)$")


def default_rules_path() -> Path:
    """The shipped default ruleset: inside the package when installed from a wheel, else the
    repository's rules/ directory (a checkout or an editable install)."""
    packaged = Path(__file__).resolve().parent / "rules" / "wafmw.yaml"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "rules" / "wafmw.yaml"


def load_rules(
    rules: PathLike | Sequence[PathLike] | None = None,
    *,
    mode: str | None = None,
    on_error: str | None = None,
    paranoia: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Ruleset:
    """Load, validate and resolve rule files into an immutable Ruleset.

    `rules` is one path, a list of paths, or None for the shipped default ruleset. `mode`,
    `on_error` and `paranoia` override the files' settings. Raises RuleFileError listing every
    problem found.
    """
    if rules is None:
        paths = [default_rules_path()]
    elif isinstance(rules, (str, os.PathLike)):
        paths = [Path(rules)]
    else:
        paths = [Path(p) for p in rules]
        if not paths:
            raise RuleFileError([Problem("<rules>", None, None, None, "no rule file given")])
    loader = _Loader(limits)
    for path in paths:
        loader.load_file(path, stack=(), top_level=True)
    return loader.finish(mode=mode, on_error=on_error, paranoia=paranoia)


@dataclasses.dataclass
class _RawFilter:
    data: LDict
    file: str


class _Loader:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.spec = rule_file_spec(limits)
        self.problems: list[Problem] = []
        self.loaded: set[Path] = set()
        self.files: list[str] = []
        self.digest = hashlib.sha256()
        self.settings_doc: LDict | None = None
        self.settings_file = ""
        self.settings_dir = Path(".")
        # Where each top-level-only section was first given (file as shown, line).
        self.sections_seen: dict[str, tuple[str, int]] = {}
        # Sections only the top-level file may hold: (document, file, directory).
        self.ip_lists_doc: tuple[LDict, str, Path] | None = None
        self.bots_doc: tuple[LDict, str, Path] | None = None
        self.rate_limits: list[tuple[LDict, str]] = []
        self.filters: list[_RawFilter] = []
        self.broken_ids: set[int] = set()
        self.exclusions: list[tuple[LDict, str]] = []
        self.lists: dict[str, tuple[str, ...]] = {}
        self.list_origin: dict[str, str] = {}

    def problem(
        self,
        file: str,
        line: int | None,
        message: str,
        *,
        rule_id: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problems.append(Problem(file, line, rule_id, field, message))

    # -- files ------------------------------------------------------------------------------

    def read_text(self, path: Path, shown: str) -> str | None:
        try:
            size = path.stat().st_size
            if size > self.limits.max_file_bytes:
                self.problem(
                    shown,
                    None,
                    f"file is {size} bytes; the limit is {self.limits.max_file_bytes}",
                )
                return None
            with path.open("rb") as fh:
                data = fh.read(self.limits.max_file_bytes + 1)
        except OSError as exc:
            self.problem(shown, None, f"cannot read file: {exc.strerror or exc}")
            return None
        if len(data) > self.limits.max_file_bytes:  # grew between stat and read
            self.problem(shown, None, f"file is larger than {self.limits.max_file_bytes} bytes")
            return None
        self.digest.update(len(data).to_bytes(8, "big"))
        self.digest.update(data)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            self.problem(shown, line, f"not valid UTF-8 (byte offset {exc.start})")
            return None

    def load_file(self, path: Path, *, stack: tuple[Path, ...], top_level: bool) -> None:
        shown = str(path)
        resolved = path.resolve()
        if resolved in stack:
            chain = " -> ".join(str(p) for p in (*stack, resolved))
            self.problem(shown, None, f"include cycle: {chain}", field="include")
            return
        if resolved in self.loaded:
            return  # the same file reached twice (diamond include): load it once
        if len(self.loaded) >= self.limits.max_files:
            self.problem(shown, None, f"more than {self.limits.max_files} rule files")
            return
        self.loaded.add(resolved)
        text = self.read_text(path, shown)
        if text is None:
            return
        self.files.append(shown)
        try:
            doc = load_yaml(
                text, max_nodes=self.limits.max_yaml_nodes, max_depth=self.limits.max_depth
            )
        except YAMLProblem as exc:
            self.problem(shown, exc.line, exc.message)
            return
        if not isinstance(doc, LDict):
            self.problem(shown, 1, "a rule file must be a mapping with a 'wafmw' version key")
            return
        bad_filters = self.check_structure(doc, shown)
        if bad_filters is None:
            return
        self.take(
            doc, path, shown, stack=(*stack, resolved), top_level=top_level, bad_filters=bad_filters
        )

    def check_structure(self, doc: LDict, shown: str) -> set[int] | None:
        """Report structural problems. Returns the indexes of filters that are malformed (the
        others are still checked further, so one run reports everything), or None when the
        file as a whole is too broken to go on."""
        found: list[tuple[int | None, str, str]] = []
        bad_filters: set[int] = set()
        whole_file = False
        self.spec.check(doc, "", doc.line, found)
        filters = doc.get("filters")
        for line, field_path, message in found:
            rule_id = None
            m = _FILTER_PATH.match(field_path)
            if m and isinstance(filters, list):
                index = int(m.group(1))
                item = filters[index] if index < len(filters) else None
                if isinstance(item, dict):
                    raw_id = item.get("id")
                    rule_id = raw_id if isinstance(raw_id, int) else None
                field_path = m.group(2) or f"filters[{index}]"
                bad_filters.add(index)
            else:
                whole_file = True
            self.problem(shown, line, message, rule_id=rule_id, field=field_path or None)
        return None if whole_file else bad_filters

    def take(
        self,
        doc: LDict,
        path: Path,
        shown: str,
        *,
        stack: tuple[Path, ...],
        top_level: bool,
        bad_filters: set[int],
    ) -> None:
        for section in _TOP_LEVEL_ONLY:
            if section not in doc:
                continue
            line = doc.key_lines[section]
            if not top_level:
                self.problem(
                    shown,
                    line,
                    f"{section} is only allowed in a top-level rule file, not in an included one",
                    field=section,
                )
                continue
            first = self.sections_seen.setdefault(section, (shown, line))
            if first != (shown, line):
                # Two top-level files loaded together, both with the section: one of them
                # would be ignored, and an operator reading it would believe it applies.
                self.problem(
                    shown,
                    line,
                    f"{section} is already given by {first[0]}:{first[1]}: only one of the "
                    "top-level rule files loaded together may hold it",
                    field=section,
                )
        if top_level:
            if "settings" in doc and self.settings_doc is None:
                self.settings_doc = doc["settings"]
                self.settings_file = shown
                self.settings_dir = path.parent
            if "ip_lists" in doc and self.ip_lists_doc is None:
                self.ip_lists_doc = (doc["ip_lists"], shown, path.parent)
            if "bots" in doc and self.bots_doc is None:
                self.bots_doc = (doc["bots"], shown, path.parent)
        for item in doc.get("rate_limits") or []:
            self.rate_limits.append((item, shown))
        for name, entry in (doc.get("lists") or {}).items():
            self.take_list(name, entry, path, shown, doc["lists"].key_lines[name])
        for index, item in enumerate(doc.get("filters") or []):
            if index in bad_filters:
                # Malformed: its id still counts, so a duplicate of it is not reported twice.
                if isinstance(item.get("id"), int):
                    self.broken_ids.add(item["id"])
                continue
            self.filters.append(_RawFilter(item, shown))
        for item in doc.get("exclusions") or []:
            self.exclusions.append((item, shown))
        includes: LList = doc.get("include") or LList(doc.line)
        for i, rel in enumerate(includes):
            self.load_file(path.parent / rel, stack=stack, top_level=False)
            if self.problems and self.problems[-1].field is None and self.problems[-1].line is None:
                # Point a problem with the included file itself back at the include line.
                last = self.problems[-1]
                if last.file == str(path.parent / rel):
                    self.problems[-1] = dataclasses.replace(
                        last,
                        message=f"{last.message} (included from {shown}:{includes.item_lines[i]})",
                    )

    def take_list(self, name: str, entry: Any, path: Path, shown: str, line: int) -> None:
        if name in self.lists:
            self.problem(
                shown,
                line,
                f"list {name!r} is already defined in {self.list_origin[name]}",
                field=f"lists.{name}",
            )
            return
        if isinstance(entry, dict):
            list_path = path.parent / entry["file"]
            text = self.read_text(list_path, str(list_path))
            if text is None:
                return
            items = [
                stripped
                for raw in text.splitlines()
                if (stripped := raw.strip()) and not stripped.startswith("#")
            ]
            if len(items) > self.limits.max_list_items:
                self.problem(
                    shown,
                    line,
                    f"list file {list_path} has {len(items)} items; "
                    f"the limit is {self.limits.max_list_items}",
                    field=f"lists.{name}",
                )
                return
        else:
            items = list(entry)
        self.lists[name] = tuple(items)
        self.list_origin[name] = shown

    # -- resolution -------------------------------------------------------------------------

    def finish(self, *, mode: str | None, on_error: str | None, paranoia: int | None) -> Ruleset:
        settings = self.build_settings()
        if mode is not None:
            if mode not in ("enforce", "detect", "off"):
                raise ValueError(f"mode must be enforce, detect or off, not {mode!r}")
            settings = dataclasses.replace(settings, mode=mode)  # type: ignore[arg-type]
        if on_error is not None:
            if on_error not in ("open", "closed"):
                raise ValueError(f"on_error must be open or closed, not {on_error!r}")
            settings = dataclasses.replace(settings, on_error=on_error)  # type: ignore[arg-type]
        if paranoia is not None:
            if paranoia not in (1, 2, 3, 4):
                raise ValueError(f"paranoia must be 1 to 4, not {paranoia!r}")
            settings = dataclasses.replace(settings, paranoia=paranoia)
        if len(self.filters) > self.limits.max_filters:
            self.problem(
                self.files[0] if self.files else "<rules>",
                None,
                f"{len(self.filters)} filters in all; the limit is {self.limits.max_filters}",
            )
        filters = self.build_filters()
        rate_limits = self.build_rate_limits({f.id for f in filters} | self.broken_ids)
        exclusions = self.build_exclusions({f.id for f in filters} | self.broken_ids)
        ip_lists = self.build_ip_lists()
        bots = self.build_bots()
        if self.problems:
            raise RuleFileError(self.problems)
        active = tuple(f for f in filters if f.paranoia <= settings.paranoia)
        return Ruleset(
            rate_limits=tuple(r for r in rate_limits if r.paranoia <= settings.paranoia),
            ip_lists=ip_lists,
            bots=bots,
            settings=settings,
            filters=active,
            exclusions=exclusions,
            lists=tuple(self.lists.items()),
            files=tuple(self.files),
            version=self.digest.hexdigest()[:12],
            skipped_by_paranoia=len(filters) - len(active),
        )

    def build_settings(self) -> Settings:
        doc = self.settings_doc
        if doc is None:
            return Settings()
        body = doc.get("body") or {}
        client_ip = ClientIPConfig()
        if "client_ip" in doc:
            try:
                client_ip = parse_client_ip_config(doc["client_ip"])
            except ValueError as exc:
                field, message = _split_value_error(exc)
                self.problem(
                    self.settings_file,
                    doc.key_lines["client_ip"],
                    message,
                    field=f"settings.client_ip.{field}",
                )
        return Settings(
            mode=doc.get("mode", "enforce"),
            on_error=doc.get("on_error", "open"),
            paranoia=doc.get("paranoia", 1),
            anomaly_threshold=doc.get("anomaly_threshold", 5),
            time_budget_ms=float(doc.get("time_budget_ms", 50.0)),
            body=BodySettings(**body),
            rate_limit_storage=doc.get("rate_limit_storage", "memory://"),
            rate_limit_on_error=doc.get("rate_limit_on_error", "open"),
            client_ip=client_ip,
        )

    def build_rate_limits(self, filter_ids: set[int]) -> list[RateLimitRule]:
        out: list[RateLimitRule] = []
        seen: set[int] = set()
        for d, file in self.rate_limits:
            rule_id = d.get("id") if isinstance(d.get("id"), int) else None
            match = d.get("match")
            when = match.get("when") if isinstance(match, dict) else None
            condition = None
            if when is not None:
                condition = self.build_condition(when, file, rule_id or 0)
                if condition is None:
                    continue
                d = _without_when(d)
            try:
                rule = parse_rate_limit_rule(d)
                if condition is not None:
                    rule = dataclasses.replace(rule, condition=condition)
            except ValueError as exc:
                field, message = _split_value_error(exc)
                key = field.split(".")[0].split("[")[0]
                self.problem(
                    file, d.key_lines.get(key, d.line), message, rule_id=rule_id, field=field
                )
                continue
            if rule.id in filter_ids or rule.id in seen:
                self.problem(
                    file,
                    d.key_lines.get("id", d.line),
                    "duplicate rule id (rule ids are shared by filters and rate limits)",
                    rule_id=rule.id,
                    field="id",
                )
                continue
            seen.add(rule.id)
            out.append(rule)
        return out

    def build_condition(self, when: LDict, file: str, rule_id: int) -> Callable[[Any], bool] | None:
        """A rate limit's `match.when`: a filter condition on the request head."""
        doc = LDict(when.line)
        doc.update(when)
        doc.key_lines.update({k: v for k, v in when.key_lines.items()})
        doc["id"], doc["msg"] = rule_id, "match.when"
        before = len(self.problems)
        rule = self.build_filter(doc, file, rule_id)
        if rule is None:
            for i in range(before, len(self.problems)):
                problem = self.problems[i]
                self.problems[i] = dataclasses.replace(
                    problem, field=f"match.when.{problem.field}" if problem.field else "match.when"
                )
            return None
        if rule.needs_body:
            self.problem(
                file,
                when.line,
                "rate limits are decided before the body is read: "
                "match.when cannot look at body targets",
                rule_id=rule_id,
                field="match.when.targets",
            )
            return None
        from .engine import compile_condition

        return compile_condition(rule)

    def build_ip_lists(self) -> IPLists | None:
        if self.ip_lists_doc is None:
            return None
        doc, file, directory = self.ip_lists_doc
        spec: dict[str, Any] = {}
        for key, value in doc.items():
            if key not in ("allow", "deny"):
                spec[key] = value
                continue
            items: list[str] = []
            for entry in value:
                if isinstance(entry, dict):
                    text = self.read_text(directory / entry["file"], str(directory / entry["file"]))
                    if text is None:
                        continue
                    items += [
                        stripped
                        for line in text.splitlines()
                        if (stripped := line.split("#", 1)[0].strip())
                    ]
                else:
                    items.append(entry)
            if len(items) > self.limits.max_list_items:
                self.problem(
                    file,
                    doc.key_lines[key],
                    f"{len(items)} entries; the limit is {self.limits.max_list_items}",
                    field=f"ip_lists.{key}",
                )
                return None
            spec[key] = items
        try:
            return parse_ip_lists(spec)
        except ValueError as exc:
            field, message = _split_value_error(exc)
            key = field.split("[")[0]
            self.problem(file, doc.key_lines.get(key, doc.line), message, field=f"ip_lists.{field}")
            return None

    def build_bots(self) -> BotConfig | None:
        if self.bots_doc is None:
            return None
        doc, file, directory = self.bots_doc
        try:
            return parse_bot_config(doc, directory)
        except ValueError as exc:
            field, message = _split_value_error(exc)
            key = field.split(".")[0].split("[")[0]
            self.problem(file, doc.key_lines.get(key, doc.line), message, field=f"bots.{field}")
            return None

    def build_filters(self) -> list[FilterRule]:
        out: list[FilterRule] = []
        seen: dict[int, tuple[str, int | None]] = {}
        for raw in self.filters:
            d = raw.data
            rule_id: int = d["id"]
            line = d.key_lines.get("id", d.line)
            if rule_id in seen:
                other_file, other_line = seen[rule_id]
                self.problem(
                    raw.file,
                    line,
                    f"duplicate rule id (first defined at {other_file}:{other_line})",
                    rule_id=rule_id,
                    field="id",
                )
                continue
            seen[rule_id] = (raw.file, line)
            rule = self.build_filter(d, raw.file, rule_id)
            if rule is not None:
                out.append(rule)
        return out

    def build_filter(self, d: LDict, file: str, rule_id: int) -> FilterRule | None:
        before = len(self.problems)

        def bad(field: str, message: str) -> None:
            self.problem(
                file,
                d.key_lines.get(field.split(".")[0], d.line),
                message,
                rule_id=rule_id,
                field=field,
            )

        operator = next(op for op in _operator_names() if op in d)
        value = d[operator]
        argument: Any = value
        if operator == "regex":
            try:
                check_pattern(value)
            except PatternError as exc:
                bad("regex", f"invalid pattern: {exc}")
        elif operator == "contains_any":
            if isinstance(value, str):
                name = value[1:]
                if name not in self.lists:
                    bad("contains_any", f"unknown list {value!r}")
                    argument = ()
                else:
                    argument = self.lists[name]
            else:
                argument = tuple(value)
            if not argument and len(self.problems) == before:
                bad("contains_any", "the word list is empty")
        elif operator in ("length", "count"):
            ((op, number),) = value.items()
            argument = Comparison(op, number)
        elif operator == "detect":
            from .detect import detector_names

            if value not in detector_names():
                known = ", ".join(detector_names()) or "none"
                bad("detect", f"unknown detector {value!r}; known: {known}")
        if d.get("negate") and operator not in _NEGATABLE:
            bad("negate", f"negate cannot be used with {operator}")
        severity = d.get("severity", "critical")
        match_cases = self.build_cases(d, "match", file, rule_id)
        no_match_cases = self.build_cases(d, "no_match", file, rule_id)
        if len(self.problems) > before:
            return None
        return FilterRule(
            id=rule_id,
            msg=d["msg"],
            targets=tuple(parse_target(t) for t in d["targets"]),
            operator=operator,
            argument=argument,
            transforms=tuple(d.get("transforms") or ()),
            tags=tuple(d.get("tags") or ()),
            paranoia=d.get("paranoia", 1),
            severity=severity,
            score=d.get("score", SEVERITY_SCORES[severity]),
            action=d.get("action", "score"),
            mode=d.get("mode"),
            on_error=d.get("on_error"),
            negate=bool(d.get("negate", False)),
            match_cases=match_cases,
            no_match_cases=no_match_cases,
            file=file,
            line=d.line,
        )

    def build_cases(self, d: LDict, kind: str, file: str, rule_id: int) -> tuple[Case, ...]:
        cases_doc = d.get("cases")
        if not cases_doc or kind not in cases_doc:
            return ()
        items: LList = cases_doc[kind]
        out = []
        for i, item in enumerate(items):
            headers = item.get("headers") or {}
            pairs = (
                tuple((str(k), str(v)) for k, v in headers.items())
                if isinstance(headers, dict)
                else tuple((str(k), str(v)) for k, v in headers)
            )
            path = item.get("path", "/")
            if not path.startswith("/") and not path.startswith("*"):
                self.problem(
                    file,
                    items.item_lines[i],
                    "a case path must start with '/'",
                    rule_id=rule_id,
                    field=f"cases.{kind}[{i}].path",
                )
                continue
            out.append(
                Case(
                    method=item.get("method", "GET"),
                    path=path,
                    headers=pairs,
                    body=item.get("body", ""),
                    line=items.item_lines[i],
                )
            )
        return tuple(out)

    def build_exclusions(self, known_ids: set[int]) -> tuple[Exclusion, ...]:
        out = []
        for d, file in self.exclusions:
            if "rules" not in d and "tags" not in d:
                self.problem(
                    file, d.line, "an exclusion needs 'rules' or 'tags'", field="exclusions"
                )
                continue
            if "path" not in d and "targets" not in d:
                self.problem(
                    file,
                    d.line,
                    "an exclusion needs 'path' or 'targets' (to turn a rule off "
                    "everywhere, remove it or use a kill switch)",
                    field="exclusions",
                )
                continue
            unknown = [r for r in d.get("rules", ()) if r not in known_ids]
            if unknown:
                self.problem(
                    file,
                    d.key_lines["rules"],
                    f"exclusion names unknown rule id(s): {unknown}",
                    field="exclusions.rules",
                )
                continue
            out.append(
                Exclusion(
                    rule_ids=frozenset(d.get("rules", ())),
                    tags=frozenset(d.get("tags", ())),
                    path=d.get("path"),
                    targets=tuple(parse_target(t) for t in d.get("targets", ())),
                )
            )
        return tuple(out)


# Sections that only the top-level rule file may hold: an included rule pack must not change
# the operator's settings, allow-list addresses or the bot policy.
_TOP_LEVEL_ONLY = ("settings", "ip_lists", "bots")


def _without_when(d: LDict) -> LDict:
    """A copy of a rate-limit entry without `match.when` (compiled by the loader itself)."""
    match = LDict(d["match"].line)
    match.update({k: v for k, v in d["match"].items() if k != "when"})
    match.key_lines.update(d["match"].key_lines)
    out = LDict(d.line)
    out.update(d)
    out.key_lines.update(d.key_lines)
    out["match"] = match
    return out


def _split_value_error(exc: ValueError) -> tuple[str, str]:
    """The parsers of sections raise ValueError("field: message")."""
    text = str(exc)
    field, sep, message = text.partition(": ")
    if not sep or " " in field:
        return "", text
    return field, message


def _operator_names() -> Iterable[str]:
    from .model import OPERATORS

    return OPERATORS


def parse_target(text: str) -> Target:
    kind, sep, name = text.partition(":")
    if not sep:
        return Target(kind)
    # Header names are case-insensitive; arguments, cookies and body fields are not.
    return Target(kind, name.lower() if kind == "headers" else name)
