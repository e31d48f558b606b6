"""Stations as wholes: safe state on load and close, the demo station's real C++ devices."""

from __future__ import annotations

import numpy as np
import pytest

from harness.station.station import Station
from tests.conftest import DEMO, FAST, merge, station_variant
from tests.imaging import shift_px

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


def test_load_and_close_leave_every_laser_off(make_station) -> None:
    st = make_station({})
    world = st.sim.world
    assert all(not laser.emission for laser in world.lasers.values())
    for line in st.lasers.values():
        line.set_setpoint_mw(5)
        line.set_emission(True)
    assert all(laser.emission for laser in world.lasers.values())
    st.close()
    assert all(not laser.emission and laser.true_power_mw() == 0.0 for laser in world.lasers.values())
    assert all(not server._thread.is_alive() for server in st.sim.servers.values()) or not st.sim.servers


def test_loading_turns_off_a_laser_left_on(tmp_path) -> None:
    """A laser left emitting (by another program, a crash) is switched off when a station loads."""
    path = station_variant(tmp_path, FAST)
    with Station.load(path) as st:
        laser = st.sim.world.lasers["Laser405"]
        laser.set_setpoint_mw(10)
        laser.set_emission(True)
        assert st.lasers["405"].emission()
        assert st.safe_state() == []
        assert not laser.emission


def test_demo_station_camera_follows_the_cpp_stage(tmp_path) -> None:
    path = tmp_path / "demo.yaml"
    import yaml

    data = merge(yaml.safe_load(DEMO.read_text()), FAST)
    data["micromanager"]["config"] = str(DEMO.parent / data["micromanager"]["config"])
    path.write_text(yaml.safe_dump(data))
    with Station.load(path) as st:
        assert st.core.getDeviceLibrary("DCam") == "DemoCamera"
        assert st.camera.pixel_size_um == 1.0
        st.xy_stage.move_to(0, 0)
        a = st.camera.snap()
        st.xy_stage.move_to(12, -7)
        b = st.camera.snap()
        dx, dy = shift_px(a, b)
        assert st.xy_stage.position_um() == pytest.approx((12, -7), abs=0.01)
        # DemoCamera's bead image moves with the stage by one pixel per um
        assert (abs(dx), abs(dy)) == pytest.approx((12, 7), abs=0.3)
        assert np.std(a) > 0


def test_a_cpp_device_fills_a_laser_role_by_named_properties(tmp_path) -> None:
    """An analog-modulated laser: power set through a DemoCamera DA channel (volts), emission gated
    by a DemoCamera shutter; both are real C++ adapters."""
    import yaml

    data = merge(yaml.safe_load(DEMO.read_text()), FAST)
    data["micromanager"]["config"] = str(DEMO.parent / data["micromanager"]["config"])
    data["devices"]["DA"] = {"driver": "micromanager", "adapter": "DemoCamera", "device": "D-DA"}
    data["devices"]["Gate"] = {"driver": "micromanager", "adapter": "DemoCamera", "device": "DShutter"}
    data["roles"]["lasers"].append({
        "device": "DA", "wavelength_nm": 405, "setpoint_property": "Voltage", "setpoint_unit": "V",
        "volts_per_mw": 0.05, "shutter_device": "Gate", "max_power_mw": 80,
    })
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    with Station.load(path) as st:
        line = st.lasers["405"]
        line.set_setpoint_mw(20)
        assert float(st.core.getProperty("DA", "Voltage")) == pytest.approx(1.0)
        assert line.setpoint_mw() == pytest.approx(20)
        line.set_emission(True)
        assert st.core.getShutterOpen("Gate") and line.emission()
        from devices.errors import SafetyLimitError

        with pytest.raises(SafetyLimitError):
            line.set_setpoint_mw(90)
        assert float(st.core.getProperty("DA", "Voltage")) == pytest.approx(1.0)
        st.safe_state()
        assert not st.core.getShutterOpen("Gate")
