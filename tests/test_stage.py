"""Simulated stages through Micro-Manager core: the true position carries the configured systematic
error, backlash, repeatability and drift; moves are busy for their duration in virtual time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.station.roles import wait_until_idle
from harness.station.station import Station

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


def test_true_position_carries_scale_pitch_and_backlash(make_station) -> None:
    st = make_station({
        "devices": {"XYStage": {"simulation": {
            "x": {"scale_error_ppm": 100, "pitch_error_um": 0.5, "pitch_period_um": 800, "backlash_um": 2.0,
                  "repeatability_sigma_um": 0.0, "thermal_drift_um_per_h": 0.0},
            "y": {"repeatability_sigma_um": 0.0, "thermal_drift_um_per_h": 0.0, "scale_error_ppm": 0,
                  "pitch_error_um": 0, "backlash_um": 0},
        }}},
    })
    truth = st.sim.world.xy_stages[st.xy_stage.label]
    for target in (1000.0, 3300.0, 7250.0):
        st.xy_stage.move_to(target, 0)  # approached from below: carriage lags by backlash/2
        expected = target * (1 + 100e-6) + 0.5 * math.sin(2 * math.pi * target / 800) - 1.0
        assert st.xy_stage.position_um() == pytest.approx((target, 0.0))
        assert truth.true()["x"] == pytest.approx(expected, abs=1e-9)
    st.xy_stage.move_to(9000, 0)
    st.xy_stage.move_to(7250, 0)  # approached from above
    expected = 7250 * (1 + 100e-6) + 0.5 * math.sin(2 * math.pi * 7250 / 800) + 1.0
    assert truth.true()["x"] == pytest.approx(expected, abs=1e-9)
    assert truth.true()["y"] == pytest.approx(0.0, abs=1e-9)


def test_repeatability_sigma_and_backlash_are_recovered_statistically(make_station) -> None:
    st = make_station({"devices": {"XYStage": {"simulation": {
        "x": {"repeatability_sigma_um": 0.3, "backlash_um": 1.2, "thermal_drift_um_per_h": 0.0, "settle_s": 0.0},
        "y": {"thermal_drift_um_per_h": 0.0},
    }}}})
    truth = st.sim.world.xy_stages[st.xy_stage.label]
    from_below, from_above = [], []
    for _ in range(150):
        st.xy_stage.move_to(0, 0)
        st.xy_stage.move_to(500, 0)
        from_below.append(truth.true()["x"])
        st.xy_stage.move_to(1000, 0)
        st.xy_stage.move_to(500, 0)
        from_above.append(truth.true()["x"])
    below, above = np.array(from_below), np.array(from_above)
    sigma = np.sqrt((below.var(ddof=1) + above.var(ddof=1)) / 2)
    assert sigma == pytest.approx(0.3, rel=0.15)
    assert above.mean() - below.mean() == pytest.approx(1.2, abs=0.1)


def test_thermal_drift_follows_the_virtual_clock(make_station) -> None:
    st = make_station({"devices": {"XYStage": {"simulation": {"x": {"thermal_drift_um_per_h": 2.0, "repeatability_sigma_um": 0.0}}}}})
    truth = st.sim.world.xy_stages[st.xy_stage.label]
    t0 = st.clock.now()
    x0 = truth.true(t0)["x"]
    st.clock.sleep(1800)
    t1 = st.clock.now()
    x1 = truth.true(t1)["x"]
    assert (x1 - x0) / ((t1 - t0) / 3600) == pytest.approx(2.0, rel=1e-6)


def test_a_move_takes_travel_plus_settle_time_of_station_time(make_station) -> None:
    """Virtual time: the first poll of the busy stage is the harness waiting, so the clock passes to
    the end of the move exactly."""
    st = make_station({"devices": {"XYStage": {"simulation": {"x": {"speed_um_per_s": 1000, "settle_s": 0.5}}}}})
    label = st.xy_stage.label
    t0 = st.clock.now()
    st.core.setXYPosition(label, 2000, 0)
    assert st.clock.now() == t0  # commanding does not wait
    wait_until_idle(st.core, label, timeout_s=10)
    assert st.clock.now() - t0 == pytest.approx(2.5, abs=1e-9)


def test_moves_are_busy_for_travel_plus_settle_time_in_real_time(make_station) -> None:
    st = make_station({"simulation": {"clock": "real", "time_scale": 10}, "devices": {"XYStage": {"simulation": {
        "x": {"speed_um_per_s": 1000, "settle_s": 0.5}}}}})
    label = st.xy_stage.label
    t0 = st.clock.now()
    st.core.setXYPosition(label, 2000, 0)
    busy = st.core.deviceBusy(label)
    if st.clock.now() < t0 + 2.5:  # asked before the move can have ended (a busy machine may ask later)
        assert busy
    wait_until_idle(st.core, label, timeout_s=10)
    elapsed = st.clock.now() - t0
    assert elapsed >= 2.5  # a lower bound only: how late a busy machine notices is not the stage's time


def test_moves_outside_travel_are_refused(sim_station: Station) -> None:
    from devices.errors import DeviceError

    with pytest.raises(DeviceError, match="outside travel"):
        sim_station.xy_stage.move_to(60000, 0)
    with pytest.raises(DeviceError, match="outside travel"):
        sim_station.z_drive.move_to(-5)


def test_z_drive_backlash(make_station) -> None:
    st = make_station({"devices": {"ZDrive": {"simulation": {"z": {"backlash_um": 0.4, "repeatability_sigma_um": 0.0}}}}})
    truth = st.sim.world.z_drives[st.z_drive.label]
    st.z_drive.move_to(100)
    up = truth.true()["z"]
    st.z_drive.move_to(200)
    st.z_drive.move_to(100)
    down = truth.true()["z"]
    assert down - up == pytest.approx(0.4, abs=1e-9)
    assert st.z_drive.position_um() == pytest.approx(100)
