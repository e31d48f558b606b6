"""What the image analyses read of an OME-TIFF stack besides the frame log: one page as an array,
an attribute of its OME ``Pixels`` (read with lxml: ome-types takes about 1 s per 1000 planes to parse
the whole XML), and its saturation level. Shared by the analyses' packages; nothing is written."""

from __future__ import annotations

from typing import cast

import numpy as np
import tifffile
from lxml import etree

from harness.analysis.pixel_quality import SaturationLevel, saturation_level


def page(tif: tifffile.TiffFile, index: int) -> np.ndarray:
    """Page ``index`` (an IFD number of the frame log) as an array."""
    return cast(tifffile.TiffPage, tif.pages[index]).asarray()


def pixels_attribute(tif: tifffile.TiffFile, name: str) -> str | None:
    """An attribute of the stack's first OME ``Pixels`` element (None: no such attribute or element)."""
    root = etree.fromstring((tif.ome_metadata or "").encode("utf-8"))
    pixels = next(root.iter("{*}Pixels"), None)
    return pixels.get(name) if pixels is not None else None


def stack_saturation(tif: tifffile.TiffFile) -> SaturationLevel:
    """The stack's saturation level (OME Pixels SignificantBits, else the pages' type)."""
    bits = pixels_attribute(tif, "SignificantBits")
    return saturation_level(int(bits) if bits and bits.isdigit() else None, cast(tifffile.TiffPage, tif.pages[0]).dtype)
