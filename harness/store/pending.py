"""Records waiting for their database: a finished run that could not be recorded because the results
database was unreachable (or a lock held it too long) is queued on this computer and recorded later.

Contract:
- The queue is a folder (``pending_dir()``: ``<user data folder>/pending``, i.e.
  ``platformdirs.user_data_dir("microscope-qc")/pending``), one small JSON file per run and database,
  written atomically (``harness.common.atomic_files``): ``{"folder", "database", "run_id",
  "queued_utc", "reason"}``; ``database`` is ``connection.database_key(url)`` (driver made explicit,
  no password), so the same database spelt two ways is one queue.
- ``queue(folder, url, reason)`` files (or refreshes) the entry; ``waiting(url)`` lists the entries
  of one database, oldest first; ``remove(entry)`` deletes one (gone already: fine, another process
  delivered it); ``drop(entry, why)`` moves one out of the queue into ``dropped_dir()``
  (``<queue>/dropped``), with ``dropped_utc`` and ``dropped_because`` added, for a person to look at:
  nothing is ever delivered from there. ``note(url)``: the line that tells how many entries wait
  for a database and how many of their folders are not there now ("" if none wait).
- Delivering is the store's (``ResultsStore.deliver_pending``): importing twice is harmless, so two
  processes delivering the same entry at once record it once.
Raises ``OSError`` only when the queue folder cannot be written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import platformdirs

from harness.common.atomic_files import replace_json
from harness.records.run_folder import RunFolder
from harness.store.connection import database_key


@dataclass(frozen=True)
class Entry:
    path: Path
    folder: str
    database: str
    run_id: str | None
    queued_utc: str
    reason: str


def pending_dir() -> Path:
    return Path(platformdirs.user_data_dir("microscope-qc")) / "pending"


def dropped_dir() -> Path:
    return pending_dir() / "dropped"


def _run_id(folder: Path) -> str | None:
    try:
        value = json.loads(RunFolder(folder).run_json.read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def queue(folder: str | Path, url: str, reason: str) -> Entry:
    """File a run folder for recording into ``url`` later (see the module's contract)."""
    path, database = Path(folder).resolve(), database_key(url)
    name = hashlib.sha256(f"{database}\n{path}".encode()).hexdigest()[:24] + ".json"
    entry = Entry(pending_dir() / name, str(path), database, _run_id(path), datetime.now(timezone.utc).isoformat(), reason)
    entry.path.parent.mkdir(parents=True, exist_ok=True)
    replace_json(entry.path, {k: v for k, v in entry.__dict__.items() if k != "path"})
    return entry


def _read(path: Path) -> Entry | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return Entry(path, str(data["folder"]), str(data["database"]), data.get("run_id"), str(data.get("queued_utc", "")), str(data.get("reason", "")))
    except (OSError, ValueError, KeyError, TypeError):  # gone meanwhile (delivered), or not ours
        return None


def waiting(url: str) -> list[Entry]:
    """The entries queued for the database of ``url``, oldest first."""
    database = database_key(url)
    found = [e for e in map(_read, sorted(pending_dir().glob("*.json"))) if e is not None and e.database == database]
    return sorted(found, key=lambda e: (e.queued_utc, e.folder))


def remove(entry: Entry) -> None:
    entry.path.unlink(missing_ok=True)


def drop(entry: Entry, why: str) -> Path:
    """Move ``entry`` to ``dropped_dir()`` (see the module's contract); where it is now."""
    data = {k: v for k, v in entry.__dict__.items() if k != "path"}
    data.update(dropped_utc=datetime.now(timezone.utc).isoformat(), dropped_because=why)
    target = dropped_dir() / entry.path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_json(target, data)
    remove(entry)
    return target


def note(url: str) -> str:
    """One line for the commands that list a database's runs (see the module's contract)."""
    entries = waiting(url)
    n, missing = len(entries), sum(not Path(e.folder).is_dir() for e in entries)
    if not n:
        return ""
    them, they = ("them", "they") if n != 1 else ("it", "it")
    line = (f"note: {n} run{'s' if n != 1 else ''} queued on this computer wait{'' if n != 1 else 's'} to be recorded in this "
            f"database (it could not take {them} when {they} ended): microscope-qc import --pending")
    if missing:
        line += f"; {missing} of {them} in {'folders' if missing != 1 else 'a folder'} not there now (a drive or share not mounted?): recorded once back"
    return line
