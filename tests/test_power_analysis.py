"""Power metrics: formulas on hand-computed cases, verdicts, and agreement with an independent
implementation of the QUAREP Tool-Kit's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.power_metrics import cv_pct, drift_pct_per_h, linearity_metrics, power_series_metrics, stability_pct, warmup_time_s
from harness.protocol_file import Limit
from harness.verdicts import judge, overall


def test_stability_and_cv_by_hand() -> None:
    p = np.array([9.0, 10.0, 11.0, 10.0])
    assert stability_pct(p) == pytest.approx(100 * (1 - 2 / 20))  # 90 %
    assert cv_pct(p) == pytest.approx(100 * math.sqrt(0.5) / 10)  # population SD 0.7071


def test_drift_and_warmup_by_hand() -> None:
    t = np.arange(0, 7200, 60.0)
    p = 10.0 * (1 + 0.02 * t / 3600)  # +2 % of the starting power per hour
    assert drift_pct_per_h(t, p) == pytest.approx(2.0 / np.mean(p) * 10, rel=1e-9)
    t = np.arange(100.0)
    p = np.where(t < 30, 0.9, 1.0)
    assert warmup_time_s(t, p, band_pct=1.0) == 30.0
    assert warmup_time_s(t, np.ones(100)) == 0.0


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
    from harness.flat_field_metrics import flat_field_metrics

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
