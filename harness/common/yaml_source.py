"""YAML files with line numbers: load a file, and turn validation errors into messages that name the
file, the line and the field.

A file is refused in one line (file:line, never a traceback or a hang) when it is larger than
``MAX_FILE_BYTES``, nests deeper than ``MAX_DEPTH``, uses more than ``MAX_ALIASES`` aliases, or
would expand (aliases followed) to more than ``MAX_NODES`` nodes: an anchor/alias bomb is caught
on the composed node graph, before anything is constructed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.common.errors import UserError
from harness.common.file_kinds import check_kind

Path_ = tuple[Any, ...]


MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 200_000


@dataclass
class YamlDocument:
    path: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    schema_words: set[str] = field(default_factory=set)
    top: str = "mapping"  # what the file holds at its top level: mapping, empty, list or scalar

    def resolve(self, loc: Path_) -> tuple[Path_, list[str]]:
        """Map a validation error location onto the file: the deepest node that exists, and the
        field path to name. Union tags (a step kind, a union member) are dropped; a field missing
        from the file is named but has no line of its own."""
        node: Path_ = ()
        names: list[str] = []
        parts = list(loc)
        for i, part in enumerate(parts):
            candidate = node + (part,)
            following = parts[i + 1] if i + 1 < len(parts) else None
            if candidate in self.lines:
                if following is not None and candidate + (following,) not in self.lines and node + (following,) in self.lines:
                    continue  # a tag named like a key (for_each.do: 'do' is beside 'for_each')
                node = candidate
            elif names and part == names[-1]:
                continue  # a tag named like its field (steps[3].wait.wait)
            elif not (isinstance(part, int) or part in self.schema_words):
                continue  # a union member's name
            names.append(f"[{part}]" if isinstance(part, int) else str(part))
        return node, names

    def line_of(self, loc: Path_) -> int:
        """Line (1-based) of the deepest node of ``loc`` present in the file."""
        node, _ = self.resolve(loc)
        while node and node not in self.lines:
            node = node[:-1]
        return self.lines.get(node, 1)


def _index(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.tag}>"
            lines[path + (key,)] = key_node.start_mark.line + 1
            _index(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), lines)


class _TooLarge(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent overwrite hides mistakes), nesting deeper
    than MAX_DEPTH and more than MAX_ALIASES aliases, while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # the scanner looks ahead over '[[[[...' (quadratically): stop it at the same depth
        if self.flow_level >= MAX_DEPTH:
            raise _TooLarge(self.get_mark(), f"nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _TooLarge(self.peek_event().start_mark, f"more than {MAX_ALIASES} aliases (*name); this limit guards against alias bombs")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooLarge(self.peek_event().start_mark, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # an integer of 5000 digits, a date 2026-13-45
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({str(exc)[:160]})", node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *base' (explicit keys beside it override the merged ones)
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value (not a list or a mapping)", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node) -> None:
    """Refuse a node graph that expands (aliases followed) to more than MAX_NODES nodes; shared
    nodes are counted once per use, each computed once, so this is fast on a bomb too."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # post-order without recursion
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        for child in _children(node):
            if id(child) not in sizes:
                stack.append(child)
    for node in reversed(order):
        total = 1 + sum(sizes[id(c)] for c in _children(node) if sizes[id(c)] > 0)
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise _TooLarge(node.start_mark, f"expands to more than {MAX_NODES} values (aliases followed); an alias bomb?")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _compose_and_construct(text: str) -> tuple[Any, dict[Path_, int]] | None:
    """The file's data and the line of every node; None for an empty (or comment-only) file."""
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root)
        lines: dict[Path_, int] = {}
        _index(root, (), lines)  # before constructing: merge keys (<<) rewrite the node graph
        return loader.construct_document(root), lines
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> YamlDocument:
    """Read and parse one YAML file; any problem is a UserError naming file (and line)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{path}:1: file is larger than {MAX_FILE_BYTES // 1_000_000} MB; a protocol, station or schedule file is a few kB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}:1: cannot read ({exc}); the file must be UTF-8 text") from None
    return load_yaml_text(text, path)


def load_yaml_text(text: str, path: str | Path) -> YamlDocument:
    """Parse YAML text as if read from ``path`` (the name messages give); the same limits as ``load_yaml``."""
    path = Path(path)
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise UserError(f"{path}:1: file is larger than {MAX_FILE_BYTES // 1_000_000} MB; a protocol, station or schedule file is a few kB")
    try:
        result = _compose_and_construct(text)
    except _TooLarge as exc:
        raise UserError(f"{path}:{exc.mark.line + 1}: YAML refused: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise UserError(f"{path}:{line}: YAML error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}:1: YAML error: {exc}") from None
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:  # e.g. an integer of 5000 digits, a date 2026-13-45
        raise UserError(f"{path}:1: YAML error: a value cannot be read ({str(exc)[:200]})") from None
    if result is None:
        return YamlDocument(path, {}, {}, top="empty")
    data, lines = result
    top = "mapping" if isinstance(data, dict) else "list" if isinstance(data, list) else "scalar"
    return YamlDocument(path, data, lines, top=top)


def _field_name(loc: Path_, doc: YamlDocument) -> str:
    return ".".join(doc.resolve(loc)[1]).replace(".[", "[") or "(top level)"


def validate(doc: YamlDocument, model: type[BaseModel], what: str) -> BaseModel:
    """Validate ``doc.data`` against ``model``; every error names file, line and field. A file that
    is not a ``what`` file at all (empty, a list, a JSON Schema, another kind) is refused first."""
    check_kind(doc, what)
    doc.schema_words |= _field_names(model)
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise UserError(format_errors(doc, exc, what)) from None


def _field_names(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    seen = seen or set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for sub in _models_in(info.annotation):
            names |= _field_names(sub, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        out.append(annotation)
    for arg in getattr(annotation, "__args__", ()) or ():
        out.extend(_models_in(arg))
    return out


def _without_variable_alternatives(errors: list[Any]) -> list[Any]:
    """A field that also accepts a ``$variable`` fails twice; keep the error of the real type."""
    def base(err: Any) -> tuple[Any, ...]:
        return tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p == "constrained-str")))

    real = {base(e) for e in errors if "constrained-str" not in e["loc"]}
    return [e for e in errors if "constrained-str" not in e["loc"] or base(e) not in real]


def format_errors(doc: YamlDocument, exc: ValidationError, what: str) -> str:
    messages = []
    for err in _without_variable_alternatives(exc.errors(include_url=False)):
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":
            key = str(err["ctx"]["discriminator"]).strip("'")
            loc += (key,)
            msg = f"unknown {key} {err['ctx']['tag']!r} (known: {err['ctx']['expected_tags']})"
        elif err["type"] == "extra_forbidden":
            close = get_close_matches(str(loc[-1]), sorted(doc.schema_words), n=1, cutoff=0.75) if loc else []
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif err["type"] == "missing":
            msg = "missing (required)"
        elif err["type"] == "too_short" and err.get("input") in ([], {}):
            msg = "must not be empty" + (": give at least one step" if loc and loc[-1] in ("steps", "do") else "")
        else:
            msg = msg.removeprefix("Value error, ")
            shown = err.get("input")
            if "input" in err and not isinstance(shown, (dict, list)) and repr(shown) not in msg:
                msg = f"{msg} (got {shown!r})"
        messages.append(f"{doc.path}:{doc.line_of(loc)}: {what}: {_field_name(loc, doc)}: {msg}")
    return "\n".join(messages)
