"""Evaluation of uncertainty signals (Chapter 3): error detection and calibration for MCQA.

NumPy float64 metrics over per-question arrays; conventions (uncertainty: higher = less
confident; error = positive class; ties averaged, never broken by input order) are stated in
`entropy_jax.eval.metrics`.
"""

from entropy_jax.eval.metrics import (
    BootstrapCI,
    aurc,
    bootstrap,
    ece,
    error_detection_report,
    prr,
    reliability,
    risk_coverage,
    roc_auc,
    summary_by,
)

__all__ = [
    "BootstrapCI",
    "aurc",
    "bootstrap",
    "ece",
    "error_detection_report",
    "prr",
    "reliability",
    "risk_coverage",
    "roc_auc",
    "summary_by",
]
