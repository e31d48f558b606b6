"""Thorlabs scientific cameras (Kiralux, Zelux, Quantalux) over the ``thorlabs_tsi_sdk`` API, as a
Micro-Manager camera device.

The SDK package is named by the station file: ``thorlabs_tsi_sdk`` (installed from ThorCam on a
real station) or any package with the same API. Exposure (ms), gain (dB), black level (``Offset``),
binning, ROI (only changed while disarmed, as the SDK requires), bit depth, snap and sequences.
A frame that does not arrive within exposure + ``FrameTimeout-ms`` raises ``FrameTimeout``; gaps in
the camera's frame counter are reported in each frame's metadata (``DroppedFrames``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice

from .base import QCDriver, constant
from .errors import DeviceConnectionError, DeviceError, FrameTimeout, SdkMissing
from .identity import DeviceIdentity

INSTALL_HINT = (
    "the Thorlabs camera SDK (Python package 'thorlabs_tsi_sdk') is not installed. Install ThorCam, "
    "then pip install the SDK from 'Scientific Camera Interfaces/SDK/Python Toolkit/"
    "thorlabs_tsi_camera_python_sdk_package.zip' and put the DLLs of 'SDK/Native Toolkit/dlls/"
    "Native_64_lib' on PATH"
)


def load_sdk(package: str, device: str) -> ModuleType:
    """Import ``<package>.tl_camera``; a missing vendor SDK is one clear error."""
    try:
        return importlib.import_module(f"{package}.tl_camera")
    except ImportError as exc:
        hint = INSTALL_HINT if package == "thorlabs_tsi_sdk" else f"cannot import {package}.tl_camera ({exc})"
        raise SdkMissing(device, hint) from None
    except OSError as exc:  # the package is there but its native libraries are not
        raise SdkMissing(device, f"{package} could not load its native libraries: {exc}. {INSTALL_HINT}") from None


class _SharedSdk:
    """The SDK allows one ``TLCameraSDK`` per process: every camera of every station shares it."""

    _instances: dict[str, tuple[Any, int]] = {}

    @classmethod
    def acquire(cls, tl: ModuleType) -> Any:
        sdk, users = cls._instances.get(tl.__name__, (None, 0))
        if sdk is None:
            sdk = tl.TLCameraSDK()
        cls._instances[tl.__name__] = (sdk, users + 1)
        return sdk

    @classmethod
    def release(cls, tl: ModuleType) -> None:
        sdk, users = cls._instances.get(tl.__name__, (None, 0))
        if sdk is None:
            return
        if users <= 1:
            del cls._instances[tl.__name__]
            sdk.dispose()
        else:
            cls._instances[tl.__name__] = (sdk, users - 1)


class ThorlabsTSICamera(QCDriver, CameraDevice):
    """Thorlabs TSI scientific camera."""

    def __init__(self, serial: str = "", *, sdk: str = "thorlabs_tsi_sdk", frame_timeout_ms: int = 2000, label: str = "Camera") -> None:
        super().__init__()
        self._serial = serial
        self._sdk_name = sdk
        self._name = label
        self._sdk: Any = None
        self._cam: Any = None
        self._tl: ModuleType | None = None
        self.add_property("SerialNumberRequested", str, default=serial, pre_init=True)
        self.add_property("SDK", str, default=sdk, pre_init=True)
        self.add_property("FrameTimeout-ms", int, default=frame_timeout_ms, pre_init=True)

    # --- lifetime --------------------------------------------------------------------------------
    def initialize(self) -> None:
        self._name = self.get_label() or self._name
        self._sdk_name = self.get_property_value("SDK")
        self._serial = self.get_property_value("SerialNumberRequested")
        self._tl = load_sdk(self._sdk_name, self._name)
        tl = self._tl
        try:
            self._sdk = _SharedSdk.acquire(tl)
            found = self._sdk.discover_available_cameras()
            if not found:
                raise DeviceConnectionError(self._name, "no Thorlabs camera found (is it plugged in and free?)")
            serial = self._serial or found[0]
            if serial not in found:
                raise DeviceConnectionError(self._name, f"camera {serial} not found; connected: {', '.join(found)}")
            self._cam = self._sdk.open_camera(serial)
        except tl.TLCameraError as exc:
            self.shutdown()
            raise DeviceConnectionError(self._name, f"SDK error: {exc}") from None
        except DeviceError:
            self.shutdown()
            raise
        cam = self._cam
        cam.operation_mode = 0  # software triggered
        cam.frames_per_trigger_zero_for_unlimited = 1
        self.add_property("BitDepth", int, lambda: int(cam.bit_depth))
        self.add_property("SensorPixelSize-um", float, lambda: float(cam.sensor_pixel_width_um))
        self.add_property("SensorWidth", int, lambda: int(cam.sensor_width_pixels))
        self.add_property("SensorHeight", int, lambda: int(cam.sensor_height_pixels))
        for key, value in self._identity_fields().items():
            self.add_property(key, str, constant(value))
        # the camera's own ranges, so a value out of range is refused by Micro-Manager (and by a
        # protocol's preflight) before it reaches the camera
        gain = cam.gain_range
        self.set_property_limits("Gain", (float(cam.convert_gain_to_decibels(gain.min)), float(cam.convert_gain_to_decibels(gain.max))))
        exposure = cam.exposure_time_range_us
        self.set_property_limits("Exposure", (exposure.min / 1000.0, exposure.max / 1000.0))

    def shutdown(self) -> None:
        try:
            if self._cam is not None:
                self._cam.dispose()
            if self._sdk is not None and self._tl is not None:
                _SharedSdk.release(self._tl)
        except Exception:  # disposing after a failure must not hide it
            pass
        self._cam = self._sdk = None

    def _camera(self) -> Any:
        if self._cam is None:
            raise DeviceError(self._name, "camera not open")
        return self._cam

    def _sdk_call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._tl.TLCameraError as exc:  # type: ignore[union-attr]
            raise DeviceError(self._name, f"{what}: {exc}") from None

    # --- standard camera properties ------------------------------------------------------------------
    def get_exposure(self) -> float:
        ms: float = self._camera().exposure_time_us / 1000.0
        return ms

    def set_exposure(self, exposure: float) -> None:
        cam = self._camera()
        self._sdk_call("exposure", lambda: setattr(cam, "exposure_time_us", int(round(float(exposure) * 1000))))

    def shape(self) -> tuple[int, int]:
        cam = self._camera()
        return (cam.image_height_pixels, cam.image_width_pixels)

    def dtype(self) -> Any:
        return np.uint16

    def get_binning(self) -> int:
        return int(self._camera().binx)

    def set_binning(self, value: int) -> None:
        cam = self._camera()
        value = int(value)

        def apply() -> None:
            cam.binx = value
            cam.biny = value

        self._sdk_call("binning", apply)

    def get_gain(self) -> float:
        cam = self._camera()
        return float(cam.convert_gain_to_decibels(cam.gain))

    def set_gain(self, value: float) -> None:
        cam = self._camera()
        self._sdk_call("gain", lambda: setattr(cam, "gain", cam.convert_decibels_to_gain(float(value))))

    def get_offset(self) -> float:
        return float(self._camera().black_level)

    def set_offset(self, value: float) -> None:
        cam = self._camera()
        self._sdk_call("black level", lambda: setattr(cam, "black_level", int(round(float(value)))))

    def get_camera_name(self) -> str:
        return str(self._camera().model)

    def get_camera_id(self) -> str:
        return str(self._camera().serial_number)

    # --- ROI (Micro-Manager: x, y, width, height in binned pixels) ------------------------------------
    def get_roi(self) -> tuple[int, int, int, int]:
        cam = self._camera()
        r = cam.roi
        b = cam.binx
        return (r[0] // b, r[1] // b, (r[2] - r[0] + 1) // b, (r[3] - r[1] + 1) // b)

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        cam = self._camera()
        b = cam.binx
        roi = (x * b, y * b, (x + width) * b - 1, (y + height) * b - 1)
        self._sdk_call("ROI", lambda: setattr(cam, "roi", roi))

    def clear_roi(self) -> None:
        cam = self._camera()
        full = (0, 0, cam.sensor_width_pixels - 1, cam.sensor_height_pixels - 1)
        self._sdk_call("ROI", lambda: setattr(cam, "roi", full))

    # --- acquisition ---------------------------------------------------------------------------------
    def start_sequence(self, n: int | None, get_buffer: Callable[[Sequence[int], Any], np.ndarray]) -> Iterator[Mapping[str, Any]]:
        cam = self._camera()
        timeout_ms = int(self.get_exposure() + int(self.get_property_value("FrameTimeout-ms")))
        shape, dtype = self.shape(), self.dtype()

        def setup() -> None:
            cam.image_poll_timeout_ms = timeout_ms
            cam.frames_per_trigger_zero_for_unlimited = 0 if n is None else int(n)
            cam.arm(2 if n == 1 else 16)
            cam.issue_software_trigger()

        self._sdk_call("start acquisition", setup)
        expected = 1
        try:
            # the camera counts its frames: stop at frame n even if some never arrived
            while n is None or expected <= n:
                frame = self._sdk_call("poll", cam.get_pending_frame_or_null)
                if frame is None:
                    raise FrameTimeout(self._name, f"frame {expected} did not arrive within {timeout_ms} ms")
                dropped = frame.frame_count - expected
                expected = frame.frame_count + 1
                buf = get_buffer(shape, dtype)
                buf[:] = frame.image_buffer
                yield {
                    "FrameCount": str(frame.frame_count),
                    "DroppedFrames": str(max(dropped, 0)),
                    "CameraTimestamp-ns": str(frame.time_stamp_relative_ns_or_null),
                }
        finally:
            try:
                cam.disarm()
            except Exception:  # disarming a failed camera must not hide the failure
                pass

    # --- contract --------------------------------------------------------------------------------
    def _identity_fields(self) -> dict[str, str]:
        cam = self._camera()
        return {"Model": str(cam.model), "SerialNumber": str(cam.serial_number), "Firmware": str(cam.firmware_version).strip()}

    def identity(self) -> DeviceIdentity:
        f = self._identity_fields()
        cam = self._camera()
        return DeviceIdentity(
            kind="camera",
            vendor="Thorlabs",
            model=f["Model"],
            serial=f["SerialNumber"],
            firmware=f["Firmware"],
            driver=f"{__name__}.{type(self).__name__}",
            details={
                "sdk": self._sdk_name,
                "sensor": f"{cam.sensor_width_pixels}x{cam.sensor_height_pixels}",
                "pixel_size_um": f"{cam.sensor_pixel_width_um:g}",
                "bit_depth": str(cam.bit_depth),
            },
        )

    def safe_state(self) -> None:
        """Acquisition stopped."""
        if self._cam is not None and self._cam.is_armed:
            self._cam.disarm()
