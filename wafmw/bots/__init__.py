"""Bot heuristics: explainable signals, a 1..99 bot score, verified crawlers, behaviour.

See docs/bots.md. The core builds one `BotDetector` per ruleset from the rule file's
``bots:`` section (`parse_bot_config`), calls `BotDetector.assess` (and, when behaviour is
enabled, `assess_behaviour` + `combine`, or `evaluate` for all three) on each request, attaches
the `BotVerdict` to ``scope["wafmw.bot"]``, applies `decide` to it, and reports the answer's
status with `BotDetector.observe`.
"""

from __future__ import annotations

from .config import (
    CONFIG_SCHEMA,
    BehaviourConfig,
    BotConfig,
    BotRule,
    Crawler,
    bots_data_dir,
    default_bot_config,
    default_bot_spec,
    parse_bot_config,
)
from .detector import BotDetector, score_of
from .model import CLIENT_KINDS, SIGNALS, BotVerdict, RequestLike, Signal, SignalSpec
from .rules import BotAction, decide

__all__ = [
    "CLIENT_KINDS",
    "CONFIG_SCHEMA",
    "SIGNALS",
    "BehaviourConfig",
    "BotAction",
    "BotConfig",
    "BotDetector",
    "BotRule",
    "BotVerdict",
    "Crawler",
    "RequestLike",
    "Signal",
    "SignalSpec",
    "bots_data_dir",
    "decide",
    "default_bot_config",
    "default_bot_spec",
    "parse_bot_config",
    "score_of",
]
