"""The evaluation every trial ends with: the configured attacks on the test split, per-example worst
case, perturbation stability, empirical Lipschitz constants, sanity flags, optional accuracy curves.

``run_suite(model, split, cfg, num_classes, dataset)`` returns flat metrics (the Parquet columns),
tables (rows for ``<table>.parquet``) and warnings. The model is evaluated in eval mode with autocast
off (fp32), whatever mode it came in, and its mode is restored afterwards.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tune_robust.attacks import Attack, BatchNote, Outcome, Starts, create_attack
from tune_robust.data import DATASETS, Split, batches
from tune_robust.evaluation import sanity
from tune_robust.evaluation.basic import Tally, attack_batch, evaluate
from tune_robust.evaluation.metrics import LipschitzMeter, stability
from tune_robust.evaluation.settings import EvalConfig, eval_attack_specs

log = logging.getLogger("tune_robust")


@dataclass
class SuiteResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    # table name -> rows {"table", "attack", "x", "label", "value"}
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def build_attacks(cfg: EvalConfig, dataset: str) -> dict[str, Attack]:
    return {label: create_attack(spec.name, **spec.kwargs) for label, spec in eval_attack_specs(cfg, dataset)}


def _lipschitz_attack(attacks: dict[str, Attack]) -> str | None:
    """The L-inf attack whose examples give x' (highest ``lipschitz_preference``, then first listed)."""
    usable = [
        (-a.lipschitz_preference, i, label)
        for i, (label, a) in enumerate(attacks.items())
        if a.lipschitz_preference > 0 and getattr(a, "norm", "linf") == "linf"
    ]
    return min(usable)[2] if usable else None


def _curves(
    model: nn.Module, split: Split, cfg: EvalConfig, eps: float, batch_size: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def acc(attack: Attack) -> float:
        return evaluate(model, split, {"attack": attack}, batch_size, seed=cfg.seed)["attack_acc"]

    for e in cfg.eps_curve:
        for attack in (create_attack("pgd", eps=e, step=e / 4, steps=20), create_attack("fgsm", eps=e)):
            rows.append(
                {
                    "table": "acc_vs_eps",
                    "attack": attack.name,
                    "x": float(e),
                    "label": attack.describe(),
                    "value": acc(attack),
                }
            )
    for k in cfg.steps_curve:
        attack = create_attack("pgd", eps=eps, step=eps / 4, steps=k)
        rows.append(
            {
                "table": "acc_vs_steps",
                "attack": "pgd",
                "x": float(k),
                "label": attack.describe(),
                "value": acc(attack),
            }
        )
    return rows


@dataclass
class _Pass:
    """What one pass of every attack over the evaluated examples counted, and each attack's outcome on
    the first examples (the sanity subset, which the checks reuse instead of attacking again)."""

    tally: Tally
    stable: dict[str, int]
    notes: dict[str, list[BatchNote]]
    lipschitz: dict[str, float] | None
    head: dict[str, list[Outcome]]


def _attack_pass(
    model: nn.Module,
    data: Split,
    attacks: dict[str, Attack],
    cfg: EvalConfig,
    lip_label: str | None,
    keep: int,
) -> _Pass:
    """Every attack on every batch: at the cost floor (``attack_batch``) unless the metrics need each
    example's last iterate (perturbation stability and the Lipschitz x' are defined on it)."""
    full = cfg.metrics or not cfg.cost_floor
    done = _Pass(Tally(attacks), dict.fromkeys(attacks, 0), {label: [] for label in attacks}, None, {})
    lip = LipschitzMeter(model) if lip_label else None
    first = 0
    for index, (x, y) in enumerate(batches(data, cfg.batch_size)):
        with torch.no_grad():
            pred = model(x).argmax(1)
        done.tally.clean(pred == y)
        starts = Starts.of_batch(first, len(y), cfg.seed)
        for label, attack in attacks.items():
            out = attack_batch(attack, model, x, y, pred == y, starts, full)
            attacked = len(y) if full else int((pred == y).sum())
            done.notes[label].extend(BatchNote(m, index, attacked) for m in out.notes)
            done.tally.attacked(label, ~out.fooled)
            if full:
                with torch.no_grad():
                    pred_adv = model(out.x_adv.float()).argmax(1)
                done.stable[label] += int(stability(pred, pred_adv).sum())
            if lip is not None and label == lip_label:
                lip.update(x, out.x_adv)
            if first < keep:
                done.head.setdefault(label, []).append(
                    Outcome(out.x_adv[: keep - first], out.fooled[: keep - first])
                )
        first += len(y)
    done.lipschitz = lip.result() if lip is not None else None
    return done


def _accuracy_metrics(
    done: _Pass, attacks: dict[str, Attack], n: int, prefix: str, with_stability: bool
) -> dict[str, Any]:
    frac = done.tally.fraction
    m: dict[str, Any] = {f"{prefix}_clean_acc": frac(done.tally.clean_ok)}
    for label in attacks:
        m[f"{prefix}_{label}_acc"] = frac(done.tally.robust[label])
    m[f"{prefix}_worst_acc"] = done.tally.worst_fraction()
    m[f"{prefix}_eval_examples"] = n
    m["eval_attacks"] = "; ".join(f"{k}={a.describe()}" for k, a in attacks.items())
    m["attack_grad_passes"] = n * sum(a.gradient_steps for a in attacks.values())
    if with_stability:
        for label in attacks:
            m[f"stability_{label}"] = frac(done.stable[label])
    return m


def _lipschitz_rows(values: dict[str, float], lip_label: str) -> list[dict[str, Any]]:
    blocks = [k for k in values if k != "logits"]
    return [
        {"table": "lipschitz", "attack": lip_label, "x": float(i), "label": name, "value": values[name]}
        for i, name in enumerate([*blocks, "logits"])
    ]


def _joined(parts: list[Outcome]) -> Outcome:
    return Outcome(torch.cat([o.x_adv for o in parts]), torch.cat([o.fooled for o in parts]))


def _sanity_metrics(
    model: nn.Module,
    data: Split,
    cfg: EvalConfig,
    attacks: dict[str, Attack],
    done: _Pass,
    num_classes: int,
    default_eps: float,
    buffers_before: dict[str, torch.Tensor],
) -> tuple[dict[str, Any], list[str]]:
    """The sanity flag columns and their messages."""
    s = data.head(cfg.sanity_examples)
    pgd = sanity.sanity_attack(list(attacks.values()), default_eps)
    xs, ys = next(batches(s, len(s)))
    known = [
        sanity.Known(attacks[label], _joined(parts), full=cfg.metrics) for label, parts in done.head.items()
    ]
    flags, msgs = sanity.run_checks(
        model,
        xs,
        ys,
        num_classes,
        pgd,
        cfg.tolerance,
        known=known if cfg.cost_floor else [],
        seed=cfg.seed,
        cost_floor=cfg.cost_floor,
    )
    checked = [label for label, a in attacks.items() if a.self_checking]
    flags["autoattack"] = None if not checked else not any(done.notes[label] for label in checked)
    for label in checked:
        lines = attacks[label].summarize_notes(done.notes[label], len(data))
        msgs.extend(f"sanity_autoattack failed ({label}): {t}" for t in lines)
    flags["bn_unchanged"] = sanity.buffers_unchanged(model, buffers_before)
    if not flags["bn_unchanged"]:
        msgs.append("sanity_bn_unchanged failed: BatchNorm statistics/buffers changed during the attacks")
    m: dict[str, Any] = {f"sanity_{name}": flags.get(name) for name in sanity.ALL_FLAGS}
    m["suspect_gradient_masking"] = sanity.masking_suspected(flags)
    m["sanity_messages"] = " | ".join(msgs) if msgs else None
    detail = [
        f"{label} batch {n.batch} ({n.attacked} attacked): {n.text}"
        for label in checked
        for n in done.notes[label]
    ]
    m["attack_notes"] = " | ".join(detail) if detail else None
    return m, msgs


def run_suite(
    model: nn.Module, split: Split, cfg: EvalConfig, num_classes: int, dataset: str, prefix: str = "test"
) -> SuiteResult:
    start = time.perf_counter()
    attacks = build_attacks(cfg, dataset)
    default_eps = DATASETS.get(dataset).default_eps
    data = split.head(cfg.limit)
    res = SuiteResult()
    was_training = model.training
    model.eval()
    before = sanity.buffers_snapshot(model)
    lip_label = _lipschitz_attack(attacks) if cfg.metrics else None
    try:
        with torch.autocast(device_type=split.x.device.type, enabled=False):
            keep = cfg.sanity_examples if cfg.sanity else 0
            done = _attack_pass(model, data, attacks, cfg, lip_label, keep)
            res.metrics.update(_accuracy_metrics(done, attacks, len(data), prefix, cfg.metrics))
            if done.lipschitz is not None and lip_label is not None:
                res.metrics["lipschitz_logits"] = done.lipschitz.get("logits", float("nan"))
                res.metrics["lipschitz_attack"] = lip_label
                res.tables["lipschitz"] = _lipschitz_rows(done.lipschitz, lip_label)
            if cfg.sanity and len(data):
                flags, msgs = _sanity_metrics(
                    model, data, cfg, attacks, done, num_classes, default_eps, before
                )
                res.metrics.update(flags)
                res.warnings.extend(msgs)
            if cfg.eps_curve or cfg.steps_curve:
                eps = float(getattr(attacks[lip_label], "eps", default_eps)) if lip_label else default_eps
                for row in _curves(model, data.head(cfg.curve_examples), cfg, eps, cfg.batch_size):
                    res.tables.setdefault(row["table"], []).append(row)
    finally:
        model.train(was_training)
    res.metrics["eval_suite_seconds"] = time.perf_counter() - start
    for w in res.warnings:
        log.warning(w)
    return res
