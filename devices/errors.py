"""Typed device errors: what went wrong, on which device, in words a facility engineer can act on."""

from __future__ import annotations


class DeviceError(Exception):
    """A device failed or refused. ``device`` names it (label or resource)."""

    retryable = False

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device
        self.detail = message


class DeviceConnectionError(DeviceError):
    """The device could not be reached or opened."""


class ConnectionLost(DeviceConnectionError):
    """The connection dropped during use (cable, power, USB reset)."""


class DeviceTimeout(DeviceError):
    """The device did not answer (or did not finish) within the configured time."""

    retryable = True


class GarbledReply(DeviceError):
    """The device answered something that is not a valid reply."""

    retryable = True


class InstrumentError(DeviceError):
    """The instrument itself reports an error (SCPI error queue, ``ERR-`` reply)."""

    def __init__(self, device: str, code: int, message: str) -> None:
        super().__init__(device, f"instrument error {code}: {message}")
        self.code = code


class SafetyLimitError(DeviceError, ValueError):
    """A requested value was refused before anything was sent (device or station limits)."""


class SdkMissing(DeviceConnectionError):
    """A vendor SDK the driver needs is not installed."""


class FrameTimeout(DeviceError):
    """A camera frame did not arrive in time."""

    retryable = True
