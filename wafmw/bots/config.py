"""The compiled ``bots:`` section of a rule file, its parser and the shipped default.

Every problem raises ``ValueError("field: message")``; the loader adds file, line and rule id.
Data files are read here, at load time, with limits; the request path never touches a file.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from ..challenge import ChallengeConfig
from ..globs import GlobMatcher, compile_globs
from .model import CLIENT_KINDS, SCORE_MAX, SCORE_MIN, SIGNALS
from .networks import NetworkSet
from .useragent import SignatureList

__all__ = [
    "BEHAVIOUR_DEFAULTS",
    "CONFIG_SCHEMA",
    "BehaviourConfig",
    "BotConfig",
    "BotRule",
    "Crawler",
    "bots_data_dir",
    "default_bot_config",
    "default_bot_spec",
    "parse_bot_config",
]

logger = logging.getLogger("wafmw")

Action = Literal["block", "challenge", "log"]
OnUnknown = Literal["allow", "block", "challenge", "log"]

_MAX_FILE_BYTES: Final = 2 * 1024 * 1024
_MAX_ITEMS: Final = 100_000
_MAX_ITEM_CHARS: Final = 512
_MAX_RULES: Final = 100
_MAX_CRAWLERS: Final = 64
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def bots_data_dir() -> Path:
    """The shipped rules directory holding ``bots/``: inside the package when installed from a
    wheel, else the repository's rules/ (found like wafmw.loader.default_rules_path)."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "rules"
    if (packaged / "bots").is_dir():
        return packaged
    return package.parent / "rules"


# ----------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class Crawler:
    """A good bot recognised by User-Agent *and* source network."""

    name: str
    user_agents: SignatureList
    networks: NetworkSet


@dataclass(frozen=True, slots=True)
class BehaviourConfig:
    enabled: bool = True
    window_s: int = 300
    max_requests: int = 1500
    min_requests: int = 20
    max_4xx_share: float = 0.5
    max_distinct_paths: int = 200
    timeout_ms: int = 20
    sync_s: float = 1.0
    retry_interval_s: float = 1.0


BEHAVIOUR_DEFAULTS: Final = BehaviourConfig()


@dataclass(frozen=True, slots=True)
class BotRule:
    """An action on the bot score: fires when ``score < below`` (the request's path and method
    matching). ``on_unknown`` is what an UNKNOWN score means for this rule."""

    id: int
    msg: str
    below: int
    action: Action
    on_unknown: OnUnknown
    paths: tuple[str, ...] = ()
    except_paths: tuple[str, ...] = ()
    methods: frozenset[str] = frozenset()
    clients: frozenset[str] = frozenset()  # BotVerdict.kind values; empty = every client
    mode: Literal["enforce", "detect"] | None = None
    tags: tuple[str, ...] = ()
    path_glob: GlobMatcher | None = None
    except_glob: GlobMatcher | None = None

    def applies_to(self, method: str, path: str, kind: str | None = None) -> bool:
        if self.clients and kind not in self.clients:
            return False
        if self.methods and method.upper() not in self.methods:
            return False
        if self.path_glob is not None and self.path_glob.match(path) is None:
            return False
        return self.except_glob is None or self.except_glob.match(path) is None


@dataclass(frozen=True, slots=True)
class BotConfig:
    enabled: bool
    prior: int
    scanners: SignatureList
    http_libraries: SignatureList
    automation: SignatureList
    declared_bots: SignatureList
    crawlers: tuple[Crawler, ...]
    trap_paths: tuple[str, ...]
    trap_glob: GlobMatcher | None
    secure_context: Literal["auto", "always", "never"]
    max_header_penalty: int
    weights: tuple[tuple[int, int], ...]  # (signal id, weight) for every signal in SIGNALS
    disabled: frozenset[int]
    behaviour: BehaviourConfig
    rules: tuple[BotRule, ...]
    challenge: ChallengeConfig
    challenge_secret_ephemeral: bool = field(default=False)

    def weight(self, signal_id: int) -> int:
        for sid, weight in self.weights:
            if sid == signal_id:
                return weight
        return SIGNALS[signal_id].weight


# ------------------------------------------------------------------------------ parsing

_TOP_KEYS: Final = frozenset(
    {
        "enabled",
        "prior",
        "user_agents",
        "crawlers",
        "trap_paths",
        "secure_context",
        "max_header_penalty",
        "signals",
        "behaviour",
        "rules",
        "challenge",
    }
)
_UA_LISTS: Final = ("scanners", "http_libraries", "automation", "declared_bots")
_RULE_KEYS: Final = frozenset(
    {
        "id",
        "msg",
        "below",
        "action",
        "on_unknown",
        "paths",
        "except_paths",
        "methods",
        "clients",
        "mode",
        "tags",
    }
)
_CHALLENGE_KEYS: Final = frozenset(
    {"secret", "secret_env", "cookie_name", "ttl_s", "difficulty", "path", "nonce_ttl_s", "bind_ip"}
)
_BEHAVIOUR_KEYS: Final = frozenset(
    {
        "enabled",
        "window_s",
        "max_requests",
        "min_requests",
        "max_4xx_share",
        "max_distinct_paths",
        "timeout_ms",
        "sync_s",
    }
)


def _int(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: must be an integer")
    if not low <= value <= high:
        raise ValueError(f"{where}: must be between {low} and {high}, not {value}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: must be true or false")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: must be a non-empty string")
    return value


def _mapping(value: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be a mapping")
    for key in value:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    return value


def _read_data_file(path: Path, where: str) -> list[str]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if size > _MAX_FILE_BYTES:
        raise ValueError(f"{where}: {path} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read {path}: {exc}") from None
    items: list[str] = []
    for line in text.splitlines():
        # A comment is a line starting with '#', or ' #' after an item; a '#' inside an item
        # (e.g. "sqlmap/1.8#stable") is part of it.
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        item = item.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if item:
            items.append(item)
    return items


def _items(value: object, where: str, base_dir: Path) -> list[str]:
    """A list whose entries are strings or ``{file: path}`` (one item per line)."""
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, Sequence):
        raise ValueError(f"{where}: must be a list of strings and {{file: path}} entries")
    out: list[str] = []
    for index, entry in enumerate(value):
        at = f"{where}[{index}]"
        if isinstance(entry, str):
            if not entry.strip():
                raise ValueError(f"{at}: must be a non-empty string")
            out.append(entry.strip())
        elif isinstance(entry, Mapping):
            _mapping(entry, at, frozenset({"file"}))
            name = _str(entry.get("file"), f"{at}.file")
            path = Path(name)
            out.extend(_read_data_file(path if path.is_absolute() else base_dir / path, at))
        else:
            raise ValueError(f"{at}: must be a string or {{file: path}}")
        if len(out) > _MAX_ITEMS:
            raise ValueError(f"{where}: more than {_MAX_ITEMS} items")
    for index, item in enumerate(out):
        if len(item) > _MAX_ITEM_CHARS:
            raise ValueError(f"{where}: item {index + 1} is longer than {_MAX_ITEM_CHARS}")
    return out


def _signatures(value: object, where: str, base_dir: Path) -> SignatureList:
    items = _items(value, where, base_dir)
    for item in items:
        if item in ("^", "$", "^$"):
            raise ValueError(f"{where}: {item!r} would match every User-Agent")
    return SignatureList.build(tuple(items))


def _networks(value: object, where: str, base_dir: Path) -> NetworkSet:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in _items(value, where, base_dir):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{where}: {item!r} is not an IP network") from None
    if not nets:
        raise ValueError(f"{where}: no networks (a crawler without ranges can never verify)")
    return NetworkSet.build(tuple(nets))


def _paths(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        raise ValueError(f"{where}: must be a non-empty list of path globs")
    out: list[str] = []
    for index, item in enumerate(value):
        glob = _str(item, f"{where}[{index}]")
        if not glob.startswith(("/", "*")):
            raise ValueError(f"{where}[{index}]: {glob!r} must start with / or *")
        out.append(glob)
    return tuple(out)


def _parse_crawlers(value: object, base_dir: Path) -> tuple[Crawler, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError("crawlers: must be a list")
    if len(value) > _MAX_CRAWLERS:
        raise ValueError(f"crawlers: at most {_MAX_CRAWLERS}")
    out: list[Crawler] = []
    names: set[str] = set()
    for index, entry in enumerate(value):
        at = f"crawlers[{index}]"
        spec = _mapping(entry, at, frozenset({"name", "user_agents", "networks"}))
        for required in ("name", "user_agents", "networks"):
            if required not in spec:
                raise ValueError(f"{at}.{required}: required")
        name = _str(spec["name"], f"{at}.name")
        if not _NAME.match(name):
            raise ValueError(f"{at}.name: {name!r} must be lowercase letters, digits, . _ -")
        if name in names:
            raise ValueError(f"{at}.name: {name!r} is listed twice")
        names.add(name)
        agents = _signatures(spec["user_agents"], f"{at}.user_agents", base_dir)
        if not agents.items:
            raise ValueError(f"{at}.user_agents: must not be empty")
        out.append(Crawler(name, agents, _networks(spec["networks"], f"{at}.networks", base_dir)))
    return tuple(out)


def _parse_signals(value: object) -> tuple[dict[int, int], set[int]]:
    if not isinstance(value, Mapping):
        raise ValueError("signals: must be a mapping of signal id to {weight, enabled}")
    weights: dict[int, int] = {}
    disabled: set[int] = set()
    for raw_id, override in value.items():
        try:
            sid = int(raw_id)
        except (TypeError, ValueError):
            raise ValueError(f"signals.{raw_id}: not a signal id") from None
        spec = SIGNALS.get(sid)
        if spec is None:
            raise ValueError(f"signals.{raw_id}: unknown signal id (see docs/bots.md)")
        at = f"signals.{sid}"
        entry = _mapping(override, at, frozenset({"weight", "enabled"}))
        if "weight" in entry:
            if sid == 913118:
                raise ValueError(f"{at}.weight: computed from max_header_penalty; set that")
            weight = _int(entry["weight"], f"{at}.weight", -98, 98)
            if spec.kind == "behaviour" and weight < 0:
                # A missing behaviour signal may only lower a score, which is what makes
                # `upper_bound` an upper bound when behaviour storage is down.
                raise ValueError(f"{at}.weight: a behaviour signal's weight must be >= 0")
            weights[sid] = weight
        if "enabled" in entry and not _bool(entry["enabled"], f"{at}.enabled"):
            disabled.add(sid)
    return weights, disabled


def _parse_behaviour(value: object) -> BehaviourConfig:
    spec = _mapping(value, "behaviour", _BEHAVIOUR_KEYS)
    d = BEHAVIOUR_DEFAULTS
    sync_s = spec.get("sync_s", d.sync_s)
    if isinstance(sync_s, bool) or not isinstance(sync_s, (int, float)) or not 0 <= sync_s <= 60:
        raise ValueError("behaviour.sync_s: must be a number of seconds between 0 and 60")
    share = spec.get("max_4xx_share", d.max_4xx_share)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError("behaviour.max_4xx_share: must be a number in (0, 1]")
    return BehaviourConfig(
        enabled=_bool(spec.get("enabled", d.enabled), "behaviour.enabled"),
        window_s=_int(spec.get("window_s", d.window_s), "behaviour.window_s", 10, 86400),
        max_requests=_int(
            spec.get("max_requests", d.max_requests), "behaviour.max_requests", 1, 10**9
        ),
        min_requests=_int(
            spec.get("min_requests", d.min_requests), "behaviour.min_requests", 1, 10**9
        ),
        max_4xx_share=float(share),
        max_distinct_paths=_int(
            spec.get("max_distinct_paths", d.max_distinct_paths),
            "behaviour.max_distinct_paths",
            1,
            1000,
        ),
        timeout_ms=_int(spec.get("timeout_ms", d.timeout_ms), "behaviour.timeout_ms", 1, 5000),
        sync_s=float(sync_s),
    )


def _parse_rules(value: object, signal_ids: frozenset[int]) -> tuple[BotRule, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError("rules: must be a list")
    if len(value) > _MAX_RULES:
        raise ValueError(f"rules: at most {_MAX_RULES}")
    out: list[BotRule] = []
    ids: set[int] = set()
    for index, entry in enumerate(value):
        at = f"rules[{index}]"
        spec = _mapping(entry, at, _RULE_KEYS)
        for required in ("id", "msg", "below", "action", "on_unknown"):
            if required not in spec:
                # on_unknown is required on purpose: every rule must say what UNKNOWN means.
                raise ValueError(f"{at}.{required}: required")
        rule_id = _int(spec["id"], f"{at}.id", 1, 999_999_999)
        if rule_id in ids or rule_id in signal_ids:
            raise ValueError(f"{at}.id: {rule_id} is already used")
        ids.add(rule_id)
        msg = _str(spec["msg"], f"{at}.msg")
        below = _int(spec["below"], f"{at}.below", SCORE_MIN + 1, SCORE_MAX + 1)
        action = spec["action"]
        if action not in ("block", "challenge", "log"):
            raise ValueError(f"{at}.action: must be block, challenge or log, not {action!r}")
        on_unknown = spec["on_unknown"]
        if on_unknown not in ("allow", "block", "challenge", "log"):
            raise ValueError(
                f"{at}.on_unknown: must be allow, block, challenge or log, not {on_unknown!r}"
            )
        mode = spec.get("mode")
        if mode not in (None, "enforce", "detect"):
            raise ValueError(f"{at}.mode: must be enforce or detect, not {mode!r}")
        paths = _paths(spec["paths"], f"{at}.paths") if "paths" in spec else ()
        except_paths = (
            _paths(spec["except_paths"], f"{at}.except_paths") if "except_paths" in spec else ()
        )
        methods: frozenset[str] = frozenset()
        if "methods" in spec:
            raw = spec["methods"]
            if isinstance(raw, str):
                raw = [raw]
            if not isinstance(raw, Sequence) or not raw:
                raise ValueError(f"{at}.methods: must be a non-empty list")
            methods = frozenset(_str(m, f"{at}.methods[{i}]").upper() for i, m in enumerate(raw))
        clients: frozenset[str] = frozenset()
        if "clients" in spec:
            raw_clients = spec["clients"]
            if isinstance(raw_clients, str):
                raw_clients = [raw_clients]
            if not isinstance(raw_clients, Sequence) or not raw_clients:
                raise ValueError(f"{at}.clients: must be a non-empty list")
            for i, client in enumerate(raw_clients):
                if client not in CLIENT_KINDS:
                    raise ValueError(
                        f"{at}.clients[{i}]: {client!r} is not one of {', '.join(CLIENT_KINDS)}"
                    )
            clients = frozenset(raw_clients)
        tags: tuple[str, ...] = ()
        if "tags" in spec:
            raw_tags = spec["tags"]
            if not isinstance(raw_tags, Sequence) or isinstance(raw_tags, str):
                raise ValueError(f"{at}.tags: must be a list of strings")
            tags = tuple(_str(t, f"{at}.tags[{i}]") for i, t in enumerate(raw_tags))
        out.append(
            BotRule(
                id=rule_id,
                msg=msg,
                below=below,
                action=action,
                on_unknown=on_unknown,
                paths=paths,
                except_paths=except_paths,
                methods=methods,
                clients=clients,
                mode=mode,
                tags=tags,
                path_glob=compile_globs(paths, ignore_case=False),
                except_glob=compile_globs(except_paths, ignore_case=False),
            )
        )
    return tuple(out)


def _parse_challenge(value: object) -> tuple[ChallengeConfig, bool]:
    spec = _mapping(value, "challenge", _CHALLENGE_KEYS)
    if "secret" in spec and "secret_env" in spec:
        raise ValueError("challenge: give secret or secret_env, not both")
    ephemeral = False
    if "secret" in spec:
        secret = _str(spec["secret"], "challenge.secret").encode("utf-8")
    else:
        env = _str(spec.get("secret_env", "WAFMW_CHALLENGE_SECRET"), "challenge.secret_env")
        from_env = os.environ.get(env, "")
        if from_env:
            secret = from_env.encode("utf-8")
            if len(secret) < 16:
                raise ValueError(f"challenge.secret_env: ${env} must be at least 16 bytes long")
        else:
            # Works for one process; several workers each get their own key and refuse each
            # other's passes. The core should log BotConfig.challenge_secret_ephemeral.
            secret = secrets.token_bytes(32)
            ephemeral = True
    if len(secret) < 16:
        raise ValueError("challenge.secret: must be at least 16 bytes long")
    kwargs: dict[str, Any] = {}
    for key, low, high in (
        ("ttl_s", 60, 30 * 86400),
        ("difficulty", 1, 24),
        ("nonce_ttl_s", 10, 3600),
    ):
        if key in spec:
            kwargs[key] = _int(spec[key], f"challenge.{key}", low, high)
    if "cookie_name" in spec:
        kwargs["cookie_name"] = _str(spec["cookie_name"], "challenge.cookie_name")
    if "path" in spec:
        kwargs["path"] = _str(spec["path"], "challenge.path")
    if "bind_ip" in spec:
        kwargs["bind_ip"] = _bool(spec["bind_ip"], "challenge.bind_ip")
    try:
        config = ChallengeConfig(secret=secret, **kwargs)
    except ValueError as exc:
        raise ValueError(f"challenge.{exc}") from None
    return config, ephemeral


def parse_bot_config(spec: Mapping[str, object], base_dir: Path) -> BotConfig:
    """Compile the rule file's ``bots:`` section. ``base_dir`` resolves ``{file: …}`` entries
    (the directory of the rule file). A key left out takes its default; for the data lists
    that is the shipped file in rules/bots/."""
    section = _mapping(spec, "bots", _TOP_KEYS)
    defaults = default_bot_spec()
    shipped = bots_data_dir()
    enabled = _bool(section.get("enabled", True), "enabled")
    prior = _int(section.get("prior", 50), "prior", SCORE_MIN, SCORE_MAX)

    ua_spec = section.get("user_agents", {})
    ua = _mapping(ua_spec, "user_agents", frozenset(_UA_LISTS))
    default_ua = defaults["user_agents"]
    lists: dict[str, SignatureList] = {}
    for name in _UA_LISTS:
        if name in ua:
            lists[name] = _signatures(ua[name], f"user_agents.{name}", base_dir)
        else:
            lists[name] = _signatures(default_ua[name], f"user_agents.{name}", shipped)

    if "crawlers" in section:
        crawlers = _parse_crawlers(section["crawlers"], base_dir)
    else:
        crawlers = _parse_crawlers(defaults["crawlers"], shipped)

    if "trap_paths" in section:
        traps = _items(section["trap_paths"], "trap_paths", base_dir)
    else:
        traps = _items(defaults["trap_paths"], "trap_paths", shipped)
    for index, glob in enumerate(traps):
        if not glob.startswith("/"):
            raise ValueError(f"trap_paths: item {index + 1} ({glob!r}) must start with /")

    secure = section.get("secure_context", "auto")
    if secure not in ("auto", "always", "never"):
        raise ValueError(f"secure_context: must be auto, always or never, not {secure!r}")

    max_header_penalty = _int(section.get("max_header_penalty", 25), "max_header_penalty", 0, 98)
    weights, disabled = _parse_signals(section.get("signals", {}))
    behaviour = _parse_behaviour(section.get("behaviour", {}))
    rules = _parse_rules(section.get("rules", defaults["rules"]), frozenset(SIGNALS))
    challenge, ephemeral = _parse_challenge(section.get("challenge", {}))
    return BotConfig(
        enabled=enabled,
        prior=prior,
        scanners=lists["scanners"],
        http_libraries=lists["http_libraries"],
        automation=lists["automation"],
        declared_bots=lists["declared_bots"],
        crawlers=crawlers,
        trap_paths=tuple(traps),
        trap_glob=compile_globs(traps, ignore_case=True),
        secure_context=secure,
        max_header_penalty=max_header_penalty,
        weights=tuple(sorted((sid, weights.get(sid, s.weight)) for sid, s in SIGNALS.items())),
        disabled=frozenset(disabled),
        behaviour=behaviour,
        rules=rules,
        challenge=challenge,
        challenge_secret_ephemeral=ephemeral,
    )


def default_bot_spec() -> dict[str, Any]:
    """The shipped ``bots:`` section as a plain mapping (file paths relative to rules/).

    This is what `default_bot_config` compiles and what docs/bots.md shows as YAML."""
    return {
        "user_agents": {
            "scanners": [{"file": "bots/scanner-agents.txt"}],
            "http_libraries": [{"file": "bots/http-library-agents.txt"}],
            "automation": [{"file": "bots/automation-agents.txt"}],
            "declared_bots": [{"file": "bots/declared-bot-agents.txt"}],
        },
        "crawlers": [
            {
                "name": "googlebot",
                "user_agents": [
                    "googlebot",
                    "google-inspectiontool",
                    "googleother",
                    "storebot-google",
                ],
                "networks": [{"file": "bots/googlebot-networks.txt"}],
            },
            {
                "name": "bingbot",
                "user_agents": ["bingbot", "bingpreview", "adidxbot"],
                "networks": [{"file": "bots/bingbot-networks.txt"}],
            },
        ],
        "trap_paths": [{"file": "bots/trap-paths.txt"}],
        "rules": [
            {
                "id": 913900,
                "msg": "Automated client with hostile or lying markers (bot score below 10)",
                "below": 10,
                "action": "block",
                "on_unknown": "allow",
                "tags": ["automation"],
            },
            {
                "id": 913910,
                "msg": "Browser that does not look like one (bot score below 30) on a sign-in "
                "or account page: challenge",
                "below": 30,
                "action": "challenge",
                "on_unknown": "allow",
                "clients": ["browser"],
                # Where credential stuffing and account abuse happen. Everywhere else a
                # header-poor "browser" (a corporate proxy, an API client borrowing a browser
                # User-Agent) is scored but not interrupted; docs/bots.md shows how to widen it.
                "paths": list(CHALLENGE_PATHS),
                "tags": ["automation"],
            },
        ],
    }


CHALLENGE_PATHS: Final = (
    "/login*",
    "/signin*",
    "/sign-in*",
    "/logon*",
    "/register*",
    "/signup*",
    "/sign-up*",
    "/account*",
    "/password*",
    "/auth/*",
    "/user/login*",
    "/users/sign_in*",
    "/admin*",
    "/wp-login.php*",
    "/checkout*",
)


def default_bot_config() -> BotConfig:
    """The shipped configuration, with the data in rules/bots/."""
    return parse_bot_config(default_bot_spec(), bots_data_dir())


CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "enabled": {"type": "boolean", "default": True},
    "prior": {"type": "integer", "minimum": 1, "maximum": 99, "default": 50},
    "secure_context": {"enum": ["auto", "always", "never"], "default": "auto"},
    "max_header_penalty": {"type": "integer", "minimum": 0, "maximum": 98, "default": 25},
    "user_agents": {
        "type": "object",
        "properties": {
            name: {"type": "list of (string | {file: string})", "default": "shipped file"}
            for name in _UA_LISTS
        },
    },
    "crawlers": {
        "type": "list",
        "default": "googlebot, bingbot with the shipped range files",
        "items": {
            "name": {"type": "string", "pattern": _NAME.pattern, "required": True},
            "user_agents": {"type": "list of (string | {file: string})", "required": True},
            "networks": {"type": "list of (CIDR string | {file: string})", "required": True},
        },
    },
    "trap_paths": {"type": "list of (path glob | {file: string})", "default": "shipped file"},
    "signals": {
        "type": "object",
        "keys": "signal id 913100..913199",
        "values": {
            "weight": {"type": "integer", "minimum": -98, "maximum": 98},
            "enabled": {"type": "boolean", "default": True},
        },
    },
    "behaviour": {
        "enabled": {"type": "boolean", "default": True},
        "window_s": {"type": "integer", "minimum": 10, "maximum": 86400, "default": 300},
        "max_requests": {"type": "integer", "minimum": 1, "default": 1500},
        "min_requests": {"type": "integer", "minimum": 1, "default": 20},
        "max_4xx_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5},
        "max_distinct_paths": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200},
        "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 20},
        "sync_s": {"type": "number", "minimum": 0, "maximum": 60, "default": 1.0},
    },
    "rules": {
        "type": "list",
        "default": "913900 block below 10; 913910 challenge browsers below 30; on_unknown: allow",
        "items": {
            "id": {"type": "integer", "minimum": 1, "maximum": 999999999, "required": True},
            "msg": {"type": "string", "required": True},
            "below": {"type": "integer", "minimum": 2, "maximum": 100, "required": True},
            "action": {"enum": ["block", "challenge", "log"], "required": True},
            "on_unknown": {"enum": ["allow", "block", "challenge", "log"], "required": True},
            "paths": {"type": "list of path globs"},
            "except_paths": {"type": "list of path globs"},
            "methods": {"type": "list of strings"},
            "clients": {"type": "list", "items": {"enum": list(CLIENT_KINDS)}},
            "mode": {"enum": ["enforce", "detect"]},
            "tags": {"type": "list of strings"},
        },
    },
    "challenge": {
        "secret": {"type": "string", "minLength": 16},
        "secret_env": {"type": "string", "default": "WAFMW_CHALLENGE_SECRET"},
        "cookie_name": {"type": "string", "default": "wafmw_challenge"},
        "ttl_s": {"type": "integer", "minimum": 60, "maximum": 2592000, "default": 3600},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 24, "default": 14},
        "path": {"type": "string", "default": "/.wafmw/challenge"},
        "nonce_ttl_s": {"type": "integer", "minimum": 10, "maximum": 3600, "default": 300},
        "bind_ip": {"type": "boolean", "default": True},
    },
}
