"""The harness's QC metrics against independent implementations of the same formulas as other tools
publish them, on the same input, and against small hand-computed cases.

Every reference implementation below is written here from the other tool's published source (cited
in each test), not by calling the harness, so a bug in the harness makes a test fail. Where the other
tool uses a different convention, its convention is implemented and the test asserts the documented,
explainable difference and its size.

Sources (public repositories, path inside the repository):
- MetroloJ_QC: MontpellierRessourcesImagerie/MetroloJ_QC,
  MetroloJ_QC/src/main/java/metroloJ_QC/fieldIllumination/fieldIllumination.java and
  MetroloJ_QC/src/main/java/metroloJ_QC/utilities/tricks/dataTricks.java (getSD);
- ImageJ (which MetroloJ_QC calls): imagej/ImageJ, ij/plugin/filter/GaussianBlur.java
  (blurGaussian(ip, sigma), makeGaussianKernel, convolveLine), ij/process/ByteStatistics.java
  (getCentroid: +0.5), ij/process/ShortProcessor.java (setPixels: float -> 16 bit, +0.5 truncation);
- microscope-metrics: juliomateoslangerak/microscope-metrics,
  src/microscopemetrics/analyses/field_illumination.py and light_source_power.py, defaults in
  docs/schema/samples/sigma.md (2.0) and corner_fraction.md (0.1);
- QUAREP-LiMi Tool-Kit: QUAREP-LiMi/QUAREP-LiMi-Tool-Kit, src/pageLightSourceResults.py
  (GraphFrame.Analyse, calcNormalizedStandardDeviation), version at commit e6d6b5af (fit through the
  origin) and the earlier 2ef7af55 (fit with an intercept);
- ISO 230-2 worked example: paulscherrerinstitute/ecmccfg, examples/test/fat_sat/report.md;
- scikit-image: scikit-image/scikit-image, skimage/registration/_phase_cross_correlation.py
  (Guizar-Sicairos upsampled DFT), re-implemented below (no scikit-image dependency).
"""

from __future__ import annotations

import functools
import json
import math
import statistics

import numpy as np
import pytest
from scipy import ndimage, optimize, special

import harness.analysis.stage_metrics as stage_metrics
from harness.analysis.flat_field_metrics import flat_field_metrics, gaussian_blur
from harness.analysis.power_metrics import linearity_metrics, power_series_metrics
from harness.analysis.registration import shift_px
from harness.analysis.stage_metrics import iso230_metrics, repeatability_tables

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

# ------------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------------

H, W = 256, 320
CENTRE = (176.3, 115.8)  # (x, y) of the illumination peak; pixel (r, c) covers [c, c+1) x [r, r+1)


def vignetted_field(h: int = H, w: int = W, cx: float = CENTRE[0], cy: float = CENTRE[1],
                    sigma: float = 170.0, amp: float = 3000.0) -> np.ndarray:
    """A 2-D Gaussian illumination profile, off centre, sampled at pixel centres (k + 0.5)."""
    y, x = np.mgrid[0:h, 0:w] + 0.5
    return amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def noisy_mean(truth: np.ndarray, frames: int = 8, seed: int = 20240611) -> np.ndarray:
    """Mean of ``frames`` Poisson-noise frames of ``truth`` (a dark-subtracted mean image)."""
    rng = np.random.default_rng(seed)
    return rng.poisson(truth, size=(frames, *truth.shape)).mean(axis=0)


# ------------------------------------------------------------------------------------------------
# MetroloJ_QC / ImageJ, re-implemented
# ------------------------------------------------------------------------------------------------


def imagej_kernel(sigma: float, line_length: int, accuracy: float = 0.0002) -> np.ndarray:
    """One side of ImageJ's Gaussian kernel (GaussianBlur.makeGaussianKernel): radius
    ceil(sigma sqrt(-2 ln accuracy)) + 1, the tail replaced by a parabola, normalised over both sides.
    accuracy 0.0002 is what blurGaussian(ip, sigma) uses for 16-bit and float images."""
    k_radius = int(math.ceil(sigma * math.sqrt(-2 * math.log(accuracy)))) + 1
    max_radius = max(line_length, 50)
    k_radius = min(k_radius, max_radius)
    kern = np.array([float(np.float32(math.exp(-0.5 * i * i / sigma / sigma))) for i in range(k_radius)])
    if 3 < k_radius < max_radius:  # edge correction: smooth first derivative at the cut-off
        sqrt_slope, r = math.inf, k_radius
        while r > k_radius // 2:
            r -= 1
            a = math.sqrt(kern[r]) / (k_radius - r)
            if a < sqrt_slope:
                sqrt_slope = a
            else:
                break
        for r1 in range(r + 2, k_radius):
            kern[r1] = float(np.float32((k_radius - r1) ** 2 * sqrt_slope**2))
    total = kern[0] + 2 * kern[1:].sum() if k_radius < max_radius else sigma * math.sqrt(2 * math.pi)
    return kern / total


def imagej_blur(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """ImageJ GaussianBlur.blurGaussian(ip, sigma): x then y; out-of-image pixels take the value of
    the nearest edge pixel (convolveLine's kernSum * first/last terms). ImageJ works in float32; this
    is float64 (differences < 1e-3 ADU at 3000 ADU)."""
    out = image.astype(np.float64)
    for axis in (1, 0):
        one_side = imagej_kernel(sigma, out.shape[axis])
        kernel = np.concatenate([one_side[:0:-1], one_side])
        r = len(one_side) - 1
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="edge")
        out = np.apply_along_axis(functools.partial(np.convolve, v=kernel, mode="valid"), axis, padded)
    return out


def to_16bit(image: np.ndarray) -> np.ndarray:
    """ShortProcessor.setPixels(channel, FloatProcessor): (short)(v + 0.5), clipped to 0..65535."""
    return np.clip(np.floor(image + 0.5), 0, 65535)


def metroloj_field_illumination(ip: np.ndarray, step_width: float = 10.0) -> dict[str, float]:
    """fieldIllumination.java (threshold choice on, step 10 %) on an already blurred 16-bit image
    ``ip`` (getPixel(x, y) = ip[y, x]); Java int division for w / 2 and h / 2."""
    h, w = ip.shape
    i_min, i_max = float(ip.min()), float(ip.max())
    # pattern image: (int)((int)(currInt / max * 100 / stepWidth) * stepWidth), zone = [100 - step, 100]
    pattern = np.trunc(ip / i_max * 100.0 / step_width) * step_width
    ys, xs = np.nonzero(pattern >= 100.0 - step_width)
    x_zone, y_zone = xs.mean() + 0.5, ys.mean() + 0.5  # ImageJ getCentroid: mean index + 0.5
    rows, cols = np.mgrid[0:h, 0:w]
    x_com = float((ip * (cols + 0.5)).sum() / ip.sum())  # ImageStatistics.xCenterOfMass
    y_com = float((ip * (rows + 0.5)).sum() / ip.sum())
    coords = {  # (x, y) as in the Java coords array, in the same order
        "top_left": (0, 0), "top_right": (w - 1, 0), "bottom_left": (0, h - 1), "bottom_right": (w - 1, h - 1),
        "top": (w // 2, 0), "bottom": (w // 2, h - 1), "left": (0, h // 2), "right": (w - 1, h // 2),
    }
    intensities = {k: float(ip[y, x]) for k, (x, y) in coords.items()}
    values = list(intensities.values())
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # dataTricks.getSD: / n
    cx, cy = w // 2, h // 2
    return {
        "uniformity": i_min / i_max * 100.0,
        "field_uniformity": 100.0 - 100.0 * sd / i_max,
        "centering_accuracy": 100.0 - 200.0 * math.sqrt((x_zone - cx) ** 2 + (y_zone - cy) ** 2) / math.sqrt(w**2 + h**2),
        "x_zone": x_zone, "y_zone": y_zone, "x_com": x_com, "y_com": y_com,
        "com_distance": math.hypot(x_com - cx, y_com - cy),
        **{f"relative_{k}": v / i_max for k, v in intensities.items()},  # fia.relativeInt before rounding
    }


# ------------------------------------------------------------------------------------------------
# flat field
# ------------------------------------------------------------------------------------------------


def test_harness_blur_is_a_mirror_gaussian_truncated_at_3_sigma() -> None:
    """The harness's gaussian_blur (sigma 2 px, radius ceil(3 sigma) = 6, np.pad 'reflect' edges) is
    re-implemented with scipy.ndimage.gaussian_filter(sigma=2, mode='mirror', truncate=3.0): scipy's
    'mirror' is numpy's 'reflect' (d c b | a b c d) and its radius int(3 * 2 + 0.5) = 6.
    Agreement: max |difference| <= 1e-9 ADU on a 256 x 320 noisy field of ~3000 ADU."""
    mean = noisy_mean(vignetted_field())
    reference = ndimage.gaussian_filter(mean, 2.0, mode="mirror", truncate=3.0)
    assert np.abs(gaussian_blur(mean) - reference).max() <= 1e-9


def test_imagej_blur_differs_from_the_harness_only_at_the_edges_by_the_edge_mode() -> None:
    """MetroloJ_QC smooths with ImageJ's GaussianBlur.blurGaussian(ip, 2.0) (fieldIllumination.java):
    a kernel of radius 10 with a parabolic tail (accuracy 0.0002) and out-of-image pixels equal to
    the nearest edge pixel (ImageJ GaussianBlur.java). The harness mirrors the image and cuts the
    kernel at 3 sigma.
    - Interior (>= 12 px from the edges): the two smoothings agree within 0.05 ADU (<2e-5 of the
      3000 ADU peak) on the noisy field, within 0.01 ADU without noise.
    - At a corner, mirroring brings in brighter inner pixels where 'nearest' repeats the corner:
      to first order the harness is higher by m1 (g_x + g_y), m1 = sum_k>=1 k g(k) = 0.778 px for
      the harness's sigma-2 kernel and g the inward gradients. On the noise-free field this is
      10.7-11.6 ADU (0.8 % of the corner values); asserted within 1 % of that first-order
      prediction at all four corners (found within 0.3 %)."""
    truth = vignetted_field()
    mean = noisy_mean(truth)
    interior = (slice(12, -12), slice(12, -12))
    assert np.abs(gaussian_blur(mean) - imagej_blur(mean))[interior].max() <= 0.05
    diff = gaussian_blur(truth) - imagej_blur(truth)
    assert np.abs(diff[interior]).max() <= 0.01

    radius = 6
    k = np.exp(-np.arange(-radius, radius + 1) ** 2 / 8.0)
    k /= k.sum()
    m1 = float(np.sum(np.arange(1, radius + 1) * k[radius + 1:]))
    assert m1 == pytest.approx(0.7782, abs=1e-4)  # the continuous sigma / sqrt(2 pi) is 0.798
    sigma_field = 170.0
    for r, c in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]:
        x, y = c + 0.5, r + 0.5
        f = truth[r, c]
        inward_gx = f * abs(x - CENTRE[0]) / sigma_field**2
        inward_gy = f * abs(y - CENTRE[1]) / sigma_field**2
        predicted = m1 * (inward_gx + inward_gy)
        assert 8.0 < predicted < 14.0
        assert diff[r, c] == pytest.approx(predicted, rel=0.01)


def test_metroloj_formulas_agree_exactly_on_the_same_smoothed_image() -> None:
    """Same convention, same input: the image MetroloJ_QC analyses (ImageJ blur sigma 2, stored as
    16 bit) is given to the harness with blur=False. Re-implemented from fieldIllumination.java:
    U = 100 min/max; field uniformity = 100 - 100 SD/max over the 4 corner and 4 edge-midpoint pixels
    with dataTricks.getSD (divides by n); reference zone = pattern int(I/max*100/10)*10 >= 90, its
    centroid by ImageJ getCentroid (mean index + 0.5); centering accuracy = 100 - 200 d / diagonal
    with the centre (w/2, h/2); centre of mass sum(I (x + 0.5)) / sum(I); relative intensities I/max.
    Even width and height, so Java's w / 2 equals the harness's W/2.
    Agreement: every metric within 1e-9 (absolute; % or px or ratio)."""
    ip = to_16bit(imagej_blur(noisy_mean(vignetted_field())))
    mj = metroloj_field_illumination(ip)
    m, _ = flat_field_metrics(ip, blur=False)
    pairs = {
        "uniformity_pct": "uniformity", "field_uniformity_pct": "field_uniformity",
        "centering_accuracy_pct": "centering_accuracy", "reference_zone_x_px": "x_zone",
        "reference_zone_y_px": "y_zone", "centroid_x_px": "x_com",
        "centroid_y_px": "y_com", "centroid_offset_px": "com_distance",
        **{f"ratio_{p}": f"relative_{p}" for p in ("top_left", "top_right", "bottom_left", "bottom_right", "top", "bottom", "left", "right")},
    }
    for ours, theirs in pairs.items():
        assert m[ours].value == pytest.approx(mj[theirs], abs=1e-9), ours
    assert m["max_intensity"].value == ip.max()
    # realistic values, so that the comparison is not vacuous
    assert 40 < mj["uniformity"] < 45 and 85 < mj["field_uniformity"] < 90 and 88 < mj["centering_accuracy"] < 92


def test_metroloj_end_to_end_differs_by_the_blur_edge_mode_only() -> None:
    """Same raw image through both pipelines: MetroloJ_QC (ImageJ blur, 16-bit storage, its formulas,
    re-implemented as above) against flat_field_metrics(mean, blur=True). The formulas agree exactly
    (previous test); the smoothing differs at the image edges (mirror vs nearest edge pixel), and the
    minimum and the 8 points of the field uniformity all lie on the edges.
    Noise-free field (deterministic): U is higher in the harness by 100 m1 (g_x + g_y) / Imax at the
    darkest corner (bottom left), 0.355 %-points predicted, 0.348 found (asserted within 0.025, the
    16-bit rounding being 0.017); field uniformity higher by 0.047 (asserted 0 < d < 0.1); centering
    accuracy within 0.002 %-points and the reference-zone centroid within 0.01 px (the zone is in the
    interior, where the smoothings agree).
    With 8 frames of Poisson noise the corner pixels' noise enters the two smoothings with different
    weights: over 8 seeds dU = 0.21-0.61, d(field uniformity) = 0.015-0.17, d(centering) < 0.02,
    centroid < 0.03 px; asserted for one seed: 0 < dU < 1, |dFU| < 0.25, |dCA| < 0.03, < 0.05 px."""
    truth = vignetted_field()
    mj = metroloj_field_illumination(to_16bit(imagej_blur(truth)))
    m, _ = flat_field_metrics(truth, blur=True)
    radius = 6
    k = np.exp(-np.arange(-radius, radius + 1) ** 2 / 8.0)
    m1 = float(np.sum(np.arange(1, radius + 1) * k[radius + 1:]) / k.sum())
    x, y = 0.5, H - 0.5  # the bottom-left corner pixel's centre, the darkest one
    predicted = 100 * m1 * truth[H - 1, 0] * (abs(x - CENTRE[0]) + abs(y - CENTRE[1])) / 170.0**2 / m["max_intensity"].value
    assert 0.3 < predicted < 0.4
    assert m["uniformity_pct"].value - mj["uniformity"] == pytest.approx(predicted, abs=0.025)
    assert 0.0 < m["field_uniformity_pct"].value - mj["field_uniformity"] < 0.1
    assert abs(m["centering_accuracy_pct"].value - mj["centering_accuracy"]) < 0.002
    assert abs(m["reference_zone_x_px"].value - mj["x_zone"]) < 0.01 and abs(m["reference_zone_y_px"].value - mj["y_zone"]) < 0.01

    mean = noisy_mean(truth)
    mj = metroloj_field_illumination(to_16bit(imagej_blur(mean)))
    m, _ = flat_field_metrics(mean, blur=True)
    assert 0.0 < m["uniformity_pct"].value - mj["uniformity"] < 1.0
    assert abs(m["field_uniformity_pct"].value - mj["field_uniformity"]) < 0.25
    assert abs(m["centering_accuracy_pct"].value - mj["centering_accuracy"]) < 0.03
    assert abs(m["reference_zone_x_px"].value - mj["x_zone"]) < 0.05 and abs(m["reference_zone_y_px"].value - mj["y_zone"]) < 0.05


def test_odd_image_size_metroloj_centre_is_java_integer_division() -> None:
    """fieldIllumination.java computes the image centre as (this.w / 2, this.h / 2) with int w, h:
    for an odd size that is half a pixel up-left of the geometric centre (w/2, h/2) the harness uses
    (with pixel centres at k + 0.5 in both). On a 255 x 321 image with the illumination off centre
    along the diagonal, the harness's centering accuracy equals MetroloJ's formula with the centre at
    (w/2, h/2) to 1e-9, and is higher than MetroloJ's (integer centre, further from the zone) by exactly
    the geometric amount (asserted to 1e-9; here 0.345 %-points, at most 200 sqrt(0.5) / diagonal =
    0.3456)."""
    h, w = 255, 321
    ip = to_16bit(imagej_blur(noisy_mean(vignetted_field(h, w, cx=174.9, cy=141.7), seed=5)))
    mj = metroloj_field_illumination(ip)
    m, _ = flat_field_metrics(ip, blur=False)
    diag = math.hypot(w, h)
    float_centre_ca = 100 - 200 * math.hypot(mj["x_zone"] - w / 2, mj["y_zone"] - h / 2) / diag
    assert m["centering_accuracy_pct"].value == pytest.approx(float_centre_ca, abs=1e-9)
    expected = 200 * (math.hypot(mj["x_zone"] - w // 2, mj["y_zone"] - h // 2) - math.hypot(mj["x_zone"] - w / 2, mj["y_zone"] - h / 2)) / diag
    assert m["centering_accuracy_pct"].value - mj["centering_accuracy"] == pytest.approx(expected, abs=1e-9)
    assert 0.3 < expected <= 200 * math.sqrt(0.5) / diag
    # the other metrics do not depend on the centre and agree exactly
    assert m["uniformity_pct"].value == pytest.approx(mj["uniformity"], abs=1e-9)
    assert m["field_uniformity_pct"].value == pytest.approx(mj["field_uniformity"], abs=1e-9)


# microscope-metrics ------------------------------------------------------------------------------


def mm_max_intensity_region(channel: np.ndarray, sigma: float = 2.0) -> dict[str, float]:
    """microscope-metrics field_illumination._channel_max_intensity_properties, the region part:
    skimage.filters.gaussian(sigma, preserve_range=True) (mode 'nearest', truncate 4), then for
    n_bins in 11, 21, 51, ... rescale_intensity to (0, n_bins), cast to int as labels, and take the
    second-highest label's region (regionprops[-2]) until it covers < 20 % of the image; centroid =
    mean (row, col) index (skimage regionprops); *_relative = centroid / (size / 2) - 1."""
    proc = ndimage.gaussian_filter(channel.astype(float), sigma, mode="nearest", truncate=4.0)
    area_fraction, region = 1.0, None
    for n_bins in [11, 21, 51, 101, 201, 501]:
        if area_fraction < 0.2:
            break
        labels = (np.clip(proc, 0, proc.max()) / proc.max() * n_bins).astype(int)
        present = np.unique(labels[labels > 0])
        region = labels == present[-2]
        area_fraction = region.sum() / channel.size
    rows, cols = np.nonzero(region)
    h, w = channel.shape
    return {
        "y": rows.mean(), "x": cols.mean(), "area_fraction": area_fraction,
        "x_relative": cols.mean() / (w / 2) - 1, "y_relative": rows.mean() / (h / 2) - 1,
    }


def mm_corner_ratios(channel: np.ndarray, corner_fraction: float = 0.1) -> dict[str, float]:
    """microscope-metrics field_illumination._channel_corner_properties: means of cfp x cfp boxes,
    cfp = int(corner_fraction (h + w) / 2), over the raw (not smoothed) channel, divided by the raw
    maximum; the right and bottom boxes end at index -1 (one row/column short), as published."""
    mx = channel.max()
    cfp = int(corner_fraction * (channel.shape[0] + channel.shape[1]) / 2)
    return {
        "top_left": channel[0:cfp, 0:cfp].mean() / mx,
        "top_right": channel[0:cfp, -cfp:-1].mean() / mx,
        "bottom_left": channel[-cfp:-1, 0:cfp].mean() / mx,
        "bottom_right": channel[-cfp:-1, -cfp:-1].mean() / mx,
    }


def test_microscope_metrics_centre_convention_is_half_a_pixel_off() -> None:
    """microscope-metrics reports the centre of the max-intensity region in array indices (regionprops
    centroid) and its offset relative to size/2, so a perfectly centred field is reported off centre
    by -0.5 px per axis: x_relative = ((w-1)/2)/(w/2) - 1 = -1/w exactly. The harness (pixel centres
    at k + 0.5, centre W/2) reports 0 offset and 100 % centering accuracy. Asserted exactly (1e-9)
    on a noise-free field centred in a 256 x 320 image."""
    field = vignetted_field(cx=W / 2, cy=H / 2)
    mm = mm_max_intensity_region(field)
    m, _ = flat_field_metrics(field)
    assert mm["x"] == pytest.approx((W - 1) / 2, abs=1e-9) and mm["y"] == pytest.approx((H - 1) / 2, abs=1e-9)
    assert mm["x_relative"] == pytest.approx(-1 / W, abs=1e-12) and mm["y_relative"] == pytest.approx(-1 / H, abs=1e-12)
    assert m["reference_zone_x_px"].value == pytest.approx(W / 2, abs=1e-9)
    assert m["reference_zone_y_px"].value == pytest.approx(H / 2, abs=1e-9)
    assert m["centering_accuracy_pct"].value == pytest.approx(100.0, abs=1e-9)
    assert m["centroid_offset_frac"].value == pytest.approx(0.0, abs=1e-9)


def test_microscope_metrics_region_centre_agrees_after_the_half_pixel_shift() -> None:
    """Both tools locate the bright region of the off-centre Gaussian profile, with different regions
    (harness: >= 90 % of max after its sigma-2 mirror blur, a disc of radius ~78 px; microscope-metrics:
    the top bin of 21, [95.2 %, 100 %) of max without the max pixel, after a sigma-2 'nearest' blur,
    radius ~53 px, chosen because the 11-bin one covers > 20 % of the image). Both estimate the
    profile's centre (176.3, 115.8) once microscope-metrics' missing 0.5 px is added:
    - noise-free: within 0.05 px of each other and of the true centre, per axis;
    - 8 Poisson frames: within 0.4 px of each other (over 10 seeds microscope-metrics' smaller region
      scatters by 0.13 px SD, the harness's by 0.06 px), the harness within 0.2 px of the truth."""
    for image, tol_between, tol_truth in [(vignetted_field(), 0.05, 0.05), (noisy_mean(vignetted_field()), 0.4, 0.2)]:
        mm = mm_max_intensity_region(image)
        m, _ = flat_field_metrics(image)
        assert 0.05 < mm["area_fraction"] < 0.2  # the 21-bin region, as traced above
        zx, zy = m["reference_zone_x_px"].value, m["reference_zone_y_px"].value
        assert abs(mm["x"] + 0.5 - zx) < tol_between and abs(mm["y"] + 0.5 - zy) < tol_between
        assert abs(zx - CENTRE[0]) < tol_truth and abs(zy - CENTRE[1]) < tol_truth
    mm = mm_max_intensity_region(vignetted_field())
    assert abs(mm["x"] + 0.5 - CENTRE[0]) < 0.05 and abs(mm["y"] + 0.5 - CENTRE[1]) < 0.05


def test_microscope_metrics_corner_ratios_are_box_means_not_corner_pixels() -> None:
    """microscope-metrics' corner 'intensity ratios' are means of 28 x 28 px boxes (10 % of the mean
    side) of the unsmoothed image over its maximum; MetroloJ_QC and the harness take the corner pixel
    of the smoothed image over the smoothed maximum. The box mean sits ~14 px inside the corner, so
    on this field (harness corner ratios 0.42-0.56) microscope-metrics' ratios are higher, by
    0.047-0.049 here, although its noisy raw maximum (3059 ADU, +1.9 % over the smoothed 3003 ADU)
    pulls them down. Asserted per corner: 0.02 < mm - harness < 0.08, and mm within 0.01 of the
    noise-free expectation (box mean of the true field over its peak value, 3000) x 3000 / raw max."""
    truth = vignetted_field()
    mean = noisy_mean(truth)
    mm = mm_corner_ratios(mean)
    m, _ = flat_field_metrics(mean)
    expected = mm_corner_ratios(truth)
    for corner, value in mm.items():
        assert 0.02 < value - m[f"ratio_{corner}"].value < 0.08, corner
        assert value == pytest.approx(expected[corner] * truth.max() / mean.max(), abs=0.01), corner


def test_flat_field_by_hand() -> None:
    """A 4 x 6 image, no smoothing, computed by hand:
        10 20 30 30 20 10
        20 40 60 60 40 20
        20 40 60 60 40 20
        10 20 30 30 20 10
    max 60, min 10 -> U = 16.667 %; corner/edge-midpoint pixels (col 3, row 2): 10 10 10 10 30 30 20
    20, mean 17.5, population SD sqrt(68.75) = 8.2916 -> field uniformity 100 - 100*8.2916/60 =
    86.1807 %; reference zone = the four 60s, centroid (3.0, 2.0) = the centre (W/2, H/2) -> 100 %;
    CV: mean 720 / 24 = 30, mean square 28000 / 24 -> population SD sqrt(266.667) = 16.3299 ->
    54.4331 %; centre of intensity (3.0, 2.0)."""
    img = np.array([[10, 20, 30, 30, 20, 10], [20, 40, 60, 60, 40, 20], [20, 40, 60, 60, 40, 20], [10, 20, 30, 30, 20, 10]], float)
    m, _ = flat_field_metrics(img, blur=False)
    assert m["uniformity_pct"].value == pytest.approx(100 / 6, abs=1e-12)
    assert m["field_uniformity_pct"].value == pytest.approx(100 - 100 * math.sqrt(68.75) / 60, abs=1e-12)
    assert m["field_uniformity_pct"].value == pytest.approx(86.1807, abs=5e-5)
    assert m["centering_accuracy_pct"].value == pytest.approx(100.0, abs=1e-12)
    assert (m["reference_zone_x_px"].value, m["reference_zone_y_px"].value) == pytest.approx((3.0, 2.0), abs=1e-12)
    assert m["cv_pct"].value == pytest.approx(100 * statistics.pstdev(img.ravel().tolist()) / statistics.fmean(img.ravel().tolist()), abs=1e-12)
    assert m["cv_pct"].value == pytest.approx(54.4331, abs=5e-5)
    assert (m["centroid_x_px"].value, m["centroid_y_px"].value) == pytest.approx((3.0, 2.0), abs=1e-12)
    assert m["ratio_top"].value == pytest.approx(0.5) and m["ratio_left"].value == pytest.approx(20 / 60)


# ------------------------------------------------------------------------------------------------
# illumination power
# ------------------------------------------------------------------------------------------------


def power_series(seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """1 h at 2 s: 5 mW, exponential warm-up (-3 %, tau 4 min), drift +0.8 %/h, 0.2 % noise; in W."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 3600.0, 2.0)
    p_mw = 5.0 * (1 - 0.03 * np.exp(-t / 240.0)) * (1 + 0.008 * t / 3600.0) * (1 + 0.002 * rng.standard_normal(t.size))
    return t, p_mw * 1e-3


def test_stability_and_cv_as_the_quarep_toolkit() -> None:
    """QUAREP-LiMi-Tool-Kit src/pageLightSourceResults.py, GraphFrame.Analyse (stability protocol):
    stability = 100 (1 - (max - min) / (max + min)); calcNormalizedStandardDeviation =
    100 np.std(data) / np.mean(data), i.e. the population SD. Re-implemented with the statistics
    module on the readings in mW (the Tool-Kit's unit). Agreement: relative 1e-12."""
    t, p = power_series()
    y = (p * 1e3).tolist()
    stability = 100.0 * (1.0 - (max(y) - min(y)) / (max(y) + min(y)))
    nsd = 100.0 * statistics.pstdev(y) / statistics.fmean(y)
    m = power_series_metrics(t, p)
    assert m["stability_pct"].value == pytest.approx(stability, rel=1e-12)
    assert m["cv_pct"].value == pytest.approx(nsd, rel=1e-12)
    assert 96 < stability < 98.5 and 0.5 < nsd < 1.5  # warm-up and drift dominate, as intended


def test_basic_statistics_and_stability_as_microscope_metrics() -> None:
    """microscope-metrics light_source_power._compute_basic_measurement (pandas mean, median,
    std with ddof 1, min, max of power_mw) and _compute_stability (1 - (max - min) / (max + min), a
    fraction). Re-implemented with the statistics module. Agreement: relative 1e-12; the harness
    reports stability in % (x 100, documented unit difference)."""
    t, p = power_series(seed=3)
    y = (p * 1e3).tolist()
    m = power_series_metrics(t, p)
    assert m["mean_mw"].value == pytest.approx(statistics.fmean(y), rel=1e-12)
    assert m["median_mw"].value == pytest.approx(statistics.median(y), rel=1e-12)
    assert m["sd_mw"].value == pytest.approx(statistics.stdev(y), rel=1e-12)
    assert (m["min_mw"].value, m["max_mw"].value) == pytest.approx((min(y), max(y)), rel=1e-12)
    mm_stability = 1 - (max(y) - min(y)) / (max(y) + min(y))
    assert m["stability_pct"].value == pytest.approx(100 * mm_stability, rel=1e-12)
    assert m["samples"].value == len(y)


def test_drift_and_warmup_independently_and_by_hand() -> None:
    """Drift (the harness's own definition; no other tool reports it): OLS slope of power against
    time in % of the mean per hour, re-implemented in closed form sum((t - t_)(p - p_)) / sum((t - t_)^2).
    Agreement: relative 1e-9 on the random series. By hand: 10 mW rising 0.5 mW/h over 2 h -> mean
    10.5 mW -> 100 * 0.5 / 10.5 = 4.7619 %/h.
    Warm-up (time from emission on until the fitted settling term stays inside +-0.5 %): p = P(1 - 0.05
    exp(-t / 300 s)) every 5 s from emission on (t = 0) enters the band at 300 ln 10 = 690.8 s."""
    t, p = power_series(seed=8)
    tm, pm = statistics.fmean(t.tolist()), statistics.fmean(p.tolist())
    slope = sum((a - tm) * (b - pm) for a, b in zip(t, p)) / sum((a - tm) ** 2 for a in t)
    assert power_series_metrics(t, p)["drift_pct_per_h"].value == pytest.approx(100 * slope * 3600 / pm, rel=1e-9)

    t2 = np.arange(0.0, 7201.0, 60.0)
    p2 = (10.0 + 0.5 * t2 / 3600.0) * 1e-3
    assert power_series_metrics(t2, p2)["drift_pct_per_h"].value == pytest.approx(100 * 0.5 / 10.5, rel=1e-12)

    t3 = np.arange(0.0, 3600.0, 5.0)
    p3 = 2e-3 * (1 - 0.05 * np.exp(-t3 / 300.0))
    assert power_series_metrics(t3, p3, emission_on_s=0.0)["warmup_time_s"].value == pytest.approx(300 * math.log(10), rel=1e-4)


def linearity_readings(seed: int = 21, repeats: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Set points 1..100 % of 20 mW, a slightly non-linear source with an offset, 0.5 % reading noise;
    returns (set points, raw readings [n_set x repeats], means) in mW."""
    rng = np.random.default_rng(seed)
    s = np.array([1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]) * 0.2
    true = 0.92 * s - 0.03 + 0.0008 * s**2
    raw = true[:, None] * (1 + 0.005 * rng.standard_normal((s.size, repeats)))
    return s, raw, raw.mean(axis=1)


def test_linearity_ols_as_microscope_metrics() -> None:
    """microscope-metrics light_source_power._compute_linearity: scipy.stats.linregress of every
    reading against its set point (R^2 = r_value^2). The harness fits the mean power per set point.
    Re-implemented in closed form (Sxy / Sxx) on the raw readings. With the same number of readings
    per set point the OLS line is the same: slope and intercept agree to relative 1e-9. R^2 differs
    by the within-set-point scatter, exactly: R^2_raw = n SSreg_means / (n SStot_means + SSwithin)
    (asserted to 1e-9); here the harness's R^2 is the higher one."""
    s, raw, means = linearity_readings()
    n = raw.shape[1]
    x = np.repeat(s, n).tolist()
    y = raw.ravel().tolist()
    xm, ym = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - xm) ** 2 for a in x)
    sxy = sum((a - xm) * (b - ym) for a, b in zip(x, y))
    syy = sum((b - ym) ** 2 for b in y)
    slope, intercept, r2_raw = sxy / sxx, ym - sxy / sxx * xm, sxy**2 / (sxx * syy)
    m = linearity_metrics(s, means)
    assert m["slope"].value == pytest.approx(slope, rel=1e-9)
    assert m["intercept_mw"].value == pytest.approx(intercept, rel=1e-9)
    ss_tot_means = float(np.sum((means - means.mean()) ** 2))
    ss_reg_means = m["r_squared"].value * ss_tot_means
    ss_within = float(np.sum((raw - means[:, None]) ** 2))
    assert r2_raw == pytest.approx(n * ss_reg_means / (n * ss_tot_means + ss_within), rel=1e-9)
    assert m["r_squared"].value > r2_raw


def toolkit_linearity_chi2(x_data: list[float], y_data: list[float]) -> tuple[float, float]:
    """QUAREP-LiMi-Tool-Kit src/pageLightSourceResults.py at commit e6d6b5af, GraphFrame.Analyse
    ('linear' protocol): a = np.linalg.lstsq(x[:, None], y) (a line through the origin), then
    chi2 = sum over readings with x > 0 and |a x| > 0 of (y - a x)^2 / |a x|
    ("exclude the 0-point because dividing by 0 gives huge results")."""
    a = sum(xi * yi for xi, yi in zip(x_data, y_data)) / sum(xi * xi for xi in x_data)
    chi2 = 0.0
    for xi, yi in zip(x_data, y_data):
        if xi > 0 and abs(a * xi) > 0:
            chi2 += (yi - a * xi) ** 2 / abs(a * xi)
    return a, chi2


def test_linearity_chi2_as_the_quarep_toolkit() -> None:
    """The Tool-Kit fits every reading of the sweep; the harness fits the mean per set point.
    - One reading per set point: the same data; slope through the origin and chi^2 agree to
      relative 1e-12.
    - n readings per set point: the slope is the same (relative 1e-12), and chi^2 differs exactly by
      chi2_toolkit = n chi2_harness + sum (P_ij - mean_i)^2 / |a s_i| (asserted to relative 1e-9); on
      this sweep (5 readings per set point) the Tool-Kit's value is 5.5x the harness's."""
    s, raw, means = linearity_readings(repeats=1)
    a, chi2 = toolkit_linearity_chi2(s.tolist(), raw[:, 0].tolist())
    m = linearity_metrics(s, raw[:, 0])
    assert m["slope_through_origin"].value == pytest.approx(a, rel=1e-12)
    assert m["chi_squared_through_origin"].value == pytest.approx(chi2, rel=1e-12)

    s, raw, means = linearity_readings(repeats=5)
    n = raw.shape[1]
    a, chi2 = toolkit_linearity_chi2(np.repeat(s, n).tolist(), raw.ravel().tolist())
    m = linearity_metrics(s, means)
    assert m["slope_through_origin"].value == pytest.approx(a, rel=1e-12)
    within = float(np.sum((raw - means[:, None]) ** 2 / np.abs(a * s)[:, None]))
    assert chi2 == pytest.approx(n * m["chi_squared_through_origin"].value + within, rel=1e-9)
    assert 2 < chi2 / m["chi_squared_through_origin"].value < 20


def test_linearity_chi2_with_a_zero_set_point_as_the_quarep_toolkit() -> None:
    """A sweep that starts at 0 % (the Tool-Kit's code expects one; the harness's shipped
    protocols/power-linearity.yaml starts at 1 %). The Tool-Kit excludes readings with x = 0 from chi^2
    (pageLightSourceResults.py at e6d6b5af: 'exclude the 0-point because dividing by 0 gives huge
    results'); the fit through the origin is unaffected by them (x = 0 adds nothing to sum x y or
    sum x^2). The harness divides by |a s_i| = 0 for that set point.
    Expected: chi^2 equal to the Tool-Kit's (finite) value, relative 1e-12."""
    s, raw, means = linearity_readings(repeats=1)
    s0 = np.concatenate([[0.0], s])
    p0 = np.concatenate([[0.0004], raw[:, 0]])  # the meter's dark reading at 0 %
    a, chi2 = toolkit_linearity_chi2(s0.tolist(), p0.tolist())
    with np.errstate(divide="ignore", invalid="ignore"):
        m = linearity_metrics(s0, p0)
    assert m["slope_through_origin"].value == pytest.approx(a, rel=1e-12)
    assert math.isfinite(chi2)
    assert m["chi_squared_through_origin"].value == pytest.approx(chi2, rel=1e-12)


def test_linearity_by_hand() -> None:
    """s = 1, 2, 3, 4 mW, P = 1.1, 1.9, 3.2, 3.8 mW, computed by hand:
    OLS: Sxx = 5, Sxy = 4.7 -> slope 0.94, intercept 0.15; residuals 0.01, -0.13, 0.23, -0.11 ->
    SSres 0.082, SStot 4.5 -> R^2 = 0.981778; largest |residual| / fit = 0.23 / 2.97 = 7.7441 %.
    Through the origin: a = 29.7 / 30 = 0.99; chi^2 = 0.11^2/0.99 + 0.08^2/1.98 + 0.23^2/2.97 +
    0.16^2/3.96 = 0.0397306."""
    m = linearity_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.1, 1.9, 3.2, 3.8]))
    assert m["slope"].value == pytest.approx(0.94, abs=1e-12)
    assert m["intercept_mw"].value == pytest.approx(0.15, abs=1e-12)
    assert m["r_squared"].value == pytest.approx(1 - 0.082 / 4.5, abs=1e-12)
    assert m["max_relative_deviation_pct"].value == pytest.approx(100 * 0.23 / 2.97, abs=1e-10)
    assert m["slope_through_origin"].value == pytest.approx(0.99, abs=1e-12)
    chi2 = 0.11**2 / 0.99 + 0.08**2 / 1.98 + 0.23**2 / 2.97 + 0.16**2 / 3.96
    assert m["chi_squared_through_origin"].value == pytest.approx(chi2, abs=1e-12)
    assert chi2 == pytest.approx(0.0397306, abs=5e-8)


# ------------------------------------------------------------------------------------------------
# stage: ISO 230-2 and repeatability tables
# ------------------------------------------------------------------------------------------------


def iso_rows(deviations: dict[str, dict[str, list[float]]]) -> tuple[list[dict[str, str]], dict[int, float]]:
    """Frame rows as the harness's frames CSV has them, and the deviation each frame stands for."""
    rows, value, ifd = [], {}, 0
    for target, groups in deviations.items():
        for tag in ("up", "down"):
            for d in groups[tag]:
                rows.append({"status": "ok", "tag": tag, "context": json.dumps({"target": target}), "ifd": str(ifd)})
                value[ifd] = d
                ifd += 1
    return rows, value


def run_iso230_on_deviations(monkeypatch: pytest.MonkeyPatch, deviations: dict[str, dict[str, list[float]]]) -> tuple[dict, list[dict]]:
    """iso230_metrics with registration replaced by the known deviations: the harness takes
    deviation = -shift_px(reference, frame)[0] x pixel size, so the stub returns -deviation (pixel 1)."""
    rows, value = iso_rows(deviations)
    monkeypatch.setattr(stage_metrics, "shift_px", lambda ref, frame: (-value[frame], 0.0))
    return iso230_metrics(rows, lambda i: i, pixel_um=1.0)


# ecmccfg examples/test/fat_sat/report.md: positioning deviations x(i, j) in mm, 5 targets x 5 cycles
ECMC_UP = [
    [-8.102e-05, -0.00010202, -8.702e-05, -9.202e-05, -0.00010002],
    [-8.702e-05, -9.702e-05, -9.702e-05, -9.502e-05, -8.202e-05],
    [-7.202e-05, -9.002e-05, -8.802e-05, -8.702e-05, -8.702e-05],
    [-0.00010202, -8.602e-05, -8.602e-05, -9.302e-05, -7.802e-05],
    [-0.00010002, -0.00011202, -0.00012902, -0.00010902, -9.702e-05],
]
ECMC_DOWN = [
    [-9.902e-05, -9.402e-05, -8.202e-05, -9.102e-05, -9.402e-05],
    [-0.00010302, -0.00010402, -9.502e-05, -0.00011102, -9.302e-05],
    [-8.602e-05, -0.00010202, -9.102e-05, -7.602e-05, -9.902e-05],
    [-7.202e-05, -9.202e-05, -9.502e-05, -0.00010302, -8.102e-05],
    [-0.00010402, -0.00012602, -0.00013002, -0.00014102, -0.00010702],
]
# the report's tables: B(i), S_fwd(i), S_bwd(i), R_fwd(i), R_bwd(i), R(i) in mm
ECMC_TABLE = [
    (-4e-07, 8.79e-06, 6.28e-06, 3.517e-05, 2.514e-05, 3.517e-05),
    (9.6e-06, 6.77e-06, 7.29e-06, 2.707e-05, 2.918e-05, 3.772e-05),
    (6e-06, 7.26e-06, 1.043e-05, 2.904e-05, 4.17e-05, 4.17e-05),
    (-4e-07, 9e-06, 1.218e-05, 3.6e-05, 4.871e-05, 4.871e-05),
    (1.22e-05, 1.258e-05, 1.573e-05, 5.033e-05, 6.29e-05, 6.882e-05),
]


def test_iso230_against_a_published_worked_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ISO 230-2 report of paulscherrerinstitute/ecmccfg (examples/test/fat_sat/report.md): its
    deviations fed to the harness's table formulas (registration stubbed out). Per target, B_i, s_up,
    s_down, R_up_i = 4 s_up, R_down_i = 4 s_down and R_i = max(2 s_up + 2 s_down + |B_i|, 4 s_up,
    4 s_down) agree with the published values to their printed precision (3-4 significant digits:
    absolute 6e-9 mm). Axis values: R_up = 5.033e-05, R_down = 6.29e-05 and B = max |B_i| = 1.22e-05 mm
    as published. Documented difference: the report's headline 'R = max(R_fwd, R_bwd) = 6.29e-05'
    is not ISO 230-2's bidirectional R = max R_i; the harness reports max R_i = 6.882e-05 mm, the
    report's own R(i) column maximum."""
    deviations = {f"T{i + 1}": {"up": ECMC_UP[i], "down": ECMC_DOWN[i]} for i in range(5)}
    metrics, table = run_iso230_on_deviations(monkeypatch, deviations)
    for row, (b, s_up, s_down, r_up, r_down, r) in zip(table, ECMC_TABLE):
        assert row["B_i_um"] == pytest.approx(b, abs=6e-9)
        assert row["s_up_um"] == pytest.approx(s_up, abs=6e-9) and row["s_down_um"] == pytest.approx(s_down, abs=6e-9)
        assert row["R_up_i_um"] == pytest.approx(r_up, abs=6e-9) and row["R_down_i_um"] == pytest.approx(r_down, abs=6e-9)
        assert row["R_i_um"] == pytest.approx(r, abs=6e-9)
    assert metrics["repeatability_R_up_um"].value == pytest.approx(5.033e-05, abs=6e-9)
    assert metrics["repeatability_R_down_um"].value == pytest.approx(6.29e-05, abs=6e-9)
    assert metrics["reversal_B_um"].value == pytest.approx(1.22e-05, abs=6e-9)
    assert metrics["bidirectional_repeatability_R_um"].value == pytest.approx(6.882e-05, abs=6e-9)
    assert metrics["bidirectional_repeatability_R_um"].value - 6.29e-05 == pytest.approx(5.92e-06, abs=1e-8)


def iso230_reference(up: list[float], down: list[float]) -> dict[str, float]:
    """ISO 230-2 per target: s with n - 1, B = mean_up - mean_down, R_up = 4 s_up, R_down = 4 s_down,
    R = max(2 s_up + 2 s_down + |B|, R_up, R_down)."""
    s_up, s_down = statistics.stdev(up), statistics.stdev(down)
    b = statistics.fmean(up) - statistics.fmean(down)
    return {"s_up": s_up, "s_down": s_down, "B": b, "R_up": 4 * s_up, "R_down": 4 * s_down,
            "R": max(2 * s_up + 2 * s_down + abs(b), 4 * s_up, 4 * s_down)}


def test_iso230_tables_on_random_deviations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded random deviations (8 targets, 5 up / 5 down, some 4 / 6, a reversal of 0-0.3 um,
    SD 0.05-0.2 um) through the harness's tables against the ISO 230-2 formulas re-implemented with
    the statistics module. Agreement: absolute 1e-12 um per target and for R, R_up, R_down, B."""
    rng = np.random.default_rng(230)
    deviations, reference = {}, {}
    for i in range(8):
        n_up, n_down = (5, 5) if i % 3 else (4, 6)
        offset, reversal, sd = rng.normal(0, 0.5), rng.uniform(0, 0.3), rng.uniform(0.05, 0.2)
        up = (offset + sd * rng.standard_normal(n_up)).tolist()
        down = (offset - reversal + sd * rng.standard_normal(n_down)).tolist()
        deviations[f"{10 * i} um"] = {"up": up, "down": down}
        reference[f"{10 * i} um"] = iso230_reference(up, down)
    metrics, table = run_iso230_on_deviations(monkeypatch, deviations)
    assert len(table) == 8
    for row in table:
        ref = reference[row["target"]]
        for ours, theirs in [("s_up_um", "s_up"), ("s_down_um", "s_down"), ("B_i_um", "B"), ("R_up_i_um", "R_up"), ("R_down_i_um", "R_down"), ("R_i_um", "R")]:
            assert row[ours] == pytest.approx(ref[theirs], abs=1e-12), (row["target"], ours)
    assert metrics["bidirectional_repeatability_R_um"].value == pytest.approx(max(r["R"] for r in reference.values()), abs=1e-12)
    assert metrics["repeatability_R_up_um"].value == pytest.approx(max(r["R_up"] for r in reference.values()), abs=1e-12)
    assert metrics["repeatability_R_down_um"].value == pytest.approx(max(r["R_down"] for r in reference.values()), abs=1e-12)
    assert metrics["reversal_B_um"].value == pytest.approx(max(abs(r["B"]) for r in reference.values()), abs=1e-12)


def test_iso230_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """up 0, 1, 2 and down 1, 2, 3 um: s_up = s_down = 1 (n - 1), B = 1 - 2 = -1 um,
    R = max(2 + 2 + 1, 4, 4) = 5 um; a second target up 0, 0.4 / down 0, 0 (s_up = 0.28284,
    s_down = 0, B = 0.2): R = max(0.76569, 1.13137, 0) = 1.13137 um (4 s_up wins)."""
    metrics, table = run_iso230_on_deviations(monkeypatch, {
        "a": {"up": [0.0, 1.0, 2.0], "down": [1.0, 2.0, 3.0]},
        "b": {"up": [0.0, 0.4], "down": [0.0, 0.0]},
    })
    a, b = table
    assert (a["s_up_um"], a["s_down_um"], a["B_i_um"], a["R_i_um"]) == pytest.approx((1.0, 1.0, -1.0, 5.0), abs=1e-12)
    assert b["R_i_um"] == pytest.approx(4 * 0.4 / math.sqrt(2), abs=1e-12)
    assert metrics["bidirectional_repeatability_R_um"].value == pytest.approx(5.0, abs=1e-12)
    assert metrics["reversal_B_um"].value == pytest.approx(1.0, abs=1e-12)


def test_repeatability_tables_on_random_displacements() -> None:
    """Seeded displacements (2 move sizes x 4 directions x 10 rounds) through repeatability_tables
    against an independent grouping with the statistics module: per size and direction (and 'all'),
    n, mean and sample SD (n - 1) and max |d| per axis, and max of the 2-D |d| = hypot(dx, dy).
    Agreement: absolute 1e-12 um."""
    rng = np.random.default_rng(6)
    rows = []
    for size, spread in [("300 um", 0.15), ("3000 um", 0.6)]:
        for direction, bias in [("left", (-0.2, 0.0)), ("right", (0.2, 0.05)), ("back", (0.0, 0.3)), ("front", (0.05, -0.3))]:
            for k in range(10):
                rows.append({"size": size, "direction": direction, "round": k,
                             "dx_um": bias[0] + spread * rng.standard_normal(), "dy_um": bias[1] + spread * rng.standard_normal()})
    tables = repeatability_tables(rows)
    assert set(tables) == {"300 um", "3000 um"}
    for size, table in tables.items():
        assert set(table) == {"all", "left", "right", "back", "front"}
        for direction, entry in table.items():
            sel = [r for r in rows if r["size"] == size and (direction == "all" or r["direction"] == direction)]
            assert entry["n"] == len(sel)
            for axis in ("x", "y"):
                v = [r[f"d{axis}_um"] for r in sel]
                assert entry[axis]["mean_um"] == pytest.approx(statistics.fmean(v), abs=1e-12)
                assert entry[axis]["sd_um"] == pytest.approx(statistics.stdev(v), abs=1e-12)
                assert entry[axis]["max_abs_um"] == pytest.approx(max(abs(a) for a in v), abs=1e-12)
            assert entry["max_abs_2d_um"] == pytest.approx(max(math.hypot(r["dx_um"], r["dy_um"]) for r in sel), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------


def bead_positions(n: int = 25, size: int = 192, seed: int = 4) -> np.ndarray:
    """(x, y) of ``n`` beads at least 14 px apart and 16 px from the edges."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, float]] = []
    while len(out) < n:
        p = rng.uniform(16, size - 16, 2)
        if all(math.hypot(p[0] - q[0], p[1] - q[1]) >= 14 for q in out):
            out.append((float(p[0]), float(p[1])))
    return np.array(out)


def render_beads(positions: np.ndarray, size: int = 192, sigma: float = 1.6, amp: float = 800.0,
                 background: float = 100.0, seed: int | None = None) -> np.ndarray:
    """Beads as pixel-integrated 2-D Gaussians (pixel c covers [c, c + 1)), plus Poisson noise."""
    edges = np.arange(size + 1.0)
    img = np.full((size, size), background)
    for x0, y0 in positions:
        fx = np.diff(special.erf((edges - x0) / (sigma * math.sqrt(2)))) / 2
        fy = np.diff(special.erf((edges - y0) / (sigma * math.sqrt(2)))) / 2
        img += amp * 2 * math.pi * sigma**2 * np.outer(fy, fx)
    if seed is not None:
        img = np.random.default_rng(seed).poisson(img).astype(float)
    return img


def upsampled_dft(data: np.ndarray, region: int, factor: float, offsets: np.ndarray) -> np.ndarray:
    """skimage.registration._phase_cross_correlation._upsampled_dft (2-D): the DFT of ``data``
    evaluated on a ``region``-point grid, ``factor`` times finer, starting at ``offsets``."""
    for n, off in zip(data.shape[::-1], offsets[::-1]):
        kernel = np.exp(-2j * np.pi * (np.arange(region) - off)[:, None] * np.fft.fftfreq(n, factor))
        data = np.tensordot(kernel, data, axes=(1, -1))
    return data


def guizar_sicairos_shift(reference: np.ndarray, moving: np.ndarray, factor: int = 100) -> np.ndarray:
    """skimage.registration.phase_cross_correlation(reference, moving, upsample_factor=100,
    normalization=None): whole-pixel peak of the cross-correlation, refined by an upsampled DFT in a
    1.5 px neighbourhood (Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008)). Returns the (row, col)
    shift that registers ``moving`` onto ``reference``, i.e. minus the harness's (dy, dx)."""
    src, tgt = np.fft.fft2(reference), np.fft.fft2(moving)
    product = src * tgt.conj()
    cc = np.fft.ifft2(product)
    shifts = np.array(np.unravel_index(np.argmax(np.abs(cc)), cc.shape), dtype=float)
    shape = np.array(reference.shape, dtype=float)
    mid = np.fix(shape / 2)
    shifts[shifts > mid] -= shape[shifts > mid]
    shifts = np.round(shifts * factor) / factor
    region = int(np.ceil(factor * 1.5))
    dftshift = np.fix(region / 2.0)
    up = upsampled_dft(product.conj(), region, factor, dftshift - shifts * factor).conj()
    peak = np.array(np.unravel_index(np.argmax(np.abs(up)), up.shape), dtype=float)
    return shifts + (peak - dftshift) / factor


def fit_bead(img: np.ndarray, x0: float, y0: float, half: int = 5) -> tuple[float, float]:
    """(x, y) of a bead by a least-squares 2-D Gaussian + background fit on an 11 x 11 window (pixel
    centres at k + 0.5)."""
    c0, r0 = int(x0) - half, int(y0) - half
    win = img[r0:r0 + 2 * half + 1, c0:c0 + 2 * half + 1]
    yy, xx = np.mgrid[r0:r0 + 2 * half + 1, c0:c0 + 2 * half + 1] + 0.5

    def model(_: None, a: float, x: float, y: float, s: float, b: float) -> np.ndarray:
        return (a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) + b).ravel()

    p0 = [win.max() - win.min(), x0, y0, 1.5, win.min()]
    popt, _ = optimize.curve_fit(model, None, win.ravel(), p0=p0)
    return float(popt[1]), float(popt[2])


SHIFTS = [(3.37, -5.81), (-0.5, 0.25), (7.75, 2.5), (-12.12, 9.0), (0.3, 0.4), (0.8, 0.9)]


def test_shift_against_upsampled_dft_registration_and_the_truth() -> None:
    """The harness's shift_px (FFT cross-correlation peak, log-parabola refinement) against an
    independent registration re-implemented from scikit-image's phase_cross_correlation with
    normalization=None and upsample_factor=100 (Guizar-Sicairos upsampled DFT), on bead images
    (25 beads, sigma 1.6 px, Poisson noise) moved by 6 known sub-pixel shifts, including half- and
    quarter-pixel ones. Sign convention: skimage returns the shift registering ``moving`` onto
    ``reference``, so harness (dx, dy) = -(col, row).
    Agreement per axis: |harness - truth| <= 0.01 px (found <= 0.007), |upsampled DFT - truth| <=
    0.015 px (its grid is 0.01 px), |harness - upsampled DFT| <= 0.015 px. (A parabola fitted to the
    correlation itself instead of its logarithm is off by up to 0.015 px here and fails.)"""
    beads = bead_positions()
    reference = render_beads(beads, seed=1)
    for k, (dx, dy) in enumerate(SHIFTS):
        moved = render_beads(beads + np.array([dx, dy]), seed=10 + k)
        hx, hy = shift_px(reference, moved)
        row, col = guizar_sicairos_shift(reference, moved)
        assert (hx, hy) == pytest.approx((dx, dy), abs=0.01), (dx, dy)
        assert (-col, -row) == pytest.approx((dx, dy), abs=0.015), (dx, dy)
        assert (hx, hy) == pytest.approx((-col, -row), abs=0.015), (dx, dy)


def test_shift_against_gaussian_fit_bead_localisation() -> None:
    """Registration against localisation: every bead fitted with a 2-D Gaussian (scipy curve_fit) in
    both images; the mean bead displacement is an independent estimate of the shift. Agreement:
    |harness - mean bead displacement| <= 0.01 px per axis (found 0.0005: both see the same noise),
    and the bead estimate within 0.02 px of the truth (one bead scatters by 0.03 px, 25 beads)."""
    beads = bead_positions(seed=9)
    dx, dy = 2.63, -4.18
    reference = render_beads(beads, seed=2)
    moved = render_beads(beads + np.array([dx, dy]), seed=3)
    found = np.array([np.subtract(fit_bead(moved, x + dx, y + dy), fit_bead(reference, x, y)) for x, y in beads])
    bx, by = found.mean(axis=0)
    assert (bx, by) == pytest.approx((dx, dy), abs=0.02)
    hx, hy = shift_px(reference, moved)
    assert (hx, hy) == pytest.approx((bx, by), abs=0.01)


def test_iso230_end_to_end_on_images_and_the_sign_of_the_displacement() -> None:
    """iso230_metrics with real registration: at 3 targets, 3 'up' and 3 'down' frames of a bead field
    whose content moves by -(positioning deviation) / pixel size (the stage overshoots by +d, so the
    sample's image moves by -d; the harness reports d = -(image shift) x pixel size). The harness's
    deviations are relative to the first 'up' frame of each target. Expected: the ISO 230-2 formulas
    (iso230_reference) on the true deviations minus that first one; pixel 0.1 um, so the 0.01 px
    registration error is 0.001 um per frame. Agreement: B_i within 0.002 um, s within 0.002 um,
    R_i within 0.006 um."""
    pixel_um = 0.1
    beads = bead_positions(n=12, size=128, seed=12)
    rng = np.random.default_rng(31)
    rows, frames, truth = [], [], {}
    for target in ("0 um", "500 um", "1000 um"):
        dev = {"up": (0.05 * rng.standard_normal(3)).tolist(), "down": (0.25 + 0.05 * rng.standard_normal(3)).tolist()}
        for tag in ("up", "down"):
            for d in dev[tag]:
                image_shift_px = -d / pixel_um
                frames.append(render_beads(beads + np.array([image_shift_px, 0.0]), size=128, seed=len(frames)))
                rows.append({"status": "ok", "tag": tag, "context": json.dumps({"target": target}), "ifd": str(len(frames) - 1)})
        first = dev["up"][0]
        truth[target] = iso230_reference([d - first for d in dev["up"]], [d - first for d in dev["down"]])
    metrics, table = iso230_metrics(rows, lambda i: frames[i], pixel_um)
    for row in table:
        ref = truth[row["target"]]
        assert row["B_i_um"] == pytest.approx(ref["B"], abs=0.002)
        assert row["B_i_um"] == pytest.approx(-0.25, abs=0.15)  # the 'down' frames overshoot by +0.25 um
        assert row["s_up_um"] == pytest.approx(ref["s_up"], abs=0.002) and row["s_down_um"] == pytest.approx(ref["s_down"], abs=0.002)
        assert row["R_i_um"] == pytest.approx(ref["R"], abs=0.006)
    assert metrics["targets"].value == 3.0
