"""The facility file (YAML): the microscopes of a (demo) facility, each by its schedule file, and
the facility's QC policy file. Paths are relative to the facility file. Validated with pydantic;
a mistake is reported with file, line and field (``UserError``).

A microscope may say ``service_stops_after: 18 d``: in the demo its schedule's service stops that
long after the first day (the acquisition PC was switched off), so its checks fall overdue.

``instantiate_stations`` writes a copy of each simulated station file the schedules name into a
folder, with its ``simulation.day_zero`` set to the demo's first day (the truth that changes with
the date counts its days from there), so that every run.json keeps the station text it ran with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.common.errors import UserError
from harness.common.units import Seconds
from harness.common.yaml_source import load_yaml, validate
from harness.station.station_file import StationFile
from harness.unattended.schedule_file import Schedule, read_schedule_file

DAY_ZERO_LINE = re.compile(r"^(?P<indent>[ \t]+)day_zero:[^\n#]*(?P<comment>#.*)?$", re.MULTILINE)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FacilityMicroscope(_Model):
    schedule: str = Field(description="schedule file of this microscope, relative to the facility file")
    service_stops_after: Seconds | None = Field(
        default=None, description="demo: its service stops this long after the first day (the PC was switched off); null: runs to the end")


class FacilityFile(_Model):
    facility: str = Field(min_length=1, max_length=200, description="the facility's name, for people")
    policy: str | None = Field(default=None, description="the facility's QC policy file (how often each check is due), relative to this file")
    microscopes: list[FacilityMicroscope] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> FacilityFile:
        names = [m.schedule for m in self.microscopes]
        if len(set(names)) != len(names):
            raise ValueError("a schedule file is named twice")
        return self


@dataclass(frozen=True)
class Microscope:
    """One microscope of a read facility file: its schedule (validated), station name and stop."""

    schedule_path: Path
    schedule: Schedule
    station_name: str
    stops_after_s: float | None


@dataclass(frozen=True)
class Facility:
    path: Path
    name: str
    policy: Path | None
    microscopes: list[Microscope]


def read_facility_file(path: str | Path) -> Facility:
    """The facility file and every schedule and station file it names, validated (``UserError``)."""
    doc = load_yaml(path)
    spec: FacilityFile = validate(doc, FacilityFile, "facility")  # type: ignore[assignment]
    base = Path(doc.path).resolve().parent
    policy = (base / spec.policy).resolve() if spec.policy else None
    if policy is not None and not policy.is_file():
        raise UserError(f"{doc.path}:{doc.line_of(('policy',))}: facility: policy: file not found: {policy}")
    microscopes = []
    names: dict[str, str] = {}
    for i, m in enumerate(spec.microscopes):
        file = (base / m.schedule).resolve()
        if not file.is_file():
            raise UserError(f"{doc.path}:{doc.line_of(('microscopes', i, 'schedule'))}: facility: microscopes[{i}].schedule: file not found: {file}")
        schedule = read_schedule_file(file)
        stations = {schedule.station_of(j) for j in schedule.spec.jobs}
        if len(stations) != 1:
            raise UserError(f"{file}: a microscope of a facility is one station: its jobs name {len(stations)} station files")
        station = stations.pop()
        station_spec: StationFile = validate(load_yaml(station), StationFile, "station")  # type: ignore[assignment]
        if station_spec.simulation is None:
            raise UserError(f"{station}: the demo facility runs simulated stations only (this one has no simulation section)")
        if station_spec.name in names:
            raise UserError(f"{doc.path}: station name {station_spec.name!r} is used by {names[station_spec.name]} and {file.name}")
        names[station_spec.name] = file.name
        microscopes.append(Microscope(file, schedule, station_spec.name, m.service_stops_after))
    return Facility(Path(doc.path), spec.facility, policy, microscopes)


def with_day_zero(text: str, day_zero: datetime) -> str:
    """A station file's text with its ``simulation.day_zero`` line set to ``day_zero`` (added under
    ``simulation:`` when the file has none); the rest of the text, comments included, unchanged."""
    value = day_zero.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    found = list(DAY_ZERO_LINE.finditer(text))
    if len(found) > 1:
        raise UserError(f"the station file has {len(found)} day_zero lines; the demo sets exactly one")
    if found:
        m = found[0]
        comment = f"  {m.group('comment')}" if m.group("comment") else ""
        return text[:m.start()] + f"{m.group('indent')}day_zero: {value}{comment}" + text[m.end():]
    top = re.search(r"^simulation:[ \t]*\n", text, re.MULTILINE)
    if top is None:
        raise UserError("the station file has no block 'simulation:' to set day_zero in")
    return text[:top.end()] + f"  day_zero: {value}   # set by the demo: its first day\n" + text[top.end():]


def instantiate_stations(facility: Facility, folder: Path, day_zero: datetime) -> dict[Path, Path]:
    """Copies of the facility's station files in ``folder`` with ``day_zero`` set, validated:
    shipped station file -> its copy."""
    folder.mkdir(parents=True, exist_ok=True)
    copies: dict[Path, Path] = {}
    for m in facility.microscopes:
        station = m.schedule.station_of(m.schedule.spec.jobs[0])
        copy = folder / station.name
        if copy.exists() and station not in copies:
            copy = folder / f"{station.stem}-{len(copies)}{station.suffix}"
        copy.write_text(with_day_zero(station.read_text(encoding="utf-8"), day_zero), encoding="utf-8")
        validate(load_yaml(copy), StationFile, "station")
        copies[station] = copy
    return copies
