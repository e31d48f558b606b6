"""Scalar widefield point-spread function (Debye / Born-Wolf, non-paraxial) and the image of a bead.

The PSF (intensity at lateral radius ``r`` and defocus ``z`` in the immersion medium, um):

    U(r, z) = int_0^alpha sqrt(cos t) J0(k n r sin t) exp(i k n z cos t + i 2 pi W(rho)) sin t dt
    I(r, z) = |U|^2 (k n)^2 / (2 pi (1 - cos alpha))

with k = 2 pi / lambda_em (vacuum emission wavelength), n the immersion index, sin alpha = NA / n,
sqrt(cos t) the aplanatic apodisation and rho = sin t / sin alpha the normalised pupil radius (sine
condition). The prefactor makes every plane carry unit power: int I 2 pi r dr = 1 (Parseval for the
Hankel transform; checked numerically in the tests), so ``I`` is the fraction of the bead's detected
photons per um^2. Primary spherical aberration: W(rho) = A sqrt(5) (6 rho^4 - 6 rho^2 + 1) waves, A the
rms wavefront error in waves (Noll-normalised Zernike Z(4,0) coefficient). Defocus z > 0: the objective
focused above the emitter (the Z drive's true position minus the bead plane). The sample medium is taken
to be the immersion medium (no index-mismatch focal shift).

The bead image is the PSF convolved with a uniform sphere of diameter d (full 3-D convolution by a
product quadrature of the sphere: Gauss-Jacobi(1,1) in z (slice areas), Gauss-Legendre in the squared
radius of each slice, midpoints in angle; 3 x 3 x 6 nodes; exact for d = 0). The integral over
theta is Gauss-Legendre with at least 3 nodes per pi of phase (lateral and defocus). Radial tables
(step ``dr`` = lambda / NA / 80) are computed per defocus and cached (``simulators.lru.Lru``); far from
focus (a table radius beyond 48 lambda / NA: |z| > ~6 um at NA 1.4, ~24 um at NA 0.75) the profile is the
geometric-optics disk (``BeadImageModel._geometric_profile``).

Truth (``BeadImageModel.truth``): lateral FWHM of the bead image at best focus (the defocus of the
largest on-axis intensity; 0 without aberration) from the exact profile (no pixels, root-found), and axial
FWHM of the on-axis intensity over defocus around that peak; the same for the bare PSF (d = 0).
Raises ValueError for NA >= n or non-positive inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize, special

from .lru import Lru

_NODES_PER_PI = 3.0
_MIN_NODES = 48
_WAVE_LEVELS = 4  # tables up to 3 lambda/NA * 2^4 in radius are wave optics; beyond: geometric optics


@dataclass(frozen=True)
class PsfOptics:
    """What the PSF depends on. Lengths in um except the wavelength."""

    emission_nm: float
    na: float
    immersion_index: float
    spherical_aberration_waves: float = 0.0  # rms, Noll-normalised Z(4,0)
    bead_diameter_um: float = 0.0

    def __post_init__(self) -> None:
        if not (self.emission_nm > 0 and self.na > 0 and self.immersion_index > 0 and self.bead_diameter_um >= 0):
            raise ValueError(f"PSF optics need positive wavelength, NA and index: {self}")
        if self.na >= self.immersion_index:
            raise ValueError(f"NA {self.na} must be below the immersion index {self.immersion_index}")


@dataclass(frozen=True)
class RadialProfile:
    """Bead image at one defocus: ``values[i]`` (fraction of photons per um^2) at ``r_um[i] = i * dr_um``;
    ``patch_um``: the radius holding 99.5 % of the tabulated power."""

    dr_um: float
    values: np.ndarray
    patch_um: float

    def at(self, r_um: np.ndarray) -> np.ndarray:
        """Linear interpolation (0 beyond the table)."""
        grid = np.arange(self.values.size) * self.dr_um
        out: np.ndarray = np.interp(r_um, grid, self.values, right=0.0)
        return out


@dataclass(frozen=True)
class PsfTruth:
    """Ground truth of one line's bead image (um, nm)."""

    lateral_fwhm_um: float
    axial_fwhm_um: float
    psf_lateral_fwhm_um: float
    psf_axial_fwhm_um: float
    emission_nm: float
    na: float
    immersion_index: float
    bead_diameter_um: float
    best_focus_um: float  # defocus of the largest on-axis intensity of the bead image (0 without aberration)


def _axial_scale_um(emission_nm: float, na: float, n: float) -> float:
    """The scale of the on-axis scan: about the axial FWHM (the harness owns the published formulas)."""
    return 0.88 * emission_nm / 1000.0 / (n - math.sqrt(n * n - na * na))


class BeadImageModel:
    """The PSF and bead image of one ``PsfOptics``; thread-safe (caches are locked LRUs)."""

    def __init__(self, optics: PsfOptics) -> None:
        self.optics = optics
        self.n = optics.immersion_index
        self.alpha = math.asin(optics.na / self.n)
        self.kn = 2 * math.pi / (optics.emission_nm / 1000.0) * self.n  # 1/um
        self.norm = self.kn**2 / (2 * math.pi * (1 - math.cos(self.alpha)))
        self.lam_na = optics.emission_nm / 1000.0 / optics.na
        self.dr_um = self.lam_na / 80.0
        self._nodes: Lru[tuple[np.ndarray, np.ndarray, np.ndarray]] = Lru(8)
        self._j0: Lru[np.ndarray] = Lru(3)
        self._rows: Lru[RadialProfile] = Lru(64)
        self.sphere = _sphere_nodes(optics.bead_diameter_um / 2)

    # --- the Debye integral ----------------------------------------------------------------------
    def _theta(self, r_max: float, z_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sin t, cos t, complex pupil weight incl. quadrature weight) for phases up to r_max, z_max,
        node counts rounded up to a power of two (so few distinct sets are cached)."""
        phase = self.kn * (r_max * math.sin(self.alpha) + abs(z_max) * (1 - math.cos(self.alpha)))
        want = max(_MIN_NODES, int(math.ceil(_NODES_PER_PI * phase / math.pi)) + 16)
        count = 1 << (want - 1).bit_length()

        def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            x, w = np.polynomial.legendre.leggauss(count)
            t = self.alpha * (x + 1) / 2
            s, c = np.sin(t), np.cos(t)
            rho = s / math.sin(self.alpha)
            aberr = self.optics.spherical_aberration_waves * math.sqrt(5) * (6 * rho**4 - 6 * rho**2 + 1)
            g = w * self.alpha / 2 * np.sqrt(c) * s * np.exp(2j * math.pi * aberr)
            return s, c, g

        return self._nodes.get(count, make)

    def psf_points(self, r_um: np.ndarray, z_um: np.ndarray) -> np.ndarray:
        """I(r, z) at paired points (arrays broadcast together), fraction of photons per um^2."""
        r, z = np.broadcast_arrays(np.asarray(r_um, float), np.asarray(z_um, float))
        s, c, g = self._theta(float(np.max(r, initial=0.0)), float(np.max(np.abs(z), initial=0.0)))
        flat_r, flat_z = r.reshape(-1, 1), z.reshape(-1, 1)
        u = (special.j0(self.kn * flat_r * s) * np.exp(1j * self.kn * flat_z * c)) @ g
        out: np.ndarray = (np.abs(u) ** 2 * self.norm).reshape(r.shape)
        return out

    def _psf_rows(self, n_r: int, z_um: np.ndarray) -> np.ndarray:
        """I(i dr, z) for i < n_r and each z (rows: z), via one cached J0 matrix per (n_r, node count)."""
        r_max = (n_r - 1) * self.dr_um
        s, c, g = self._theta(r_max, float(np.max(np.abs(z_um))))
        j0 = self._j0.get((n_r, s.size), lambda: special.j0(self.kn * self.dr_um * np.arange(n_r)[:, None] * s[None, :]))
        e = g[:, None] * np.exp(1j * self.kn * c[:, None] * z_um[None, :])  # (nodes, nz)
        u = j0 @ np.concatenate([e.real, e.imag], axis=1)
        nz = z_um.size
        rows: np.ndarray = ((u[:, :nz] ** 2 + u[:, nz:] ** 2) * self.norm).T
        return rows

    # --- the bead image --------------------------------------------------------------------------
    def _needed_radius_um(self, z_um: float) -> float:
        """The geometric blur radius plus rings, the transverse ray aberration of the spherical term
        and the bead."""
        a = self.optics.spherical_aberration_waves
        return 1.15 * abs(z_um) * math.tan(self.alpha) + (3.0 + 27.0 * abs(a)) * self.lam_na + self.optics.bead_diameter_um

    def table_radius_um(self, z_um: float) -> float:
        """How far out a defocused bead's image is tabulated (wave optics): the needed radius rounded up
        to a power of two of 3 lambda/NA (so few J0 matrices serve a z-stack)."""
        base = 3.0 * self.lam_na
        return base * 2.0 ** max(0, math.ceil(math.log2(self._needed_radius_um(z_um) / base)))

    def wave_optics(self, z_um: float) -> bool:
        """Whether ``profile(z_um)`` is the Debye integral (else the geometric-optics disk)."""
        return bool(self.table_radius_um(z_um) <= 3.0 * self.lam_na * 2**_WAVE_LEVELS)

    def profile(self, z_um: float) -> RadialProfile:
        """The bead image at defocus ``z_um`` (cached per exact defocus)."""
        if not self.wave_optics(z_um):
            return self._rows.get(float(z_um), lambda: self._geometric_profile(float(z_um)))
        return self._rows.get(float(z_um), lambda: self._make_profile(float(z_um)))

    def _geometric_profile(self, z_um: float) -> RadialProfile:
        """Far from focus (Fresnel number z tan^2(alpha) / lambda in the tens): geometric optics. A ray
        at angle t lands at r = |z| tan t (stationary phase of the Debye integral) carrying power
        |P|^2 tan t dt = sin t dt (the Debye model's own power, by Parseval), so I(r) ~ cos^3 t / z^2
        inside r < |z| tan(alpha); normalised to unit power, edge blurred by a Gaussian of sigma 0.21
        lambda / NA along r (diffraction), the bead's size and the spherical aberration neglected. At the
        switch its encircled energy is within 3 % of the wave optics' at every radius."""
        edge = abs(z_um) * math.tan(self.alpha)
        reach = edge + 4.0 * self.lam_na
        dr = max(self.dr_um, reach / 4096)
        r = np.arange(int(math.ceil(reach / dr)) + 1) * dr
        cos_t = 1.0 / np.sqrt(1.0 + (r / abs(z_um)) ** 2)
        values = np.where(r <= edge, cos_t**3, 0.0)
        values = ndimage.gaussian_filter1d(values, 0.21 * self.lam_na / dr, mode="reflect")
        values /= np.sum(values * 2 * math.pi * r) * dr
        return _with_patch(dr, values)

    def _make_profile(self, z_um: float) -> RadialProfile:
        reach = self.optics.bead_diameter_um / 2
        n_r = int(math.ceil(self.table_radius_um(z_um) / self.dr_um)) + 1
        r = np.arange(n_r) * self.dr_um
        zs, rho, cphi, w, zi = self.sphere
        n_pad = n_r + int(math.ceil(reach / self.dr_um)) + 2
        rows = self._psf_rows(n_pad, z_um - zs)
        if zs.size == 1 and rho[0] == 0.0:
            values = rows[0, :n_r].copy()
        else:
            values = np.zeros(n_r)
            for k in range(w.size):
                d = np.sqrt(r * r + rho[k] ** 2 - 2 * r * rho[k] * cphi[k]) / self.dr_um
                i = d.astype(np.intp)
                f = d - i
                row = rows[zi[k]]
                values += w[k] * (row[i] * (1 - f) + row[i + 1] * f)
        return _with_patch(self.dr_um, values)

    def bead_points(self, r_um: np.ndarray, z_um: np.ndarray) -> np.ndarray:
        """The bead image at paired points (exact quadrature of the sphere, no tables)."""
        r, z = np.broadcast_arrays(np.asarray(r_um, float), np.asarray(z_um, float))
        zs, rho, cphi, w, zi = self.sphere
        if not np.any(r):  # on the axis the angle does not matter: one node per (slice, radius)
            keys = zi * rho.size + np.unique(rho, return_inverse=True)[1]
            first = np.unique(keys, return_index=True)[1]
            w = np.bincount(keys, weights=w)[keys[first]]
            rho, cphi, zi = rho[first], cphi[first], zi[first]
        out = np.zeros(r.shape)
        for k in range(w.size):
            d = np.sqrt(r * r + rho[k] ** 2 - 2 * r * rho[k] * cphi[k])
            out += w[k] * self.psf_points(d, z - zs[zi[k]])
        return out

    # --- truth -----------------------------------------------------------------------------------
    def truth(self) -> PsfTruth:
        o = self.optics
        lat, ax, best = _fwhm(self)
        bare = BeadImageModel(PsfOptics(o.emission_nm, o.na, o.immersion_index, o.spherical_aberration_waves, 0.0))
        plat, pax, _ = _fwhm(bare)
        return PsfTruth(lat, ax, plat, pax, o.emission_nm, o.na, o.immersion_index, o.bead_diameter_um, best)


def _with_patch(dr_um: float, values: np.ndarray) -> RadialProfile:
    """The profile with its 99.5 % power radius, read-only."""
    r = np.arange(values.size) * dr_um
    cum = np.cumsum(values * r)
    total = cum[-1] if cum[-1] > 0 else 1.0
    patch = float(r[min(int(np.searchsorted(cum, (1 - 5e-3) * total)) + 1, values.size - 1)])
    values.flags.writeable = False
    return RadialProfile(dr_um, values, patch)


def _fwhm(model: BeadImageModel) -> tuple[float, float, float]:
    """(lateral FWHM at best focus, axial FWHM on axis, best-focus defocus), um."""
    o = model.optics
    fz = _axial_scale_um(o.emission_nm, o.na, o.immersion_index)
    span = (6.0 + 12.0 * abs(o.spherical_aberration_waves)) * fz
    zs = np.linspace(-span, span, 241)
    on_axis = model.bead_points(np.zeros_like(zs), zs)
    k = int(np.argmax(on_axis))
    if 0 < k < zs.size - 1:
        res = optimize.minimize_scalar(lambda z: -float(model.bead_points(np.zeros(1), np.array([z]))[0]),
                                       bounds=(zs[k - 1], zs[k + 1]), method="bounded", options={"xatol": 1e-6})
        best = float(res.x)
    else:
        best = float(zs[k])
    peak = float(model.bead_points(np.zeros(1), np.array([best]))[0])

    def axial(z: float) -> float:
        return float(model.bead_points(np.zeros(1), np.array([z]))[0]) - peak / 2

    below = np.flatnonzero(on_axis[:k] < peak / 2)
    above = np.flatnonzero(on_axis[k:] < peak / 2)
    if below.size == 0 or above.size == 0:
        raise ValueError("the on-axis intensity does not fall to half its peak within the scanned range")
    lo = optimize.brentq(axial, zs[below[-1]], zs[below[-1] + 1], xtol=1e-7)
    hi = optimize.brentq(axial, zs[k + above[0] - 1], zs[k + above[0]], xtol=1e-7)

    def lateral(r: float) -> float:
        return float(model.bead_points(np.array([r]), np.array([best]))[0]) - peak / 2

    r_hi = model.lam_na
    while lateral(r_hi) > 0:
        r_hi *= 1.5
    r_half = optimize.brentq(lateral, 0.0, r_hi, xtol=1e-7)
    return 2 * r_half, hi - lo, best


def _sphere_nodes(radius_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quadrature of a uniform sphere seen from a point on the x axis: (distinct slice z, point rho,
    point cos(phi), weight (sum 1), slice index of each point)."""
    if radius_um <= 0:
        return np.zeros(1), np.zeros(1), np.ones(1), np.ones(1), np.zeros(1, np.intp)
    tz, wz = special.roots_jacobi(3, 1.0, 1.0)  # weight (1 - t^2): the slice areas
    tu, wu = np.polynomial.legendre.leggauss(3)
    u, wu = (tu + 1) / 2, wu / 2  # uniform in rho^2 over [0, a^2]
    n_phi = 6
    phi = (np.arange(n_phi) + 0.5) * math.pi / n_phi
    rho, cphi, w, zi = [], [], [], []
    for j in range(tz.size):
        a = radius_um * math.sqrt(1 - tz[j] ** 2)
        for m in range(u.size):
            for p in phi:
                rho.append(a * math.sqrt(u[m]))
                cphi.append(math.cos(p))
                w.append(wz[j] * wu[m] / n_phi)
                zi.append(j)
    weights = np.array(w)
    return radius_um * tz, np.array(rho), np.array(cphi), weights / weights.sum(), np.array(zi, np.intp)
