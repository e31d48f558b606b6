"""Which kind of file a YAML document is (protocol, station or schedule), and a one-line message
when it is not the kind that was expected: an empty or comment-only file, a list or a single value
at the top level, a JSON Schema, or a file of another kind."""

from __future__ import annotations

from typing import Any

from harness.common.errors import UserError

KINDS = ("protocol", "station", "schedule")
# keys that only a file of this kind has at its top level
_MARKS = {
    "protocol": ("protocol", "steps", "acceptance", "requires"),
    "schedule": ("schedule", "jobs", "timezone", "runs_dir"),
    "station": ("name", "devices", "roles", "instrument", "safety", "micromanager"),
}
_LOOKS = {
    "protocol": "keys such as protocol:, title: and steps: (see protocols/*.yaml)",
    "station": "keys such as name:, devices: and roles: (see configs/simulated.yaml)",
    "schedule": "keys such as schedule:, timezone:, station: and jobs: (see configs/schedule-simulated.yaml)",
}


def _shape_problem(doc: Any) -> str:
    """Why the document cannot be any of the three kinds ("" if it can)."""
    if doc.top == "empty":
        return "the file is empty (or has only comments)"
    if doc.top == "list":
        return "the file holds a list at its top level, not keys and values"
    if doc.top == "scalar":
        return f"the file holds a single value ({str(doc.data)[:40]!r}), not keys and values"
    if isinstance(doc.data, dict) and ("$schema" in doc.data or "$defs" in doc.data):
        return "this is a JSON Schema (it has '$schema'): it describes a file, it is not one"
    return ""


def _kinds_marked(data: dict[Any, Any]) -> list[str]:
    return [kind for kind in KINDS if any(k in data for k in _MARKS[kind])]


def guess_kind(doc: Any) -> str:
    """The kind of file ``doc`` is; a UserError if it is none of them."""
    problem = _shape_problem(doc)
    if problem:
        keys = ", ".join(_MARKS[k][0] + ":" for k in KINDS)
        raise UserError(f"{doc.path}:1: {problem}; expected a protocol, station or schedule file (YAML with {keys} at the top)")
    marked = _kinds_marked(doc.data)
    if "protocol" in marked:
        return "protocol"
    if "schedule" in marked:
        return "schedule"
    if "station" in marked:
        return "station"
    keys = ", ".join(str(k) for k in list(doc.data)[:5])
    raise UserError(f"{doc.path}:1: not a protocol, station or schedule file: none of its top-level keys ({keys}) is one of theirs; "
                    f"a protocol has {_LOOKS['protocol']}, a station {_LOOKS['station']}, a schedule {_LOOKS['schedule']}")


def check_kind(doc: Any, expected: str) -> None:
    """Refuse, in one line, a document that is not a ``expected`` file at all."""
    if expected not in KINDS:
        return
    problem = _shape_problem(doc)
    if not problem:
        marked = _kinds_marked(doc.data)
        if marked and expected not in marked:
            other = marked[0]
            key = next(k for k in _MARKS[other] if k in doc.data)
            problem = f"this looks like a {other} file (it has '{key}:')"
    if problem:
        raise UserError(f"{doc.path}:1: {problem}; expected a {expected} file: YAML with {_LOOKS[expected]}")
