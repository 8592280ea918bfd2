"""The rule file's structure, declared once.

The same declaration drives two things: the strict structural validation of a loaded YAML
document (types, unknown keys, ranges, sizes, each problem with its line) and the published JSON
Schema (`wafmw schema`). Declaring it once is what keeps the two in step. Checks that need
context — pattern compilation, duplicate ids, list references, includes — live in the loader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .yamlsafe import LDict, LList

# A problem found while walking: (line, path of the field, message).
Found = tuple[int | None, str, str]


@dataclass(frozen=True)
class Spec:
    """Base of the declaration nodes."""

    description: str = ""

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def _with_doc(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.description:
            schema["description"] = self.description
        return schema


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


@dataclass(frozen=True)
class Int(Spec):
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            out.append((line, path, f"expected an integer, got {_kind(value)}"))
        elif self.minimum is not None and value < self.minimum:
            out.append((line, path, f"must be at least {self.minimum}, got {value}"))
        elif self.maximum is not None and value > self.maximum:
            out.append((line, path, f"must be at most {self.maximum}, got {value}"))

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return self._with_doc(schema)


@dataclass(frozen=True)
class Num(Spec):
    exclusive_minimum: float | None = None
    maximum: float | None = None

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            out.append((line, path, f"expected a number, got {_kind(value)}"))
        elif self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            out.append((line, path, f"must be greater than {self.exclusive_minimum}"))
        elif self.maximum is not None and value > self.maximum:
            out.append((line, path, f"must be at most {self.maximum}"))

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "number"}
        if self.exclusive_minimum is not None:
            schema["exclusiveMinimum"] = self.exclusive_minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return self._with_doc(schema)


@dataclass(frozen=True)
class Bool(Spec):
    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        if not isinstance(value, bool):
            out.append((line, path, f"expected true or false, got {_kind(value)}"))

    def json_schema(self) -> dict[str, Any]:
        return self._with_doc({"type": "boolean"})


@dataclass(frozen=True)
class Str(Spec):
    max_length: int | None = None
    min_length: int = 0
    # A JSON-Schema regex for editors, and the matching check for the validator.
    pattern: str | None = None
    is_valid: Callable[[str], str | None] | None = None

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        if not isinstance(value, str):
            out.append((line, path, f"expected a string, got {_kind(value)}"))
            return
        if len(value) < self.min_length:
            out.append((line, path, "must not be empty"))
        elif self.max_length is not None and len(value) > self.max_length:
            out.append((line, path, f"longer than the limit of {self.max_length} characters"))
        elif self.is_valid is not None:
            problem = self.is_valid(value)
            if problem:
                out.append((line, path, problem))

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        return self._with_doc(schema)


@dataclass(frozen=True)
class Enum(Spec):
    values: tuple[Any, ...] = ()

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        if isinstance(value, bool) or value not in self.values:
            allowed = ", ".join(str(v) for v in self.values)
            out.append((line, path, f"unknown value {value!r}; expected one of: {allowed}"))

    def json_schema(self) -> dict[str, Any]:
        return self._with_doc({"enum": list(self.values)})


@dataclass(frozen=True)
class List(Spec):
    items: Spec = field(default_factory=lambda: Str())
    max_items: int | None = None
    min_items: int = 0

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        if not isinstance(value, list):
            out.append((line, path, f"expected a list, got {_kind(value)}"))
            return
        if len(value) < self.min_items:
            out.append((line, path, f"needs at least {self.min_items} item(s)"))
        if self.max_items is not None and len(value) > self.max_items:
            out.append((line, path, f"has {len(value)} items; the limit is {self.max_items}"))
            return
        lines = value.item_lines if isinstance(value, LList) else [line] * len(value)
        for i, item in enumerate(value):
            self.items.check(item, f"{path}[{i}]", lines[i], out)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.items.json_schema()}
        if self.min_items:
            schema["minItems"] = self.min_items
        if self.max_items is not None:
            schema["maxItems"] = self.max_items
        return self._with_doc(schema)


@dataclass(frozen=True)
class Obj(Spec):
    """A mapping with known keys; any other key is an error."""

    fields: Mapping[str, Spec] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    # At most one of these keys may appear (and, when exactly_one, one must).
    one_of_keys: frozenset[str] = frozenset()
    exactly_one: bool = False

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        if not isinstance(value, dict):
            out.append((line, path, f"expected a mapping, got {_kind(value)}"))
            return
        line = value.line if isinstance(value, LDict) else line
        key_lines = value.key_lines if isinstance(value, LDict) else {}
        for key in self.required:
            if key not in value:
                out.append((line, _join(path, key), "is required"))
        for key, item in value.items():
            key_line = key_lines.get(key, line)
            spec = self.fields.get(key)
            if spec is None:
                out.append((key_line, _join(path, key), "unknown key"))
                continue
            spec.check(item, _join(path, key), key_line, out)
        if self.one_of_keys:
            present = sorted(k for k in value if k in self.one_of_keys)
            if len(present) > 1:
                out.append((line, path, f"only one of {', '.join(present)} may be given"))
            elif self.exactly_one and not present:
                names = ", ".join(sorted(self.one_of_keys))
                out.append((line, path, f"needs exactly one operator, one of: {names}"))

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {k: v.json_schema() for k, v in self.fields.items()},
            "additionalProperties": False,
        }
        if self.required:
            schema["required"] = sorted(self.required)
        if self.one_of_keys:
            names = sorted(self.one_of_keys)
            if self.exactly_one:
                schema["oneOf"] = [{"required": [n]} for n in names]
            else:
                schema["not"] = {
                    "anyOf": [
                        {"required": [a, b]} for i, a in enumerate(names) for b in names[i + 1 :]
                    ]
                }
        return self._with_doc(schema)


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping from free-form names (matching key_pattern) to values of one shape."""

    values: Spec = field(default_factory=lambda: Str())
    key_pattern: str = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
    max_items: int | None = None

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        import re

        if not isinstance(value, dict):
            out.append((line, path, f"expected a mapping, got {_kind(value)}"))
            return
        if self.max_items is not None and len(value) > self.max_items:
            out.append((line, path, f"has {len(value)} entries; the limit is {self.max_items}"))
        key_lines = value.key_lines if isinstance(value, LDict) else {}
        for key, item in value.items():
            key_line = key_lines.get(key, line)
            if not re.match(self.key_pattern, key):
                out.append((key_line, _join(path, key), "invalid name"))
            self.values.check(item, _join(path, key), key_line, out)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "patternProperties": {self.key_pattern: self.values.json_schema()},
            "additionalProperties": False,
        }
        if self.max_items is not None:
            schema["maxProperties"] = self.max_items
        return self._with_doc(schema)


@dataclass(frozen=True)
class AnyOf(Spec):
    """The first alternative whose *kind* fits is used to check the value."""

    options: tuple[tuple[type | tuple[type, ...], Spec], ...] = ()

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        for kinds, spec in self.options:
            if isinstance(value, kinds) and not (
                isinstance(value, bool) and bool not in _as_tuple(kinds)
            ):
                spec.check(value, path, line, out)
                return
        out.append((line, path, f"unexpected {_kind(value)}"))

    def json_schema(self) -> dict[str, Any]:
        return self._with_doc({"anyOf": [spec.json_schema() for _, spec in self.options]})


@dataclass(frozen=True)
class Anything(Spec):
    """Any value: for sections validated in depth by their own parser (e.g. `bots`)."""

    def check(self, value: Any, path: str, line: int | None, out: list[Found]) -> None:
        return None

    def json_schema(self) -> dict[str, Any]:
        return self._with_doc({})


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
