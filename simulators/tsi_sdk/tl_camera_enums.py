"""Enumerations of the TSI SDK that drivers use (same names and values as the vendor's module)."""

from enum import IntEnum


class OPERATION_MODE(IntEnum):
    SOFTWARE_TRIGGERED = 0
    HARDWARE_TRIGGERED = 1
    BULB = 2
    RESERVED1 = 3
    RESERVED2 = 4


class SENSOR_TYPE(IntEnum):
    MONOCHROME = 0
    BAYER = 1
    MONOCHROME_POLARIZED = 2


class TRIGGER_POLARITY(IntEnum):
    ACTIVE_HIGH = 0
    ACTIVE_LOW = 1
