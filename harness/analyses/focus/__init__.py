"""Focus (QUAREP-LiMi WG6 for Z): focus stability (the focal position of a bead field over time, from
z-stacks tagged ``focus``) and Z repeatability (the Z drive's return error after moves away and back,
from single frames tagged ``z_reference``/``z_return`` located against z-stacks tagged
``z_calibration``). One analysis, two result kinds; the repeatability uses the XY stage's table layout
and metric names (``max_displacement_um``, ``sd_<axis>_um``, ``mean_<axis>_um``, ``pairs``) for the z
axis. Pixels judged with ``harness.analysis.pixel_quality`` (``saturated_pixels``, ``defect_pixels``,
``data_quality``)."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

SPEC = AnalysisSpec(
    name="focus", title="Focus (WG6, Z)", kinds=("focus_stability", "z_repeatability"), module="harness.analyses.focus.analysis",
    metrics={"focus_drift_um_per_h": "um/h", "focus_range_um": "um", "focus_sd_um": "um", "focus_residual_sd_um": "um",
             "focus_stacks": "", "max_displacement_um": "um", "sd_z_um": "um", "mean_z_um": "um", "pairs": "",
             "saturated_pixels": "", "defect_pixels": ""},
    nbo_names={
        ("z_repeatability", "max_displacement_um"): "ZRepeatability",
        ("z_repeatability", "sd_z_um"): "ZRepeatability.SDZ",
    },
    summary={"focus_stability": ("focus_drift_um_per_h", "focus_range_um", "focus_sd_um"),
             "z_repeatability": ("max_displacement_um", "sd_z_um", "mean_z_um")},
)
