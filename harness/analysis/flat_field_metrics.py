"""Field illumination metrics (QUAREP-LiMi WG3, after MetroloJ_QC's field illumination analysis).

Conventions: the image is the dark-subtracted mean of the frames, smoothed with a Gaussian of sigma
2 px (MetroloJ's default sigma; edges mirrored and the kernel cut at 3 sigma, where ImageJ repeats
the edge pixel: U comes out up to ~0.6 points higher at the corners than MetroloJ's); pixel centres at (k + 0.5), the image centre at (W/2, H/2);
- U = 100 Imin / Imax;
- field uniformity = 100 - 100 SD(4 corner + 4 edge-midpoint pixels) / Imax (single pixels, as MetroloJ);
- centering accuracy = 100 - 200 d / diagonal, d = distance from the image centre to the centroid of
  the reference zone (pixels >= 90 % of Imax);
- CV = 100 SD / mean over the whole image (population SD);
- three centres of the field, each as x, y (px) and its distance from the image centre (px; and
  for the centroid and the fitted centre, in fractions of the half diagonal):
  - ``reference_zone_*``: the centroid of the reference zone (the max zone, pixels >= 90 % of Imax);
  - ``centroid_*``: the intensity-weighted centroid of the whole image (named
    ``centre_of_intensity_*`` before; results.json files with the old names read under the new ones:
    ``harness.records.run_record.RENAMED_METRICS``). A broad
    field's centroid stays near the image centre whatever the peak does: it is not where the light is;
  - ``fitted_centre_*``: the vertex of a 2-D Gaussian (any orientation) fitted to the smoothed image:
    ln I = a + b x + c y + d x^2 + e xy + f y^2 by linear least squares weighted by I^2, on the image
    binned to at most 256 px on its long side, pixels below 5 % of its maximum left out: where the
    illumination, vignetting included, peaks (on the simulated profile, Gaussian x vignetting, within
    about 2 px of the true peak; it is the source's Gaussian centre only without vignetting). Not
    determined (with the reason) when the fitted surface has no maximum;
- corner and edge-midpoint intensities as ratios to Imax.
Defect and saturated pixels are left out before the smoothing (``pixel_quality.masked_blur``: the
smoothed value of every pixel is the Gaussian-weighted mean of the good pixels around it).
Input: an image with values that are not finite, smaller than 3 x 3 px, or without signal (its
maximum or its sum not above zero: the lit frames are no brighter than the dark ones) is refused
with ``BadInput``: the formulas above divide by Imax and by the sum.
"""

from __future__ import annotations

import math

import numpy as np

from harness.analysis.input_checks import finite
from harness.analysis.metric import Metric
from harness.analysis.pixel_quality import BLUR_SIGMA_PX, gaussian_blur
from harness.common.errors import BadInput

__all__ = ["BLUR_SIGMA_PX", "fitted_centre", "flat_field_metrics", "gaussian_blur"]

FIT_FLOOR = 0.05  # pixels below this fraction of the maximum are left out of the Gaussian fit
FIT_MAX_SIDE = 256  # the fit works on the image binned to at most this many pixels on its long side


def fitted_centre(img: np.ndarray) -> tuple[float, float] | str:
    """(x, y) in px of the vertex of the 2-D Gaussian fitted to ``img`` (see the conventions), or why
    there is none (a string)."""
    h, w = img.shape
    b = max(1, math.ceil(max(h, w) / FIT_MAX_SIDE))
    hh, ww = h // b * b, w // b * b
    if hh < 3 * b or ww < 3 * b:
        return f"the image ({w} x {h} px) is too small for a 2-D fit"
    blocks = img[:hh, :ww].reshape(hh // b, b, ww // b, b).mean(axis=(1, 3))
    ys, xs = np.nonzero(blocks > FIT_FLOOR * float(blocks.max()))
    if len(xs) < 6:
        return "fewer than 6 points above 5 % of the maximum to fit"
    values = blocks[ys, xs]
    x = ((xs * b + b / 2) - w / 2) / w  # scaled for a well-conditioned system
    y = ((ys * b + b / 2) - h / 2) / w
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    try:
        coef = np.linalg.lstsq(design * values[:, None], np.log(values) * values, rcond=None)[0]
        _, cx, cy, dxx, dxy, dyy = (float(v) for v in coef)
        if not (dxx < 0 and 4 * dxx * dyy - dxy * dxy > 0):
            return "the fitted surface has no maximum (the field does not peak like a 2-D Gaussian)"
        vx, vy = np.linalg.solve(np.array([[2 * dxx, dxy], [dxy, 2 * dyy]]), -np.array([cx, cy]))
    except np.linalg.LinAlgError as exc:
        return f"the fit did not converge ({exc})"
    return float(vx * w + w / 2), float(vy * w + h / 2)


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
        "reference_zone_offset_px": Metric(math.hypot(zx - cx, zy - cy), "px"),
        "centroid_x_px": Metric(gx, "px"),
        "centroid_y_px": Metric(gy, "px"),
        "centroid_offset_px": Metric(math.hypot(gx - cx, gy - cy), "px"),
        "centroid_offset_frac": Metric(math.hypot(gx - cx, gy - cy) / (diagonal / 2), ""),
        **_fitted(img, cx, cy, diagonal),
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


def _fitted(img: np.ndarray, cx: float, cy: float, diagonal: float) -> dict[str, Metric]:
    found = fitted_centre(img)
    if isinstance(found, str):
        return {name: Metric(math.nan, unit, found) for name, unit in
                (("fitted_centre_x_px", "px"), ("fitted_centre_y_px", "px"), ("fitted_centre_offset_px", "px"), ("fitted_centre_offset_frac", ""))}
    fx, fy = found
    return {
        "fitted_centre_x_px": Metric(fx, "px"),
        "fitted_centre_y_px": Metric(fy, "px"),
        "fitted_centre_offset_px": Metric(math.hypot(fx - cx, fy - cy), "px"),
        "fitted_centre_offset_frac": Metric(math.hypot(fx - cx, fy - cy) / (diagonal / 2), ""),
    }
