"""wafmw: a web application firewall as pure ASGI middleware."""

from .decision import Decision, Match
from .errors import Problem, RuleFileError
from .loader import default_rules_path, load_rules
from .middleware import WAFMiddleware
from .model import Ruleset

__version__ = "0.1.0"

__all__ = [
    "Decision",
    "Match",
    "Problem",
    "RuleFileError",
    "Ruleset",
    "WAFMiddleware",
    "__version__",
    "default_rules_path",
    "load_rules",
]
