"""Field illumination metrics (QUAREP-LiMi WG3, after MetroloJ_QC's field illumination analysis).

Conventions: the image is the dark-subtracted mean of the frames, smoothed with a Gaussian of sigma
2 px (MetroloJ's default sigma; edges mirrored and the kernel cut at 3 sigma, where ImageJ repeats
the edge pixel: U comes out up to ~0.6 points higher at the corners than MetroloJ's); pixel centres at (k + 0.5), the image centre at (W/2, H/2);
- U = 100 Imin / Imax;
- field uniformity = 100 - 100 SD(4 corner + 4 edge-midpoint pixels) / Imax (single pixels, as MetroloJ);
- centering accuracy = 100 - 200 d / diagonal, d = distance from the image centre to the centroid of
  the reference zone (pixels >= 90 % of Imax);
- CV = 100 SD / mean over the whole image (population SD);
- centre of intensity: intensity-weighted centroid, its distance from the image centre in px and in
  fractions of the half diagonal; corner and edge-midpoint intensities as ratios to Imax.
Input: an image with values that are not finite, smaller than 3 x 3 px, or without signal (its
maximum or its sum not above zero: the lit frames are no brighter than the dark ones) is refused
with ``BadInput``: the formulas above divide by Imax and by the sum.
"""

from __future__ import annotations

import math

import numpy as np

from harness.analysis.input_checks import finite
from harness.analysis.power_metrics import Metric
from harness.common.errors import BadInput

BLUR_SIGMA_PX = 2.0


def gaussian_blur(image: np.ndarray, sigma: float = BLUR_SIGMA_PX) -> np.ndarray:
    """Separable Gaussian smoothing with mirrored edges (numpy only)."""
    radius = int(math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = np.pad(image.astype(np.float64), radius, mode="reflect")
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, out)
    out = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, out)
    return out


def _points(h: int, w: int) -> dict[str, tuple[int, int]]:
    return {
        "top_left": (0, 0), "top_right": (0, w - 1), "bottom_left": (h - 1, 0), "bottom_right": (h - 1, w - 1),
        "top": (0, w // 2), "bottom": (h - 1, w // 2), "left": (h // 2, 0), "right": (h // 2, w - 1),
    }


def flat_field_metrics(mean_image: np.ndarray, blur: bool = True) -> tuple[dict[str, Metric], dict[str, list[float]]]:
    """Metrics of a dark-subtracted mean image, and its four profiles."""
    finite("flat field: the mean image", mean_image)
    if mean_image.ndim != 2 or min(mean_image.shape) < 3:
        raise BadInput(f"flat field: the mean image is {'x'.join(map(str, mean_image.shape))} px; it needs at least 3 x 3")
    img = gaussian_blur(mean_image) if blur else mean_image.astype(np.float64)
    h, w = img.shape
    i_max, i_min = float(img.max()), float(img.min())
    if not i_max > 0 or not float(img.sum()) > 0:
        raise BadInput(f"flat field: no signal above the dark level (dark-subtracted image: max {i_max:.4g}, "
                       f"mean {float(img.mean()):.4g} ADU); the lit frames are no brighter than the dark frames")
    points = {name: float(img[r, c]) for name, (r, c) in _points(h, w).items()}
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]  # broadcast: no full-size index grids
    cy, cx = h / 2, w / 2
    zone_rows, zone_cols = np.nonzero(img >= 0.9 * i_max)
    zy, zx = float(np.mean(zone_rows) + 0.5), float(np.mean(zone_cols) + 0.5)
    diagonal = math.hypot(w, h)
    total = float(img.sum())
    gy, gx = float((img * (rows + 0.5)).sum() / total), float((img * (cols + 0.5)).sum() / total)
    metrics = {
        "uniformity_pct": Metric(100.0 * i_min / i_max, "%"),
        "field_uniformity_pct": Metric(100.0 - 100.0 * float(np.std(list(points.values()))) / i_max, "%"),
        "centering_accuracy_pct": Metric(100.0 - 200.0 * math.hypot(zx - cx, zy - cy) / diagonal, "%"),
        "cv_pct": Metric(100.0 * float(np.std(img)) / float(np.mean(img)), "%"),
        "reference_zone_x_px": Metric(zx, "px"),
        "reference_zone_y_px": Metric(zy, "px"),
        "centre_of_intensity_x_px": Metric(gx, "px"),
        "centre_of_intensity_y_px": Metric(gy, "px"),
        "centre_of_intensity_offset_px": Metric(math.hypot(gx - cx, gy - cy), "px"),
        "centre_of_intensity_offset_frac": Metric(math.hypot(gx - cx, gy - cy) / (diagonal / 2), ""),
        **{f"ratio_{name}": Metric(value / i_max, "") for name, value in points.items()},
        "max_intensity": Metric(i_max, "ADU"),
    }
    n = min(h, w)
    diag_r = np.linspace(0, h - 1, n).round().astype(int)
    diag_c = np.linspace(0, w - 1, n).round().astype(int)
    profiles = {
        "centre_row": img[h // 2, :].tolist(),
        "centre_column": img[:, w // 2].tolist(),
        "diagonal_down": img[diag_r, diag_c].tolist(),
        "diagonal_up": img[diag_r[::-1], diag_c].tolist(),
    }
    return metrics, profiles
