"""What the simulated PM100D and OBIS answer beyond the harness's own drivers, as the real instruments
do: the IEEE 488.2 status system, the console's other measurements, OBIS modulation, CDRH delay,
sleep, information queries and status word. Values are checked against the models' ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators.clock import ScaledClock, VirtualClock
from simulators.laser import LaserModel
from simulators.meter import PowerMeterModel, responsivity_a_per_w
from simulators.obis_scpi import ObisScpi
from simulators.params import LaserParams, MeterParams
from simulators.pm100_scpi import PM100Scpi

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


def _rig(clock, laser_params: LaserParams | None = None, meter_params: MeterParams | None = None):
    laser = LaserModel("L", laser_params or LaserParams(wavelength_nm=488, nominal_power_mw=100, rin_rms=0.0), clock, np.random.default_rng(1))
    meter = PowerMeterModel("M", meter_params or MeterParams(noise_w=0.0, dark_offset_w=0.0), clock, np.random.default_rng(2), {"L": laser}, lambda n: 1.0)
    return laser, meter, PM100Scpi(meter), ObisScpi(laser)


def one(inst, command: str) -> str:
    (reply,) = inst.respond(command)
    return reply


# --- PM100D: IEEE 488.2 status system -------------------------------------------------------------

def test_standard_event_register_and_status_byte() -> None:
    _, _, pm, _ = _rig(VirtualClock())
    assert one(pm, "*ESR?") == "128"  # power-on
    assert one(pm, "*ESR?") == "0"  # read clears
    assert one(pm, "*STB?") == "0"
    pm.respond("NOPE")  # -113: command error
    pm.respond("SENS:CORR:WAV 5000")  # -222: execution error
    assert int(one(pm, "*STB?")) == 0x04  # error queue not empty (EAV); ESB not enabled
    pm.respond("*ESE 48")
    assert int(one(pm, "*STB?")) == 0x04 | 0x20  # ESB: CME|EXE enabled
    pm.respond("*SRE 32")
    assert int(one(pm, "*STB?")) == 0x04 | 0x20 | 0x40  # MSS
    assert one(pm, "*ESR?") == str(0x20 | 0x10)
    assert one(pm, "*ESE?;*SRE?") == "48;32"
    assert one(pm, "*IDN?;*STB?").endswith(";" + str(0x04 | 0x10))  # MAV: a reply waits
    pm.respond("*CLS")
    assert one(pm, "*STB?") == "0" and one(pm, "SYST:ERR?") == '0,"No error"'
    pm.respond("*OPC")
    assert one(pm, "*ESR?") == "1" and one(pm, "*OPC?") == "1"
    pm.respond("*WAI")
    pm.respond("*ESE 300")
    assert one(pm, "SYST:ERR?") == '-222,"Data out of range"'


def test_psc_is_not_a_pm100_command() -> None:
    _, _, pm, _ = _rig(VirtualClock())
    assert pm.respond("*PSC?") == []
    assert one(pm, "SYST:ERR?") == '-113,"Undefined header"'


def test_operation_register_latches_zeroing_and_reports_to_the_status_byte() -> None:
    clock = VirtualClock()
    _, meter, pm, _ = _rig(clock)
    assert int(one(pm, "STAT:OPER:COND?")) == 0x100  # sensor connected
    pm.respond("STAT:OPER?")  # clear the power-on event
    pm.respond("STAT:OPER:ENAB 128;PTR 128")
    pm.respond("SENS:CORR:COLL:ZERO")
    pm.respond("*IDN?")  # zeroing seen in passing (condition latched into the event register)
    assert not meter.zeroing() and clock.now() == pytest.approx(meter.p.zero_duration_s)  # polled: time passed
    assert int(one(pm, "*STB?")) & 0x80  # OPER summary
    assert int(one(pm, "STAT:OPER?")) == 0x80 and one(pm, "STAT:OPER?") == "0"
    pm.respond("STAT:PRES")
    assert one(pm, "STAT:OPER:ENAB?;PTR?;NTR?") == f"0;{0x7FFF};0"


def test_data_ready_and_questionable_power() -> None:
    clock = VirtualClock()
    laser, _, pm, _ = _rig(clock)
    pm.respond("INIT")
    assert int(one(pm, "STAT:OPER:COND?")) & 0x200
    pm.respond("ABOR")
    pm.respond("SENS:POW:RANG 1e-6")  # 5 uW range
    laser.set_setpoint_mw(10)
    laser.set_emission(True)
    clock.sleep(10)
    pm.respond("MEAS:POW?")
    assert int(one(pm, "STAT:QUES:COND?")) & 0x08


# --- PM100D: other measurements --------------------------------------------------------------------

def test_current_density_responsivity_and_temperature() -> None:
    clock = VirtualClock()
    laser, meter, pm, _ = _rig(clock)
    laser.set_setpoint_mw(20)
    laser.set_emission(True)
    clock.sleep(10)
    pm.respond("SENS:CORR:WAV 488")
    truth_w = meter.expected_reading_w()
    r = responsivity_a_per_w(488)
    assert float(one(pm, "SENS:CORR:POW:PDI:RESP?")) == pytest.approx(r)
    assert float(one(pm, "MEAS:CURR?")) == pytest.approx(truth_w * r, rel=1e-4)
    assert one(pm, "CONF?") == "CURR"
    assert float(one(pm, "SENS:CORR:BEAM?")) == pytest.approx(9.5)
    pm.respond("SENS:CORR:BEAM 2")
    assert float(one(pm, "MEAS:PDEN?")) == pytest.approx(truth_w / (math.pi * 0.1**2), rel=1e-4)
    assert one(pm, "CONF?") == "POWDENS"
    pm.respond("CONF:POW")
    assert one(pm, "CONF?") == "POW"
    assert float(one(pm, "MEAS:TEMP?")) == pytest.approx(meter.p.sensor_temperature_c)
    pm.respond("SENS:POW:REF 0.005;REF:STAT 1")
    assert float(one(pm, "MEAS?")) == pytest.approx(truth_w - 0.005, rel=1e-3)
    assert float(one(pm, "SENS:POW:REF?")) == 0.005
    pm.respond("SENS:CORR:POW:PDI:RESP 0.3")  # a calibrated sensor's responsivity is not settable
    assert one(pm, "SYST:ERR?") == '-221,"Settings conflict"'


def test_sensor_without_thermistor() -> None:
    _, _, pm, _ = _rig(VirtualClock(), meter_params=MeterParams(sensor_thermistor=False))
    assert one(pm, "SYST:SENS:IDN?").endswith(",1,2,33")  # no temperature-sensor flag (0x100)
    assert pm.respond("MEAS:TEMP?") == []
    assert one(pm, "SYST:ERR?") == '-241,"Hardware missing"'


def test_line_frequency_range_auto_and_responsivity_curve() -> None:
    _, meter, pm, _ = _rig(VirtualClock())
    assert one(pm, "SYST:LFR?") == "50"
    pm.respond("SYST:LFR 60")
    assert one(pm, "SYST:LFR?") == "60"
    pm.respond("SYST:LFR 55")
    assert one(pm, "SYST:ERR?") == '-224,"Illegal parameter value"'
    # RANGe:AUTO is a boolean on Thorlabs consoles: there is no SCPI ONCE
    pm.respond("SENS:POW:RANG:AUTO ONCE")
    assert one(pm, "SYST:ERR?") == '-224,"Illegal parameter value"'
    pm.respond("SENS:POW:RANG:AUTO OFF")
    assert one(pm, "SENS:POW:RANG:AUTO?") == "0" and not meter.auto_range
    # the sensor's responsivity curve, at the set wavelength or at one asked for
    assert float(one(pm, "SENS:CORR:POW? 800")) == pytest.approx(responsivity_a_per_w(800))
    assert float(one(pm, "SENS:CORR:POW?")) == pytest.approx(responsivity_a_per_w(meter.wavelength_nm))
    assert one(pm, "SYST:ERR?") == '0,"No error"'


# --- OBIS ------------------------------------------------------------------------------------------

def test_external_modulation_without_input_emits_nothing() -> None:
    clock = VirtualClock()
    laser, _, _, obis = _rig(clock, LaserParams(wavelength_nm=488, nominal_power_mw=100, cdrh=False))
    obis.respond("SOUR:POW:LEV:IMM:AMPL 0.05;SOUR:AM:STAT ON")
    assert laser.true_power_mw() > 40
    for mode, reply in [("DIG", "DIGITAL"), ("ANAL", "ANALOG"), ("MIX", "MIXED"), ("DIGSO", "DIGSO"), ("MIXSO", "MIXSO")]:
        assert obis.respond(f"SOUR:AM:EXT {mode}") == ["OK"]
        assert obis.respond("SOUR:AM:SOUR?") == [reply, "OK"]
        assert laser.true_power_mw() == 0.0 and float(obis.respond("SOUR:POW:LEV?")[0]) == 0.0
        assert int(obis.respond("SYST:STAT?")[0], 16) & 0x400  # external operating mode
    laser.modulation_input = 0.5  # an analog input at half scale
    assert laser.true_power_mw() == pytest.approx(0.5 * laser.steady_power_mw(50))
    obis.respond("SOUR:AM:EXT DIG")
    assert laser.true_power_mw() == pytest.approx(laser.steady_power_mw(50))  # TTL high
    obis.respond("SOUR:AM:INT CWC")
    assert obis.respond("SOUR:AM:SOUR?") == ["CWC", "OK"]


@pytest.mark.parametrize("virtual", [True, False])
def test_cdrh_delay_and_the_status_word(virtual: bool) -> None:
    clock = VirtualClock() if virtual else ScaledClock(100)
    laser, _, _, obis = _rig(clock)
    assert obis.respond("SYST:CDRH?") == ["ON", "OK"]
    obis.respond("SOUR:POW:LEV:IMM:AMPL 0.05")
    t_on = clock.now()
    obis.respond("SOUR:AM:STAT ON")
    ends = laser.emission_starts_at()
    assert t_on + 5.0 <= ends <= clock.now() + 5.0
    if virtual:
        assert laser.true_power_mw() == 0.0 and laser.in_cdrh_delay()  # nothing yet
        status = int(obis.respond("SYST:STAT?")[0], 16)
        # the poller waited for the light: virtual time passed to the end of the delay
        assert clock.now() == pytest.approx(ends) and status & 0x2 and not status & 0x10
    else:  # real time: every answer agrees with the clock around it, however busy the machine is
        while True:
            before = clock.now()
            status = int(obis.respond("SYST:STAT?")[0], 16)
            after = clock.now()
            if after < ends:
                assert status & 0x10 and not status & 0x2
            elif before >= ends:
                assert status & 0x2 and not status & 0x10
                break
        assert clock.now() >= t_on + 5.0
    assert laser.true_power_mw() > 40
    obis.respond("SOUR:AM:STAT OFF;:SYST:CDRH OFF")
    t_on = clock.now()
    obis.respond("SOUR:AM:STAT ON")
    t_after = clock.now()
    assert t_on <= laser.emission_starts_at() <= t_after and laser.true_power_mw() > 40


def test_sleep_stops_the_light_and_waking_restarts_warm_up() -> None:
    clock = VirtualClock()
    params = LaserParams(wavelength_nm=488, nominal_power_mw=100, cdrh=False, warmup_deficit=0.1, warmup_tau_s=60)
    laser, _, _, obis = _rig(clock, params)
    obis.respond("SOUR:POW:LEV:IMM:AMPL 0.05;SOUR:AM:STAT ON")
    clock.sleep(3600)
    assert obis.respond("SOUR:TEMP:APR OFF;SOUR:TEMP:APR?") == ["OK", "OFF", "OK"]
    assert laser.true_power_mw() == 0.0
    status = int(obis.respond("SYST:STAT?")[0], 16)
    assert status & 0x8 and not status & 0x4  # standby, not ready
    obis.respond("SOUR:TEMP:APR ON")
    assert laser.true_power_mw() == pytest.approx(0.9 * laser.steady_power_mw(50), rel=1e-3)


def test_information_queries_reset_and_error_clear() -> None:
    clock = VirtualClock()
    laser, _, _, obis = _rig(clock, LaserParams(wavelength_nm=561, nominal_power_mw=100, cdrh=False))
    p = laser.p
    assert obis.respond("SYST:INF:MDAT?") == [p.manufacture_date, "OK"]
    assert obis.respond("SYST:INF:CDAT?") == [p.calibration_date, "OK"]
    assert obis.respond("SYST:INF:PVER?")[1] == "OK"
    assert obis.respond("SYST:INF:USER 2, station A;:SYST:INF:USER? 2") == ["OK", "station A", "OK"]
    assert obis.respond("SYST:CYCL?") == [str(p.power_cycles), "OK"]
    assert obis.respond("SOUR:TEMP:DSET?") == ["25.00C", "OK"]
    assert obis.respond("SOUR:POW:CURR?") == ["0.0000", "OK"]
    obis.respond("SOUR:POW:LEV:IMM:AMPL 0.05;SOUR:AM:STAT ON")
    assert float(obis.respond("SOUR:POW:CURR?")[0]) == pytest.approx(laser.diode_current_a(), abs=1e-4) and laser.diode_current_a() > 0
    assert obis.respond("SOUR:POW:LEV:IMM:AMPL 5") == ["ERR-220"]
    assert int(obis.respond("SYST:STAT?")[0], 16) & 0x40  # an error is queued
    assert obis.respond("SYST:ERR:CLE") == ["OK"]
    assert not int(obis.respond("SYST:STAT?")[0], 16) & 0x40
    obis.respond("SOUR:AM:EXT DIG")
    assert obis.respond("*RST") == ["OK"]
    assert obis.respond("SOUR:AM:STAT?;SOUR:AM:SOUR?") == ["OFF", "OK", "CWP", "OK"]
    assert obis.respond("SYST1:INF:WAV?") == ["561.0", "OK"]  # device index of a multi-laser remote
    assert obis.respond("SYST:INF:BOGUS?") == ["ERR-100"]
