"""Dong et al. (NeurIPS'20), "Adversarially Robust Neural Architectures" (RACL): the confidence-learning
constraint lowers the searched supernet's Lipschitz bound against the same search without it (Sec. 2.3,
the mechanism behind Table 5's without-CL row), the cell searched with it is more robust after
adversarial retraining than the cell searched without it (Table 5), and the RACL cell is more robust
than the PC-DARTS cell under the same adversarial retraining (Table 1, AT columns), over the sweeps that
reproduce them (racl_ablation, racl_retrain, racl_table1)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tune_robust.analysis.claims._base import (
    Claim,
    ClaimData,
    Finding,
    MissingData,
    by_interval,
    register_claim,
    with_note,
)
from tune_robust.analysis.stats import mean_difference

PAPER = "Dong et al. (NeurIPS'20)"
ROBUST = "best_robust_acc"
CLEAN = "best_clean_acc"
SEED = "train.seed"
LABEL = "eval.label"
ABLATION = "racl_ablation"
TABLE1 = "racl_table1"
RETRAIN = "racl_retrain"
# The epoch column of the search's bound: mu of ln of Eq. 10's bound (ln C left out), the mean over the
# epoch's architecture steps; absent (NaN) in warm-up epochs, which take no architecture step.
BOUND = "search_bound_mu"
WITHOUT_CL = "without CL"
# The confidence of the compared CL search: the paper's default, Table 5's last row.
ETA = 0.9
GENOTYPE = "model.genotype"
METHOD = "method.name"


def seed_difference(first: pd.DataFrame, second: pd.DataFrame, value: str) -> tuple[dict[str, float], bool]:
    """mean_difference of ``value``, ``first`` minus ``second``, and whether it is paired: paired over
    the train.seed values both groups have (a seed's mean where it has several trials) when they share
    at least 2, else unpaired over every row with a value."""
    try:
        if SEED in first and SEED in second:
            a, b = first.groupby(SEED)[value].mean(), second.groupby(SEED)[value].mean()
            common = a.dropna().index.intersection(b.dropna().index)
            if len(common) >= 2:
                return mean_difference(a[common], b[common], paired=True), True
        return mean_difference(first[value], second[value]), False
    except ValueError as e:
        raise MissingData(str(e)) from e


def last_bound(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.Series:
    """Each trial's ``search_bound_mu`` of its last epoch with architecture steps (NaN where it has
    none), aligned with ``trials``."""
    if BOUND not in epochs or "trial_id" not in epochs:
        raise MissingData(f"{ABLATION}'s epochs.parquet has no {BOUND} column")
    rows = epochs.dropna(subset=[BOUND]).sort_values("epoch")
    last = rows.groupby(rows["trial_id"].astype(str))[BOUND].last()
    return trials["trial_id"].astype(str).map(last)


def ablation_groups(t: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(CL searches at eta 0.9 and the without-CL searches' rho, the without-CL searches, that rho)."""
    labels = t[LABEL].astype(str)
    without = t[labels == WITHOUT_CL]
    if not len(without):
        raise MissingData(f"{ABLATION} has no finished search labelled {WITHOUT_CL!r}")
    rhos = without["model.rho"].dropna().unique()
    if len(rhos) != 1:
        raise MissingData(f"{ABLATION}'s without-CL searches ran at {len(rhos)} values of model.rho, not one")
    rho = float(rhos[0])
    same = np.isclose(t["model.eta"].astype(float), ETA) & np.isclose(t["model.rho"].astype(float), rho)
    cl = t[(labels != WITHOUT_CL) & same]
    if not len(cl):
        ran = ", ".join(sorted(set(labels[labels != WITHOUT_CL]))) or "none"
        raise MissingData(
            f"{ABLATION} has no finished CL search at eta {ETA:g} and the without-CL searches' rho {rho:g} "
            f"(CL settings finished: {ran}); the two are the same search only at the same rho"
        )
    return cl, without, rho


@register_claim("racl_constraint_lowers_bound")
class ConstraintLowersBound(Claim):
    """The bound compared is ``search_bound_mu``, logged by RACLSupernet.arch_penalty as the mean over
    an epoch's architecture steps: mu of the log-normal of ln(Eq. 10's bound) with ln C left out, i.e.
    the expected ln bound over the architecture weights' distribution. It is the same quantity in both
    arms: with CL it is the Fenton-Wilkinson mu of Eqs. 11-12 summed over nodes; without CL
    (model.confidence False) alpha = e^mu and beta = e^mu are deterministic (sigma = 0), where the same
    formulas reduce exactly to ln of the bound (logsumexp), the expectation of a point mass. The
    constraint value ``search_constraint`` is not comparable (it adds Phi^-1(eta) sigma^2, nonzero only
    with CL), nor is ``search_bound_sigma2`` (0 without CL by construction). The bound is that of the
    supernet each search constrains (its op weights' power-iteration spectral norms), not of the derived
    discrete cell.

    The CL arm is the search at eta 0.9 (the paper's default) and the same rho as the without-CL
    searches, so the two differ in confidence learning only: at the paper fidelity that is Table 5's
    last row against its first, the comparison the paper draws. CL searches at other (eta, rho) are
    left out; where none matches the without-CL rho the claim cannot be judged."""

    paper = PAPER
    where = "Sec. 2.3 (Eq. 16 against Eq. 10): the mechanism, not a reported number"
    statement = (
        "A check of the search's mechanism: searching with confidence learning (log-normal architecture "
        "weights under Eq. 16's constraint, which adds Phi^-1(eta) sigma^2 to the bound it pushes down) "
        "ends with a lower expected Lipschitz bound of the supernet than the same search without it "
        "(deterministic weights under Eq. 10's constraint, same rho)."
    )
    sweeps = (ABLATION,)
    seeded = (ABLATION,)
    columns = {ABLATION: (LABEL, "model.eta", "model.rho", "trial_id")}
    thresholds = (
        "last epoch's search_bound_mu (expected ln bound) of the eta 0.9 CL search at the without-CL "
        "searches' rho minus that of the without-CL search, paired by train.seed (unpaired where fewer "
        "than 2 seeds have both); holds: 95% interval of the mean difference below 0 and p < 0.05; "
        "contradicted: above 0 and p < 0.05"
    )
    figure = "epochs.parquet search_bound_mu (racl_ablation)"
    min_trials = 4
    # The searches train on clean images; their best_robust_acc is an FGSM accuracy of a clean network.
    learned = {ABLATION: CLEAN}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(ABLATION)
        t = t.assign(**{BOUND: last_bound(t, data.epochs(ABLATION))})
        cl, without, rho = ablation_groups(t)
        r, paired = seed_difference(cl, without, BOUND)
        finding = by_interval(
            "mean last-epoch ln Lipschitz bound, CL minus without CL", r, expect="below", unit=" (ln units)"
        )
        settings = ", ".join(sorted(set(cl[LABEL].astype(str))))
        pairing = "paired by train.seed" if paired else "unpaired"
        return with_note(finding, f"{settings} against {WITHOUT_CL} at rho {rho:g}, {pairing}")


@register_claim("racl_cell_more_robust")
class CellMoreRobust(Claim):
    paper = PAPER
    where = "Table 1 (with adversarial training), Sec. 3.2"
    statement = (
        "Under the same PGD adversarial retraining, the RACL-searched cell is more robust than the "
        "PC-DARTS-searched cell (PGD-20 41.92% -> 49.34% on CIFAR-10 in the paper)."
    )
    sweeps = (TABLE1,)
    seeded = (TABLE1,)
    columns = {TABLE1: (GENOTYPE, METHOD, ROBUST)}
    thresholds = (
        "pgd_at trials of the released RACL and PC_DARTS genotypes; best_robust_acc of RACL minus PC-DARTS, "
        "paired by train.seed (unpaired where fewer than 2 seeds have both); holds: 95% interval of the "
        "mean difference above 0 and p < 0.05; contradicted: below 0 and p < 0.05"
    )
    figure = "Top configs table (racl_table1)"
    min_trials = 4
    learned = {TABLE1: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(TABLE1)
        at = t[t[METHOD].astype(str) == "pgd_at"]
        genotype = at[GENOTYPE].astype(str)
        racl, pcdarts = at[genotype == "RACL"], at[genotype == "PC_DARTS"]
        if not len(racl) or not len(pcdarts):
            raise MissingData(
                f"{TABLE1} needs finished pgd_at trials of the RACL and PC_DARTS genotypes; it has "
                f"{len(racl)} and {len(pcdarts)}"
            )
        r, paired = seed_difference(racl, pcdarts, ROBUST)
        finding = by_interval("mean robust-acc gain of RACL over PC-DARTS", r, expect="above")
        return with_note(finding, "paired by train.seed" if paired else "unpaired")


def robust_column(trials: pd.DataFrame) -> str:
    """Table 5's PGD-10 column where the suite ran it on every row, else PGD-20, else the sweep's robust
    accuracy."""
    for column in ("test_pgd10_acc", "test_pgd20_acc", ROBUST):
        if column in trials and trials[column].notna().all():
            return column
    raise MissingData(f"{RETRAIN} has no robust-accuracy column")


def searched_by(trials: pd.DataFrame, setting: str) -> pd.DataFrame:
    """racl_retrain's trials of the genotype racl_ablation's ``setting`` search derived (their
    eval.label: "racl_ablation:eval.label:<setting> (<trial id>)")."""
    labels = trials[LABEL].astype(str)
    return trials[labels.str.startswith(f"{ABLATION}:{LABEL}:{setting} (")]


@register_claim("racl_cl_cell_more_robust")
class ClCellMoreRobust(Claim):
    paper = PAPER
    where = "Table 5 (first row against the last), Sec. 3.5"
    statement = (
        "The cell searched with confidence learning is more robust after adversarial retraining than the "
        "cell searched without it (PGD-10 48.12% -> 53.29% on CIFAR-10 in the paper). One derived cell per "
        "search (the best search of each setting): the seeds measure retraining noise, not search noise."
    )
    # racl_ablation searched the cells racl_retrain trains (its optional upstream): needed here.
    sweeps = (RETRAIN, ABLATION)
    seeded = (RETRAIN,)
    columns = {RETRAIN: (LABEL,)}
    thresholds = (
        "racl_retrain's trials of the genotypes racl_ablation's 'eta 0.9, rho 0.001' and 'without CL' "
        "searches derived; test PGD-10 accuracy (PGD-20 where the suite has no PGD-10) of the first minus "
        "the second, paired by train.seed; holds: 95% interval of the mean difference above 0 and p < "
        "0.05; contradicted: below 0 and p < 0.05"
    )
    figure = "Top configs table (racl_retrain)"
    min_trials = 4
    learned = {RETRAIN: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(RETRAIN)
        cl, without = searched_by(t, f"eta {ETA:g}, rho 0.001"), searched_by(t, WITHOUT_CL)
        if not len(cl) or not len(without):
            raise MissingData(
                f"{RETRAIN} needs retrained genotypes of racl_ablation's 'eta 0.9, rho 0.001' and "
                f"'{WITHOUT_CL}' searches; it has {len(cl)} and {len(without)} finished trials of them"
            )
        column = robust_column(pd.concat([cl, without]))  # a column both compared cells have
        r, paired = seed_difference(cl, without, column)
        finding = by_interval(
            f"mean {column} gain of the CL cell over the without-CL cell", r, expect="above"
        )
        return with_note(finding, "paired by train.seed" if paired else "unpaired")
