"""The one results writer: ``<results>/<sweep>/trials.parquet`` and ``epochs.parquet``.

Schema (version 3; bump ``SCHEMA_VERSION`` when a column changes meaning or disappears):

trials.parquet, one row per finished or failed trial, keyed by ``trial_id``:
    schema_version, sweep, fidelity, trial_id, status ("TERMINATED" | "ERROR"), error (message or null),
    <section>.<key> flattened resolved config (sequences as "9-7-1" strings, as the papers write them),
    params, macs (per image), final_/best_ clean_acc and robust_acc (test set; "best" = the weights of the
    epoch picked by train.select_by: validation robust accuracy for adversarial methods, clean accuracy
    for standard training), best_epoch, best_val_robust_acc, eval_attack and
    train_attack (e.g. "pgd20-linf-eps0.03137-step0.003137"), stopped_early (why a method ended training
    before train.epochs, e.g. Fast AT's catastrophic-overfitting stop; else null), epochs_run, test_examples,
    wall_seconds (summed over restarts), cpus, gpus, device, hostname, node_id (Ray node),
    resumed_from_epoch (epochs done before the last restart), resume_warning (the last restart found
    the trial's state file damaged and started it again from epoch 0; else null), failures (retries used),
    total_train_attack_passes / total_val_attack_passes (attack forward-backward passes per example,
    summed over training / per-epoch validation), attack_passes_total (those plus the test suite's
    attack_grad_passes), stopped_by_scheduler (ASHA ended the trial before its last epoch: validation
    columns only, no test suite), search, scheduler, search_seed (the sweep's strategy),
    checkpoint_path (the trial's state directory: state.pt, model.pt with the best weights,
    config.json), finished_at (UTC ISO time).

    Evaluation suite (tune_robust.evaluation.suite, on the best weights): test_clean_acc,
    test_<label>_acc per eval.attacks entry, test_worst_acc, test_eval_examples, eval_attacks,
    attack_grad_passes, eval_suite_seconds, stability_<label>, lipschitz_logits, lipschitz_attack,
    sanity_<flag> (bool; null = not applicable), suspect_gradient_masking, sanity_messages (one line per
    failed check; an attack's own warnings summed over the batches), attack_notes (those warnings batch by
    batch: label, batch index, examples attacked, the attack's text).
    With eval.last: the same suite columns on the last epoch's weights, prefixed ``last_``
    (last_test_clean_acc, last_test_<label>_acc, last_stability_<label>, last_sanity_<flag>, ...).
    evaluate/transfer sweeps add checkpoint and checkpoint_label (their config has upstream.model or
    upstream.source, and upstream.targets = number of targets).
    A searched architecture (tune_robust.models.oneshot): arch (its versioned record, JSON) and arch_*
    (its statistics, e.g. arch_density); with screen.fsp: fsp_cell_<i> per cell, fsp_distance,
    fsp_examples and screened_out (true: rejected by screen.fsp_threshold, no training, no test columns).

epochs.parquet, one row per trial and epoch, keyed by (trial_id, epoch):
    schema_version, sweep, trial_id, epoch, train_loss, train_acc, lr, train_seconds, train_examples,
    val_split, val_clean_acc, val_robust_acc, eval_seconds, best_epoch, best_val_robust_acc,
    probe_pgd_acc (Fast AT: PGD accuracy on its fixed training batch), stopped_early,
    train_attack_passes, val_attack_passes (this epoch's), epoch_end_time (unix seconds).

Schema versions: version 1 names the training method in ``train.method``; version 2 has the
``method`` section (``method.name`` plus its options, e.g. ``method.beta``) and the stopped_early and
probe_pgd_acc columns; version 3 adds the cost and strategy columns, and its wall_seconds sums the runs
of a restarted trial. ``tune_robust.analysis.load_sweep`` reads versions 1-3 (version 1's
``train.method`` becomes ``method.name``).

Tables reported by trials, one file each, keyed by trial_id (schema_version, sweep, trial_id, ...):
    lipschitz.parquet      table, attack, x (block index), label (block name or "logits"), value
    acc_vs_eps.parquet     table, attack (pgd | fgsm), x (eps), label (attack description), value (acc)
    acc_vs_steps.parquet   table, attack, x (PGD iterations), label, value
    transfer.parquet       source, target, attack, accuracy (target on the transferred examples),
                           clean_accuracy, robust_accuracy, examples, source_path, target_path

orphaned_trials.parquet (only after a resume that needed it): trial rows, same columns as trials.parquet,
of trials a killed driver ran after Ray's last experiment snapshot; the resumed run ran their configs
again, so they are kept aside rather than counted twice.

All files are rewritten atomically (temporary file + rename), trials.parquet whenever a trial ends and
epochs.parquet at most every 2 seconds and whenever a trial ends, so a reader never sees a torn file and
an interrupted sweep is analysable; rows are replaced by key, never duplicated.
"""

from tune_robust.results.schema import EPOCH_COLUMNS, SCHEMA_VERSION
from tune_robust.results.writer import ResultsWriter, read_table, trial_row

__all__ = ["EPOCH_COLUMNS", "SCHEMA_VERSION", "ResultsWriter", "read_table", "trial_row"]
