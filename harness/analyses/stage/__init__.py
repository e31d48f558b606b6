"""Stage positioning (QUAREP-LiMi WG6): repeatability from reference/return frame pairs, and
ISO 230-2 bidirectional repeatability from up/down images per target. Two analyses, one package:
they read their stacks the same way, and judge their pixels the same way
(``harness.analysis.pixel_quality``: ``saturated_pixels``, ``defect_pixels``, ``data_quality``)."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

REPEATABILITY = AnalysisSpec(
    name="stage_repeatability", title="Stage", kinds=("stage_repeatability",), module="harness.analyses.stage.analysis",
    metrics={"max_displacement_um": "um", "sd_x_um": "um", "sd_y_um": "um", "mean_x_um": "um", "mean_y_um": "um", "pairs": "",
             "saturated_pixels": "", "defect_pixels": ""},
    nbo_names={
        ("stage_repeatability", "max_displacement_um"): "XYRepeatability",
        ("stage_repeatability", "sd_x_um"): "XYRepeatability.SDX",
        ("stage_repeatability", "sd_y_um"): "XYRepeatability.SDY",
    },
    summary={"stage_repeatability": ("max_displacement_um", "sd_x_um", "sd_y_um")},
)

ISO230 = AnalysisSpec(
    name="iso230", title="ISO 230-2", kinds=("iso230",), module="harness.analyses.stage.iso230",
    metrics={"bidirectional_repeatability_R_um": "um", "repeatability_R_up_um": "um", "repeatability_R_down_um": "um",
             "reversal_B_um": "um", "targets": "", "saturated_pixels": "", "defect_pixels": ""},
    nbo_names={
        ("iso230", "bidirectional_repeatability_R_um"): "XYRepeatability.ISO230-2.R",
        ("iso230", "reversal_B_um"): "XYRepeatability.ISO230-2.B",
    },
    summary={"iso230": ("bidirectional_repeatability_R_um", "reversal_B_um")},
)
