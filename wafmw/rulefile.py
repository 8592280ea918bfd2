"""The declaration of the rule file format (docs/rule-format.md) and its load-time limits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .bots import CONFIG_SCHEMA as BOTS_CONFIG_SCHEMA
from .model import ALL_TARGETS, COMPARATORS, NAMED_TARGETS, OPERATORS, SEVERITY_SCORES
from .ratelimit import STRATEGIES
from .schema import AnyOf, Anything, Bool, Enum, Int, List, MapOf, Num, Obj, Spec, Str
from .transforms import TRANSFORMS

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits applied while loading: set by the caller, never by the (untrusted) file."""

    max_file_bytes: int = 2 * 1024 * 1024
    max_files: int = 64
    max_filters: int = 20_000
    max_pattern_length: int = 8192
    max_list_items: int = 100_000
    max_yaml_nodes: int = 1_000_000
    max_depth: int = 32
    max_cases_per_rule: int = 50


DEFAULT_LIMITS = Limits()


def _target_problem(value: str) -> str | None:
    kind, sep, name = value.partition(":")
    if kind not in ALL_TARGETS:
        return f"unknown target {value!r}"
    if sep:
        if kind not in NAMED_TARGETS:
            return f"target {kind!r} cannot be narrowed to a name"
        if not name:
            return f"target {value!r} needs a name after ':'"
    return None


TARGET_PATTERN = (
    "^(" + "|".join(sorted(ALL_TARGETS)) + ")$|^(" + "|".join(sorted(NAMED_TARGETS)) + "):.+$"
)


def _spec(limits: Limits) -> Obj:
    comparison = Obj(
        fields={op: Int(minimum=0) for op in COMPARATORS},
        one_of_keys=frozenset(COMPARATORS),
        exactly_one=True,
        description="exactly one comparison",
    )
    pattern = Str(min_length=1, max_length=limits.max_pattern_length)
    word_list = AnyOf(
        options=(
            (list, List(items=pattern, min_items=1, max_items=limits.max_list_items)),
            (str, Str(pattern=r"^\$[A-Za-z_][A-Za-z0-9_.-]*$", description="a $list reference")),
        )
    )
    header_pair = List(items=Str(), min_items=2, max_items=2)
    case = Obj(
        fields={
            "method": Str(min_length=1, max_length=32),
            "path": Str(min_length=1, max_length=65536),
            "headers": AnyOf(
                options=(
                    (dict, MapOf(values=Str(), key_pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")),
                    (list, List(items=header_pair)),
                )
            ),
            "body": Str(max_length=1024 * 1024),
        },
        description="a request",
    )
    cases = Obj(
        fields={
            "match": List(items=case, max_items=limits.max_cases_per_rule),
            "no_match": List(items=case, max_items=limits.max_cases_per_rule),
        }
    )
    mode_override = Enum(values=("enforce", "detect"))
    on_error = Enum(values=("open", "closed"))
    filter_rule = Obj(
        fields={
            "id": Int(minimum=1, maximum=999_999_999),
            "msg": Str(min_length=1, max_length=512),
            "tags": List(items=Str(min_length=1, max_length=128), max_items=32),
            "paranoia": Int(minimum=1, maximum=4),
            "severity": Enum(values=tuple(SEVERITY_SCORES)),
            "score": Int(minimum=0, maximum=1000),
            "action": Enum(values=("score", "block", "log", "allow")),
            "mode": mode_override,
            "on_error": on_error,
            "targets": List(
                items=Str(is_valid=_target_problem, pattern=TARGET_PATTERN),
                min_items=1,
                max_items=64,
            ),
            "transforms": List(items=Enum(values=tuple(sorted(TRANSFORMS))), max_items=16),
            "regex": pattern,
            "contains": pattern,
            "contains_any": word_list,
            "equals": Str(max_length=limits.max_pattern_length),
            "starts_with": pattern,
            "ends_with": pattern,
            "length": comparison,
            "count": comparison,
            "detect": Str(min_length=1, max_length=64, description="a built-in detector"),
            "negate": Bool(),
            "cases": cases,
        },
        required=frozenset({"id", "msg", "targets"}),
        one_of_keys=frozenset(OPERATORS),
        exactly_one=True,
    )
    exclusion = Obj(
        fields={
            "rules": List(items=Int(minimum=1, maximum=999_999_999), min_items=1),
            "tags": List(items=Str(min_length=1), min_items=1),
            "path": Str(min_length=1, max_length=2048),
            "targets": List(
                items=Str(is_valid=_target_problem, pattern=TARGET_PATTERN), min_items=1
            ),
        }
    )
    file_entry = Obj(fields={"file": Str(min_length=1)}, required=frozenset({"file"}))
    ip_entries = List(
        items=AnyOf(options=((str, Str(min_length=1, max_length=64)), (dict, file_entry))),
        max_items=limits.max_list_items,
    )
    ip_lists = Obj(
        fields={"allow": ip_entries, "deny": ip_entries, "allow_skips_rules": Bool()},
        description="allow/deny lists of addresses and CIDR networks (docs/rate-limits.md)",
    )
    one_or_many = AnyOf(
        options=((str, Str(min_length=1)), (list, List(items=Str(min_length=1), min_items=1)))
    )
    condition = Obj(
        fields={
            key: spec
            for key, spec in filter_rule.fields.items()
            if key in ("targets", "transforms", "negate", *OPERATORS)
        },
        required=frozenset({"targets"}),
        one_of_keys=frozenset(OPERATORS),
        exactly_one=True,
        description="a filter condition on the request head (targets, transforms, operator)",
    )
    rate_limit = Obj(
        fields={
            "id": Int(minimum=1, maximum=999_999_999),
            "msg": Str(min_length=1, max_length=512),
            "tags": List(items=Str(min_length=1, max_length=128), max_items=32),
            "paranoia": Int(minimum=1, maximum=4),
            "mode": mode_override,
            "on_error": on_error,
            "match": Obj(
                fields={
                    "path": one_or_many,
                    "methods": one_or_many,
                    "hosts": one_or_many,
                    "when": condition,
                }
            ),
            "limit": Str(min_length=1, max_length=256, description='e.g. "100/minute;1000/hour"'),
            "strategy": Enum(values=tuple(STRATEGIES)),
            "key": one_or_many,
            "cost": Int(minimum=1),
            "ban_seconds": Int(minimum=0),
        },
        required=frozenset({"id", "msg", "limit"}),
        description="a rate limit (docs/rate-limits.md)",
    )
    bots = Obj(
        fields={key: Anything() for key in BOTS_CONFIG_SCHEMA},
        description="bot heuristics, score rules and the challenge (docs/bots.md)",
    )
    settings = Obj(
        fields={
            "mode": Enum(values=("enforce", "detect", "off")),
            "on_error": on_error,
            "paranoia": Int(minimum=1, maximum=4),
            "anomaly_threshold": Int(minimum=1, maximum=100_000),
            "time_budget_ms": Num(exclusive_minimum=0, maximum=60_000),
            "body": Obj(
                fields={
                    "inspect_bytes": Int(minimum=0, maximum=64 * 1024 * 1024),
                    "oversize": Enum(values=("inspect_partial", "reject")),
                    "json_max_depth": Int(minimum=1, maximum=256),
                    "max_fields": Int(minimum=1, maximum=100_000),
                }
            ),
            "rate_limit_storage": Str(min_length=1, max_length=2048),
            "rate_limit_on_error": on_error,
            "client_ip": Obj(
                fields={
                    "trusted_proxies": List(items=Str(min_length=1), max_items=10_000),
                    "header": Str(min_length=1, max_length=128),
                }
            ),
        }
    )
    list_entry = AnyOf(
        options=(
            (list, List(items=Str(min_length=1, max_length=4096), max_items=limits.max_list_items)),
            (dict, Obj(fields={"file": Str(min_length=1)}, required=frozenset({"file"}))),
        )
    )
    return Obj(
        fields={
            "wafmw": Enum(values=(FORMAT_VERSION,), description="format version"),
            "settings": settings,
            "include": List(items=Str(min_length=1, max_length=1024), max_items=limits.max_files),
            "lists": MapOf(values=list_entry, max_items=1000),
            "filters": List(items=filter_rule, max_items=limits.max_filters),
            "exclusions": List(items=exclusion, max_items=10_000),
            "rate_limits": List(items=rate_limit, max_items=1000),
            "ip_lists": ip_lists,
            "bots": bots,
        },
        required=frozenset({"wafmw"}),
        description="A wafmw rule file (docs/rule-format.md).",
    )


def rule_file_spec(limits: Limits = DEFAULT_LIMITS) -> Spec:
    return _spec(limits)


def json_schema(limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the rule file, as published in rulefile.schema.json."""
    schema = _spec(limits).json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/wafmw/wafmw/rulefile.schema.json",
        "title": "wafmw rule file",
        **schema,
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
