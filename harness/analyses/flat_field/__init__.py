"""Flat field (QUAREP-LiMi WG3): an image stack with a dark channel; one result per lit channel
(its dark-subtracted, smoothed mean image), and a correction image per channel.

Three centres of the field, named for what they are: ``reference_zone_*`` (the max zone, >= 90 % of
the maximum), ``centroid_*`` (intensity-weighted; ``centre_of_intensity_*`` before, old results read
under the new names) and ``fitted_centre_*`` (a fitted 2-D Gaussian: where the illumination peaks).
``saturated_pixels`` and ``defect_pixels``: ``harness.analysis.pixel_quality``."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

_POINTS = ("top_left", "top_right", "bottom_left", "bottom_right", "top", "bottom", "left", "right")

SPEC = AnalysisSpec(
    name="flat_field", title="Flat field", kinds=("flat_field",), module="harness.analyses.flat_field.analysis",
    metrics={
        "cv_pct": "%", "uniformity_pct": "%", "field_uniformity_pct": "%", "centering_accuracy_pct": "%",
        "reference_zone_x_px": "px", "reference_zone_y_px": "px", "reference_zone_offset_px": "px",
        "centroid_x_px": "px", "centroid_y_px": "px", "centroid_offset_px": "px", "centroid_offset_frac": "",
        "fitted_centre_x_px": "px", "fitted_centre_y_px": "px", "fitted_centre_offset_px": "px", "fitted_centre_offset_frac": "",
        "max_intensity": "ADU", "saturated_pixels": "", "defect_pixels": "",
        **{f"ratio_{p}": "" for p in _POINTS},
    },
    nbo_names={
        ("flat_field", "uniformity_pct"): "FieldUniformityEvaluation",
        ("flat_field", "field_uniformity_pct"): "FieldUniformityEvaluation.FieldUniformity",
        ("flat_field", "centering_accuracy_pct"): "FieldUniformityEvaluation.CenteringAccuracy",
    },
    summary={"flat_field": ("uniformity_pct", "field_uniformity_pct", "centering_accuracy_pct", "cv_pct")},
)
