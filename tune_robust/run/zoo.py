"""RobustBench zoo checkpoints in a plan's trial configs (``robustbench:DATASET/THREAT/NAME``, any
upstream role but ``init``), resolved and checked before Ray starts: the name exists in the zoo, the
sweep's dataset and threat model are the model's, its weights are in --robustbench-dir (or fetched there
now with --download). An evaluated zoo model's published numbers (--leaderboard) go into its trial's
``eval`` section, which reports them beside ours."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from tune_robust.config import TARGET_PREFIX, TrialConfig
from tune_robust.errors import ConfigError
from tune_robust.models import robustbench_zoo as zoo
from tune_robust.run.options import RunOptions

Config = dict[str, Any]


def resolve_zoo(configs: Sequence[Mapping[str, Any]], options: RunOptions) -> tuple[list[Config], list[str]]:
    """``configs`` with every zoo reference resolved (its directory absolute) and checked, and notes."""
    out = copy.deepcopy([dict(c) for c in configs])
    entries = zoo.leaderboard(options.leaderboard) if options.leaderboard else None
    resolved: dict[str, zoo.ZooRef] = {}
    notes: list[str] = []
    for cfg in out:
        upstream = cfg.get("upstream", {})
        for role, text in list(upstream.items()):
            if zoo.is_reference(str(text)):
                upstream[role] = _resolve_one(role, str(text), cfg, entries, options, resolved, notes)
    evaluated = any(zoo.is_reference(str(c.get("upstream", {}).get("model", ""))) for c in out)
    if evaluated and entries is None:
        notes.append("no --leaderboard given: the zoo models' rows carry no published numbers to compare")
    return out, list(dict.fromkeys(notes))


def _resolve_one(
    role: str,
    text: str,
    cfg: Config,
    entries: Mapping[str, Any] | None,
    options: RunOptions,
    resolved: dict[str, zoo.ZooRef],
    notes: list[str],
) -> str:
    """One reference of ``cfg``'s upstream ``role``: checked against the trial's task (no package
    needed), then against the zoo (once per reference); the evaluated model's published numbers go into
    ``cfg``'s eval section."""
    if role == "init":
        raise ConfigError(
            f"upstream.init={text}: a zoo model cannot be a trained trial's first weights (its "
            f"architecture is RobustBench's, not a registered one); evaluate it, teach with it "
            f"(upstream.teacher) or craft transfer attacks on it"
        )
    ref = zoo.ZooRef.parse(text)
    numbers = zoo.published(entries, ref) if entries is not None else None
    check(ref, cfg, numbers, evaluated=role == "model" or role.startswith(TARGET_PREFIX))
    if text not in resolved:
        resolved[text] = zoo.resolve(text, options.robustbench_dir, options.download)
    if role == "model" and numbers is not None:
        cfg.setdefault("eval", {}).update(
            leaderboard_clean_acc=numbers["clean_acc"], leaderboard_autoattack_acc=numbers["autoattack_acc"]
        )
    elif role == "model" and entries is not None:
        notes.append(f"{ref.key} is not on the --leaderboard given: its row has no leaderboard columns")
    return str(resolved[text])


def check(
    ref: zoo.ZooRef, cfg: Mapping[str, Any], numbers: Mapping[str, Any] | None, evaluated: bool = True
) -> None:
    """The trial's dataset against the zoo model's, and for a model the trial evaluates (``evaluated``:
    not a teacher or a transfer source) its attacks against the threat model it is ranked under."""
    from tune_robust.evaluation.suite import build_attacks

    tc = TrialConfig.from_dict(dict(cfg))
    if not evaluated:
        zoo.check_task(ref, tc.data.dataset, set(), set(), None)
        return
    attacks = build_attacks(tc.eval, tc.data.dataset).values()
    norms = {str(getattr(a, "norm", "linf")) for a in attacks if getattr(a, "eps", None) is not None}
    eps = {float(a.eps) for a in attacks if getattr(a, "eps", None) is not None}  # type: ignore[attr-defined]
    zoo.check_task(ref, tc.data.dataset, norms, eps, numbers["eps"] if numbers else None)
