"""The simulators' SCPI engine accepts every legal spelling and keeps a real error queue."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.clock import ScaledClock
from simulators.laser import LaserModel
from simulators.meter import PowerMeterModel
from simulators.obis_scpi import ObisScpi
from simulators.params import LaserParams, MeterParams
from simulators.pm100_scpi import PM100Scpi

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


@pytest.fixture
def pm100() -> PM100Scpi:
    clock = ScaledClock(1000)
    laser = LaserModel("L", LaserParams(wavelength_nm=488, nominal_power_mw=100), clock, np.random.default_rng(1))
    meter = PowerMeterModel("M", MeterParams(), clock, np.random.default_rng(2), {"L": laser}, lambda n: 1.0)
    return PM100Scpi(meter)


@pytest.mark.parametrize(
    "command",
    [
        "SENSe:CORRection:WAVelength 532",
        "sens:corr:wav 532",
        "SENS1:CORR:WAV 532",
        "CORRection:WAVelength 532",
        ":sense:correction:wavelength 5.32E2",
        "Sens:Corr:Wav 532",
    ],
)
def test_every_legal_spelling_sets_the_wavelength(pm100: PM100Scpi, command: str) -> None:
    assert pm100.respond(command) == []
    assert pm100.respond("SYST:ERR?") == ['0,"No error"']
    assert float(pm100.respond("SENS:CORR:WAV?")[0]) == 532.0


@pytest.mark.parametrize("query", ["MEAS?", "MEAS:POW?", "measure:scalar:power?", "MEASure:SCALar?", "READ?"])
def test_measure_query_spellings(pm100: PM100Scpi, query: str) -> None:
    [reply] = pm100.respond(query)
    float(reply)


def test_optional_nodes_and_compound_commands_with_relative_path(pm100: PM100Scpi) -> None:
    # after SENS:AVER:COUN the current path is SENS:AVER, so COUN? resolves there
    assert pm100.respond("SENS:AVER:COUN 25;COUN?") == ["25"]
    assert pm100.respond("POW:DC:RANG:AUTO 0;AUTO?;:SENS:POW:RANG:AUTO 1;AUTO?") == ["0;1"]
    assert pm100.respond("*IDN?;:SYST:SENS:IDN?")[0].startswith("Thorlabs,PM100D")


def test_error_queue_is_fifo_with_codes(pm100: PM100Scpi) -> None:
    pm100.respond("FOO:BAR 1")
    pm100.respond("SENS2:CORR:WAV 500")
    pm100.respond("SENS:CORR:WAV 5000")
    pm100.respond("SENS:CORR:WAV banana")
    assert pm100.respond("SYST:ERR?") == ['-113,"Undefined header"']
    assert pm100.respond("SYST:ERR:NEXT?") == ['-114,"Header suffix out of range"']
    assert pm100.respond("syst:err?") == ['-222,"Data out of range"']
    assert pm100.respond("SYSTem:ERRor?") == ['-104,"Data type error"']
    assert pm100.respond("SYST:ERR?") == ['0,"No error"']


def test_error_queue_overflow_keeps_the_last_slot_for_minus_350(pm100: PM100Scpi) -> None:
    for _ in range(40):
        pm100.respond("NOPE")
    replies = [pm100.respond("SYST:ERR?")[0] for _ in range(31)]
    assert replies[-2] == '-350,"Queue overflow"'
    assert replies[-1] == '0,"No error"'
    assert pm100.respond("*CLS;SYST:ERR:COUN?") == ["0"]


def test_min_max_aliases(pm100: PM100Scpi) -> None:
    assert float(pm100.respond("CORR:WAV? MIN")[0]) == 400.0
    assert float(pm100.respond("CORR:WAV? MAX")[0]) == 1100.0
    pm100.respond("CORR:WAV MAX")
    assert float(pm100.respond("CORR:WAV?")[0]) == 1100.0


def test_obis_handshake_and_errors() -> None:
    clock = ScaledClock(1000)
    laser = LaserModel("L", LaserParams(wavelength_nm=561, nominal_power_mw=100), clock, np.random.default_rng(1))
    obis = ObisScpi(laser)
    assert obis.respond("SOUR:POW:LEV:IMM:AMPL 0.025") == ["OK"]
    assert obis.respond("sour:pow:lev:imm:ampl?") == ["0.02500", "OK"]
    assert obis.respond("SOURce:POWer:LEVel:IMMediate:AMPLitude 0.5") == ["ERR-220"]
    assert obis.respond("SYST:INF:BOGUS?") == ["ERR-100"]
    assert obis.respond("SYST:COMM:HAND OFF") == []
    assert obis.respond("SYST:INF:WAV?") == ["561.0"]
