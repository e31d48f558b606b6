"""Flat field (QUAREP-LiMi WG3): an image stack with a dark channel; one result per lit channel
(its dark-subtracted, smoothed mean image), and a correction image per channel."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

_POINTS = ("top_left", "top_right", "bottom_left", "bottom_right", "top", "bottom", "left", "right")

SPEC = AnalysisSpec(
    name="flat_field", title="Flat field", kinds=("flat_field",), module="harness.analyses.flat_field.analysis",
    metrics={
        "cv_pct": "%", "uniformity_pct": "%", "field_uniformity_pct": "%", "centering_accuracy_pct": "%",
        "reference_zone_x_px": "px", "reference_zone_y_px": "px", "centre_of_intensity_x_px": "px", "centre_of_intensity_y_px": "px",
        "centre_of_intensity_offset_px": "px", "centre_of_intensity_offset_frac": "", "max_intensity": "ADU",
        **{f"ratio_{p}": "" for p in _POINTS},
    },
    nbo_names={
        ("flat_field", "uniformity_pct"): "FieldUniformityEvaluation",
        ("flat_field", "field_uniformity_pct"): "FieldUniformityEvaluation.FieldUniformity",
        ("flat_field", "centering_accuracy_pct"): "FieldUniformityEvaluation.CenteringAccuracy",
    },
    summary={"flat_field": ("uniformity_pct", "field_uniformity_pct", "centering_accuracy_pct", "cv_pct")},
)
