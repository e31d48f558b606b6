"""Chromatic co-registration (QUAREP-LiMi WG4): the same multi-colour beads in z-stacks of several
laser lines (frame-log rows tagged ``coregistration``); one result per line other than the reference:
the 3-D shift of each bead's centre against the reference line and MetroloJ_QC's co-alignment ratio
(``harness.analysis.psf_metrics``)."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

SPEC = AnalysisSpec(
    name="coregistration", title="Co-registration (beads)", kinds=("coregistration",), module="harness.analyses.coregistration.analysis",
    metrics={
        "shift_x_um": "um", "shift_y_um": "um", "shift_z_um": "um",
        "shift_x_sd_um": "um", "shift_y_sd_um": "um", "shift_z_sd_um": "um",
        "distance_3d_um": "um", "distance_3d_sd_um": "um", "coalignment_ratio": "", "coalignment_ratio_sd": "",
        "beads_matched": "", "saturated_pixels": "", "defect_pixels": "",
    },
    nbo_names={
        ("coregistration", "shift_x_um"): "ChromaticRegistrationEvaluation.XChromaticShift_RT",
        ("coregistration", "shift_y_um"): "ChromaticRegistrationEvaluation.YChromaticShift_RT",
        ("coregistration", "shift_z_um"): "ChromaticRegistrationEvaluation.AxialChromaticShift_RT",
    },
    summary={"coregistration": ("shift_x_um", "shift_y_um", "shift_z_um", "distance_3d_um", "coalignment_ratio", "beads_matched")},
)
"""The co-registration analysis (``harness.analyses.coregistration.analysis``). 4DN-BINA-OME names:
``ChromaticRegistrationEvaluation`` (Calibration and Performance extension, v02-01; after ISO
21073:2019), its X, Y and axial shifts of the test line against the reference line (``_RT``); the
distance and the co-alignment ratio have no NBO attribute."""
