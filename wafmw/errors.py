"""The error types wafmw raises. Callers catch one type per concern."""

from __future__ import annotations

from dataclasses import dataclass

from .decision import Match


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rule file, located as precisely as we can."""

    file: str
    line: int | None
    rule_id: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.rule_id is not None:
            parts.append(f"rule {self.rule_id}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return f"{': '.join(parts)}: {self.message}"


class RuleFileError(Exception):
    """A rule file (or a set of them) was refused. `problems` lists every reason found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems]
        super().__init__(
            lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n" + "\n".join(lines)
        )


class EvaluationTimeout(Exception):
    """Evaluation ran past its time budget (or a backtracking regex past its timeout).
    `matches`: what the overrun phase had found before it (see Engine.overrun_matches)."""

    def __init__(self, rule_id: int | None = None) -> None:
        self.rule_id = rule_id
        self.matches: list[Match] = []
        super().__init__(
            "WAF evaluation exceeded its time budget" + (f" in rule {rule_id}" if rule_id else "")
        )
