"""Power results (kinds ``stability`` and ``linearity``) as a microscope-metrics
``LightSourcePowerDataset`` (plain dicts; microscopemetrics-schema 0.0.5).

Contract: ``power_dataset(folder, run, results, mapped)`` returns the dataset's ``input_data`` and
``output.key_measurements``: every ``ok`` reading of each analysed power series as a
``PowerMeasurement`` (the CSV's UTC time as is, ``power_mw`` = ``power_W`` x 1000, ``power_set_point``
= ``setpoint_pct_nominal`` / 100, the model's fraction of nominal power), and one
``LightSourcePowerKeyMeasurement`` per series. Values are copied from results.json unchanged except
where the model's unit differs (stated in ``mapped.notes``): stability % -> fraction (/ 100), the
linearity slope per mW of set point -> per unit fraction of nominal power (x the laser's nominal power,
run.json ``devices``; not mapped without it). Short- or long-term stability by the reading interval
(below 10 s: short-term, as QUAREP-LiMi WG1's 1 s / 30 s protocols and microscope-metrics' defaults).
Raises ``OSError``/``ValueError`` for a series file that cannot be read.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.export.mm_common import Mapped, device_by_role, metric, verdict_line
from harness.records.run_folder import RunFolder
from harness.records.run_record import ResultsRecord, RunRecord
from harness.records.series_writer import read_series

KINDS = ("stability", "linearity")
LOCATIONS = ("SOURCE_EXIT", "FIBER_EXIT", "OBJECTIVE_BACKFOCAL", "OBJECTIVE_EXIT", "OBJECTIVE_FOCAL", "OTHER")
SHORT_TERM_MAX_INTERVAL_S = 10.0

# our metric -> the key measurement's field, copied unchanged
STABILITY_FIELDS = {"mean_mw": "power_mean_mw", "median_mw": "power_median_mw", "sd_mw": "power_std_mw",
                    "min_mw": "power_min_mw", "max_mw": "power_max_mw"}
LINEARITY_FIELDS = {"intercept_mw": "power_linearity_intercept", "r_squared": "power_linearity_coefficient_of_determination"}
WHY = {
    "cv_pct": "no CV field", "drift_pct_per_h": "no drift field", "noise_pct": "no noise field",
    "warmup_time_s": "no warm-up field", "mode_hops": "no mode-hop fields", "mode_hop_max_pct": "no mode-hop fields",
    "mode_hop_time_s": "no mode-hop fields", "samples": "nr_of_measurements holds it", "slope_through_origin": "no fit through the origin",
    "chi_squared_through_origin": "no fit through the origin", "max_relative_deviation_pct": "no deviation-from-line field",
    "setpoints": "the set points are in the power measurements",
}


def _light_source(run: RunRecord, lines: list[str]) -> dict[str, Any]:
    device = device_by_role(run, f"laser {lines[0]} nm") if len(lines) == 1 else None
    if device is None:
        return {"name": f"{'+'.join(lines)} nm", **({"wavelength_nm": float(lines[0])} if len(lines) == 1 else {})}
    name, info = device
    return {"name": name, "description": f"{info.get('vendor', '')} {info.get('model', '')}, serial {info.get('serial', '?')}".strip(),
            "wavelength_nm": float(lines[0])}


def _power_meter(run: RunRecord) -> dict[str, Any]:
    device = device_by_role(run, "power meter")
    if device is None:
        return {"name": "power meter"}
    name, info = device
    details = info.get("details") or {}
    sensor = f"; sensor {details['sensor']} serial {details.get('sensor_serial', '?')}" if details.get("sensor") else ""
    out = {"name": name, "description": f"serial {info.get('serial', '?')}{sensor}"}
    out.update({k: str(info[v]) for k, v in (("manufacturer", "vendor"), ("model", "model")) if info.get(v)})
    return out


def _nominal_mw(run: RunRecord, lines: list[str]) -> float | None:
    device = device_by_role(run, f"laser {lines[0]} nm") if len(lines) == 1 else None
    try:
        return float((device[1].get("details") or {})["nominal_power_mw"]) if device else None
    except (KeyError, TypeError, ValueError):
        return None


def _interval_s(rows: list[dict[str, str]]) -> float | None:
    times = [datetime.fromisoformat(r["utc"]) for r in rows]
    steps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    return statistics.median(steps) if steps else None


def power_dataset(folder: Path, run: RunRecord, results: ResultsRecord, mapped: Mapped) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(input_data, key_measurements, verdict lines) of the run's power results."""
    measurements: list[dict[str, Any]] = []
    key_measurements: list[dict[str, Any]] = []
    verdicts: list[str] = []
    meter = _power_meter(run)
    averaging = False
    for result in results.results or []:
        if result.get("kind") not in KINDS:
            continue
        rows = [r for r in read_series(RunFolder(folder).file(result["series"])) if r.get("status") == "ok"]
        averaging = averaging or any(r.get("averaging") for r in rows)
        lines = [str(x) for x in result.get("lines_on") or []] or ["none"]
        source = _light_source(run, lines)
        location = result.get("location") if result.get("location") in LOCATIONS else "OTHER"
        if location != result.get("location"):
            mapped.unmapped.append(f"{result.get('subject')}: measuring location {result.get('location')!r} (not in the model's list: OTHER)")
        for r in rows:
            m: dict[str, Any] = {"acquisition_datetime": r["utc"], "light_source": source, "power_meter": meter,
                                 "measuring_location": location, "power_mw": float(r["power_W"]) * 1000.0}
            if r.get("setpoint_pct_nominal"):
                m["power_set_point"] = float(r["setpoint_pct_nominal"]) / 100.0
            measurements.append(m)
        km: dict[str, Any] = {"light_source": source, "power_meter": meter, "measuring_location": location, "nr_of_measurements": len(rows)}
        used: list[str] = []
        if result["kind"] == "stability":
            for ours, theirs in STABILITY_FIELDS.items():
                if metric(result, ours) is not None:
                    km[theirs] = metric(result, ours)
                    used.append(ours)
            stability = metric(result, "stability_pct")
            interval = _interval_s(rows)
            if stability is not None and rows:
                term = "short_term" if interval is None or interval < SHORT_TERM_MAX_INTERVAL_S else "long_term"
                km[f"{term}_power_stability"] = stability / 100.0
                km[f"{term}_power_stability_start_datetime"] = rows[0]["utc"]
                km[f"{term}_power_stability_end_datetime"] = rows[-1]["utc"]
                used.append("stability_pct")
                mapped.notes.append(f"{result['subject']}: stability_pct / 100 -> {term}_power_stability (a fraction); "
                                    f"{term.replace('_', '-')} by the reading interval ({interval} s)")
        else:
            for ours, theirs in LINEARITY_FIELDS.items():
                if metric(result, ours) is not None:
                    km[theirs] = metric(result, ours)
                    used.append(ours)
            slope, nominal = metric(result, "slope"), _nominal_mw(run, lines)
            if slope is not None and nominal is not None:
                km["power_linearity_slope"] = slope * nominal
                used.append("slope")
                mapped.notes.append(f"{result['subject']}: slope (mW per mW of set point) x nominal power {nominal} mW -> power_linearity_slope "
                                    "(mW per unit fraction of nominal power, the model's set point)")
            if rows:
                km["power_linearity_start_datetime"], km["power_linearity_end_datetime"] = rows[0]["utc"], rows[-1]["utc"]
            mapped.notes.append(f"{result['subject']}: the linearity fit is over the mean power of each set point (microscope-metrics fits every reading)")
        for name in result.get("metrics", {}):
            if name not in used:
                mapped.metric_left(result, name, WHY.get(name, "no field"))
        if result.get("missing_readings"):
            mapped.unmapped.append(f"{result['subject']}: {result['missing_readings']} readings missing (status not ok): not in power_measurements")
        key_measurements.append(km)
        verdicts.append(verdict_line(result, used))
    if averaging:
        mapped.unmapped.append("integration time: the meter's averaging count is recorded (CSV `averaging`), not a time: integration_time_seconds left out")
    return {"power_measurements": measurements}, key_measurements, verdicts
