"""Mending CSV files a crash cut short: the power series and the frame logs of a run folder.

``repair_csv`` drops a trailing partial row (no line end, or the wrong number of fields) and keeps
the header (written anew from the given columns if it was cut short itself); it returns the rows kept
and the bytes dropped, and leaves a file it cannot make sense of untouched. ``rewrite_frame_log``
writes a frame log anew from its rows. Both replace files atomically (``atomic_files``) and raise
``OSError`` only.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from harness.common.atomic_files import replace_bytes


def _records(text: str) -> Iterator[tuple[list[str], int]]:
    """CSV records with the character offset just past each (quoted fields may span lines)."""
    chunks = re.findall(r"[^\n]*\n|[^\n]+$", text)
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        for chunk in chunks:
            consumed += len(chunk)
            yield chunk

    reader = csv.reader(lines())
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error:  # garbage at the end: what follows is not a record
            return
        yield record, consumed


def repair_csv(path: Path, columns: list[str] | None = None) -> tuple[int, bytes]:
    """Drop a trailing partial row (no line end, or the wrong number of fields), keep the header
    (written anew from ``columns`` if it was cut short itself); (rows kept, bytes dropped)."""
    data = path.read_bytes()
    text = data.decode("utf-8", errors="surrogateescape")
    header: list[str] | None = None
    keep, rows, fix_cr = 0, 0, False
    for record, end in _records(text):
        complete = text[end - 1] == "\n"
        if header is None:
            if not complete:
                break
            header, keep = record, end
            continue
        if len(record) == len(header) and (complete or text[end - 1] == "\r"):
            keep, rows = end, rows + 1
            fix_cr = not complete  # cut between \r and \n: the row is whole, only its line end is short
    if header is None:  # the header itself was cut short: nothing else can follow it
        if columns is None or b"\n" in data:
            return 0, b""  # not a CSV we know how to mend: left alone
        replace_bytes(path, (",".join(columns) + "\r\n").encode("utf-8"))
        return 0, data
    base = text[:keep].encode("utf-8", errors="surrogateescape")
    if base == data and not fix_cr:
        return rows, b""
    replace_bytes(path, base + (b"\n" if fix_cr else b""))
    return rows, data[len(base):]


def rewrite_frame_log(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) or "" for k in columns})
    replace_bytes(path, buf.getvalue().encode("utf-8", errors="surrogateescape"))
