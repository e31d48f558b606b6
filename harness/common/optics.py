"""The objective's optics and the widefield resolution formulas that follow from them.

Used where z-stacks are planned (``acquire: z_stack``: step and extent) and where beads are
analysed (the theoretical widths that measured ones are compared with). Plain floats, no numpy.

Formulas (widefield, incoherent emission, wavelength ``lam`` in um, immersion index ``n``,
half-angle ``alpha = asin(NA / n)``):
- lateral FWHM ``0.51 lam / NA`` and axial FWHM ``0.88 lam / (n - sqrt(n^2 - NA^2))``, the widefield
  expressions MetroloJ_QC reports its ratios against;
- Nyquist sampling of the widefield OTF support: laterally ``lam / (4 NA)`` (cut-off ``2 NA / lam``),
  axially ``lam / (2 n (1 - cos alpha))`` (axial cut-off ``n (1 - cos alpha) / lam``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

IMMERSION_INDEX = {"Air": 1.0, "Water": 1.333, "WaterDipping": 1.333, "Glycerol": 1.474, "Oil": 1.518}
"""Refractive index of an OME immersion word (``Multi`` and ``Other`` have none: the station file gives it)."""

ASSUMED_NA = 1.4
ASSUMED_INDEX = 1.518


@dataclass(frozen=True)
class Optics:
    """The objective in use: numerical aperture and the refractive index of its immersion medium."""

    na: float
    immersion_index: float

    def __post_init__(self) -> None:
        if not (0 < self.na < self.immersion_index):
            raise ValueError(f"NA {self.na:g} must be above 0 and below the immersion index {self.immersion_index:g}")

    def as_dict(self) -> dict[str, float]:
        return {"na": self.na, "immersion_index": self.immersion_index}


ASSUMED_OPTICS = Optics(ASSUMED_NA, ASSUMED_INDEX)
"""What a station-free validation plans z-stacks with (a 1.4 oil objective: the finest common sampling)."""


def lateral_fwhm_um(wavelength_nm: float, optics: Optics) -> float:
    return 0.51 * wavelength_nm / 1000 / optics.na


def axial_fwhm_um(wavelength_nm: float, optics: Optics) -> float:
    n, na = optics.immersion_index, optics.na
    return 0.88 * wavelength_nm / 1000 / (n - math.sqrt(n * n - na * na))


def nyquist_lateral_um(wavelength_nm: float, optics: Optics) -> float:
    return wavelength_nm / 1000 / (4 * optics.na)


def nyquist_axial_um(wavelength_nm: float, optics: Optics) -> float:
    n, na = optics.immersion_index, optics.na
    cos_alpha = math.sqrt(1 - (na / n) ** 2)
    return wavelength_nm / 1000 / (2 * n * (1 - cos_alpha))
