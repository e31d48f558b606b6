"""``sample`` run side: the meter read on the deadlines t0 + k*every into a series, one row per planned
sample (a failed reading is a ``missing`` row); each row and its journal record written both or neither."""

from __future__ import annotations

from typing import Any

from devices.errors import DeviceError
from harness.common import kill_points
from harness.protocol.plan import Action
from harness.run.steps.base import ROW_BYTES, PlanCheck, StepExecutor, StepRun, lit_context

LATE_FRACTION = 0.1  # a sample more than 10 % of its interval behind its deadline is late


class Sample(StepExecutor):
    key = "sample"

    def check(self, action: Action, check: PlanCheck) -> None:
        p = action.params
        check.data_bytes += round(float(p.duration) / float(p.every)) * ROW_BYTES

    def execute(self, action: Action, run: StepRun) -> None:
        p = action.params
        meter = run.station.power_meter
        assert meter is not None
        name = p.series
        writer = run.open_series(name)
        clock, t0 = run.clock, run.t0
        every, duration = float(p.every), float(p.duration)
        n = int(round(duration / every))
        fixed = {
            **lit_context(run.station, run.state), "meter_wavelength_nm": run.state.meter_wavelength_nm, "averaging": run.state.averaging,
            "location": meter.location,
        }
        t_start = clock.now()
        for k in range(n):
            deadline = t_start + k * every
            clock.sleep_until(deadline)
            t = clock.now()
            lateness = t - deadline
            late = lateness > LATE_FRACTION * every
            row: dict[str, Any] = {
                "sample": writer.rows, "deadline_s": f"{deadline - t0:.6f}", "time_s": f"{t - t0:.6f}",
                "lateness_s": f"{lateness:.6f}", "late": int(late), "utc": clock.utc(t).isoformat(timespec="microseconds"), **fixed,
            }
            try:
                watts, attempts = run.retry(f"reading {name}[{k}]", meter.read_w)
            except DeviceError as exc:
                row.update(status="missing", error=str(exc), attempts=run.protocol.retries.attempts if exc.retryable else 1)
                with run.whole_record():
                    writer.write(row)
                    run.journal.write("reading_missing", t - t0, sync=True, series=name, sample=row["sample"], error=str(exc))
                run.count_missing(f"reading {name}[{k}]", exc)
                continue
            row.update(power_W=f"{watts:.9e}", status="ok", attempts=attempts)
            with run.whole_record():
                try:
                    run.journal.write("reading", t - t0, series=name, sample=row["sample"], power_W=watts, late=late, lateness_s=lateness)
                except OSError:  # a full disk: the journal keeps the record for later; the CSV gets the row
                    writer.write(row)
                    raise
                if late:
                    run.journal.write("log", t - t0, level="warning", message=f"sample {name}[{k}] late by {lateness:.4f} s")
                writer.write(row)
            kill_points.reached("acquisition:reading")
            run.progress((k + 1) * every, f"sample {name} {k + 1}/{n}")


EXECUTOR = Sample()
