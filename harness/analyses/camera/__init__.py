"""Detector QC (QUAREP-LiMi WG2, EMVA 1288 Release 4.0 linear model): an image stack whose frame log
has ``ptc`` frames (pairs of lit and of dark frames over exposure times), with optional ``spatial``
(L lit and L dark frames at one exposure) and ``dark_current`` (long dark pairs) frames. One result
per stack, subject ``camera``."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

SPEC = AnalysisSpec(
    name="camera", title="Camera (EMVA 1288)", kinds=("camera",), module="harness.analyses.camera.analysis",
    metrics={
        "system_gain_adu_per_e": "ADU/e-", "conversion_gain_e_per_adu": "e-/ADU",
        "temporal_dark_noise_adu": "ADU", "temporal_dark_noise_e": "e-",
        "saturation_capacity_e": "e-", "snr_max": "", "snr_max_db": "dB", "dynamic_range_db": "dB",
        "linearity_error_min_pct": "%", "linearity_error_max_pct": "%", "linearity_error_pct": "%",
        "dark_current_adu_per_s": "ADU/s", "dark_current_e_per_s": "e-/s",
        "dsnu_adu": "ADU", "dsnu_e": "e-", "prnu_pct": "%", "prnu_plain_pct": "%",
        "hot_pixels": "", "dead_pixels": "", "noisy_pixels": "", "defect_pixels_per_million": "",
        "ptc_levels": "", "spatial_level_pct_of_saturation": "%", "saturated_pixels": "", "defect_pixels": "",
    },
    nbo_names={
        ("camera", "conversion_gain_e_per_adu"): "DetectorCalibration.ElectronicConversionFactor",
        ("camera", "temporal_dark_noise_e"): "DetectorCalibration.ReadOutNoise",
        ("camera", "dark_current_e_per_s"): "DetectorCalibration.DarkCurrentRate",
        ("camera", "dynamic_range_db"): "DetectorCalibration.DynamicRange",
    },
    summary={"camera": ("conversion_gain_e_per_adu", "temporal_dark_noise_e", "saturation_capacity_e", "dynamic_range_db",
                        "linearity_error_pct", "dark_current_e_per_s", "dsnu_e", "prnu_pct", "defect_pixels_per_million")},
)
"""The camera analysis (``harness.analyses.camera``). Formulas: ``harness.analysis.emva1288_metrics``.
4DN-BINA-OME names: its Calibration and Performance extension's ``DetectorCalibration`` (an
``IntensityCalibration``) with the Detector attributes the metrics correspond to
(``ElectronicConversionFactor``, ``ReadOutNoise``, ``DarkCurrentRate``, ``DynamicRange``); the
saturation capacity is not NBO's ``PixelWellCapacity`` (the full well: the ADC may clip first), and it,
DSNU, PRNU and the defect counts are annotated under the harness's own names."""
