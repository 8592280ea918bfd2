"""Kill switches: turn the WAF, a rule, a tag or a group off without deploying code.

Two sources, merged: environment variables (read on every request, so a change made inside the
process — or by a supervisor restarting it with new variables — applies on the next request) and
a small control file (YAML or JSON), re-read by the store's poller within its interval.

    WAFMW_MODE=off|detect|enforce        the whole WAF off, detect-only, or back to enforcing
    WAFMW_DISABLE_RULES=942100,941110    rule ids
    WAFMW_DISABLE_TAGS=attack-sqli       rule tags
    WAFMW_DISABLE_GROUPS=942-sqli,rate_limits
                                          a group is a rule file's name without .yaml, or one of
                                          rate_limits, bots, ip_lists

    # control file
    mode: detect
    disable_rules: [942100]
    disable_tags: [attack-xss]
    disable_groups: [rate_limits]

An invalid control file is ignored as a whole (the previous state stays) and reported in status.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .yamlsafe import YAMLProblem, load_yaml

ENV_MODE = "WAFMW_MODE"
ENV_RULES = "WAFMW_DISABLE_RULES"
ENV_TAGS = "WAFMW_DISABLE_TAGS"
ENV_GROUPS = "WAFMW_DISABLE_GROUPS"
MODES = ("enforce", "detect", "off")
SPECIAL_GROUPS = ("rate_limits", "bots", "ip_lists")
_CONTROL_KEYS = {"mode", "disable_rules", "disable_tags", "disable_groups"}
_MAX_CONTROL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class KillState:
    mode: str | None = None
    rules: frozenset[int] = frozenset()
    tags: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return self.mode is None and not (self.rules or self.tags or self.groups)

    def merge(self, other: KillState) -> KillState:
        """Union of both; for the mode, the more cautious-for-availability one wins (off >
        detect > enforce), since a kill switch exists to take the WAF out of the way."""
        modes = [m for m in (self.mode, other.mode) if m is not None]
        mode = min(modes, key=lambda m: {"off": 0, "detect": 1, "enforce": 2}[m]) if modes else None
        return KillState(
            mode, self.rules | other.rules, self.tags | other.tags, self.groups | other.groups
        )


def _split(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


# os.environ's own store, which its item assignment (and putenv through it) keeps current: read
# directly, the four variables cost four dictionary lookups instead of four encode-look-decode
# round trips through the mapping on every request. Where the store is not there to read (not
# CPython), the mapping is used.
_ENV_NAMES = (ENV_MODE, ENV_RULES, ENV_TAGS, ENV_GROUPS)
_ENV_STORE: dict[Any, Any] | None = getattr(os.environ, "_data", None)
_ENV_STORE_KEYS: tuple[Any, ...] = ()
if _ENV_STORE is not None:
    try:
        _ENV_STORE_KEYS = tuple(os.environ.encodekey(name) for name in _ENV_NAMES)
    except Exception:  # pragma: no cover - not CPython's os.environ
        _ENV_STORE = None


NO_KILL = KillState()  # no switch thrown: the state of nearly every request


def env_clear() -> bool:
    """Whether none of the variables is set: the per-request check, kept to a few lookups."""
    store = _ENV_STORE
    if store is not None:
        mode, rules, tags, groups = _ENV_STORE_KEYS
        return not (mode in store or rules in store or tags in store or groups in store)
    return not any(name in os.environ for name in _ENV_NAMES)


def env_key(environ: Mapping[str, str] = os.environ) -> tuple[str | None, ...]:
    """The variables as they are: cheap to compare on every request."""
    if environ is os.environ and _ENV_STORE is not None:
        store, (mode, rules, tags, groups) = _ENV_STORE, _ENV_STORE_KEYS
        raw = (store.get(mode), store.get(rules), store.get(tags), store.get(groups))
        if raw == (None, None, None, None):
            return (None, None, None, None)
        decode = os.environ.decodevalue
        return tuple(None if value is None else decode(value) for value in raw)
    return (
        environ.get(ENV_MODE),
        environ.get(ENV_RULES),
        environ.get(ENV_TAGS),
        environ.get(ENV_GROUPS),
    )


def from_env_key(key: tuple[str | None, ...]) -> tuple[KillState, str | None]:
    """Parse the variables; unknown values are ignored and reported (never an exception)."""
    mode_text, rules_text, tags_text, groups_text = key
    problems: list[str] = []
    mode = (mode_text or "").strip().lower() or None
    if mode is not None and mode not in MODES:
        problems.append(f"{ENV_MODE}={mode_text!r} is not one of {', '.join(MODES)}")
        mode = None
    rules: set[int] = set()
    for item in _split(rules_text):
        if item.isdigit():
            rules.add(int(item))
        else:
            problems.append(f"{ENV_RULES}: {item!r} is not a rule id")
    state = KillState(
        mode, frozenset(rules), frozenset(_split(tags_text)), frozenset(_split(groups_text))
    )
    return state, "; ".join(problems) or None


def parse_control(data: Any) -> KillState:
    """Validate a control file's content. Raises ValueError naming the bad field."""
    if data is None:
        return KillState()
    if not isinstance(data, dict):
        raise ValueError("the control file must be a mapping")
    unknown = set(data) - _CONTROL_KEYS
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    mode = data.get("mode")
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode: must be one of {', '.join(MODES)}")
    rules = data.get("disable_rules") or []
    if not isinstance(rules, list) or not all(
        isinstance(r, int) and not isinstance(r, bool) for r in rules
    ):
        raise ValueError("disable_rules: must be a list of rule ids")
    out: dict[str, frozenset[str]] = {}
    for key in ("disable_tags", "disable_groups"):
        items = data.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{key}: must be a list of strings")
        out[key] = frozenset(items)
    return KillState(mode, frozenset(rules), out["disable_tags"], out["disable_groups"])


def read_control_file(path: Path) -> KillState:
    """Read and validate a control file; a missing file means no switches. Raises ValueError."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_CONTROL_BYTES + 1)
    except FileNotFoundError:
        return KillState()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_CONTROL_BYTES:
        raise ValueError(f"larger than {_MAX_CONTROL_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if path.suffix == ".json" else load_yaml(text, max_nodes=10_000)
    except (UnicodeDecodeError, ValueError, YAMLProblem) as exc:
        raise ValueError(f"unreadable: {exc}") from None
    return parse_control(data)
