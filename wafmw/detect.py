"""Access to the built-in detectors (wafmw.detectors) behind the `detect:` operator."""

from __future__ import annotations

from typing import Any


def _registry() -> Any:
    try:
        from . import detectors
    except ImportError:  # pragma: no cover - the detectors package always ships
        return {}
    return getattr(detectors, "DETECTORS", {})


def detector_names() -> tuple[str, ...]:
    return tuple(sorted(_registry()))


def get_detector(name: str) -> Any:
    return _registry()[name]
