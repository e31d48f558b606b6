"""Write a file so that a crash or power loss leaves either the old or the new content, never a
torn one: write ``<name>.tmp``, fsync it, then ``os.replace`` it over the file. Every writer of
run-folder records, reports and scheduler state uses these."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_text(path: Path, text: str) -> None:
    replace_bytes(path, text.encode("utf-8"))


def replace_json(path: Path, data: Any) -> None:
    replace_text(path, json.dumps(data, indent=2, default=str))
