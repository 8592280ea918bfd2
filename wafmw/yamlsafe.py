"""Safe, bounded YAML loading that remembers where every value came from.

Rule files are untrusted input (see docs/rule-format.md). PyYAML's `safe_load` still expands
aliases without bound (the "billion laughs" bomb), silently keeps the last of duplicate keys and
forgets line numbers. So we let PyYAML build the node graph (`compose`, which shares aliased nodes
instead of copying them) and convert nodes ourselves: counting every value produced, refusing
duplicate keys and non-standard tags, bounding depth, and keeping each value's line. A document
whose aliases would expand past the bound is refused before conversion, by sizing the shared
node graph (linear in the file, not in the expansion).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor

# libyaml's parser when PyYAML was built with it (several times faster on large rule files);
# either way we only compose nodes and build the values ourselves.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STD_SCALARS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class YAMLProblem(Exception):
    """Raised with a message and a 1-based line number (None when unknown)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class LDict(dict[str, Any]):
    """A mapping that knows its own line and the line of each key."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}


class LList(list[Any]):
    """A sequence that knows its own line and the line of each item."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class _Converter:
    def __init__(self, max_nodes: int, max_depth: int) -> None:
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.count = 0
        self.active: set[int] = set()
        self.constructor = SafeConstructor()

    def convert(self, node: yaml.Node, depth: int) -> Any:
        line = node.start_mark.line + 1
        self.count += 1
        if self.count > self.max_nodes:
            raise YAMLProblem(
                f"document expands to more than {self.max_nodes} values (alias bomb?)", line
            )
        if depth > self.max_depth:
            raise YAMLProblem(f"nesting deeper than {self.max_depth} levels", line)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _TIMESTAMP_TAG:
                # An unquoted date is almost always meant as text in a rule file.
                return str(node.value)
            if node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false"):
                # YAML 1.1 reads yes/no/on/off as booleans, so `mode: off` would arrive as
                # False. We follow YAML 1.2: only true and false are booleans.
                return str(node.value)
            if node.tag not in _STD_SCALARS:
                raise YAMLProblem(f"YAML tag {node.tag!r} is not allowed", line)
            return self.constructor.construct_object(node)
        if id(node) in self.active:
            raise YAMLProblem("recursive alias", line)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                if node.tag != _MAP_TAG:
                    raise YAMLProblem(f"YAML tag {node.tag!r} is not allowed", line)
                return self._mapping(node, depth, line)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise YAMLProblem(f"YAML tag {node.tag!r} is not allowed", line)
                seq = LList(line)
                for item in node.value:
                    seq.append(self.convert(item, depth + 1))
                    seq.item_lines.append(item.start_mark.line + 1)
                return seq
        finally:
            self.active.discard(id(node))
        raise YAMLProblem("unsupported YAML node", line)  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, depth: int, line: int) -> LDict:
        out = LDict(line)
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YAMLProblem("merge keys ('<<') are not allowed", key_line)
            key = self.convert(key_node, depth + 1)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise YAMLProblem("mapping keys must be strings", key_line)
            key = str(key)
            if key in out:
                raise YAMLProblem(f"duplicate key {key!r}", key_line)
            out[key] = self.convert(value_node, depth + 1)
            out.key_lines[key] = key_line
        return out


def load_yaml(text: str, *, max_nodes: int = 1_000_000, max_depth: int = 32) -> Any:
    """Parse one YAML document into LDict/LList/scalars. Raises YAMLProblem."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YAMLProblem(f"invalid YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise YAMLProblem(f"invalid YAML: {exc}", None) from None
    except RecursionError:
        raise YAMLProblem("invalid YAML: nesting too deep", None) from None
    if node is None:
        return None
    _refuse_bombs(node, max_nodes, max_depth)
    return _Converter(max_nodes, max_depth).convert(node, 0)


def _refuse_bombs(root: yaml.Node, max_nodes: int, max_depth: int) -> None:
    """Refuse a document whose aliases expand to more than max_nodes values, naming the line of
    the smallest part that does so alone. The conversion would find it too, but only after
    building up to max_nodes values (about half a second of CPU, holding the GIL against the
    threads serving requests while a reload runs); sizing the graph, with each shared node
    sized once, costs a visit per distinct node. Nodes deeper than max_depth, and recursive
    aliases, are left for the conversion to refuse with its own message."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: (node, depth, children pushed yet).
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode) or depth > max_depth:
            sizes[key] = 1
            continue
        children = _children(node)
        if not expanded:
            if key in sizes or key in on_path:
                continue
            on_path.add(key)
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in children if id(child) not in sizes)
            continue
        on_path.discard(key)
        size = 1 + sum(sizes.get(id(child), 1) for child in children)
        sizes[key] = size
        if size > max_nodes:
            raise YAMLProblem(
                f"document expands to more than {max_nodes} values (alias bomb?)",
                node.start_mark.line + 1,
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
