"""Evaluation of uncertainty signals (Chapter 3): error detection and calibration for MCQA.

NumPy float64 metrics over per-question arrays; conventions (uncertainty: higher = less
confident; error = positive class; ties averaged, never broken by input order) are stated in
`entropy_jax.eval.metrics`. The chapter's runs (they load models, so they are imported on demand):
`entropy_jax.eval.mcqa_run` (score a model on questions, resumable; metrics, figures) and
`entropy_jax.eval.strata` (model-as-judge strata). `entropy_jax.eval.log_samples.read_log_samples` turns lm-evaluation-harness
`--log_samples` output into the same score rows; the lm-eval backend is `entropy_jax.eval.lm_eval`
(imported on demand only: it needs the optional `lm-eval` package).
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
