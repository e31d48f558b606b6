"""YAML files with line numbers: load a file, and turn validation errors into messages that name the
file, the line and the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import UserError

Path_ = tuple[Any, ...]


@dataclass
class YamlDocument:
    path: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    schema_words: set[str] = field(default_factory=set)

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
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _index(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent overwrite hides mistakes)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> YamlDocument:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise UserError(f"{path}:{line}: YAML error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: YAML error: {exc}") from None
    lines: dict[Path_, int] = {}
    if root is not None:
        _index(root, (), lines)
    return YamlDocument(path, data if data is not None else {}, lines)


def _field_name(loc: Path_, doc: YamlDocument) -> str:
    return ".".join(doc.resolve(loc)[1]).replace(".[", "[") or "(top level)"


def validate(doc: YamlDocument, model: type[BaseModel], what: str) -> BaseModel:
    """Validate ``doc.data`` against ``model``; every error names file, line and field."""
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
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing (required)"
        else:
            msg = msg.removeprefix("Value error, ")
            shown = err.get("input")
            if "input" in err and not isinstance(shown, (dict, list)) and repr(shown) not in msg:
                msg = f"{msg} (got {shown!r})"
        messages.append(f"{doc.path}:{doc.line_of(loc)}: {what}: {_field_name(loc, doc)}: {msg}")
    return "\n".join(messages)
