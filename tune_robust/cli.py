"""The command line: ``python sweep.py wrn_depth_grid``, ``tune-robust ...`` or ``python -m tune_robust``
(see ``--help`` and ``--list``).

The only place with argparse; everything else takes explicit arguments (tune_robust.api is the same
steps for Python callers).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any, Protocol


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sweep.py",
        description="Run a tune_robust sweep on Ray Tune; results land in <results-dir>/<sweep>/*.parquet.",
    )
    _sweep_arguments(p)
    _checkpoint_arguments(p)
    _strategy_arguments(p.add_argument_group("search strategy (grid sweeps)"))
    _repeatable(
        p,
        "--track",
        "track",
        "TRACKER",
        "also log every trial to an experiment tracker: mlflow (needs the [tracking] extra), "
        "tensorboard, or wandb (the [wandb] extra; WANDB_MODE=offline logs locally); repeatable",
    )
    p.add_argument(
        "--mlflow-uri",
        metavar="URI",
        help="MLflow tracking URI for --track mlflow (default: sqlite:///<results-dir>/mlflow.db)",
    )
    p.add_argument(
        "--wandb-project",
        metavar="NAME",
        help="W&B project for --track wandb (default: WANDB_PROJECT, else tune_robust)",
    )
    p.add_argument(
        "--wandb-entity",
        metavar="NAME",
        help="W&B entity (team or user) for --track wandb (default: WANDB_ENTITY)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress line: warnings and the summary only"
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="Ray Tune's per-trial tables instead of the progress line; -vv: Ray's output and trial logs",
    )
    return p


class Arguments(Protocol):
    """What argparse's parsers and argument groups share: adding arguments."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


def _repeatable(p: Arguments, flag: str, dest: str, metavar: str, help: str) -> None:
    """A flag that may be given several times; its values collect in a list (empty by default)."""
    p.add_argument(flag, dest=dest, action="append", default=[], metavar=metavar, help=help)


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    """Which sweep, its configs, resources and where results go."""
    p.add_argument(
        "name",
        nargs="?",
        help="registered sweep name (see --list), or `report NAME` (see report --help), `claims` "
        "(see claims --help) or `replay DIR` (see replay --help)",
    )
    p.add_argument("--list", action="store_true", help="list registered sweeps and exit")
    _repeatable(
        p,
        "--plugin",
        "plugins",
        "MODULE_OR_FILE.py",
        "import this module or file first: its models, attacks, methods, datasets, sweeps and "
        "trainables join the registries, in the driver and in every trial (repeatable; also "
        "TUNE_ROBUST_PLUGINS and the tune_robust.plugins entry-point group)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the trial configs and their count, run nothing"
    )
    p.add_argument(
        "--fidelity", default="smoke", help="smoke (embedded data, minutes) or paper (default: smoke)"
    )
    p.add_argument(
        "--dataset", help="override the fidelity's dataset (digits, mnist, cifar10, cifar100, svhn, ...)"
    )
    p.add_argument("--data-dir", help="folder holding the dataset's official files")
    p.add_argument("--download", action="store_true", help="download missing official files (needs internet)")
    _repeatable(
        p,
        "--set",
        "sets",
        "KEY=VALUE",
        "override one config value, e.g. train.epochs=3, attack.eps=8/255, model.depths=9,7,1 "
        "(repeatable; a searched key is pinned to the value)",
    )
    p.add_argument("--max-trials", type=int, help="run only the first N configs of the grid")
    _seeds_argument(p)
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: the sweep's, usually 1)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (e.g. 0.25)")
    p.add_argument(
        "--memory-per-trial",
        type=float,
        metavar="GIB",
        help="memory (GiB) Ray reserves per trial, so it packs trials by memory too (default: none)",
    )
    p.add_argument("--address", help="join a running Ray cluster (e.g. auto or ray://host:10001)")
    p.add_argument(
        "--results-dir", default="results", help="where <sweep>/trials.parquet goes (default: results)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --results-dir")
    p.add_argument("--max-failures", type=int, default=0, help="retries per failing trial before ERROR")


def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` -> (0, 1, 2)."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give seeds as integers separated by commas, not {text!r}"
        ) from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is given twice in {text!r}")
    return seeds


def _seeds_argument(p: Arguments) -> None:
    p.add_argument(
        "--seeds",
        type=seed_list,
        default=(),
        metavar="S1,S2,...",
        help="train every config once per seed (train.seed), e.g. 0,1,2; the claims that compare "
        "networks need several",
    )


def _checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The evaluate and transfer sweeps' inputs."""
    _repeatable(
        p,
        "--checkpoint",
        "checkpoints",
        "[LABEL=]PATH",
        "evaluate/transfer: a checkpoint (a trial's state dir, its model.pt, a plain state dict "
        "of a registered architecture named with --set model.arch=..., or a RobustBench zoo model "
        "robustbench:DATASET/THREAT/NAME, also NAME1,NAME2 or *); repeatable",
    )
    _repeatable(
        p,
        "--from-sweep",
        "from_sweeps",
        "DIR",
        "evaluate/transfer: the finished trials of <results>/<sweep> (repeatable)",
    )
    _repeatable(
        p,
        "--craft-on",
        "craft_on",
        "LABEL=PATH",
        "transfer, independent_copy protocol: the independently trained copy (another seed) that "
        "source LABEL's examples are crafted on; repeatable",
    )
    _repeatable(
        p,
        "--craft-on-sweep",
        "craft_on_sweeps",
        "DIR",
        "transfer, independent_copy protocol: find each source's copy among these finished trials "
        "(same config, another train.seed); default: the --from-sweep dirs themselves",
    )
    p.add_argument("--top-k", type=int, default=0, help="with --from-sweep: only the best K trials (0 = all)")
    p.add_argument(
        "--robustbench-dir",
        default="models",
        metavar="DIR",
        help="robustbench: checkpoints: RobustBench's model directory (its layout, "
        "DIR/<dataset>/<threat>/<name>.pt; --download fetches missing weights there); default ./models",
    )
    p.add_argument(
        "--leaderboard",
        metavar="PATH",
        help="RobustBench's published numbers (a leaderboard snapshot JSON, or the model_info/ folder of "
        "its repository): an evaluated zoo model's row gets leaderboard_clean_acc and "
        "leaderboard_autoattack_acc",
    )


def _strategy_arguments(g: Arguments) -> None:
    g.add_argument(
        "--search",
        default="grid",
        metavar="METHOD",
        help="grid: every config in order (default); random: a seeded random order without "
        "replacement; tpe / nsga2: Optuna's samplers (ask and tell) over the grid's values; "
        "or a plugin's registered search method",
    )
    g.add_argument(
        "--scheduler",
        default="fifo",
        choices=("fifo", "asha"),
        help="fifo: every trial trains its full epochs (default); asha: stop weak trials early on the "
        "sweep's robust-accuracy metric (stopped trials get no test suite)",
    )
    g.add_argument(
        "--num-samples",
        type=int,
        help="random/tpe/nsga2: trials to run (default: the grid's size for random, a quarter of it, at "
        "least 10, for tpe/nsga2)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the search order / Optuna sampler")
    _repeatable(
        g,
        "--objective",
        "objectives",
        "METRIC:max|min",
        "tpe/nsga2 objective, repeatable for multi-objective (default: val_robust_acc:max; nsga2 "
        "adds params:min)",
    )
    g.add_argument("--grace-period", type=int, default=1, help="asha: epochs before the first cut (1)")
    g.add_argument(
        "--reduction-factor", type=float, default=3.0, help="asha: keep 1/this of trials per rung (3)"
    )


def build_report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sweep.py report",
        description="Write figures and a Markdown + HTML summary of a finished or partial sweep "
        "(to <results-dir>/<sweep>/report/ unless --out).",
    )
    p.add_argument("name", help="a sweep name (read from --results-dir) or a sweep's results directory")
    p.add_argument(
        "--results-dir", default="results", help="where <sweep>/trials.parquet is (default: results)"
    )
    p.add_argument("--out", help="write the report here instead")
    p.add_argument(
        "--compare",
        metavar="DIR",
        help="another run of the same configs (e.g. a cheaper fidelity): report the rank correlation",
    )
    p.add_argument("--top", type=int, default=10, help="rows of the top-configs table (10)")
    _repeatable(p, "--plugin", "plugins", "MODULE_OR_FILE.py", "import this plugin first (its claims too)")
    return p


def report(argv: list[str]) -> int:
    from pathlib import Path

    args = build_report_parser().parse_args(argv)
    directory = Path(args.name)
    if not directory.is_dir():
        directory = Path(args.results_dir) / args.name
    from tune_robust import plugins as plugin_loader
    from tune_robust.analysis.report import write_report
    from tune_robust.errors import ConfigError

    try:
        plugin_loader.load(plugin_loader.requested(args.plugins))
        files = write_report(directory, args.out, args.compare, args.top)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, path in files.items():
        print(f"{name}: {path}")
    return 0


def build_claims_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sweep.py claims",
        description="Judge the papers' registered claims on the sweeps of a results dir: print each "
        "claim's statistic, interval and verdict, and write <results-dir>/claims.parquet. With --run, "
        "first run (or resume) every sweep the claims read, in order.",
    )
    p.add_argument(
        "papers",
        nargs="*",
        metavar="PAPER",
        help="only these papers' claims: huang, robnet, racl, rnascl, a claim name's prefix (default: all)",
    )
    p.add_argument("--results-dir", default="results", help="where the sweeps are (default: results)")
    p.add_argument("--run", action="store_true", help="run the claims' sweeps first (skips finished ones)")
    p.add_argument("--fidelity", default="mini", help="with --run: the sweeps' fidelity (default: mini)")
    p.add_argument("--data-dir", help="with --run: folder holding the dataset's official files")
    p.add_argument("--cpus-per-trial", type=float, help="with --run: CPUs per trial")
    p.add_argument("--gpus-per-trial", type=float, help="with --run: GPUs per trial (fractions allowed)")
    p.add_argument("--address", help="with --run: join a running Ray cluster")
    _seeds_argument(p)
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    _repeatable(p, "--plugin", "plugins", "MODULE_OR_FILE.py", "import this plugin first (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="with --run: no progress line")
    return p


def claims(argv: list[str]) -> int:
    args = build_claims_parser().parse_args(argv)
    from tune_robust.errors import ConfigError

    try:
        from tune_robust import plugins as plugin_loader

        loaded = plugin_loader.load(plugin_loader.requested(args.plugins))
        from tune_robust.analysis import claims as registered

        chosen = registered.claims_for(args.papers)
        if args.papers and not chosen:
            raise ConfigError(
                f"no registered claim matches {', '.join(args.papers)}; sweep.py claims --list shows them"
            )
        ran = [f for f, v in (("--seeds", args.seeds), ("--data-dir", args.data_dir)) if v]
        if ran and not args.run:
            raise ConfigError(f"{' and '.join(ran)} apply to the sweeps --run runs; add --run or drop them")
        if args.list:
            for c in chosen:
                print(f"{c.name:34s} {c.paper}, {c.where}: {c.statement}")
            return 0
        if args.run:
            from tune_robust.api import RunOptions, run_claim_sweeps

            options = RunOptions(
                fidelity=args.fidelity,
                results_dir=args.results_dir,
                data_dir=args.data_dir,
                cpus_per_trial=args.cpus_per_trial,
                gpus_per_trial=args.gpus_per_trial,
                address=args.address,
                seeds=args.seeds,
                plugins=tuple(loaded),
                verbose=0 if args.quiet else 1,
            )
            summaries = run_claim_sweeps(args.papers, options)
            if any(s["interrupted"] for s in summaries):
                print("interrupted: run the same command again to continue", file=sys.stderr)
                return 130
        table = registered.judge_all(args.results_dir, chosen)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(registered.format_claims(table))
    print(f"claims: {registered.write_claims(table, args.results_dir)}")
    return 0


def _comma_list(cast: Any) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(cast(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def build_replay_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sweep.py replay",
        description="Replay search strategies on a finished sweep (or a table of per-epoch results) "
        "without training: the same searchers and schedulers as a live sweep, a simulated clock with N "
        "trials at a time, repeated over seeds. Prints compute to the grid's top configs and regret; "
        "writes replay.parquet and replay_curves.parquet (sweep.py report draws them).",
    )
    p.add_argument(
        "source",
        help="a sweep folder (<results-dir>/<sweep>), a sweep name under --results-dir, or a .parquet / "
        ".csv table (docs/replay.md; needs --config)",
    )
    p.add_argument("--results-dir", default="results", help="where a named sweep is (default: results)")
    p.add_argument(
        "--search",
        type=_comma_list(str),
        metavar="M1,M2,...",
        help="search methods to replay, registered or a plugin's; NAME+asha fixes its scheduler "
        "(default: grid,random,tpe,random+asha)",
    )
    p.add_argument(
        "--scheduler",
        type=_comma_list(str),
        default=("fifo",),
        metavar="S1,S2",
        help="schedulers every --search method without its own runs under: fifo, asha (default: fifo)",
    )
    p.add_argument(
        "--concurrency",
        type=_comma_list(int),
        default=(2,),
        metavar="N1,N2,...",
        help="trials at a time on the simulated clock (default: 2)",
    )
    p.add_argument("--repeats", type=int, default=50, help="replays per strategy, search seeds SEED.. (50)")
    p.add_argument("--seed", type=int, default=0, help="the first repeat's search seed (0)")
    p.add_argument("--num-samples", type=int, help="random/tpe/nsga2: trials per replay (as a live sweep)")
    _repeatable(p, "--objective", "objectives", "METRIC:max|min", "tpe/nsga2 objective (as a live sweep)")
    p.add_argument("--grace-period", type=int, default=1, help="asha: epochs before the first cut (1)")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="asha: the reduction factor (3)")
    _repeatable(p, "--set", "sets", "KEY=VALUE", "a sweep: change its grid, e.g. pin a searched key")
    g = p.add_argument_group("a table of your own (docs/replay.md)")
    g.add_argument("--config", type=_comma_list(str), default=(), metavar="C1,C2", help="its config columns")
    g.add_argument("--metric", help="the per-epoch metric strategies see (default: val_robust_acc)")
    g.add_argument("--mode", help="max or min: the metric's and --rank-by's direction (default: max)")
    g.add_argument("--rank-by", help="the column that ranks configs (default: --metric at the last epoch)")
    p.add_argument(
        "--out", help="write the Parquet files here (default: <sweep>/replay, or beside the table)"
    )
    _repeatable(
        p, "--plugin", "plugins", "MODULE_OR_FILE.py", "import this plugin first (its search methods)"
    )
    return p


def replay(argv: list[str]) -> int:
    import time
    from pathlib import Path

    args = build_replay_parser().parse_args(argv)
    from tune_robust import plugins as plugin_loader
    from tune_robust.errors import ConfigError

    try:
        plugin_loader.load(plugin_loader.requested(args.plugins))
        from tune_robust import api
        from tune_robust.analysis import replay as rp

        path = Path(args.source)
        if not path.exists() and not path.suffix:
            path = Path(args.results_dir) / args.source
        source = api.replay_source(path, args.sets, args.config, args.metric, args.mode, args.rank_by)
        started = time.perf_counter()
        result = api.replay(
            source,
            args.search or api.REPLAYED,
            args.scheduler,
            args.concurrency,
            args.repeats,
            args.seed,
            num_samples=args.num_samples,
            objectives=tuple(args.objectives),
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
        )
        seconds = time.perf_counter() - started
        files = rp.write_replay(result, args.out or source.out_dir)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    o = source.objective
    strategies = result.runs["strategy"].nunique()
    print(
        f"replay of {source.name}{f' ({source.fidelity})' if source.fidelity else ''}: {o.size} configs, "
        f"the grid's compute {o.trial_seconds().sum() / 3600:.3f} trial-hours; {strategies} strategies x "
        f"{len(args.concurrency)} concurrency x {args.repeats} repeats in {seconds:.1f} s"
    )
    print(f"top configs by {o.rank_by}; compute as % of the grid's (mean [95% interval over repeats]):")
    print(rp.format_summary(rp.summary(result.runs)))
    for name, f in files.items():
        print(f"{name}: {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        return report(argv[1:])
    if argv[:1] == ["claims"]:
        return claims(argv[1:])
    if argv[:1] == ["replay"]:
        return replay(argv[1:])
    args = build_parser().parse_args(argv)
    from tune_robust.errors import ConfigError

    try:
        from tune_robust import plugins as plugin_loader

        loaded = plugin_loader.load(plugin_loader.requested(args.plugins))
        if args.list:
            return list_sweeps()
        if not args.name:
            raise ConfigError("name a sweep to run (python sweep.py NAME); --list shows them")
        from tune_robust.api import describe, plan, preflight, run_plan

        p = plan(args.name, run_options(args, loaded))
        if args.dry_run:
            preflight(p)
            print(describe(p))
            return 0
        summary = run_plan(p, shlex.join(["python", "sweep.py", *argv]))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(p, summary)
    if summary["interrupted"]:
        resume = shlex.join(["python", "sweep.py", *argv, *([] if "--resume" in argv else ["--resume"])])
        done = summary["n_finished"] + summary["n_error"]
        print(
            f"interrupted: {done} of {summary['n_planned']} trials finished and are in trials.parquet; "
            f"continue with: {resume}",
            file=sys.stderr,
        )
        return 130
    return 0


def list_sweeps() -> int:
    from tune_robust.sweeps import list_sweeps as registered

    for spec in registered():
        print(f"{spec.name:24s} {spec.description}")
        for fid, note in spec.notes.items():
            print(f"{'':24s}   {fid}: {note}")
    return 0


def run_options(args: argparse.Namespace, plugins: Sequence[Any]) -> Any:
    """The parsed command line as the runner's RunOptions (a flag's dest is the field's name, except
    the three renamed here)."""
    import dataclasses

    from tune_robust.api import RunOptions

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions) if hasattr(args, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    verbose = 0 if args.quiet else 1 + args.verbose
    renamed = {"verbose": verbose, "plugins": tuple(plugins), "search_seed": args.seed}
    return RunOptions(**{**values, **renamed})


def print_summary(p: Any, summary: dict[str, Any]) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print()
        stopped = f" ({summary['n_stopped']} stopped early by the scheduler)" if summary["n_stopped"] else ""
        print(f"{summary['n_finished']} trials finished{stopped}, {summary['n_error']} failed")
        if summary["totals"]:
            t = summary["totals"]
            print(
                f"cost: {t['trial_hours']:.3f} trial-hours ({t['cpu_hours']:.3f} CPU-h, {t['gpu_hours']:.3f} "
                f"GPU-h), {t['epochs']:.0f} epochs, {t['attack_passes']:.3g} attack forward-backward passes"
            )
        if len(summary["table"]):
            print(_table_title(p))
            print(summary["table"].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        for w in summary["warnings"]:
            print(f"WARNING {w}")
    print(f"trials: {summary['trials_path']}")
    if summary["epochs_path"].exists():
        print(f"epochs: {summary['epochs_path']}")
    for f in summary["extra_files"]:
        print(f"{f.stem}: {f}")
    if summary["dashboard"] and p.options.address:  # (a local one closed with the sweep)
        print(f"Ray dashboard (while the cluster runs): http://{summary['dashboard']}")


def _table_title(p: Any) -> str:
    if p.spec.inputs != "pairs":
        return f"top configs by {p.spec.rank_by} (test set):"
    independent = p.base.get("eval", {}).get("transfer_protocol") == "independent_copy"
    on = "its copy" if independent else "it"
    return f"transfer accuracy (rows: source, crafted on {on}; columns: target):"


if __name__ == "__main__":
    sys.exit(main())
