"""The real PM100 and OBIS drivers, through pyvisa-py sockets and Micro-Manager core, against the
simulated physics: readings agree with ground truth within the simulated noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices.errors import DeviceError, InstrumentError, SafetyLimitError
from harness.station.station import Station
from simulators.meter import responsivity_a_per_w

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


def _all_off(station: Station) -> None:
    station.safe_state()


def test_meter_reads_emitted_power_within_noise(sim_station: Station) -> None:
    st = sim_station
    world = st.sim.world
    meter, line = st.power_meter, st.lasers["488"]
    truth_meter = world.meters[meter.label]
    _all_off(st)
    meter.set_wavelength_nm(488)
    meter.set_averaging(100)
    line.set_setpoint_mw(40.0)
    line.set_emission(True)
    try:
        st.clock.sleep(1800)  # well past warm-up (tau 300 s), 30 virtual minutes
        readings, truths = [], []
        for _ in range(20):
            truths.append(truth_meter.expected_reading_w())
            readings.append(meter.read_w())
            truths.append(truth_meter.expected_reading_w())
    finally:
        line.set_emission(False)
    readings = np.array(readings)
    truth = float(np.mean(truths))
    laser = world.lasers[line.label].p
    # one reading: RIN / sqrt(100) relative plus meter noise / sqrt(100); 20 readings averaged
    sigma_one = math.hypot(truth * laser.rin_rms / 10, truth_meter.p.noise_w / 10)
    assert abs(readings.mean() - truth) < 5 * sigma_one / math.sqrt(20) + 1e-3 * truth  # drift within the window
    assert readings.std(ddof=1) == pytest.approx(sigma_one, rel=0.6)
    expected_truth = 40.0 * world.params.optics.transmission_to_meter[line.label] / 1e3
    assert truth == pytest.approx(expected_truth, rel=0.03)  # steady transfer, drift 0.3 %/h


def test_wavelength_setting_scales_by_responsivity_ratio(sim_station: Station) -> None:
    st = sim_station
    meter, line = st.power_meter, st.lasers["561"]
    meter.set_averaging(300)
    line.set_setpoint_mw(30.0)
    line.set_emission(True)
    try:
        st.clock.sleep(3600)
        meter.set_wavelength_nm(561)
        right = np.mean([meter.read_w() for _ in range(5)])
        meter.set_wavelength_nm(800)
        wrong = np.mean([meter.read_w() for _ in range(5)])
    finally:
        line.set_emission(False)
    expected = responsivity_a_per_w(561) / responsivity_a_per_w(800)
    assert wrong / right == pytest.approx(expected, rel=0.01)


def test_zeroing_removes_the_dark_offset(make_station) -> None:
    st = make_station({"devices": {"Meter": {"simulation": {"dark_offset_w": 3.0e-6, "noise_w": 1.0e-9}}}})
    meter = st.power_meter
    meter.set_averaging(100)
    before = np.mean([meter.read_w() for _ in range(5)])
    meter.zero()
    after = np.mean([meter.read_w() for _ in range(5)])
    assert before == pytest.approx(3.0e-6, rel=0.01)
    assert abs(after) < 5e-10


def test_averaging_reduces_noise_as_one_over_sqrt_n(make_station) -> None:
    st = make_station({"devices": {"Meter": {"simulation": {"noise_w": 1.0e-7}}}})
    meter = st.power_meter
    stds = {}
    for n in (1, 100):
        meter.set_averaging(n)
        stds[n] = np.std([meter.read_w() for _ in range(200)], ddof=1)
    assert stds[1] == pytest.approx(1.0e-7, rel=0.2)
    assert stds[1] / stds[100] == pytest.approx(10, rel=0.25)


def test_meter_identity_comes_from_the_instrument(sim_station: Station) -> None:
    ident = sim_station.identities["Meter"]
    p = sim_station.sim.world.meters["Meter"].p
    assert (ident.vendor, ident.model, ident.serial, ident.firmware) == ("Thorlabs", p.model, p.serial, p.firmware)
    assert ident.details["sensor"] == p.sensor_model and ident.details["sensor_serial"] == p.sensor_serial


def test_meter_settings_are_checked_against_the_error_queue(sim_station: Station) -> None:
    driver = sim_station.drivers["Meter"]
    with pytest.raises(InstrumentError) as info:
        driver._write_checked("SENS:CORR:WAV 5000")  # what a driver without range checks would send
    assert info.value.code == -222
    with pytest.raises(DeviceError, match="outside the sensor"):
        sim_station.power_meter.set_wavelength_nm(5000)
    driver.check_errors()  # the queue is empty again


def test_laser_setpoint_emission_and_monitor_follow_the_laser(sim_station: Station) -> None:
    st = sim_station
    line = st.lasers["640"]
    truth = st.sim.world.lasers[line.label]
    line.set_setpoint_mw(12.5)
    assert line.setpoint_mw() == pytest.approx(12.5)
    assert truth.setpoint_mw == pytest.approx(12.5)
    line.set_emission(True)
    try:
        assert truth.emission and line.emission()
        st.clock.sleep(1200)
        monitor = np.mean([line.monitor_power_mw() for _ in range(20)])
        assert monitor == pytest.approx(truth.true_power_mw(), rel=0.01)
    finally:
        line.set_emission(False)
    assert not truth.emission and not line.emission()
    assert truth.true_power_mw() == 0.0


def test_setpoints_beyond_limits_are_refused_before_anything_is_sent(make_station) -> None:
    st = make_station({"roles": {"lasers": [{"device": "Laser405"}, {"device": "Laser488", "max_power_mw": 100}]}})
    line = st.lasers["488"]  # nominal 150 mW, this line's safety limit 100 mW
    truth = st.sim.world.lasers[line.label]
    sent_before = truth.faults.commands
    with pytest.raises(SafetyLimitError, match="safety limit of 100 mW"):
        line.set_setpoint_mw(130)
    with pytest.raises(SafetyLimitError, match="safety limit of 100 mW"):
        st.core.setProperty(line.label, "PowerSetpoint-mW", 130)  # the driver itself refuses too
    with pytest.raises(SafetyLimitError, match="laser's range"):
        st.core.setProperty(line.label, "PowerSetpoint-mW", -1)
    assert truth.faults.commands == sent_before
    assert truth.setpoint_mw <= 100


def test_percent_setpoint_is_of_nominal_power(sim_station: Station) -> None:
    st = sim_station
    label = st.lasers["488"].label
    st.core.setProperty(label, "PowerSetpoint-%", 20)
    assert st.sim.world.lasers[label].setpoint_mw == pytest.approx(30.0)


def test_open_interlock_refuses_emission(make_station) -> None:
    st = make_station({})
    line = st.lasers["405"]
    st.sim.world.lasers[line.label].set_interlock(False)
    assert st.core.getProperty(line.label, "Interlock") == "Open"
    with pytest.raises(InstrumentError):
        line.set_emission(True)
    assert st.sim.world.lasers[line.label].true_power_mw() == 0.0


def test_warm_up_and_drift_follow_the_virtual_clock(make_station) -> None:
    st = make_station({})
    line = st.lasers["561"]
    laser = st.sim.world.lasers[line.label]
    line.set_setpoint_mw(50)
    line.set_emission(True)
    t_on = st.clock.now()
    early = laser.true_power_mw()
    st.clock.sleep(3 * laser.p.warmup_tau_s)
    late = laser.true_power_mw()
    line.set_emission(False)
    steady = laser.steady_power_mw(50)
    assert early == pytest.approx(steady * (1 - laser.p.warmup_deficit), rel=0.01)
    elapsed = st.clock.now() - t_on
    assert elapsed >= 3 * laser.p.warmup_tau_s
    assert late / steady == pytest.approx((1 - laser.p.warmup_deficit * math.exp(-3)) * (1 + laser.p.drift_pct_per_h / 100 * st.clock.now() / 3600), rel=0.005)
