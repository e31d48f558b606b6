"""Injected faults end in clear, typed errors, and never hang longer than the configured timeout."""

from __future__ import annotations

import time

import pytest

from devices.errors import ConnectionLost, DeviceTimeout, FrameTimeout, GarbledReply, InstrumentError
from simulators.params import FaultSpec


def _arm(st, device: str, **spec) -> None:
    """Inject a fault now (``after_commands`` counts from now), as the station file would at start."""
    w = st.sim.world
    model = w.meters.get(device) or w.lasers.get(device)
    model.faults.arm(FaultSpec(**spec))


def _meter_with(make_station, fault: dict, timeout_ms: int = 300):
    return make_station({"devices": {"Meter": {"timeout_ms": timeout_ms, "simulation": {"faults": [fault]}}}})


def _commands_so_far(st) -> int:
    return st.sim.world.meters["Meter"].faults.commands


def test_meter_connection_lost_after_n_commands(make_station) -> None:
    st = _meter_with(make_station, {"kind": "connection_lost", "after_commands": 30})
    meter = st.power_meter
    with pytest.raises(ConnectionLost):
        for _ in range(100):
            meter.read_w()
    assert _commands_so_far(st) <= 31
    with pytest.raises(ConnectionLost):  # stays lost, like an unplugged cable
        meter.read_w()


def test_meter_no_reply_times_out_within_the_configured_timeout(make_station) -> None:
    # a timeout generous enough for a busy machine; how long VISA waits is measured by its own clock
    # (time.time, which may be slewed against this process's monotonic clock): not asserted here.
    # Failed twice in about 5 suite runs under full CPU load (never alone): each step says what the
    # meter's fault counter saw, so the next failure tells which exchange went wrong.
    st = make_station({"devices": {"Meter": {"timeout_ms": 3000}}})  # the exchanges before the fault must not time out on a loaded machine
    faults = st.sim.world.meters["Meter"].faults
    start = faults.commands
    _arm(st, "Meter", kind="no_reply", after_commands=3, times=1)
    meter = st.power_meter

    def seen() -> str:
        return f"commands since arming {faults.commands - start}, faults fired {faults.fired}"

    for i in range(3):
        try:
            meter.read_w()
        except Exception as exc:
            pytest.fail(f"read {i + 1} of 3 before the fault: {exc!r}; {seen()}")
    try:
        meter.read_w()
    except DeviceTimeout as exc:
        assert "no reply within 3000 ms" in str(exc), f"{exc}; {seen()}"  # the configured time-out, which VISA keeps
    except Exception as exc:
        pytest.fail(f"the faulted read: {exc!r}; {seen()}")
    else:
        pytest.fail(f"the faulted read got a reply; {seen()}")
    try:
        assert meter.read_w() is not None  # the next exchange works again
    except Exception as exc:
        pytest.fail(f"the read after the fault: {exc!r}; {seen()}")


def test_meter_garbage_reply_is_a_garbled_reply(make_station) -> None:
    st = make_station({"devices": {"Meter": {"timeout_ms": 1500}}})
    _arm(st, "Meter", kind="garbage_reply", after_commands=0, times=1)
    with pytest.raises(GarbledReply):
        st.power_meter.read_w()
    assert isinstance(st.power_meter.read_w(), float)


def test_meter_scpi_error_surfaces_from_the_error_queue(make_station) -> None:
    st = make_station({"devices": {"Meter": {"timeout_ms": 1500}}})
    _arm(st, "Meter", kind="scpi_error", after_commands=0, times=1)
    with pytest.raises(InstrumentError) as info:
        st.power_meter.set_averaging(10)
    assert info.value.code == -300
    st.power_meter.set_averaging(10)  # once only


def test_meter_fault_at_virtual_time(make_station) -> None:
    st = make_station({"devices": {"Meter": {"simulation": {"faults": [{"kind": "connection_lost", "at_s": 300000}]}}}})
    assert st.clock.now() < 300000
    st.power_meter.read_w()
    st.clock.sleep_until(300000)
    with pytest.raises(ConnectionLost):
        st.power_meter.read_w()


def test_laser_no_reply_and_garbage(make_station) -> None:
    st = make_station({"devices": {"Laser488": {"timeout_ms": 1500}}})
    _arm(st, "Laser488", kind="garbage_reply", after_commands=0, times=1)
    _arm(st, "Laser488", kind="no_reply", after_commands=0, times=1)
    line = st.lasers["488"]
    with pytest.raises(GarbledReply):
        line.setpoint_mw()
    with pytest.raises(DeviceTimeout, match="no reply within 1500 ms"):
        line.setpoint_mw()
    line.set_setpoint_mw(5)
    assert line.setpoint_mw() == pytest.approx(5)


def test_laser_scpi_error_and_connection_lost_during_use(make_station) -> None:
    st = make_station({"devices": {"Laser561": {"timeout_ms": 1500}}})
    _arm(st, "Laser561", kind="scpi_error", after_commands=0, times=1)
    # commands: refused set point, set point, emission on, status word (light there?), then lost
    _arm(st, "Laser561", kind="connection_lost", after_commands=4)
    line = st.lasers["561"]
    with pytest.raises(InstrumentError):
        line.set_setpoint_mw(5)
    line.set_setpoint_mw(5)
    line.set_emission(True)
    with pytest.raises(ConnectionLost):
        line.set_emission(False)
    failures = st.safe_state()  # says which device could not be confirmed safe
    assert any("Laser561" in f for f in failures)


def test_stage_that_never_stops_being_busy(make_station) -> None:
    st = make_station({"devices": {"XYStage": {"simulation": {"faults": [{"kind": "stuck_busy", "after_commands": 2}]}}}})
    st.xy_stage.timeout_s = 0.5
    st.xy_stage.move_to(10, 10)
    st.xy_stage.move_to(20, 10)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match="busy"):
        st.xy_stage.move_to(30, 10)
    assert time.monotonic() - t0 >= 0.5  # it waited as long as allowed (how much longer is load, not asserted)


def test_dropped_frame_on_snap_is_a_frame_timeout(make_station) -> None:
    """Virtual time: the SDK's poll waits its whole time-out (exposure + FrameTimeout-ms) in station time."""
    dropped = {"kind": "dropped_frame", "after_commands": 1, "times": 1}
    st = make_station({"devices": {"Camera": {"frame_timeout_ms": 1500, "simulation": {"faults": [dropped]}}}})
    st.camera.set_exposure_ms(10)
    st.camera.snap()
    t0 = st.clock.now()
    with pytest.raises(FrameTimeout):
        st.camera.snap()
    assert st.clock.now() - t0 == pytest.approx(1.510, abs=1e-9)
    assert st.camera.snap().shape == (1080, 1920)


def test_dropped_frame_on_snap_in_real_time(make_station) -> None:
    st = make_station({"simulation": {"clock": "real", "time_scale": 1},
                       "devices": {"Camera": {"frame_timeout_ms": 300,
                                              "simulation": {"width_px": 256, "height_px": 256,
                                                             "faults": [{"kind": "dropped_frame", "after_commands": 0, "times": 1}]}}}})
    st.camera.set_exposure_ms(10)
    t0 = time.monotonic()
    with pytest.raises(FrameTimeout):
        st.camera.snap()
    assert time.monotonic() - t0 >= 0.3  # it waited as long as allowed (how much longer is load, not asserted)
    assert st.camera.snap() is not None


def test_late_frame_within_and_beyond_the_timeout(make_station) -> None:
    """Time-out 1.51 s of station time: a frame 1 s late arrives (and the clock shows it), one 15 s late does not."""
    st = make_station({"devices": {"Camera": {"frame_timeout_ms": 1500, "simulation": {"readout_s": 0.02, "faults": [
        {"kind": "late_frame", "after_commands": 0, "times": 1, "delay_s": 1.0},
        {"kind": "late_frame", "after_commands": 1, "times": 1, "delay_s": 15.0},
    ]}}}})
    st.camera.set_exposure_ms(10)
    t0 = st.clock.now()
    assert st.camera.snap() is not None
    assert st.clock.now() - t0 == pytest.approx(0.010 + 0.02 + 1.0, abs=1e-9)
    with pytest.raises(FrameTimeout):
        st.camera.snap()


def test_dropped_frame_in_a_sequence_is_counted(make_station) -> None:
    st = make_station({"devices": {"Camera": {"simulation": {"faults": [{"kind": "dropped_frame", "after_commands": 2, "times": 1}]}}}})
    core = st.core
    st.camera.set_exposure_ms(5)
    core.startSequenceAcquisition(st.camera.label, 4, 0, True)
    frames = []
    for _ in range(400):
        if core.getRemainingImageCount():
            frames.append(core.popNextImageAndMD()[1])
        time.sleep(0.02)
        if len(frames) == 3 and not core.isSequenceRunning():
            break
    core.stopSequenceAcquisition(st.camera.label)
    # the camera made 4 frames, one never arrived: the gap is visible, nothing is shifted
    assert [md["FrameCount"] for md in frames] == ["1", "2", "4"]
    assert [md["DroppedFrames"] for md in frames] == ["0", "0", "1"]
