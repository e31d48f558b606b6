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

    def line_of(self, loc: Path_) -> int:
        """Line (1-based) of the deepest existing node on ``loc``; pydantic's union tags are skipped."""
        best = self.lines.get((), 1)
        node: Path_ = ()
        for part in loc:
            candidate = node + (part,)
            if candidate in self.lines:
                node = candidate
                best = self.lines[node]
        return best


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
    """Dotted field path; pydantic's union tags (not keys of the file nor field names) are left out."""
    parts: list[str] = []
    node: Path_ = ()
    for part in loc:
        candidate = node + (part,)
        if candidate in doc.lines or isinstance(part, int) or part in doc.schema_words:
            node = candidate
            parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[") or "(top level)"


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


def format_errors(doc: YamlDocument, exc: ValidationError, what: str) -> str:
    messages = []
    for err in exc.errors(include_url=False):
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
        elif "input" in err and err["type"] not in ("model_type", "dict_type") and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        messages.append(f"{doc.path}:{doc.line_of(loc)}: {what}: {_field_name(loc, doc)}: {msg}")
    return "\n".join(messages)
