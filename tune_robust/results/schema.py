"""The metric columns, in one place: what the trainer reports, what the writer keeps as columns and what
a search strategy may optimise (the package docstring describes each column)."""

from __future__ import annotations

SCHEMA_VERSION = 3

# Reported with every epoch, summed over the trial so far (a trial a scheduler stops still carries its
# cost): attack forward-backward passes per example, in training and in per-epoch validation.
COST_KEYS = ("total_train_attack_passes", "total_val_attack_passes")

# Final-report keys kept as trials.parquet columns.
TRIAL_METRICS = (
    "params",
    "macs",
    "final_clean_acc",
    "final_robust_acc",
    "best_clean_acc",
    "best_robust_acc",
    "best_epoch",
    "best_val_robust_acc",
    "eval_attack",
    "train_attack",
    "stopped_early",
    "test_examples",
    "device",
    "hostname",
    "node_id",
    "resumed_from_epoch",
    "resume_warning",
    *COST_KEYS,
)

# Evaluation-suite columns (tune_robust.evaluation.suite) by prefix; with eval.last the suite's columns
# with LAST_PREFIXES are repeated for the last epoch's weights, prefixed "last_".
LAST_PREFIXES = ("test_", "stability_", "lipschitz_", "sanity_", "suspect_gradient_masking")
EVAL_PREFIXES = (
    "test_",
    "stability_",
    "lipschitz_",
    "sanity_",
    *(f"last_{p}" for p in ("test_", "stability_", "lipschitz_", "sanity_", "suspect_")),
    # A searched architecture's statistics and the FSP screen of its inherited weights.
    "arch_",
    "fsp_",
)
EVAL_KEYS = (
    "suspect_gradient_masking",
    "eval_attacks",
    "attack_grad_passes",
    "eval_suite_seconds",
    "attack_notes",
    "checkpoint",
    "checkpoint_label",
    "leaderboard_clean_acc",
    "leaderboard_autoattack_acc",
    # A searched architecture's versioned record (JSON), and whether the FSP screen rejected it.
    "arch",
    "screened_out",
)

# epochs.parquet columns: every epoch report carries these.
EPOCH_COLUMNS = (
    "train_loss",
    "train_acc",
    "lr",
    "train_seconds",
    "train_examples",
    "val_split",
    "val_clean_acc",
    "val_robust_acc",
    "eval_seconds",
    "best_epoch",
    "best_val_robust_acc",
    "probe_pgd_acc",
    "stopped_early",
    "train_attack_passes",
    "val_attack_passes",
    "epoch_end_time",
)
# Epoch metrics of a differentiable search's architecture step (search_constraint, search_theta, ...).
ARCH_STEP_PREFIX = "search_"

# What every epoch report of the training trainables carries, so a searcher or scheduler can optimise it.
OBJECTIVE_METRICS = (
    "val_robust_acc",
    "val_clean_acc",
    "best_val_robust_acc",
    "train_loss",
    "train_acc",
    "params",
    "macs",
)
