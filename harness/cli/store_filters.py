"""What ``history`` and ``trend`` filter the results store by, as the user may give it: a station by
the name its runs record or by its station file (or a shipped one by name), a protocol by its id or
its protocol file, a period that can hold runs. A filter that cannot match is refused (exit status 2)
with what the store holds, rather than answering "no runs match"."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.common import shipped
from harness.common.errors import UserError
from harness.store.results_store import _utc


def _is_file(text: str) -> bool:
    path = Path(text)
    return path.is_file() or path.suffix.lower() in (".yaml", ".yml")


def station(store: Any, text: str | None) -> str | None:
    """The station name runs are recorded under (``--station``)."""
    from harness.station.run_guard import station_name

    if text is None:
        return None
    if _is_file(text):
        return station_name(Path(text))
    recorded = store.names("station")
    if text not in recorded and text in (files := shipped.shipped("configs", schedules=False)):
        return station_name(files[text])
    if text not in recorded:
        raise UserError(f"no station {text!r} in the results database (stations: {', '.join(recorded) or 'none yet'}); "
                        "--station takes a station's name as its runs record it, or its station file")
    return text


def protocol(store: Any, text: str | None) -> str | None:
    """The protocol id runs are recorded under (``--protocol``)."""
    if text is None:
        return None
    if _is_file(text):
        from harness.protocol.protocol_file import read_protocol_file

        return read_protocol_file(text)[0].protocol
    recorded = store.names("protocol")
    if text not in recorded:
        raise UserError(f"no protocol {text!r} in the results database (protocols: {', '.join(recorded) or 'none yet'}); "
                        "--protocol takes a protocol id as its runs record it, or its protocol file")
    return text


def check_period(since: date | datetime | None, until: date | datetime | None, since_text: str, until_text: str) -> None:
    """``--since`` after ``--until`` (a date meaning the whole UTC day) matches nothing: refused."""
    if since is None or until is None:
        return
    empty = _utc(since) > _utc(until) if isinstance(until, datetime) else _utc(since) >= _utc(until + timedelta(days=1))
    if empty:
        raise UserError(f"--since {since_text} is after --until {until_text}: no run can match")
