"""The seams of issue 12: protocol steps and writers as registries with stated contracts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.common.errors import UserError
from harness.common.safe_paths import UnsafePath
from harness.protocol.plan import expand
from harness.protocol.protocol_file import load_protocol, protocol_from_text
from harness.protocol.steps import LOOPS, STEP_KINDS, STEPS
from harness.records.writers import FRAME_WRITERS, SERIES_WRITERS, frame_path, open_series_writer, series_path
from harness.run.steps import EXECUTORS
from harness.run.steps.base import lines_off
from tests.conftest import ROOT

pytestmark = pytest.mark.fast


def test_every_step_kind_has_an_executor_and_the_schema_order_is_kept() -> None:
    assert list(STEP_KINDS) == ["laser", "meter", "wait", "sample", "move", "mark", "acquire", "specimen", "set_property", "for_each", "repeat"]
    assert set(STEPS) == set(EXECUTORS) and set(LOOPS) == {"for_each", "repeat"}


def test_a_protocol_from_its_text_expands_as_from_its_file(tmp_path: Path) -> None:
    path = ROOT / "protocols" / "flat-field.yaml"
    from_file = load_protocol(path)
    from_text = protocol_from_text(path.read_text(encoding="utf-8"), path)
    assert from_text.protocol == from_file.protocol and from_text.sha256 == from_file.sha256
    lines = ["405", "488", "561", "640"]
    a, b = expand(from_file.protocol, from_file.doc, lines), expand(from_text.protocol, from_text.doc, lines)
    assert [(x.kind, x.line, x.frames, x.context) for x in a.actions] == [(x.kind, x.line, x.frames, x.context) for x in b.actions]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bad_protocol_text_names_the_path_it_is_given() -> None:
    with pytest.raises(UserError, match=r"^kept/run\.yaml:\d+: YAML error"):
        protocol_from_text("protocol: x\ntitle: [\n", "kept/run.yaml")


def test_writers_are_chosen_by_name_and_stay_in_the_folder(tmp_path: Path) -> None:
    assert "ome-tiff" in FRAME_WRITERS and "csv" in SERIES_WRITERS
    assert frame_path("ome-tiff", tmp_path, "beads") == tmp_path / "beads.ome.tif"
    with pytest.raises(UnsafePath):
        series_path("csv", tmp_path, "../x")
    with pytest.raises(UserError, match="no frame writer 'zarr'"):
        frame_path("zarr", tmp_path, "beads")
    writer = open_series_writer("csv", series_path("csv", tmp_path, "power"), ["a", "b"])
    writer.write({"a": 1, "b": 2})
    writer.close()
    assert (tmp_path / "power.csv").read_text().splitlines() == ["a,b", "1,2"]


class _FakeRun:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.station = SimpleNamespace(lasers={k: SimpleNamespace(set_emission=lambda on, k=k: self.calls.append((k, on))) for k in ("488", "561")})

    def retry(self, what: str, fn: Any) -> tuple[Any, int]:
        return fn(), 1


@pytest.mark.parametrize("restore_on_error", [True, False])
def test_lines_off_around_an_operation(restore_on_error: bool) -> None:
    run = _FakeRun()
    with lines_off(run, ["488", "561"], "zeroing", restore_on_error=restore_on_error):  # type: ignore[arg-type]
        assert run.calls == [("488", False), ("561", False)]
    assert run.calls[2:] == [("488", True), ("561", True)]
    run.calls.clear()
    with pytest.raises(RuntimeError), lines_off(run, ["488"], "dark frames", restore_on_error=restore_on_error):  # type: ignore[arg-type]
        raise RuntimeError("the operation failed")
    assert run.calls == [("488", False)] + ([("488", True)] if restore_on_error else [])
