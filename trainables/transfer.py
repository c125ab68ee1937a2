"""One row of a transfer (black-box) matrix: craft adversarial examples on a source checkpoint with the
first attack of ``eval.attacks``, evaluate every target checkpoint on them.

Config: ``upstream.source`` is the source's path; ``upstream["target:<label>"]`` the targets (the
source is usually among them). ``eval.transfer_protocol``: ``white_box`` crafts on the source (its
own entry is the white-box accuracy); ``independent_copy`` crafts on ``upstream.craft``, another
training run of the source, so no entry is white-box (RobNet supplement Table 4).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ray import tune

from tune_robust.evaluation.suite import build_attacks
from tune_robust.evaluation.transfer import transfer_accuracy
from tune_robust.models.checkpoint import describe_checkpoint
from tune_robust.trainables import register_trainable
from tune_robust.trainables._common import placement
from tune_robust.trainables.evaluate import checkpoint_trial, given, load_for


@register_trainable("transfer")
def transfer_row(config: dict[str, Any]) -> None:
    started = time.time()
    cfg, device, data = checkpoint_trial(config)
    test = data.test.head(cfg.eval.limit)
    label, attack = next(iter(build_attacks(cfg.eval, cfg.data.dataset).items()))
    source_path = given(cfg.upstream.source, "source")
    targets = cfg.upstream.targets
    source_label = cfg.eval.label or next(
        (t for t, p in targets.items() if p == source_path), describe_checkpoint(source_path)
    )
    crafted_on = cfg.upstream.craft or source_path
    if cfg.eval.transfer_protocol == "independent_copy" and crafted_on == source_path:
        raise ValueError(f"independent_copy transfer of {source_label}: no copy to craft on")
    source = load_for(cfg, crafted_on, data, device)
    models = {t: load_for(cfg, p, data, device) for t, p in targets.items()}
    scores = transfer_accuracy(source, models, test, attack, cfg.eval.batch_size)
    rows = [
        {
            "source": source_label,
            "target": t,
            "attack": attack.describe(),
            **dataclasses.asdict(score),
            "examples": len(test),
            "protocol": cfg.eval.transfer_protocol,
            "source_path": source_path,
            "crafted_on": crafted_on,
            "target_path": targets[t],
        }
        for t, score in scores.items()
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
