"""Is an OME-TIFF stack's metadata whole: readable OME-XML on page 0 that describes exactly the pages
of the file (one Plane and one TiffData per page)? ``stack_problem`` says what is wrong ('' when
nothing is); ``damage_note`` adds what to run (analysis reports such a stack as not analysed, with
that note, and analyses the rest).

Such a stack is what an older version left when a kill or a full disk hit its in-place XML rewrite
(``TiffTag 270 invalid value offset``), or a run whose finalize could not complete (page 0 still
has the plan); its pixel pages are intact and ``microscope-qc recover FOLDER`` rebuilds the XML
from the pages, the frame log and run.json (``recovery.repair_stacks``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import tifffile
from lxml import etree


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """tifffile logs a broken tag as an ERROR; where that is what we are looking at, we say it once."""
    tif_log = logging.getLogger("tifffile")
    level = tif_log.level
    tif_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        tif_log.setLevel(level)


def stack_problem(path: Path) -> str:
    """'' when ``path`` reads with OME-XML describing its pages, else what is wrong (one phrase)."""
    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            text = tif.pages[0].description if pages else ""
    except Exception as exc:
        return f"not readable as TIFF ({type(exc).__name__}: {exc})"
    if not text.strip():
        return "its OME-XML is missing (page 0 has no readable description)"
    try:  # the element counts are enough here (lxml: milliseconds, where ome-types takes ~1 s per 1000 planes)
        root = etree.fromstring(text.encode("utf-8"))
    except Exception as exc:
        return f"its OME-XML is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
    pixels = [e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "Pixels"]
    if etree.QName(root).localname != "OME" or len(pixels) != 1:
        return "its XML is not the OME-XML of one image"
    names = [etree.QName(e).localname for e in pixels[0] if isinstance(e.tag, str)]
    planes, tiff_data = names.count("Plane"), names.count("TiffData")
    if not planes and tiff_data:
        return f"its OME-XML is still the plan, not the {pages} pages written (the run did not finish the file)"
    if not pages == planes == tiff_data:
        return f"its OME-XML describes {planes} planes, the file has {pages} pages"
    return ""


def damage_note(path: Path, folder: Path) -> str:
    """'' when the stack's metadata are whole, else what is wrong and what to run (one sentence)."""
    problem = stack_problem(path)
    if not problem:
        return ""
    return (f"{problem}; its pixel pages are kept. Rebuild its metadata from the pages, the frame log "
            f"and run.json with: microscope-qc recover {folder}")
