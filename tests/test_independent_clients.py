"""Compatibility suite: clients that no one here wrote drive the simulated instruments unchanged.

- pymeasure's ``ThorlabsPM100USB`` over ``TCPIP::127.0.0.1::<port>::SOCKET`` (pyvisa-py);
- python-microscope's ``ObisLaser``, its serial port opened on ``socket://127.0.0.1:<port>``
  (pyserial's URL handler: only how the port is opened is replaced, never what is sent).

The simulators run alone (a ``World`` on a virtual clock and its SCPI servers, no harness), so these
tests say whether the simulators answer what the field's own code sends, as the real instruments
do; values are compared with the world's ground truth.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import microscope.lights.obis as obis_module
import pymeasure.instruments.thorlabs as pymeasure_thorlabs
import pytest
import serial

from simulators.clock import VirtualClock
from simulators.meter import responsivity_a_per_w
from simulators.obis_scpi import ObisScpi
from simulators.params import LaserParams, MeterParams, OpticsParams, WorldParams
from simulators.pm100_scpi import PM100Scpi
from simulators.scpi_server import ScpiServer
from simulators.world import World

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


@dataclass
class Rig:
    world: World
    meter_server: ScpiServer
    laser_server: ScpiServer

    @property
    def laser(self):
        return self.world.lasers["Laser"]

    @property
    def meter(self):
        return self.world.meters["Meter"]


def _rig(laser: dict | None = None) -> Rig:
    params = WorldParams(
        seed=3,
        optics=OpticsParams(transmission_to_meter={"Laser": 0.5}),
        lasers={"Laser": LaserParams(wavelength_nm=488, nominal_power_mw=100, rin_rms=0.0005, **(laser or {}))},
        meters={"Meter": MeterParams(noise_w=1e-9)},
    )
    world = World(params, VirtualClock())
    m, laser_model = world.meters["Meter"], world.lasers["Laser"]
    meter = ScpiServer(PM100Scpi(m), m.faults, "Meter", world.clock, m.p.command_latency_s).start()
    laser_server = ScpiServer(ObisScpi(laser_model), laser_model.faults, "Laser", world.clock, laser_model.p.command_latency_s).start()
    return Rig(world, meter, laser_server)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = _rig()
    yield r
    r.meter_server.stop()
    r.laser_server.stop()


def _pm100(rig: Rig, timeout_ms: int = 2000):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pymeasure: "not known whether this device supports SCPI"
        return pymeasure_thorlabs.ThorlabsPM100USB(
            rig.meter_server.resource, visa_library="@py", read_termination="\n", write_termination="\n", timeout=timeout_ms,
        )


# --- pymeasure ThorlabsPM100USB -------------------------------------------------------------------

def test_pymeasure_reads_sensor_flags_wavelength_and_power(rig: Rig) -> None:
    pm = _pm100(rig)
    try:
        p = rig.meter.p
        assert pm.id == f"Thorlabs,{p.model},{p.serial},{p.firmware}"
        assert (pm.sensor_name, pm.sensor_sn) == (p.sensor_model, p.sensor_serial)
        assert pm.is_power_sensor and not pm.is_energy_sensor and pm.wavelength_settable
        assert not pm.response_settable and pm.has_temperature_sensor
        assert (pm.wavelength_min, pm.wavelength_max) == (p.wavelength_min_nm, p.wavelength_max_nm)
        pm.wavelength = 488
        assert pm.wavelength == 488 == rig.meter.wavelength_nm
        pm.wavelength = 5000  # pymeasure truncates to the sensor's range before sending
        assert pm.wavelength == p.wavelength_max_nm
        pm.wavelength = 488
        assert pm.complete == "1"  # a write is not answered: *OPC? says the meter has done it
        laser = rig.laser
        laser.set_setpoint_mw(40.0)
        laser.set_emission(True)
        rig.world.clock.sleep(3600)
        truth = rig.meter.expected_reading_w()
        readings = [pm.power for _ in range(5)]
        assert truth == pytest.approx(0.5 * laser.true_power_mw() / 1e3, rel=1e-6)
        for reading in readings:
            assert reading == pytest.approx(truth, rel=0.01)
        assert pm.check_errors() == []
    finally:
        pm.adapter.close()


def test_pymeasure_common_commands_and_status(rig: Rig) -> None:
    pm = _pm100(rig)
    try:
        assert pm.complete == "1"  # *OPC?
        pm.clear()  # *CLS: power-on and every other event cleared
        assert pm.status == "0"  # *STB?
        pm.write("SENSe:NOTACOMMAND 1")
        assert int(pm.status) & 0x04  # error available
        errors = pm.check_errors()  # SYST:ERR? until 0
        assert [int(e[0]) for e in errors] == [-113]
        assert pm.status == "0"
        pm.write("*ESE 32")
        pm.write("NOPE")
        assert int(pm.status) == 0x04 | 0x20  # EAV and ESB (command error enabled)
        assert pm.ask("*ESR?").strip() == "32"
        pm.clear()
        pm.write("SENS:AVER:COUN 25")  # averaging: 25 samples per reading
        assert pm.values("SENS:AVER:COUN?") == [25] and rig.meter.averaging == 25
        t0 = rig.world.clock.now()
        pm.power  # noqa: B018
        assert rig.world.clock.now() - t0 >= 25 * rig.meter.p.sample_time_s
        pm.reset()  # *RST: defaults again
        assert pm.complete == "1"
        assert rig.meter.averaging == 1 and rig.meter.wavelength_nm == rig.meter.p.default_wavelength_nm
        assert pm.check_errors() == []
    finally:
        pm.adapter.close()


def test_pymeasure_options_query_is_not_a_pm100_command(rig: Rig) -> None:
    """``*OPT?`` is not in Thorlabs' PM100 command list: no answer (a read time-out) and -113 queued."""
    pm = _pm100(rig, timeout_ms=300)
    try:
        with pytest.raises(Exception, match="(?i)timeout"):
            pm.options  # noqa: B018
        assert [int(e[0]) for e in pm.check_errors()] == [-113]
    finally:
        pm.adapter.close()


def test_pymeasure_asks_what_a_driver_is_likely_to_ask(rig: Rig) -> None:
    pm = _pm100(rig)
    try:
        pm.wavelength = 532
        assert pm.complete == "1"
        rig.laser.set_setpoint_mw(20.0)
        rig.laser.set_emission(True)
        rig.world.clock.sleep(600)
        truth = rig.meter.expected_reading_w()
        assert pm.values("SENS:CORR:POW:PDI:RESP?")[0] == pytest.approx(responsivity_a_per_w(532))
        assert pm.values("MEAS:CURR?")[0] == pytest.approx(truth * responsivity_a_per_w(532), rel=0.01)
        assert pm.ask("CONF?").strip() == "CURR"
        pm.write("SENS:CORR:BEAM 3")
        assert pm.values("SENS:CORR:BEAM?")[0] == 3.0
        assert pm.values("MEAS:PDEN?")[0] == pytest.approx(truth / (math.pi * 0.15**2), rel=0.01)
        assert pm.values("MEAS:TEMP?")[0] == rig.meter.p.sensor_temperature_c
        assert pm.values("SYST:LFR?")[0] == 50
        pm.write("SENS:POW:RANG:AUTO ONCE")  # not a Thorlabs parameter (boolean only): -224 as on the console
        assert [int(e[0]) for e in pm.check_errors()] == [-224]
        assert pm.values("STAT:OPER:COND?")[0] == 0x100  # sensor connected
        assert pm.check_errors() == []
    finally:
        pm.adapter.close()


# --- python-microscope ObisLaser --------------------------------------------------------------------

def _obis(rig: Rig, monkeypatch: pytest.MonkeyPatch):
    """The unchanged client, its ``serial.Serial(port=...)`` opened as a pyserial URL."""

    def open_port(port: str, **kwargs):
        return serial.serial_for_url(port, **kwargs)

    monkeypatch.setattr(obis_module.serial, "Serial", open_port)
    return obis_module.ObisLaser(f"socket://127.0.0.1:{rig.laser_server.port}", timeout=2.0)


def test_microscope_obis_initialises_in_digital_modulation(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    laser = _obis(rig, monkeypatch)
    try:
        truth = rig.laser
        assert laser._max_power_mw == truth.p.high_limit_mw
        assert truth.modulation == "DIGITAL"  # its initialize(): SOURce:AM:EXTernal DIGital
        status = laser.get_status()
        assert status[0] == "Emission on? OFF" and status[3].startswith("Status code?")
        laser.power = 0.4
        assert truth.setpoint_mw == pytest.approx(40.0)
        laser.enable()  # wakes the head (APRobe ON), emission ON; CDRH on: the light comes 5 s later
        assert laser.get_is_enabled() and laser.get_is_on() and truth.emission
        # nothing at the digital modulation input: a real head emits nothing, and so does this one
        assert truth.true_power_mw() == 0.0
        assert laser.power == 0.0
        assert rig.meter.expected_reading_w() == 0.0
        laser.disable()
        assert not truth.emission and not laser.get_is_on()
    finally:
        laser.shutdown()
    assert truth.asleep and truth.modulation == "CWP" and truth.setpoint_mw == pytest.approx(2.0)


def test_microscope_obis_with_its_trigger_input_high(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = _rig({"modulation_input": 1.0})  # TTL high at the digital input
    try:
        laser = _obis(rig, monkeypatch)
        try:
            truth = rig.laser
            laser.power = 0.5
            t_enable = rig.world.clock.now()
            laser.enable()
            power = laser.power  # asks the measured power: the poller waits out the CDRH delay
            assert rig.world.clock.now() >= t_enable + truth.p.cdrh_delay_s
            assert truth.true_power_mw() == pytest.approx(truth.steady_power_mw(50.0), rel=1e-6)
            assert power == pytest.approx(truth.true_power_mw() / truth.p.high_limit_mw, rel=0.01)
            ratio = responsivity_a_per_w(488) / responsivity_a_per_w(rig.meter.wavelength_nm)
            assert rig.meter.expected_reading_w() == pytest.approx(0.5 * truth.true_power_mw() / 1e3 * ratio, rel=1e-6)
            assert laser.get_set_power() == 0.5
            assert any(line.startswith("Head operating hours:") for line in laser.get_status())
        finally:
            laser.shutdown()
            del laser  # its __del__ shuts down again: while the simulator still listens
    finally:
        rig.meter_server.stop()
        rig.laser_server.stop()
