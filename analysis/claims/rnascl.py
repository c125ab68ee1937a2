"""Nath et al. (RNAS-CL), "Robust Neural Architecture Search by Cross-Layer Knowledge Distillation": the
RNAS-CL student against the Standard one (Table 1, Table 2), the ablation order of the four paradigms
(Sec. 4.3, Fig. 5) and the concentration of tutor connections on a few teacher layers (Sec. 4.3, Fig. 4b),
over the sweeps that reproduce them (rnascl_train, rnascl_ablation, rnascl_teacher).

rnascl_train holds one trial per derived student and seed; a student taken from rnascl_ablation is
labelled ``rnascl_ablation:eval.label:<paradigm> (<trial id>)`` (tune_robust.run.upstream), the paradigm
being Standard, KL, ICC or RNAS-CL. Its other rows (the reference "widest, CE only", rnascl_search's and
rnascl_teachers' students) are not read here. The students distil without adversarial training, so their
robust accuracy may sit near chance while they have learned the task: the learned check reads clean
accuracy."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.analysis.architectures import student_table, tutor_counts
from tune_robust.analysis.claims._base import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    Claim,
    ClaimData,
    Finding,
    MissingData,
    by_interval,
    register_claim,
    with_note,
)
from tune_robust.analysis.stats import mean_difference

PAPER = "Nath et al. (RNAS-CL)"
# Table 1's and Table 2's adversarial column: PGD-20 on the test set (the evaluation suite's pgd20).
ROBUST = "test_pgd20_acc"
CLEAN = "best_clean_acc"
TRAIN = "rnascl_train"
ABLATION = "rnascl_ablation"
TEACHER = "rnascl_teacher"
SEED = "train.seed"
LABEL = "eval.label"
# A derived student's label in rnascl_train: the ablation search's paradigm and the searched trial's id.
ABLATION_LABEL = re.compile(r"rnascl_ablation:eval\.label:(?P<paradigm>.+) \([^()]*\)")
# Sec. 4.3's paradigms: ICC and RNAS-CL (cross-layer connections) "outperform their counterparts"
# (Standard and KL); the text ranks neither pair within itself.
ORDER = ("Standard", "KL", "ICC", "RNAS-CL")
# Fig. 4b: two teacher layers (the 15th and 21st of WRN-34-10) hold most connections.
TOP_K = 2
# Draws of the uniform-tutor null of the concentration claim.
NULL_DRAWS = 20000


def paradigm_of(label: Any) -> str:
    """The ablation paradigm of an rnascl_train label ("" for a student taken from elsewhere)."""
    match = ABLATION_LABEL.fullmatch(str(label))
    return match["paradigm"] if match else ""


def ablation_students(trials: pd.DataFrame) -> pd.DataFrame:
    """The rnascl_train rows of rnascl_ablation's students, with their paradigm in column ``paradigm``."""
    t = trials.assign(paradigm=trials[LABEL].map(paradigm_of))
    return t[t["paradigm"].isin(list(ORDER))].dropna(subset=[ROBUST])


@register_claim("rnascl_beats_standard")
class BeatsStandard(Claim):
    paper = PAPER
    where = "Table 2 (App. A.2), Sec. 4.3"
    statement = (
        "The student searched and trained with RNAS-CL (CE + KL + cross-layer attention) is more robust "
        "under PGD-20 than the Standard student searched and trained with cross-entropy alone."
    )
    # rnascl_ablation searched the students rnascl_train trains (its optional upstream): needed here.
    sweeps = (TRAIN, ABLATION)
    seeded = (TRAIN,)
    columns = {TRAIN: (LABEL, SEED, ROBUST)}
    thresholds = (
        "paired by train.seed: holds when the 95% interval of mean(test PGD-20 acc of the RNAS-CL student "
        "minus the Standard student) lies above 0 and p < 0.05 (sign-flip permutation); contradicted: "
        "below 0 and p < 0.05"
    )
    figure = "Top configs table (rnascl_train)"
    min_trials = 4
    learned = {TRAIN: CLEAN}

    def test(self, data: ClaimData) -> Finding:
        t = ablation_students(data.trials(TRAIN))
        wide = t.pivot_table(index=SEED, columns="paradigm", values=ROBUST, aggfunc="mean")
        absent = [p for p in ("RNAS-CL", "Standard") if p not in wide]
        if absent:
            raise MissingData(
                f"{TRAIN} has no finished student of the {', '.join(absent)} paradigm of {ABLATION}"
            )
        pairs = wide[["RNAS-CL", "Standard"]].dropna()
        if len(pairs) < 2:
            raise MissingData(
                f"{TRAIN} has {len(pairs)} seed(s) with both the RNAS-CL and the Standard student; "
                f"the claim needs 2"
            )
        r = mean_difference(pairs["RNAS-CL"], pairs["Standard"], paired=True)
        return by_interval("mean PGD-20 gain of RNAS-CL over Standard", r, expect="above")


@register_claim("rnascl_ablation_order")
class AblationOrder(Claim):
    paper = PAPER
    where = "Sec. 4.3, Fig. 5"
    statement = (
        "The paradigms with cross-layer connections (ICC and RNAS-CL) are more robust than those without "
        '(Standard and KL): "The RNAS-CL and ICC models outperform their counterparts" (Sec. 4.3).'
    )
    # rnascl_ablation searched the students rnascl_train trains (its optional upstream): needed here.
    sweeps = (TRAIN, ABLATION)
    seeded = (TRAIN,)
    columns = {TRAIN: (LABEL, SEED, ROBUST)}
    thresholds = (
        "per train.seed: mean test PGD-20 acc of the ICC and RNAS-CL students minus that of the Standard "
        "and KL students; holds: 95% interval of its mean over seeds above 0, p < 0.05 (sign-flip "
        "permutation) and each of ICC, RNAS-CL above each of Standard, KL in mean over seeds; "
        "contradicted: below 0 and p < 0.05"
    )
    figure = "Top configs table (rnascl_train)"
    min_trials = 4
    learned = {TRAIN: CLEAN}

    def test(self, data: ClaimData) -> Finding:
        t = ablation_students(data.trials(TRAIN))
        absent = [p for p in ORDER if p not in set(t["paradigm"])]
        if absent:
            raise MissingData(
                f"{TRAIN} has no finished student of the {', '.join(absent)} paradigm(s) of {ABLATION}"
            )
        wide = t.pivot_table(index=SEED, columns="paradigm", values=ROBUST, aggfunc="mean").dropna()
        if len(wide) < 2:
            raise MissingData(f"{TRAIN} has {len(wide)} seed(s) with all four students; the claim needs 2")
        cross = wide[["ICC", "RNAS-CL"]].mean(axis=1)
        plain = wide[["Standard", "KL"]].mean(axis=1)
        r = mean_difference(cross, plain, paired=True)
        finding = by_interval("mean PGD-20 gain of ICC/RNAS-CL over Standard/KL", r, expect="above")
        means = wide.mean()
        order = ", ".join(f"{p} {means[p]:.3f}" for p in ORDER)
        # "Both outperform their counterparts": each cross-layer paradigm above each of the others.
        each = min(means["ICC"], means["RNAS-CL"]) > max(means["Standard"], means["KL"])
        if finding.verdict == HOLDS and not each:
            return dataclasses.replace(
                finding, verdict=INCONCLUSIVE, reason=f"{finding.reason}, but not each above each: {order}"
            )
        return with_note(finding, f"mean over seeds: {order}")


def _config_value(value: Any) -> Any:
    """A trials.parquet config cell as the config had it: numbers joined by "-" (a tuple) are
    written back with commas, which the model builders read."""
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?(-\d+(\.\d+)?)+", value):
        return value.replace("-", ",")
    return value


def teacher_layers(teacher: pd.Series) -> int:
    """The convolutions of the model an rnascl_teacher row describes (built from its ``model.*``
    columns on the meta device): the teacher layers a student layer may take as its tutor
    (tune_robust.training.rnascl.Teacher collects every convolution's output)."""
    from torch import nn

    from tune_robust.errors import ConfigError
    from tune_robust.models import create_meta_model

    kwargs = {
        key.removeprefix("model."): _config_value(value)
        for key, value in teacher.items()
        if str(key).startswith("model.") and key != "model.arch" and not _absent(value)
    }
    try:
        model = create_meta_model(str(teacher["model.arch"]), **kwargs)
    except ConfigError as e:
        raise MissingData(f"cannot rebuild the teacher of {TEACHER} from its model columns: {e}") from None
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


def _absent(value: Any) -> bool:
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def teacher_of(student: pd.Series, teachers: pd.DataFrame) -> pd.Series:
    """The rnascl_teacher row whose checkpoint a searched student distilled from (its method.teacher
    names the upstream input holding the checkpoint path)."""
    name = str(student.get("method.teacher", "teacher"))
    path = student.get(f"upstream.{name}", name)
    rows = teachers[teachers["checkpoint_path"].astype(str) == str(path)]
    if rows.empty:
        raise MissingData(f"no finished trial of {TEACHER} has the checkpoint {path} the RNAS-CL search read")
    return rows.iloc[0]


def top_share(counts: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``counts`` (student layers per teacher layer), the share of the student layers
    attached to its ``k`` most chosen teacher layers."""
    top = -np.sort(-counts, axis=-1)[..., :k]
    return np.asarray(top.sum(axis=-1) / counts.sum(axis=-1), dtype=float)


def uniform_top_shares(
    students: int, layers: int, k: int, draws: int = NULL_DRAWS, seed: int = 0
) -> np.ndarray:
    """``top_share`` of ``draws`` tutor maps whose ``students`` layers each pick one of ``layers``
    teacher layers uniformly at random."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, layers, size=(draws, students))
    counts = np.zeros((draws, layers), dtype=int)
    np.add.at(counts, (np.arange(draws)[:, None], picks), 1)
    return top_share(counts, k)


@register_claim("rnascl_tutor_concentration")
class TutorConcentration(Claim):
    paper = PAPER
    where = "Sec. 4.3, Fig. 4b"
    statement = (
        "A few teacher layers attract most tutor connections: in the RNAS-CL student's searched tutor "
        "map, the two most chosen teacher layers hold more student layers than uniform tutors would give."
    )
    sweeps = (ABLATION, TEACHER)
    columns = {ABLATION: (LABEL, "arch", CLEAN), TEACHER: ("checkpoint_path", "model.arch")}
    thresholds = (
        f"the RNAS-CL row of {ABLATION} that {TRAIN} takes (best clean acc); share of its student layers "
        f"attached to the top-{TOP_K} teacher layers; p = P(share >= observed | each student layer's tutor "
        f"uniform over the teacher's convolutions) ({NULL_DRAWS} Monte Carlo draws); holds: p < 0.05; "
        "contradicted: share at most its mean under that null"
    )
    figure = "tutor_counts.png"
    min_trials = 1
    learned = {ABLATION: CLEAN}

    def test(self, data: ClaimData) -> Finding:
        searched = data.trials(ABLATION)
        rows = searched[searched[LABEL].astype(str) == "RNAS-CL"].dropna(subset=["arch", CLEAN])
        if rows.empty:
            raise MissingData(f"{ABLATION} has no finished RNAS-CL search with an architecture record")
        best = rows.sort_values(CLEAN, ascending=False).iloc[0]
        students = student_table(best.to_frame().T, CLEAN)
        tutors = str(students["tutors"].iloc[0]) if len(students) else ""
        if not tutors:
            raise MissingData(f"the RNAS-CL search of {ABLATION} recorded no tutor map")
        layers = teacher_layers(teacher_of(best, data.trials(TEACHER)))
        counts = tutor_counts(tutors)
        if counts.index.max() >= layers:
            raise MissingData(
                f"the tutor map names teacher layer {counts.index.max()}, the teacher has {layers} layers"
            )
        share = float(top_share(counts.to_numpy(), TOP_K))
        null = uniform_top_shares(int(counts.sum()), layers, TOP_K)
        p = float((1 + np.sum(null >= share - 1e-12)) / (1 + len(null)))
        expected = float(np.mean(null))
        top = ", ".join(str(i) for i in counts.sort_values(ascending=False, kind="stable").index[:TOP_K])
        said = (
            f"teacher layers {top} hold {share:.2f} of {int(counts.sum())} student layers "
            f"(uniform over {layers} layers: {expected:.2f}), p {p:.2g}"
        )
        if p < 0.05:
            verdict, reason = HOLDS, said
        elif share <= expected:
            verdict, reason = CONTRADICTED, said
        else:
            verdict, reason = INCONCLUSIVE, f"{said} >= 0.05"
        return Finding(
            f"share of student layers on the top-{TOP_K} teacher layers",
            share,
            p=p,
            n=int(counts.sum()),
            verdict=verdict,
            reason=reason,
        )
