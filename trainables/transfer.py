"""One row of a transfer (black-box) matrix: craft adversarial examples on a source checkpoint with the
first attack of ``eval.attacks``, evaluate every target checkpoint on them.

Config: ``upstream["source"]`` is the source's path; ``upstream["target:<label>"]`` the targets (the
source is usually among them). ``eval.transfer_protocol``: ``white_box`` crafts on the source (its
own entry is the white-box accuracy); ``independent_copy`` crafts on ``upstream["craft"]``, another
training run of the source, so no entry is white-box (RobNet supplement Table 4).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from ray import tune

from tune_robust.data import batches
from tune_robust.evaluation.basic import Tally
from tune_robust.evaluation.suite import build_attacks
from tune_robust.models.checkpoint import describe_checkpoint
from tune_robust.trainables import register_trainable
from tune_robust.trainables._common import placement
from tune_robust.trainables.evaluate import checkpoint_trial, load_for

TARGET = "target:"


@register_trainable("transfer")
def transfer_row(config: dict[str, Any]) -> None:
    started = time.time()
    cfg, device, data = checkpoint_trial(config)
    test = data.test.head(cfg.eval.limit)
    label, attack = next(iter(build_attacks(cfg.eval, cfg.data.dataset).items()))
    source_path = cfg.upstream["source"]
    targets = {k[len(TARGET) :]: p for k, p in cfg.upstream.items() if k.startswith(TARGET)}
    source_label = cfg.eval.label or next(
        (t for t, p in targets.items() if p == source_path), describe_checkpoint(source_path)
    )
    crafted_on = cfg.upstream.get("craft", source_path)
    if cfg.eval.transfer_protocol == "independent_copy" and crafted_on == source_path:
        raise ValueError(f"independent_copy transfer of {source_label}: no copy to craft on")
    source = load_for(cfg, "craft" if crafted_on != source_path else "source", data, device)
    models = {
        t: load_for(dataclasses.replace(cfg, upstream={"m": p}), "m", data, device)
        for t, p in targets.items()
    }
    adv_ok = dict.fromkeys(models, 0)  # the tables' number: accuracy on the transferred examples
    tallies = {t: Tally(["transfer"]) for t in models}
    with torch.autocast(device_type=device.type, enabled=False):
        for x, y in batches(test, cfg.eval.batch_size):
            x_adv = attack.perturb(source, x, y)  # source in eval mode (load_checkpoint)
            with torch.no_grad():
                for t, m in models.items():
                    ok_adv = m(x_adv).argmax(1) == y
                    tallies[t].clean(m(x).argmax(1) == y)
                    tallies[t].attacked("transfer", ok_adv)
                    adv_ok[t] += int(ok_adv.sum())
    n = max(1, len(test))
    rows = [
        {
            "source": source_label,
            "target": t,
            "attack": attack.describe(),
            # accuracy of the target on the transferred examples (the papers' tables)
            "accuracy": adv_ok[t] / n,
            "clean_accuracy": tallies[t].fraction(tallies[t].clean_ok),
            "robust_accuracy": tallies[t].fraction(tallies[t].robust["transfer"]),
            "examples": len(test),
            "protocol": cfg.eval.transfer_protocol,
            "source_path": source_path,
            "crafted_on": crafted_on,
            "target_path": targets[t],
        }
        for t in models
    ]
    tune.report(
        {
            "eval_tables": {"transfer": rows},
            "checkpoint": source_path,
            "checkpoint_label": source_label,
            "eval_attacks": f"{label}={attack.describe()}",
            "test_examples": len(test),
            **placement(device),
            "trial_seconds": time.time() - started,
        }
    )
