"""Point-spread function (QUAREP-LiMi WG5): z-stacks through sub-resolution beads, one per laser line
(frame-log rows tagged ``psf``); one result per line: the beads' FWHMs against the theoretical
widefield resolution (``harness.analysis.bead_fits``, ``harness.analysis.psf_metrics``)."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

SPEC = AnalysisSpec(
    name="psf", title="PSF (beads)", kinds=("psf",), module="harness.analyses.psf.analysis",
    metrics={
        "fwhm_x_um": "um", "fwhm_y_um": "um", "fwhm_z_um": "um",
        "fwhm_x_sd_um": "um", "fwhm_y_sd_um": "um", "fwhm_z_sd_um": "um",
        "fwhm_x_ratio": "", "fwhm_y_ratio": "", "fwhm_z_ratio": "",
        "fwhm_x_plain_um": "um", "fwhm_y_plain_um": "um",
        "fwhm_lateral_median_um": "um", "fwhm_z_median_um": "um",
        "lateral_asymmetry": "", "theoretical_lateral_fwhm_um": "um", "theoretical_axial_fwhm_um": "um",
        "beads_found": "", "beads_accepted": "", "beads_rejected": "",
        "saturated_pixels": "", "defect_pixels": "",
    },
    nbo_names={
        ("psf", "theoretical_lateral_fwhm_um"): "OpticalCalibration.TheoreticalXYSpotSize_FWHM",
        ("psf", "theoretical_axial_fwhm_um"): "OpticalCalibration.TheoreticaZSpotSize_FWHM",
        ("psf", "fwhm_lateral_median_um"): "OpticalCalibration.MedianXYSpotSize_FWHM",
        ("psf", "fwhm_z_median_um"): "OpticalCalibration.MedianZSpotSize_FWHM",
        ("psf", "lateral_asymmetry"): "OpticalCalibration.LateralAsymmetry",
        ("psf", "beads_accepted"): "OpticalCalibration.SampleSize",
    },
    summary={"psf": ("fwhm_x_um", "fwhm_y_um", "fwhm_z_um", "fwhm_x_ratio", "fwhm_z_ratio", "beads_accepted")},
)
"""The PSF analysis (``harness.analyses.psf.analysis``). 4DN-BINA-OME names: its Calibration and
Performance extension's ``OpticalCalibration`` attributes (v02-01 XSD; ``TheoreticaZSpotSize_FWHM`` is
spelled so there); its ``LateralAsymmetry`` is MetroloJ_QC's min/max ratio, as here. The means, SDs and
ratios have no NBO attribute (NBO has the median, min and max spot sizes)."""
