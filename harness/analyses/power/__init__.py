"""Illumination power (QUAREP-LiMi WG1): a power series with one set point is a stability record, a
series stepping through set points a linearity record (mean power per set point against it)."""

from __future__ import annotations

from harness.analysis.contract import AnalysisSpec

SPEC = AnalysisSpec(
    name="power", title="Power", kinds=("stability", "linearity"), module="harness.analyses.power.analysis",
    metrics={
        # stability
        "mean_mw": "mW", "median_mw": "mW", "sd_mw": "mW", "min_mw": "mW", "max_mw": "mW",
        "stability_pct": "%", "cv_pct": "%", "drift_pct_per_h": "%/h", "noise_pct": "%", "warmup_time_s": "s", "samples": "",
        "mode_hops": "", "mode_hop_max_pct": "%", "mode_hop_time_s": "s",
        # linearity
        "slope": "mW/mW", "intercept_mw": "mW", "r_squared": "", "slope_through_origin": "mW/mW",
        "chi_squared_through_origin": "mW", "max_relative_deviation_pct": "%", "setpoints": "",
    },
    nbo_names={
        ("stability", "stability_pct"): "ShortTermIlluminationStability",
        ("stability", "mean_mw"): "ObservedIlluminationPowerAtSample",
        ("linearity", "r_squared"): "IlluminationLinearity",
    },
    summary={
        "stability": ("stability_pct", "cv_pct", "noise_pct", "drift_pct_per_h", "mode_hops", "mean_mw"),
        "linearity": ("r_squared", "max_relative_deviation_pct", "slope"),
    },
)
