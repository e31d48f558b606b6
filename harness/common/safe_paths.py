"""Names a user writes that become file names, and paths that must stay inside their folder.

``plain_name_problem`` says why a name cannot be a file name ("" if it can): a plain name is
letters, digits, ``-``, ``_`` and ``.``, does not start with a dot, contains no ``..``, is not a
Windows reserved device name (``CON``, ``NUL``, ``COM1``..., also with an extension: ``nul.txt``)
and is at most ``MAX_NAME`` characters. ``PlainName`` is the pydantic type for such a field; a
``$variable`` in it (``power_$line``) is allowed there and the name is checked again once the
variable is substituted (harness/protocol/plan.py).

``inside(folder, name)`` is the last line of defence: every writer that creates a file in a run
folder (or a scheduler state folder) gets its path from it, and it refuses any name whose resolved
path is not inside the folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

from harness.common.errors import UserError

MAX_NAME = 64
_PLAIN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_VARIABLE = re.compile(r"\$([A-Za-z_]\w*)")
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {f"{p}{d}" for p in ("COM", "LPT") for d in "123456789"}


class UnsafePath(UserError):
    """A path that would leave the folder it belongs in."""


def plain_name_problem(name: Any) -> str:
    """Why ``name`` cannot be used as (part of) a file name; "" if it can."""
    if not isinstance(name, str):
        return "a name must be text"
    if not name:
        return "a name must not be empty"
    if len(name) > MAX_NAME:
        return f"a name is at most {MAX_NAME} characters (this one has {len(name)})"
    if "/" in name or "\\" in name:
        return "a name must not contain a path separator ('/' or '\\'): it becomes a file name inside the run folder"
    if name.startswith("."):
        return "a name must not start with '.'"
    if ".." in name:
        return "a name must not contain '..'"
    if not _PLAIN.match(name):
        bad = sorted({ch for ch in name if not (ch.isascii() and (ch.isalnum() or ch in "-_."))})
        return f"a name may contain only letters, digits, '-', '_' and '.' (not {' '.join(repr(c) for c in bad)})"
    if name.split(".")[0].upper() in _RESERVED:
        return f"{name.split('.')[0]!r} is a reserved device name on Windows"
    return ""


def check_plain_name(name: str) -> str:
    problem = plain_name_problem(name)
    if problem:
        raise ValueError(f"{name!r}: {problem}")
    return name


def _check_with_variables(name: str) -> str:
    """A name that may hold ``$variables``: checked with each variable as a placeholder now, and in
    full after substitution (when the step is validated again with its values)."""
    if "$" in name:
        placeholder = _VARIABLE.sub("v", name)
        problem = plain_name_problem(placeholder)
        if problem:
            raise ValueError(f"{name!r}: {problem}")
        return name
    return check_plain_name(name)


_SCHEMA = {"type": "string", "pattern": r"^[A-Za-z0-9_$-][A-Za-z0-9_.$-]*$", "maxLength": MAX_NAME,
           "description": f"a plain name (letters, digits, - _ .; no leading dot, no '..'; at most {MAX_NAME} characters); becomes a file name"}

PlainName = Annotated[str, AfterValidator(check_plain_name), WithJsonSchema({**_SCHEMA, "pattern": r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"})]
PlainNameOrVariables = Annotated[str, AfterValidator(_check_with_variables), WithJsonSchema(_SCHEMA)]


def inside(folder: str | Path, name: str) -> Path:
    """``folder / name``, refused unless it resolves to a path inside ``folder`` (symbolic links
    followed) and ``name`` is relative."""
    folder = Path(folder)
    if not isinstance(name, str) or not name or "\x00" in name:
        raise UnsafePath(f"refused to write {name!r} in {folder}: not a file name")
    candidate = Path(name)
    if candidate.is_absolute() or candidate.drive or candidate.root:
        raise UnsafePath(f"refused to write {name!r} in {folder}: an absolute path")
    base = folder.resolve()
    target = (base / candidate).resolve()
    if target == base or base not in target.parents:
        raise UnsafePath(f"refused to write {name!r}: it would be outside {folder}")
    return folder / candidate
