"""The real TSI camera driver through Micro-Manager core, on the simulated SDK: API semantics, and
image statistics that give back the simulated sensor's gain and offset."""

from __future__ import annotations

import numpy as np
import pytest

from harness.station.station import Station
from simulators.tsi_sdk import tl_camera
from tests.imaging import shift_px

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


def test_sdk_allows_one_instance_and_enforces_disarmed_settings(sim_station: Station) -> None:
    # the station's driver holds the one SDK instance of this process
    with pytest.raises(tl_camera.TLCameraError, match="already in use"):
        tl_camera.TLCameraSDK()
    cam = sim_station.drivers["Camera"]._cam
    cam.image_poll_timeout_ms = 50
    cam.frames_per_trigger_zero_for_unlimited = 1
    cam.arm(2)
    try:
        with pytest.raises(tl_camera.TLCameraError, match="disarmed"):
            cam.roi = (0, 0, 99, 99)
        with pytest.raises(tl_camera.TLCameraError, match="disarmed"):
            cam.binx = 2
        assert cam.get_pending_frame_or_null() is None  # no trigger yet: times out, returns None
        cam.issue_software_trigger()
        cam.image_poll_timeout_ms = 5000
        frame = cam.get_pending_frame_or_null()
        assert frame is not None and frame.frame_count == 1
        assert frame.image_buffer.shape == (cam.image_height_pixels, cam.image_width_pixels)
    finally:
        cam.disarm()
    with pytest.raises(tl_camera.TLCameraError):
        cam.issue_software_trigger()


def test_snap_exposure_binning_and_roi_through_the_core(sim_station: Station) -> None:
    st = sim_station
    core, label = st.core, st.camera.label
    st.camera.set_exposure_ms(12.5)
    assert st.camera.exposure_ms() == pytest.approx(12.5)
    assert st.drivers["Camera"]._cam.exposure_time_us == 12500
    img = st.camera.snap()
    assert img.shape == (1080, 1920) and img.dtype == np.uint16
    core.setProperty(label, "Binning", 2)
    assert st.camera.snap().shape == (540, 960)
    core.setROI(label, 10, 20, 300, 200)
    assert st.camera.snap().shape == (200, 300)
    assert tuple(st.drivers["Camera"]._cam.roi) == (20, 40, 619, 439)
    core.clearROI()
    core.setProperty(label, "Binning", 1)
    assert st.camera.snap().shape == (1080, 1920)


def test_sequence_acquisition_numbers_every_frame(sim_station: Station) -> None:
    st = sim_station
    core = st.core
    st.camera.set_exposure_ms(5)
    core.startSequenceAcquisition(st.camera.label, 5, 0, True)
    frames = []
    deadline = 200
    while len(frames) < 5 and deadline:
        if core.getRemainingImageCount():
            img, md = core.popNextImageAndMD()
            frames.append((img, md))
        else:
            deadline -= 1
            import time

            time.sleep(0.05)
    core.stopSequenceAcquisition(st.camera.label)
    assert [md["FrameCount"] for _, md in frames] == ["1", "2", "3", "4", "5"]
    assert all(md["DroppedFrames"] == "0" for _, md in frames)


def test_photon_transfer_gives_back_gain_and_offset(make_station) -> None:
    """Mean-variance (photon transfer) on flat frames: slope = 1/K (ADU per e-), intercept at the
    offset. Ground truth: K = 2.7 e-/ADU, offset 100 ADU, read noise 4 e-."""
    st = make_station({"simulation": {"sample": "uniform_slide"}, "devices": {"Camera": {"simulation": {"hot_pixels": 0}}}})
    truth = st.sim.world.cameras["Camera"].p
    cam, line = st.camera, st.lasers["488"]
    st.core.setROI(cam.label, 660, 290, 600, 500)  # the bright, flat middle of the field
    cam.set_exposure_ms(50)
    darks = [cam.snap().astype(np.float64) for _ in range(2)]
    offset = np.mean(darks)
    line.set_setpoint_mw(40)
    line.set_emission(True)
    means, variances = [], []
    try:
        for exposure in (5, 15, 30, 50, 80):
            cam.set_exposure_ms(exposure)
            a, b = (cam.snap().astype(np.float64) for _ in range(2))
            means.append((a.mean() + b.mean()) / 2 - offset)
            variances.append(np.var(a - b) / 2)  # temporal variance, free of fixed pattern
    finally:
        line.set_emission(False)
    slope, intercept = np.polyfit(means, variances, 1)
    assert 1 / slope == pytest.approx(truth.conversion_gain_e_per_adu, rel=0.04)
    assert offset == pytest.approx(truth.offset_adu + truth.dark_current_e_per_s * 0.05 / truth.conversion_gain_e_per_adu, abs=0.5)
    read_noise_adu = np.sqrt(np.var(darks[0] - darks[1]) / 2)
    assert read_noise_adu * truth.conversion_gain_e_per_adu == pytest.approx(truth.read_noise_e, rel=0.05)
    assert max(means) > 500  # the fit spans a useful signal range


def test_gain_setting_scales_the_signal(make_station) -> None:
    # a steady laser: with the station clock following the wall clock, warm-up, drift and the mode hop
    # would otherwise change the light between the two frames by however long the machine took
    steady = {"warmup_deficit": 0.0, "drift_pct_per_h": 0.0, "mode_hops": []}
    st = make_station({"simulation": {"sample": "uniform_slide"}, "devices": {"Laser561": {"simulation": steady}}})
    cam, line = st.camera, st.lasers["561"]
    st.core.setROI(cam.label, 760, 390, 400, 300)
    cam.set_exposure_ms(20)
    line.set_setpoint_mw(20)
    line.set_emission(True)
    try:
        st.core.setProperty(cam.label, "Gain", 0.0)
        low = cam.snap().mean() - 100
        st.core.setProperty(cam.label, "Gain", 6.0)
        high = cam.snap().mean() - 100
    finally:
        line.set_emission(False)
    assert high / low == pytest.approx(10 ** (6 / 20), rel=0.02)


def test_image_follows_the_true_stage_position(sim_station: Station) -> None:
    st = sim_station
    world = st.sim.world
    stage_truth = world.xy_stages[st.xy_stage.label]
    line = st.lasers["488"]
    st.camera.set_exposure_ms(100)
    line.set_setpoint_mw(60)
    line.set_emission(True)
    try:
        st.xy_stage.move_to(2000, 3000)
        t0 = stage_truth.true()
        a = st.camera.snap()
        st.xy_stage.move_to(2012, 2995)
        t1 = stage_truth.true()
        b = st.camera.snap()
    finally:
        line.set_emission(False)
    dx, dy = shift_px(a, b)
    px = st.camera.pixel_size_um
    # the sample moves with the stage, so its image moves the opposite way
    assert -dx * px == pytest.approx(t1["x"] - t0["x"], abs=0.03)
    assert -dy * px == pytest.approx(t1["y"] - t0["y"], abs=0.03)
    assert a.max() > 1000  # beads well above background
