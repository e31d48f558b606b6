"""The kill campaign (``benchmarks/kill_campaign.py``), small: kills of two protocols' runs, of
``recover`` and of the schedule service, then every folder checked. Slow (minutes): ``pytest -m slow``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_a_small_kill_campaign_finds_every_folder_complete(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.kill_campaign", "--kills", "8", "--seed", "3",
                          "--protocols", "flat-field,power-stability-short", "--keep", str(tmp_path / "campaign")],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800)
    report = json.loads((tmp_path / "campaign" / "kills.json").read_text())
    assert len(report["kills"]) == 8 and report["counts"]["run folders"] >= 8, out.stdout[-3000:]
    assert out.returncode == 0 and report["violations"] == [], out.stdout[-3000:]
    assert "no violations" in out.stdout
