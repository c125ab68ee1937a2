"""Robustness evaluation: ``evaluate`` (accuracy under attacks, used every epoch) and ``run_suite``
(the full end-of-trial evaluation with metrics, sanity flags and curves)."""

from tune_robust.evaluation.basic import evaluate

__all__ = ["evaluate"]
