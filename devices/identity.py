"""What a device says it is: recorded with every run for provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DeviceIdentity:
    kind: str  # laser, power_meter, camera, xy_stage, z_drive, ...
    vendor: str
    model: str
    serial: str
    firmware: str = ""
    driver: str = ""
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
