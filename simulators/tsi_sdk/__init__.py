"""A stand-in for Thorlabs' ``thorlabs_tsi_sdk`` package with the same module layout and API
(``tl_camera``, ``tl_camera_enums``), backed by simulated cameras.

A station file points the TSI camera driver at this package instead of the vendor's; the driver
code is the same. ``attach_cameras`` plugs simulated camera models in, as a USB cable would.
"""

from .tl_camera import attach_cameras, detach_cameras

__all__ = ["attach_cameras", "detach_cameras"]
