"""Every metric the analyses report, with its unit: what a protocol's ``acceptance`` may judge.

Kept apart from the analyses (no numpy) so that protocol validation knows the names; a test checks
that this table and the analyses' output agree.
"""

from __future__ import annotations

_POINTS = ("top_left", "top_right", "bottom_left", "bottom_right", "top", "bottom", "left", "right")

METRICS: dict[str, str] = {
    # power stability
    "mean_mw": "mW", "median_mw": "mW", "sd_mw": "mW", "min_mw": "mW", "max_mw": "mW",
    "stability_pct": "%", "cv_pct": "%", "drift_pct_per_h": "%/h", "noise_pct": "%", "warmup_time_s": "s", "samples": "",
    # power linearity
    "slope": "mW/mW", "intercept_mw": "mW", "r_squared": "", "slope_through_origin": "mW/mW",
    "chi_squared_through_origin": "mW", "max_relative_deviation_pct": "%", "setpoints": "",
    # flat field (cv_pct above)
    "uniformity_pct": "%", "field_uniformity_pct": "%", "centering_accuracy_pct": "%",
    "reference_zone_x_px": "px", "reference_zone_y_px": "px", "centre_of_intensity_x_px": "px", "centre_of_intensity_y_px": "px",
    "centre_of_intensity_offset_px": "px", "centre_of_intensity_offset_frac": "", "max_intensity": "ADU",
    **{f"ratio_{p}": "" for p in _POINTS},
    # stage repeatability (WG6)
    "max_displacement_um": "um", "sd_x_um": "um", "sd_y_um": "um", "mean_x_um": "um", "mean_y_um": "um", "pairs": "",
    # ISO 230-2
    "bidirectional_repeatability_R_um": "um", "repeatability_R_up_um": "um", "repeatability_R_down_um": "um",
    "reversal_B_um": "um", "targets": "",
}
