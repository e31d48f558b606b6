"""``tl_camera`` with the vendor's API: ``TLCameraSDK`` (one instance at a time), ``TLCamera``,
``Frame``, ``TLCameraError``, ``ROI``, ``Range``. Frames are rendered by simulated camera models on
the world's clock; ``get_pending_frame_or_null`` waits up to ``image_poll_timeout_ms`` and returns
``None`` on timeout, as the SDK does.

On a real-time clock a producer thread exposes frames one after another and the poll blocks in real
time. On a virtual clock nothing runs in the background: a poll exposes the next frame then and
there (from the trigger, or straight after the previous frame's read-out), and the station clock
passes to the end of its read-out; a dropped or late frame makes the poll wait its full timeout in
station time and return ``None`` (a late frame is delivered by a later poll).

About 400 lines: the vendor's classes are mirrored one to one, with their exact names and signatures,
so the driver that imports this module cannot tell it from the real SDK."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, NamedTuple

import numpy as np

from ..camera import CameraModel, Exposure
from .tl_camera_enums import OPERATION_MODE, SENSOR_TYPE

_attached: dict[str, CameraModel] = {}
_open: set[str] = set()


def attach_cameras(models: dict[str, CameraModel]) -> None:
    """Make simulated cameras discoverable, keyed by serial number."""
    _attached.update(models)


def detach_cameras(serials: list[str] | None = None) -> None:
    for s in list(_attached) if serials is None else serials:
        _attached.pop(s, None)


class TLCameraError(Exception):
    """Error raised by the SDK (misuse or camera failure)."""


class Range(NamedTuple):
    min: Any
    max: Any


class ROI(NamedTuple):
    upper_left_x_pixels: int
    upper_left_y_pixels: int
    lower_right_x_pixels: int
    lower_right_y_pixels: int


class Frame:
    def __init__(self, image_buffer: np.ndarray, frame_count: int, time_stamp_relative_ns_or_null: int | None) -> None:
        self._image_buffer = image_buffer
        self._frame_count = frame_count
        self._time_stamp_relative_ns_or_null = time_stamp_relative_ns_or_null

    @property
    def image_buffer(self) -> np.ndarray:
        return self._image_buffer

    @property
    def frame_count(self) -> int:
        return self._frame_count

    @property
    def time_stamp_relative_ns_or_null(self) -> int | None:
        return self._time_stamp_relative_ns_or_null


class TLCameraSDK:
    _is_sdk_open = False

    def __init__(self) -> None:
        self._disposed = True
        if TLCameraSDK._is_sdk_open:
            raise TLCameraError(
                "TLCameraSDK is already in use. Please dispose of the current instance before trying to create another"
            )
        TLCameraSDK._is_sdk_open = True
        self._disposed = False

    def __enter__(self) -> TLCameraSDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def dispose(self) -> None:
        if not self._disposed:
            TLCameraSDK._is_sdk_open = False
            self._disposed = True

    def _check(self) -> None:
        if self._disposed:
            raise TLCameraError("TLCameraSDK has been disposed")

    def discover_available_cameras(self) -> list[str]:
        self._check()
        return list(_attached)

    def open_camera(self, camera_serial_number: str) -> TLCamera:
        self._check()
        if camera_serial_number not in _attached:
            raise TLCameraError(f"tl_camera_open_camera() failed: no camera with serial number {camera_serial_number}")
        if camera_serial_number in _open:
            raise TLCameraError(f"camera {camera_serial_number} is already open")
        _open.add(camera_serial_number)
        return TLCamera(_attached[camera_serial_number])


class TLCamera:
    def __init__(self, model: CameraModel) -> None:
        self._m = model
        p = model.p
        self._disposed = False
        self._armed = False
        self._exposure_us = 10000
        self._poll_timeout_ms = 0
        self._frames_per_trigger = 1
        self._mode = OPERATION_MODE.SOFTWARE_TRIGGERED
        self._binx = self._biny = 1
        self._gain = 0
        self._black_level = int(round(p.offset_adu))
        self._roi = ROI(0, 0, p.width_px - 1, p.height_px - 1)
        self._queue: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._producer: threading.Thread | None = None
        self._stop = threading.Event()
        self._frame_count = 0
        self._buffer_size = 1
        self._t_arm = 0.0
        # virtual clock: frames still to expose for the last trigger (-1: unlimited), when the next may
        # start, and a late frame not yet delivered (ready time, frame)
        self._to_expose = 0
        self._next_start = 0.0
        self._late: tuple[float, Frame] | None = None

    # --- context / lifetime ------------------------------------------------------------------------
    def __enter__(self) -> TLCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def dispose(self) -> None:
        if self._disposed:
            return
        if self._armed:
            self.disarm()
        _open.discard(self._m.p.serial)
        self._disposed = True

    def _check(self) -> None:
        if self._disposed:
            raise TLCameraError("camera has been disposed")

    def _check_disarmed(self, what: str) -> None:
        self._check()
        if self._armed:
            raise TLCameraError(f"{what} can only be changed while the camera is disarmed")

    # --- identity and read-only facts ---------------------------------------------------------------
    serial_number = property(lambda self: self._m.p.serial)
    model = property(lambda self: self._m.p.model)
    name = property(lambda self: self._m.name)
    firmware_version = property(lambda self: self._m.p.firmware)
    camera_sensor_type = property(lambda self: SENSOR_TYPE.MONOCHROME)
    bit_depth = property(lambda self: self._m.p.bit_depth)
    sensor_width_pixels = property(lambda self: self._m.p.width_px)
    sensor_height_pixels = property(lambda self: self._m.p.height_px)
    sensor_pixel_width_um = property(lambda self: self._m.p.pixel_size_um)
    sensor_pixel_height_um = property(lambda self: self._m.p.pixel_size_um)
    exposure_time_range_us = property(lambda self: Range(self._m.p.min_exposure_us, self._m.p.max_exposure_us))
    gain_range = property(lambda self: Range(0, self._m.p.max_gain_index))
    black_level_range = property(lambda self: Range(0, 1023))
    binx_range = property(lambda self: Range(1, 16))
    biny_range = property(lambda self: Range(1, 16))
    is_armed = property(lambda self: self._armed)

    @property
    def image_width_pixels(self) -> int:
        return (self._roi.lower_right_x_pixels - self._roi.upper_left_x_pixels + 1) // self._binx

    @property
    def image_height_pixels(self) -> int:
        return (self._roi.lower_right_y_pixels - self._roi.upper_left_y_pixels + 1) // self._biny

    @property
    def frame_time_us(self) -> int:
        return int(max(self._exposure_us, self._m.p.readout_s * 1e6) + self._m.p.readout_s * 1e6)

    def convert_gain_to_decibels(self, gain: int) -> float:
        return gain * self._m.p.gain_db_per_index

    def convert_decibels_to_gain(self, gain_db: float) -> int:
        return int(round(gain_db / self._m.p.gain_db_per_index))

    def get_is_operation_mode_supported(self, operation_mode: int) -> bool:
        return operation_mode in (OPERATION_MODE.SOFTWARE_TRIGGERED, OPERATION_MODE.HARDWARE_TRIGGERED, OPERATION_MODE.BULB)

    # --- settings ---------------------------------------------------------------------------------
    @property
    def exposure_time_us(self) -> int:
        return self._exposure_us

    @exposure_time_us.setter
    def exposure_time_us(self, value: int) -> None:
        self._check()
        lo, hi = self.exposure_time_range_us
        if not lo <= int(value) <= hi:
            raise TLCameraError(f"exposure time {value} us outside {lo}..{hi} us")
        self._exposure_us = int(value)

    @property
    def image_poll_timeout_ms(self) -> int:
        return self._poll_timeout_ms

    @image_poll_timeout_ms.setter
    def image_poll_timeout_ms(self, value: int) -> None:
        self._poll_timeout_ms = int(value)

    @property
    def frames_per_trigger_zero_for_unlimited(self) -> int:
        return self._frames_per_trigger

    @frames_per_trigger_zero_for_unlimited.setter
    def frames_per_trigger_zero_for_unlimited(self, value: int) -> None:
        self._check_disarmed("frames per trigger")
        self._frames_per_trigger = int(value)

    @property
    def operation_mode(self) -> OPERATION_MODE:
        return self._mode

    @operation_mode.setter
    def operation_mode(self, value: int) -> None:
        self._check_disarmed("operation mode")
        self._mode = OPERATION_MODE(value)

    @property
    def binx(self) -> int:
        return self._binx

    @binx.setter
    def binx(self, value: int) -> None:
        self._check_disarmed("binning")
        if not 1 <= int(value) <= 16:
            raise TLCameraError(f"binx {value} outside 1..16")
        self._binx = int(value)

    @property
    def biny(self) -> int:
        return self._biny

    @biny.setter
    def biny(self, value: int) -> None:
        self._check_disarmed("binning")
        if not 1 <= int(value) <= 16:
            raise TLCameraError(f"biny {value} outside 1..16")
        self._biny = int(value)

    @property
    def gain(self) -> int:
        return self._gain

    @gain.setter
    def gain(self, value: int) -> None:
        self._check()
        if not 0 <= int(value) <= self._m.p.max_gain_index:
            raise TLCameraError(f"gain {value} outside 0..{self._m.p.max_gain_index}")
        self._gain = int(value)

    @property
    def black_level(self) -> int:
        return self._black_level

    @black_level.setter
    def black_level(self, value: int) -> None:
        self._check()
        if not 0 <= int(value) <= 1023:
            raise TLCameraError(f"black level {value} outside 0..1023")
        self._black_level = int(value)

    @property
    def roi(self) -> ROI:
        return self._roi

    @roi.setter
    def roi(self, value: tuple[int, int, int, int]) -> None:
        self._check_disarmed("ROI")
        x0, y0, x1, y1 = (int(v) for v in value)
        p = self._m.p
        if not (0 <= x0 < x1 < p.width_px and 0 <= y0 < y1 < p.height_px):
            raise TLCameraError(f"ROI {tuple(value)} outside the sensor {p.width_px}x{p.height_px}")
        self._roi = ROI(x0, y0, x1, y1)

    # --- acquisition --------------------------------------------------------------------------------
    def arm(self, frames_to_buffer: int) -> None:
        self._check()
        if self._armed:
            raise TLCameraError("camera is already armed")
        if frames_to_buffer < 1:
            raise TLCameraError("frames_to_buffer must be at least 1")
        self._buffer_size = int(frames_to_buffer)
        self._armed = True
        self._frame_count = 0
        self._queue.clear()
        self._t_arm = self._m.clock.now()
        self._to_expose, self._late = 0, None

    def issue_software_trigger(self) -> None:
        self._check()
        if not self._armed:
            raise TLCameraError("issue_software_trigger() requires an armed camera")
        if self._m.clock.virtual:
            if self._to_expose == 0 and self._late is None:  # a busy camera ignores triggers
                self._to_expose = self._frames_per_trigger or -1
                self._next_start = self._m.clock.now()
            return
        if self._producer is not None and self._producer.is_alive():
            return  # already acquiring, as the camera ignores triggers while busy
        self._stop.clear()
        self._producer = threading.Thread(target=self._produce, daemon=True, name="sim-tlcamera")
        self._producer.start()

    def _exposure(self) -> Exposure:
        return Exposure(
            exposure_s=self._exposure_us / 1e6,
            roi=tuple(self._roi),  # type: ignore[arg-type]
            binx=self._binx,
            biny=self._biny,
            gain_index=self._gain,
            black_level=self._black_level,
        )

    def _produce(self) -> None:
        m = self._m
        n = self._frames_per_trigger
        k = 0
        while not self._stop.is_set() and (n == 0 or k < n):
            k += 1
            exposure = self._exposure()
            t_start = m.clock.now()
            image = m.render(t_start, exposure)
            m.clock.sleep_until(t_start + exposure.exposure_s + m.p.readout_s)
            self._frame_count += 1
            fault = m.faults.next_command(["dropped_frame", "late_frame"])
            if fault is not None and fault.kind == "dropped_frame":
                continue
            if fault is not None and fault.kind == "late_frame":
                m.clock.sleep(fault.delay_s)
            stamp = int((t_start + exposure.exposure_s - self._t_arm) * 1e9)
            with self._cond:
                if len(self._queue) >= self._buffer_size:
                    self._queue.popleft()  # the oldest frame is overwritten, as in the SDK's buffer
                self._queue.append(Frame(image, self._frame_count, stamp))
                self._cond.notify_all()

    def get_pending_frame_or_null(self) -> Frame | None:
        self._check()
        if not self._armed:
            raise TLCameraError("get_pending_frame_or_null() requires an armed camera")
        if self._m.clock.virtual:
            return self._virtual_frame()
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout=self._poll_timeout_ms / 1000.0)
            return self._queue.popleft() if self._queue else None

    def _virtual_frame(self) -> Frame | None:
        """The next frame on a virtual clock (see the module docstring)."""
        m = self._m
        clock = m.clock
        deadline = clock.now() + self._poll_timeout_ms / 1000.0
        while self._late is None and self._to_expose != 0:
            exposure = self._exposure()
            t_start = max(clock.now(), self._next_start)
            image = m.render(t_start, exposure)
            t_end = t_start + exposure.exposure_s + m.p.readout_s
            self._next_start = t_end
            self._to_expose -= 1 if self._to_expose > 0 else 0
            self._frame_count += 1
            fault = m.faults.next_command(["dropped_frame", "late_frame"])
            if fault is not None and fault.kind == "dropped_frame":
                continue
            ready = t_end + (fault.delay_s if fault is not None else 0.0)
            stamp = int((t_start + exposure.exposure_s - self._t_arm) * 1e9)
            self._late = (ready, Frame(image, self._frame_count, stamp))
        if self._late is not None and self._late[0] <= deadline:
            clock.sleep_until(self._late[0])
            frame, self._late = self._late[1], None
            return frame
        clock.sleep_until(deadline)
        return None

    def disarm(self) -> None:
        self._check()
        self._stop.set()
        if self._producer is not None:
            self._producer.join(timeout=5)
            self._producer = None
        self._armed = False
        self._to_expose, self._late = 0, None
        with self._cond:
            self._queue.clear()
