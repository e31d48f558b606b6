"""Power metrics: formulas on hand-computed cases, verdicts, and agreement with an independent
implementation of the QUAREP Tool-Kit's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.power_metrics import cv_pct, drift_pct_per_h, linearity_metrics, power_series_metrics, stability_pct, warmup_time_s
from harness.analysis.power_series_model import fit_series
from harness.analysis.verdicts import judge, overall
from harness.protocol.protocol_file import Limit

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


def test_stability_and_cv_by_hand() -> None:
    p = np.array([9.0, 10.0, 11.0, 10.0])
    assert stability_pct(p) == pytest.approx(100 * (1 - 2 / 20))  # 90 %
    assert cv_pct(p) == pytest.approx(100 * math.sqrt(0.5) / 10)  # population SD 0.7071


def test_drift_and_warmup_by_hand() -> None:
    t = np.arange(0, 7200, 60.0)
    p = 10.0 * (1 + 0.02 * t / 3600)  # +2 % of the starting power per hour
    assert drift_pct_per_h(t, p) == pytest.approx(2.0 / np.mean(p) * 10, rel=1e-9)
    # warm-up: a noise-free settling P = 1 - 0.1 exp(-t / 20 s) read from emission on (t = 0) enters
    # +-1 % at 20 ln(10) = 46.05 s; a step is a mode hop, not a warm-up; a constant power has none
    t = np.arange(100.0)
    assert warmup_time_s(fit_series(t, 1.0 - 0.1 * np.exp(-t / 20.0)), 0.0, band_pct=1.0) == pytest.approx(20 * math.log(10), rel=1e-4)
    m = power_series_metrics(t, np.where(t < 30, 0.9, 1.0) * 1e-3, emission_on_s=0.0)
    assert (m["mode_hops"].value, m["mode_hop_time_s"].value) == (1.0, 29.5) and m["mode_hop_max_pct"].value == pytest.approx(100 / 9)
    assert math.isnan(m["warmup_time_s"].value) and "no settling term" in m["warmup_time_s"].reason
    assert "no settling term" in power_series_metrics(t, np.full(100, 1e-3), emission_on_s=0.0)["warmup_time_s"].reason


def test_linearity_by_hand_and_toolkit_formula() -> None:
    s = np.array([1.0, 2.0, 4.0, 8.0])
    p = np.array([0.5, 1.0, 2.0, 4.0])
    m = linearity_metrics(s, p)
    assert m["slope"].value == pytest.approx(0.5) and m["intercept_mw"].value == pytest.approx(0.0, abs=1e-12)
    assert m["r_squared"].value == pytest.approx(1.0)
    assert m["chi_squared_through_origin"].value == pytest.approx(0.0, abs=1e-12)
    # an offset line: the OLS fit finds it, the origin fit pays for it in chi^2
    p2 = 0.5 * s - 0.2
    m2 = linearity_metrics(s, p2)
    assert m2["slope"].value == pytest.approx(0.5) and m2["intercept_mw"].value == pytest.approx(-0.2)
    a = np.sum(s * p2) / np.sum(s * s)  # QUAREP Tool-Kit: fit through the origin
    assert m2["slope_through_origin"].value == pytest.approx(a)
    assert m2["chi_squared_through_origin"].value == pytest.approx(np.sum((p2 - a * s) ** 2 / np.abs(a * s)))


def test_series_metrics_units_and_sd() -> None:
    m = power_series_metrics(np.array([0.0, 1.0, 2.0]), np.array([1e-3, 2e-3, 3e-3]))
    assert (m["mean_mw"].value, m["median_mw"].value, m["min_mw"].value, m["max_mw"].value) == pytest.approx((2.0, 2.0, 1.0, 3.0))
    assert m["sd_mw"].value == pytest.approx(1.0)  # sample SD for the reported spread
    assert m["stability_pct"].unit == "%"


def test_verdicts() -> None:
    limit = Limit.model_validate({"pass": [99, None], "warn": [98, None]})
    assert [judge(v, limit) for v in (99.5, 98.5, 97.0)] == ["pass", "warn", "fail"]
    assert judge(1.0, None) == "not judged"
    assert judge(float("nan"), limit) == "fail"
    assert judge(2.0, Limit.model_validate({"pass": [None, 1.0]})) == "fail"
    assert overall(["pass", "not judged", "warn"]) == "warn" and overall([]) == "not judged"


def test_flat_field_formulas_on_a_small_image_by_hand() -> None:
    from harness.analysis.flat_field_metrics import flat_field_metrics

    img = np.full((5, 7), 100.0)
    img[2, 3] = 200.0  # the maximum at the centre pixel
    img[0, 0] = 50.0
    m, profiles = flat_field_metrics(img, blur=False)
    assert m["uniformity_pct"].value == pytest.approx(25.0)
    corners_edges = [50.0, 100, 100, 100, 100, 100, 100, 100]
    assert m["field_uniformity_pct"].value == pytest.approx(100 - 100 * np.std(corners_edges) / 200)
    # reference zone = the one pixel >= 90 % of max, centred at (3.5, 2.5) = the image centre
    assert m["centering_accuracy_pct"].value == pytest.approx(100.0)
    assert m["ratio_top_left"].value == pytest.approx(0.25)
    assert profiles["centre_row"][3] == 200.0 and len(profiles["diagonal_down"]) == 5


# --- bad input is refused with a reason, never a crash --------------------------------------------
def test_a_10_hz_series_with_no_line_on_is_a_stability_record_not_a_linearity_of_nan(tmp_path) -> None:
    """The LinAlgError ('SVD did not converge', LAPACK 'DLASCL parameter number 4 had an illegal
    value') of a 10 Hz, 60 s sampling run: with no line on, every row's set point is empty. Read as
    float('nan') and used as a dict key, each NaN was a set point of its own (NaN != NaN), so the 600
    readings became a 600-point 'linearity' series with NaN set points, handed to the fit."""
    from harness.finishing.runner import FinishingRunner as Runner
    from harness.station.station import Station
    from tests.conftest import station_variant

    protocol = tmp_path / "p10hz.yaml"
    protocol.write_text("protocol: sampling-10hz\ntitle: 10 Hz\nsteps:\n  - meter: {wavelength: 488, averaging: 1}\n"
                        "  - sample: {series: power, every: 100 ms, for: 60 s}\n")
    with Station.load(station_variant(tmp_path, {})) as station:
        outcome = Runner(station, protocol, runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed" and outcome.outcome == "completed", (outcome.reason, outcome.analysis_error)
    import json

    results = json.loads((outcome.folder / "results.json").read_text())
    assert results["status"] == "analysed"
    [r] = results["results"]
    assert (r["kind"], r["subject"]) == ("stability", "no line on")
    assert r["metrics"]["samples"]["value"] == 600 and r["metrics"]["drift_pct_per_h"]["value"] is not None


def _series(tmp_path, rows: list[dict[str, str]]):
    from harness.records.series_writer import SeriesWriter

    path = tmp_path / "s.csv"
    w = SeriesWriter(path)
    for i, row in enumerate(rows):
        w.write({"sample": i, "deadline_s": f"{i:.1f}", "time_s": f"{i:.1f}", "lateness_s": "0", "late": 0, "utc": "", "status": "ok",
                 "location": "OBJECTIVE_FOCAL", "meter_wavelength_nm": 488, "averaging": 1, "setpoint_pct_nominal": "", **row})
    w.close()
    return path


def test_two_lines_on_and_non_finite_readings_are_handled_with_reasons(tmp_path) -> None:
    from harness.analyses.power.analysis import analyse_series
    from harness.common.errors import BadInput

    # two lines on at once: the set point '10+20' is their sum (was: ValueError from float('10+20'))
    both = _series(tmp_path, [{"power_W": f"{0.012 + 1e-6 * i:.9e}", "lines_on": "488+561", "setpoint_mW": "10+20"} for i in range(20)])
    r = analyse_series(both, {})
    assert (r["kind"], r["subject"], r["setpoints_mw"]) == ("stability", "488+561 nm", ["10+20"])
    # a reading that is not a finite number is refused with the reason, not fitted
    bad = _series(tmp_path, [{"power_W": "inf" if i == 3 else "1e-3", "lines_on": "488", "setpoint_mW": "1"} for i in range(20)])
    with pytest.raises(BadInput, match=r"power readings \(W\): 1 of 20 values are not finite numbers \(first at index 3: inf\)"):
        analyse_series(bad, {})
    # a linearity series with a reading taken with no line on: refused with the reason
    mixed = _series(tmp_path, [{"power_W": "1e-3", "lines_on": "488" if i else "none", "setpoint_mW": "" if i == 0 else str(i)} for i in range(5)])
    with pytest.raises(BadInput, match="set points that are not numbers"):
        analyse_series(mixed, {})


def test_every_power_fit_refuses_bad_input_with_a_reason() -> None:
    from harness.common.errors import BadInput

    with pytest.raises(BadInput, match="not finite"):
        power_series_metrics(np.array([0.0, 1.0, 2.0]), np.array([1e-3, np.nan, 1e-3]))
    with pytest.raises(BadInput, match=r"reading times \(s\).*not finite"):
        power_series_metrics(np.array([0.0, np.inf, 2.0]), np.array([1e-3, 1e-3, 1e-3]))
    with pytest.raises(BadInput, match="needs at least 1 points, has 0"):
        power_series_metrics(np.array([]), np.array([]))
    one = power_series_metrics(np.array([0.0]), np.array([1e-3]))  # one reading: what needs more is not computed
    assert one["mean_mw"].value == pytest.approx(1.0)
    for name in ("sd_mw", "drift_pct_per_h", "noise_pct", "warmup_time_s"):
        assert math.isnan(one[name].value) and one[name].reason, name
    assert "needs at least 2 points" in one["drift_pct_per_h"].reason
    same_time = power_series_metrics(np.zeros(5), np.full(5, 1e-3))  # no spread in time: no drift
    assert "all values are equal" in same_time["drift_pct_per_h"].reason
    dark = power_series_metrics(np.arange(20.0), np.zeros(20))  # nothing reached the meter: no relative metric
    for name in ("stability_pct", "cv_pct", "drift_pct_per_h", "noise_pct"):
        assert math.isnan(dark[name].value) and "not above zero" in dark[name].reason, name
    with pytest.raises(BadInput, match="all values are equal"):
        linearity_metrics(np.array([5.0, 5.0, 5.0]), np.array([1.0, 1.1, 1.2]))
    with pytest.raises(BadInput, match="not finite"):
        linearity_metrics(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(BadInput, match="needs at least 2 points"):
        linearity_metrics(np.array([1.0]), np.array([1.0]))
    flat = linearity_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    assert math.isnan(flat["r_squared"].value) and "spread of the measured powers" in flat["r_squared"].reason


def test_a_metric_not_computed_is_not_judged_with_its_reason() -> None:
    from harness.analysis.judging import entry as _entry
    from harness.analysis.power_metrics import Metric

    limit = Limit.model_validate({"pass": [99, None]})
    entry = _entry("stability_pct", Metric(math.nan, "%", "stability: Pmax + Pmin is 0, not above zero"), {"stability_pct": limit})
    assert entry["verdict"] == "not judged" and entry["value"] is None and "not above zero" in entry["reason"]
    assert _entry("stability_pct", Metric(math.nan, "%"), {"stability_pct": limit})["verdict"] == "fail"  # no reason: cannot pass


def test_flat_field_and_registration_refuse_images_without_signal() -> None:
    from harness.analysis.flat_field_metrics import flat_field_metrics
    from harness.analysis.registration import shift_px
    from harness.common.errors import BadInput

    with pytest.raises(BadInput, match="no signal above the dark level"):
        flat_field_metrics(np.zeros((20, 30)))  # was: ZeroDivisionError (100 Imin / Imax)
    with pytest.raises(BadInput, match="not finite"):
        flat_field_metrics(np.full((20, 30), np.nan))
    with pytest.raises(BadInput, match="at least 3 x 3"):
        flat_field_metrics(np.ones((2, 30)), blur=False)
    with pytest.raises(BadInput, match="no structure to register"):
        shift_px(np.full((16, 16), 7.0), np.random.default_rng(1).random((16, 16)))
    with pytest.raises(BadInput, match="different size"):
        shift_px(np.ones((16, 16)), np.ones((8, 8)))


def test_stage_analyses_refuse_what_they_cannot_measure() -> None:
    from harness.analysis.stage_metrics import displacements, iso230_metrics, repeatability_metrics, repeatability_tables
    from harness.common.errors import BadInput

    with pytest.raises(BadInput, match="no reference/return pair"):
        displacements([], lambda i: None, 1.0)
    with pytest.raises(BadInput, match="no target with an up-approach image"):
        iso230_metrics([], lambda i: None, 1.0)
    one = repeatability_metrics(repeatability_tables([{"size": "300", "direction": "+x", "dx_um": 0.1, "dy_um": 0.2}])["300"])
    assert math.isnan(one["sd_x_um"].value) and "at least 2" in one["sd_x_um"].reason
