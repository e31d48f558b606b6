"""An OBIS head with its CDRH delay on lets light out about 5 s after emission is switched on. A power
record must not start before the light is there: the OBIS driver is busy until the laser's status
word clears its CDRH-delay bit, and the harness waits for the laser after switching emission. Checked
against the meter's ground truth, on virtual time and on a real-time (sped-up) station."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

PROTOCOL = """\
protocol: cdrh-record
title: Power record right after switching on
version: "1.0"
steps:
  - meter: {wavelength: 488, averaging: 10}
  - laser: {line: 488, setpoint: 40 mW, emission: on}
  - sample: {series: power_488, every: 1 s, for: 4 s}
  - laser: {line: 488, emission: off}
"""


def _spy_truth(st: Station, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Ground truth of every meter reading taken while the 488 line is switched on (what an ideal
    meter shows at the middle of the averaging window)."""
    world = st.sim.world
    meter = world.meters[st.power_meter.label]
    laser = world.lasers[st.lasers["488"].label]
    truths: list[float] = []
    measure = meter.measure_w

    def spy() -> float:
        if laser.emission:
            truths.append(meter.expected_reading_w(meter.clock.now() + meter.measurement_duration_s() / 2))
        return measure()

    monkeypatch.setattr(meter, "measure_w", spy)
    return truths


def _record(st: Station, tmp_path: Path) -> list[float]:
    protocol = tmp_path / "cdrh.yaml"
    protocol.write_text(PROTOCOL)
    outcome = Runner(st, protocol, runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    with open(outcome.folder / "power_488.csv", newline="") as f:
        return [float(row["power_W"]) for row in csv.DictReader(f)]


def _steady_w(st: Station) -> float:
    """What the meter shows for 40 mW set, once the light is out (warm-up deficit at most)."""
    world = st.sim.world
    label = st.lasers["488"].label
    return world.lasers[label].steady_power_mw(40.0) * world.params.optics.transmission_to_meter.get(label, 1.0) / 1e3


@pytest.mark.parametrize("simulation", [{}, {"simulation": {"clock": "real", "time_scale": 50}}], ids=["virtual", "real-time"])
def test_first_reading_of_a_record_has_the_light(make_station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  simulation: dict[str, Any]) -> None:
    st = make_station(simulation)
    laser = st.sim.world.lasers[st.lasers["488"].label]
    assert laser.cdrh and laser.p.cdrh_delay_s == 5.0  # the station's lasers have the delay on
    truths = _spy_truth(st, monkeypatch)
    readings = _record(st, tmp_path)
    steady = _steady_w(st)
    assert len(readings) == len(truths) >= 4
    assert truths[0] > 0.9 * steady  # the light was out when the first reading began
    noise = 5 * (laser.p.rin_rms * steady + st.sim.world.meters[st.power_meter.label].p.noise_w)
    for reading, truth in zip(readings, truths):
        assert reading == pytest.approx(truth, abs=noise)


def test_without_waiting_the_delay_holds_the_light_back(make_station) -> None:
    """Virtual time: a meter reading straight after switching on sees no light (the CDRH delay runs);
    asking the laser whether it is busy is waiting for it: the light is then there, 5 s later."""
    st = make_station({})
    line, meter = st.lasers["488"], st.power_meter
    laser = st.sim.world.lasers[line.label]
    driver = st.drivers[line.label]
    meter.set_wavelength_nm(488)
    line.set_setpoint_mw(40.0)
    t_on = st.clock.now()
    driver.set_open(True)
    try:
        dark = meter.read_w()
        assert laser.in_cdrh_delay() and abs(dark) < 0.01 * _steady_w(st)
        assert not st.core.deviceBusy(line.label)  # the poll waited for the light
        assert st.clock.now() >= t_on + laser.p.cdrh_delay_s and laser.true_power_mw() > 0
        assert not driver.status_word() & 0x10  # CDRH delay bit clear
        assert meter.read_w() > 0.9 * _steady_w(st)
    finally:
        line.set_emission(False)


def test_station_file_can_switch_the_delay_off(make_station) -> None:
    st = make_station({"devices": {"Laser488": {"simulation": {"cdrh": False}}}})
    line = st.lasers["488"]
    laser = st.sim.world.lasers[line.label]
    line.set_setpoint_mw(40.0)
    t0 = st.clock.now()
    line.set_emission(True)
    try:
        assert laser.emission_starts_at() == pytest.approx(t0, abs=0.1)  # light at once (command latency only)
        assert laser.true_power_mw() > 0
    finally:
        line.set_emission(False)
