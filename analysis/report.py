"""``python sweep.py report NAME``: figures plus a Markdown and an HTML summary of a finished or
partial sweep, written to ``<results>/<sweep>/report/``."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tune_robust.analysis import plots
from tune_robust.analysis.load import SweepResults, config_keys, finished_trials, load_sweep, stage_keys
from tune_robust.analysis.stats import (
    cost_totals,
    fidelity_correlation,
    leaderboard_comparison,
    pareto_front,
    rank_correlation,
    top_k,
)

REPORT_DIR = "report"
PARETO = {"best_robust_acc": "max", "params": "min", "best_clean_acc": "max"}


@dataclass
class Report:
    title: str
    # (heading, kind, content): kind "text" (str), "table" (DataFrame) or "figure" (file name).
    sections: list[tuple[str, str, Any]] = field(default_factory=list)

    def add(self, heading: str, kind: str, content: Any) -> None:
        self.sections.append((heading, kind, content))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for heading, kind, content in self.sections:
            if heading:
                out += [f"## {heading}", ""]
            if kind == "text":
                out += [content, ""]
            elif kind == "table":
                out += [markdown_table(content), ""]
            else:
                out += [f"![{heading}]({content})", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for heading, kind, content in self.sections:
            if heading:
                body.append(f"<h2>{html.escape(heading)}</h2>")
            if kind == "text":
                paragraphs = [p for p in str(content).split("\n\n") if p.strip()]
                body += [f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs]
            elif kind == "table":
                body.append(content.to_html(index=False, float_format=_fmt, na_rep="", border=0))
            else:
                body.append(f'<img src="{html.escape(content)}" alt="{html.escape(heading)}">')
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
            "font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
            "img{max-width:100%}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def markdown_table(df: pd.DataFrame) -> str:
    if not len(df):
        return "(none)"
    cells = [
        [_fmt(v) if isinstance(v, float) else ("" if v is None else str(v)) for v in row]
        for row in df.itertuples(index=False)
    ]
    header = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def _sweep_state(directory: Path) -> dict[str, Any]:
    path = directory / "sweep.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(
    sweep_dir: str | Path, out: str | Path | None = None, compare: str | Path | None = None, top: int = 10
) -> dict[str, Path]:
    """Write ``summary.md``, ``summary.html`` and PNG figures; returns their paths by name."""
    sweep_dir = Path(sweep_dir)
    res = load_sweep(sweep_dir)
    out_dir = Path(out) if out else sweep_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _sweep_state(sweep_dir)
    trials = res.trials
    name = str(trials["sweep"].iloc[0]) if len(trials) else sweep_dir.name
    fidelity = state.get("fingerprint", {}).get("fidelity") or (
        str(trials["fidelity"].iloc[0]) if len(trials) else "?"
    )
    rep = Report(f"{name} ({fidelity})")
    rep.add("Status", "text", _status(res, state))
    files: dict[str, Path] = {}
    done = finished_trials(trials)
    if len(trials):
        totals = cost_totals(trials)
        rep.add(
            "Cost",
            "text",
            f"{totals['trial_hours']:.3f} trial-hours ({totals['cpu_hours']:.3f} CPU-hours, "
            f"{totals['gpu_hours']:.3f} GPU-hours), {totals['epochs']:.0f} epochs, "
            f"{totals['attack_passes']:.4g} attack forward-backward passes (per example, summed).",
        )
    keys = [k for k in config_keys(trials) if not k.startswith("upstream.")] if len(trials) else []
    if len(done) and "best_robust_acc" in done and done["best_robust_acc"].notna().any():
        cols = [*keys, "params", "best_clean_acc", "best_robust_acc"]
        cols += [c for c in done if c.startswith("test_") and c.endswith("_acc") and c != "test_clean_acc"]
        cols = [c for c in dict.fromkeys(cols) if c in done]
        rep.add(f"Top {top} by test robust accuracy (best weights)", "table", top_k(done, top)[cols])
        pcols = [c for c in PARETO if c in done]
        if len(pcols) >= 2:
            front = pareto_front(done, {c: PARETO[c] for c in pcols})
            rep.add(
                "Pareto front (" + ", ".join(f"{c} {PARETO[c]}" for c in pcols) + ")",
                "table",
                front[[*keys, *pcols]],
            )
        _figures(res, done, out_dir, rep, files)
    elif len(res.epochs):
        rep.add("", "text", "No trial has finished its test suite yet; the epochs so far:")
    if len(res.epochs) and "val_robust_acc" in res.epochs:
        files["learning_curves"] = out_dir / "learning_curves.png"
        plots.learning_curves(res.epochs, trials, files["learning_curves"])
        rep.add("Validation robust accuracy per epoch", "figure", files["learning_curves"].name)
    if "arch" in trials:
        _architectures(trials, out_dir, rep, files)
    _leaderboard(done, rep)
    _proxy(res, done, rep, compare)
    _replay(sweep_dir, out_dir, rep, files)
    _claims(sweep_dir, name, rep)
    _problems(trials, rep)
    files["markdown"] = out_dir / "summary.md"
    files["markdown"].write_text(rep.markdown())
    files["html"] = out_dir / "summary.html"
    files["html"].write_text(rep.html())
    return files


def _status(res: SweepResults, state: dict[str, Any]) -> str:
    trials = res.trials
    fp = state.get("fingerprint", {})
    strategy = fp.get("strategy", {})
    planned = strategy.get("num_samples", len(fp.get("configs", [])) or None)
    n = len(trials)
    status = trials["status"].astype(str) if n else pd.Series(dtype=str)
    stopped = (
        int(trials["stopped_by_scheduler"].fillna(False).astype(bool).sum())
        if "stopped_by_scheduler" in trials
        else 0
    )
    finished = int((status == "TERMINATED").sum()) - stopped
    errors = int((status == "ERROR").sum())
    running = (
        len(set(res.epochs["trial_id"]) - set(trials["trial_id"] if n else [])) if len(res.epochs) else 0
    )
    lines = [
        f"{finished} trials finished, {stopped} stopped early by the scheduler, {errors} failed"
        + (f", {max(running, 0)} with epochs but no final row yet" if running > 0 else "")
        + (f"; {planned} planned" if planned else "")
        + (" (partial sweep)" if planned and finished + stopped + errors < planned else "")
        + "."
    ]
    if strategy:
        lines.append("Strategy: " + ", ".join(f"{k}={v}" for k, v in strategy.items()) + ".")
    if state.get("command"):
        lines.append(f"Command: `{state['command']}`")
    return "\n\n".join(lines)


def _figures(
    res: SweepResults, done: pd.DataFrame, out_dir: Path, rep: Report, files: dict[str, Path]
) -> None:
    if "params" in done and done["params"].nunique() > 1:
        files["robustness_vs_params"] = out_dir / "robustness_vs_params.png"
        plots.robustness_vs_params(done, files["robustness_vs_params"])
        rep.add("Robust accuracy vs parameters (Huang et al. Fig. 1b)", "figure", "robustness_vs_params.png")
    for key in stage_keys(done):
        fname = f"stage_effect_{key.split('.')[-1]}.png"
        files[f"stage_effect_{key}"] = out_dir / fname
        plots.stage_effect(done, key, files[f"stage_effect_{key}"])
        rep.add(f"Per-stage effect of {key} (Huang et al. Figs. 2a-c / 3a-c)", "figure", fname)
    if "best_clean_acc" in done:
        files["clean_vs_robust"] = out_dir / "clean_vs_robust.png"
        plots.clean_vs_robust(done, files["clean_vs_robust"])
        rep.add(
            "Clean vs robust accuracy, marker size by parameters (RNAS-CL Fig. 1)",
            "figure",
            "clean_vs_robust.png",
        )
    for table, title in (
        ("acc_vs_eps", "Accuracy vs eps (RACL Fig. 3b-c)"),
        ("acc_vs_steps", "Accuracy vs PGD iterations (RACL Fig. 3a, RobNet supp. Fig. 3)"),
    ):
        if len(res.table(table)):
            files[table] = out_dir / f"{table}.png"
            plots.accuracy_curves(res.table(table), res.trials, files[table])
            rep.add(title, "figure", f"{table}.png")
    if len(res.table("transfer")):
        files["transfer"] = out_dir / "transfer.png"
        plots.transfer_heatmap(res.table("transfer"), files["transfer"])
        rep.add("Transfer attacks (source x target)", "figure", "transfer.png")


def _architectures(trials: pd.DataFrame, out_dir: Path, rep: Report, files: dict[str, Path]) -> None:
    """A search's architectures (RobNet supplement Sec. 6, Figs. 1-2): ranking per budget, density and
    direct-conv portion against robustness, FSP distance per cell against the gap, the best cell."""
    from tune_robust.analysis import architectures as arch

    searched = arch.searched_rows(trials)
    spaces = searched["arch"].map(arch.record_space) if len(searched) else pd.Series(dtype=str)
    if (spaces == "darts").any():
        _genotypes(searched, out_dir, rep, files)
    if (spaces == "rnascl").any():
        _students(searched, out_dir, rep, files)
    searched = searched[spaces == "robnet"] if len(searched) else searched
    if "screened_out" in trials:
        done = trials[trials["status"] == "TERMINATED"]
        out = done["screened_out"].fillna(False).astype(bool)
        rep.add(
            "FSP screen",
            "text",
            f"{int((~out).sum())} of {len(done)} sampled architectures passed the FSP-distance screen "
            f"(fsp_distance at most screen.fsp_threshold); the others were not finetuned.",
        )
    if not len(searched):
        return
    if "arch_sep_convs" in searched and searched["arch_sep_convs"].nunique() > 1:
        rep.add("Ranking per budget (separable convs per cell)", "table", arch.ranking_per_group(searched))
    figures: list[tuple[str, Callable[[pd.DataFrame, Path], Any], str]] = [
        ("density_vs_robust", arch.density_vs_robust, "Architecture density vs robust accuracy"),
        ("budget_direct", arch.budget_direct_plot, "Budget x direct-conv portion"),
    ]
    if arch.fsp_correlations(searched).shape[0]:
        figures.append(
            ("fsp_vs_gap", arch.fsp_vs_gap, "FSP distance per cell vs clean - robust gap (supp. Fig. 1)")
        )
        rep.add("FSP distance vs gap, per cell (Pearson r)", "table", arch.fsp_correlations(searched))
    for name, plot, title in figures:
        files[name] = out_dir / f"{name}.png"
        plot(searched, files[name])
        rep.add(title, "figure", files[name].name)
    best = searched.sort_values(arch.ROBUST, ascending=False).iloc[0]
    files["best_cell"] = out_dir / "best_cell.png"
    code = json.loads(str(best["arch"]))["arch"]
    arch.cell_drawing(code, files["best_cell"], title=f"best: {code}")
    rep.add("The best architecture's (first) cell (supp. Fig. 2)", "figure", "best_cell.png")


def _genotypes(searched: pd.DataFrame, out_dir: Path, rep: Report, files: dict[str, Path]) -> None:
    """DARTS-space genotypes (RACL's search and retraining): the table and the best one's cells."""
    from tune_robust.analysis import architectures as arch

    table = arch.genotype_table(searched)
    rep.add("Genotypes (best first)", "table", table)
    files["best_genotype"] = out_dir / "best_genotype.png"
    best = str(table["genotype"].iloc[0])
    arch.genotype_drawing(best, files["best_genotype"], title=f"best: {best}")
    rep.add("The best genotype's cells", "figure", files["best_genotype"].name)


def _students(searched: pd.DataFrame, out_dir: Path, rep: Report, files: dict[str, Path]) -> None:
    """RNAS-CL students: final channels and tutor maps, and how many student layers attach to each
    teacher layer (the paper's Figs. 4b and 6)."""
    from tune_robust.analysis import architectures as arch

    table = arch.student_table(searched)
    rep.add("Students (best first): channels per block, tutor per student layer", "table", table)
    if (table["tutors"].astype(str) != "").any():
        files["tutor_counts"] = out_dir / "tutor_counts.png"
        arch.tutor_counts_plot(table, files["tutor_counts"])
        rep.add(
            "Student layers per teacher layer (RNAS-CL Figs. 4b, 6)", "figure", files["tutor_counts"].name
        )


def _proxy(res: SweepResults, done: pd.DataFrame, rep: Report, compare: str | Path | None) -> None:
    """How far cheap signals rank configs like the final result: the first validation epoch (what
    ASHA's first rung sees) and, with ``compare``, another run of the same configs."""
    lines = []
    epochs = res.epochs
    if len(done) >= 3 and len(epochs) and "val_robust_acc" in epochs and done["epochs_run"].max() > 1:
        first = epochs[epochs["epoch"] == 1].set_index("trial_id")["val_robust_acc"]
        final = done.set_index("trial_id")["best_robust_acc"]
        try:
            rc = rank_correlation(first, final)
            lines.append(
                f"Epoch-1 validation robust accuracy vs final test robust accuracy over {rc['n']} configs: "
                f"Kendall tau {rc['kendall_tau']:.3f}, Spearman rho {rc['spearman_rho']:.3f}."
            )
        except ValueError as e:
            lines.append(f"Epoch-1 proxy: {e}.")
    if compare is not None:
        other = finished_trials(load_sweep(compare).trials)
        fc = fidelity_correlation(other, done)
        lines.append(
            f"{compare} (cheap) vs this sweep over {fc['n']} shared configs: Kendall tau "
            f"{fc['kendall_tau']:.3f} (p {fc['kendall_p']:.2g}), Spearman rho {fc['spearman_rho']:.3f} "
            f"(p {fc['spearman_p']:.2g}), top-5 overlap {fc['top5_overlap']}/5."
        )
    if lines:
        rep.add("Proxy fidelity (rank correlation)", "text", "\n\n".join(lines))


def _replay(sweep_dir: Path, out_dir: Path, rep: Report, files: dict[str, Path]) -> None:
    """The strategies ``sweep.py replay`` compared on this sweep (its newest replay), if any."""
    from tune_robust.analysis import replay

    runs_path = sweep_dir / replay.OUT_DIR / replay.RUNS_FILE
    if not runs_path.exists():
        return
    runs = pd.read_parquet(runs_path)
    rep.add(
        "Search strategies replayed on this sweep (sweep.py replay)",
        "text",
        f"{runs['repeat'].nunique()} repeats per strategy; shares of the whole grid's compute in %, mean "
        "[95% interval over repeats]; regret in the ranking metric's units.",
    )
    rep.add("", "table", replay.display_table(replay.summary(runs)))
    files["replay"] = out_dir / "replay.png"
    curves = pd.read_parquet(sweep_dir / replay.OUT_DIR / replay.CURVES_FILE)
    plots.replay_curves(
        curves, files["replay"], ylabel=f"best {runs.get('rank_by', pd.Series(['value'])).iloc[0]} so far"
    )
    rep.add("Best so far against compute", "figure", files["replay"].name)


def _leaderboard(done: pd.DataFrame, rep: Report) -> None:
    """Evaluated RobustBench zoo models: our accuracies against the leaderboard's."""
    table = leaderboard_comparison(done)
    if table.empty:
        return
    rep.add(
        "Published accuracies (RobustBench leaderboard) against ours",
        "text",
        "Accuracies in [0, 1]; diff = ours - theirs in points, with the 95% Wilson interval of ours on the "
        "images we evaluated (the leaderboard's own numbers are on the 10,000 test images). Robust: "
        "AutoAttack's (standard) accuracy where our suite ran it, else the worst case over our attacks, "
        "usually at or above AutoAttack's.",
    )
    rep.add("", "table", table)


def _claims(sweep_dir: Path, name: str, rep: Report) -> None:
    """The registered claims that read this sweep, judged on the sweeps of its results dir."""
    from tune_robust.analysis import claims
    from tune_robust.errors import ConfigError

    chosen = claims.claims_for(sweeps=[name])
    if not chosen:
        return
    heading = "Claims (sweep.py claims prints their thresholds)"
    try:
        table = claims.judge_all(sweep_dir.resolve().parent, chosen)
    except ConfigError as e:  # e.g. two runs of one sweep side by side: the report still gets written
        rep.add(heading, "text", f"Not judged: {e}")
        return
    rep.add(heading, "table", claims.report_table(table))


def _problems(trials: pd.DataFrame, rep: Report) -> None:
    if not len(trials):
        return
    if "sanity_messages" in trials:
        flagged = trials.dropna(subset=["sanity_messages"])
        if len(flagged):
            rep.add("Sanity warnings", "table", flagged[["trial_id", "sanity_messages"]])
    errors = trials[trials["status"].astype(str) == "ERROR"]
    if len(errors):
        rep.add("Failed trials", "table", errors[["trial_id", "error"]])
