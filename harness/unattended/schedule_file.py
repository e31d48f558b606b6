"""The schedule file format (YAML): which protocols run on which station and when, for the
unattended service (``microscope-qc schedule ...``).

Times are cron expressions (``"0 2 * * *"``: 02:00 every night) or intervals (``every: 6 h``
from ``start``), always in the file's explicit ``timezone`` (IANA name). Each job states what to
do with a time missed while the machine was off (``missed: run_once`` or ``skip``), the
preconditions checked before it starts (free disk space, laser interlocks closed, the station free
within a wait) and its retries. Validated with pydantic; every mistake is reported with file, line
and field. Paths are relative to the schedule file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.common.safe_paths import PlainName, inside
from harness.common.units import Bytes, Seconds
from harness.common.yaml_source import load_yaml, validate
from harness.protocol.protocol_file import read_protocol_file
from harness.station.station_file import StationFile
from harness.unattended.notify import NotifyConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Preconditions(_Model):
    """Checked before a job starts; a job never starts half-ready."""

    free_disk: Bytes | None = Field(default=2e9, description="at least this much free space where runs are written (e.g. '5 GB'); null: not checked")
    interlock_closed: bool = Field(default=True, description="every laser that reports its interlock must report it closed")
    station_free_within: Seconds = Field(default=900.0, description="wait this long for another run on the station to end")


class Retries(_Model):
    attempts: int = Field(default=2, ge=1, description="attempts in all, the first included")
    delay: Seconds = Field(default=900.0, description="between attempts")


class Job(_Model):
    name: PlainName = Field(description="unique within the file; letters, digits, - _ . (it becomes part of file names)")
    protocol: str = Field(description="protocol file, relative to the schedule file")
    station: str | None = Field(default=None, description="station file for this job (default: the schedule's)")
    cron: str | None = Field(default=None, description="cron expression (minute hour day month weekday) in the schedule's time zone")
    every: Seconds | None = Field(default=None, description="interval, e.g. '6 h' (instead of cron)")
    start: datetime | None = Field(default=None, description="first time of an interval job (local to the time zone; default: midnight)")
    missed: Literal["run_once", "skip"] = Field(
        default="run_once", description="times missed while the service was not running: run once at start, or skip (recorded)")
    on_precondition_failure: Literal["postpone", "skip"] = Field(
        default="postpone", description="postpone: try again after retries.delay while attempts last; skip: record and wait for the next time")
    retries: Retries = Retries()
    preconditions: Preconditions | None = Field(default=None, description="instead of the schedule's")
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                CronSim(v, datetime(2026, 1, 1))
            except CronSimError as exc:
                raise ValueError(f"cron {v!r}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _when(self) -> Job:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"job {self.name!r}: give exactly one of 'cron' or 'every'")
        if self.every is not None and self.every < 60:
            raise ValueError(f"job {self.name!r}: 'every' must be at least 1 min")
        return self


class ScheduleFile(_Model):
    schedule: PlainName = Field(description="name of this schedule (letters, digits, - _ .): its state folder is <runs_dir>/.schedule/<name>")
    timezone: str = Field(description="IANA time zone of the times in this file, e.g. Europe/Berlin")
    station: str = Field(description="station file, relative to the schedule file")
    runs_dir: str = Field(default="runs", description="where run folders are written, relative to the schedule file")
    database: str | None = Field(default=None, description="results database URL (default: $MICROSCOPE_QC_DB or the user data folder)")
    preconditions: Preconditions = Preconditions()
    notify: NotifyConfig | None = None
    jobs: list[Job] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None
        return v

    @model_validator(mode="after")
    def _unique(self) -> ScheduleFile:
        names = [j.name for j in self.jobs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"job names must be unique: {', '.join(dupes)}")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Schedule:
    """A validated schedule file with its paths resolved."""

    def __init__(self, path: Path, spec: ScheduleFile) -> None:
        self.path = path
        self.spec = spec
        self.tz = spec.tz
        base = path.parent
        self.runs_dir = (base / spec.runs_dir).resolve()
        self.state_dir = inside(self.runs_dir / ".schedule", spec.schedule)

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def station_of(self, job: Job) -> Path:
        return self.resolve(job.station or self.spec.station)

    def protocol_of(self, job: Job) -> Path:
        return self.resolve(job.protocol)

    def preconditions_of(self, job: Job) -> Preconditions:
        return job.preconditions or self.spec.preconditions

    def job(self, name: str) -> Job:
        for j in self.spec.jobs:
            if j.name == name:
                return j
        from harness.common.errors import UserError

        raise UserError(f"{self.path}: no job {name!r} (jobs: {', '.join(j.name for j in self.spec.jobs)})")

    def due_times(self, job: Job, after: datetime) -> Iterator[datetime]:
        """The job's times strictly after ``after`` (aware), as aware datetimes in the schedule's zone."""
        local = after.astimezone(self.tz)
        if job.cron is not None:
            it = CronSim(job.cron, local.replace(microsecond=0))
            for t in it:
                if t > local:
                    yield t
            return
        assert job.every is not None
        step = timedelta(seconds=job.every)
        anchor = job.start.replace(tzinfo=self.tz) if job.start and job.start.tzinfo is None else job.start
        if anchor is None:
            anchor = local.replace(hour=0, minute=0, second=0, microsecond=0)
        # intervals are elapsed time: stepped in UTC, so a daylight-saving change neither doubles nor drops one
        anchor_utc, after_utc = anchor.astimezone(timezone.utc), after.astimezone(timezone.utc)
        if anchor_utc > after_utc:
            t = anchor_utc
        else:
            n = int((after_utc - anchor_utc) / step) + 1
            t = anchor_utc + n * step
        while True:
            yield t.astimezone(self.tz)
            t = t + step

    def next_due(self, job: Job, after: datetime) -> datetime:
        return next(self.due_times(job, after))

    def missed(self, job: Job, since: datetime, until: datetime) -> list[datetime]:
        """Times in (since, until]."""
        out = []
        for t in self.due_times(job, since):
            if t > until:
                break
            out.append(t)
            if len(out) > 10000:
                break
        return out


def read_schedule_file(path: str | Path) -> Schedule:
    from harness.common.errors import UserError

    doc = load_yaml(path)
    spec: ScheduleFile = validate(doc, ScheduleFile, "schedule")  # type: ignore[assignment]
    schedule = Schedule(Path(path).resolve(), spec)
    for i, job in enumerate(spec.jobs):
        checks = [("protocol", ("jobs", i, "protocol"), schedule.protocol_of(job)),
                  ("station", ("jobs", i, "station") if job.station else ("station",), schedule.station_of(job))]
        for what, loc, p in checks:
            if not p.is_file():
                field = f"jobs[{i}].{what}" if loc[0] == "jobs" else what
                raise UserError(f"{path}:{doc.line_of(loc)}: schedule: {field}: file not found: {p}")
    problems = []
    for p in sorted({schedule.protocol_of(j) for j in spec.jobs}):
        try:
            read_protocol_file(p)
        except UserError as exc:
            problems.append(f"{path}: a job's protocol is not valid:\n{exc}")
    for p in sorted({schedule.station_of(j) for j in spec.jobs}):
        try:
            validate(load_yaml(p), StationFile, "station")
        except UserError as exc:
            problems.append(f"{path}: a job's station file is not valid:\n{exc}")
    if problems:
        raise UserError("\n".join(problems))
    return schedule
