"""What a finished (or partial) sweep amounts to, for the command line's closing lines: trial counts,
cost, sanity warnings and the top configs (or, for a transfer sweep, the source x target matrix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tune_robust.analysis.architectures import ranking_per_group
from tune_robust.analysis.plots import transfer_heatmap, transfer_matrix
from tune_robust.analysis.stats import cost_totals
from tune_robust.run import Plan, varying_keys


def summarize(p: Plan, dashboard: str | None = None, top: int = 10) -> dict[str, Any]:
    import pandas as pd

    trials_path = p.sweep_dir / "trials.parquet"
    epochs_path = p.sweep_dir / "epochs.parquet"
    df = pd.read_parquet(trials_path) if trials_path.exists() else pd.DataFrame()
    out: dict[str, Any] = {"trials_path": trials_path, "epochs_path": epochs_path, "dashboard": dashboard}
    out["n_finished"] = int((df["status"] == "TERMINATED").sum()) if len(df) else 0
    out["n_error"] = int((df["status"] == "ERROR").sum()) if len(df) else 0
    # Fewer rows than planned trials after the run returned: it was stopped (Ctrl-C / SIGINT, which
    # Ray Tune turns into a final experiment snapshot) and --resume continues it.
    out["n_planned"] = p.num_trials
    out["interrupted"] = out["n_finished"] + out["n_error"] < out["n_planned"]
    out["table"] = pd.DataFrame()
    out["warnings"] = []
    out["extra_files"] = []
    ok = df[df["status"] == "TERMINATED"] if len(df) else df
    out["n_stopped"] = (
        int(ok["stopped_by_scheduler"].fillna(False).astype(bool).sum())
        if "stopped_by_scheduler" in ok
        else 0
    )
    if out["n_stopped"]:  # stopped early by ASHA: validation numbers only, no test suite to rank by
        ok = ok[~ok["stopped_by_scheduler"].fillna(False).astype(bool)]
    out["totals"] = cost_totals(df)
    if len(ok) and "sanity_messages" in ok:
        flagged = ok[ok["sanity_messages"].notna()]
        for _, r in flagged.iterrows():
            out["warnings"].append(f"trial {r['trial_id']}: {r['sanity_messages']}")
    if "resume_warning" in df:
        for _, r in df[df["resume_warning"].notna()].iterrows():
            out["warnings"].append(f"trial {r['trial_id']}: {r['resume_warning']}")
    if p.spec.inputs == "pairs":
        out["table"], out["extra_files"] = _transfer_outputs(p)
    elif p.spec.rank_within and len(ok) and p.spec.rank_within in ok:
        out["table"] = ranking_per_group(ok, by=p.spec.rank_within, metric=p.spec.rank_by, top=3)
    elif len(ok) and p.spec.rank_by in ok:
        keys = [k for k in varying_keys(p.points) if not k.startswith(("upstream.", "eval.label"))]
        if "eval.label" in ok and "checkpoint_label" not in ok and ok["eval.label"].nunique() > 1:
            keys.insert(0, "eval.label")  # trials an upstream added (robnet_retrain's searched codes)
        metrics = [c for c in ok if c.startswith("test_") and c.endswith("_acc")]
        cols = [*keys, "checkpoint_label", "params", "best_clean_acc", *metrics, p.spec.rank_by]
        cols += ["suspect_gradient_masking"]
        cols = [c for c in dict.fromkeys(cols) if c in ok]
        ascending = p.spec.mode == "min"
        out["table"] = ok.sort_values(p.spec.rank_by, ascending=ascending)[cols].head(top)
    return out


def _transfer_outputs(p: Plan) -> tuple[Any, list[Path]]:
    """The source x target accuracy matrix (printed) and its heatmap PNG next to transfer.parquet."""
    import pandas as pd

    table = p.sweep_dir / "transfer.parquet"
    if not table.exists():
        return pd.DataFrame(), []
    df = pd.read_parquet(table)
    png = p.sweep_dir / "transfer.png"
    transfer_heatmap(df, png)
    return transfer_matrix(df).reset_index(), [table, png]
