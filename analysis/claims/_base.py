"""What a claim is, how one is judged, and the registry the built-in and a user's claims share.

A claim is a paper's finding written as a check over finished sweeps: a subclass of :class:`Claim`
names the paper, the table or figure, a one-sentence statement, the sweeps and columns it reads and its
thresholds, and its ``test`` returns a :class:`Finding` (a statistic with an interval or a p value, the
number of trials or seeds behind it and a verdict). :func:`judge` does what every claim needs before its
test runs: it says what is missing (a sweep not run, too few finished trials, a column absent) instead
of guessing, and calls the result inconclusive when the networks did not learn (their median robust
accuracy within ``LEARN_MARGIN`` of chance).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd

from tune_robust.analysis.load import SweepResults, finished_trials, load_sweep, sweep_dirs
from tune_robust.errors import ConfigError
from tune_robust.registry import Registry

HOLDS = "holds"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
# Not a verdict on the claim: the results it needs are not (all) there yet.
CANNOT_JUDGE = "cannot judge"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, CANNOT_JUDGE)

# Networks count as having learned when their median accuracy is at least this far above chance.
LEARN_MARGIN = 0.05
# Confidence level of every interval a built-in claim prints, and the p value a verdict against "no
# effect" needs.
LEVEL = 0.95
ALPHA = 0.05


class MissingData(Exception):
    """Raised by a claim's ``test`` when the finished trials lack what it needs (a label, a group):
    the claim is reported as ``cannot judge`` with this message."""


@dataclass(frozen=True)
class Finding:
    """A claim's statistic, its interval (nan where the claim gives a p value instead), the p value
    (nan where it gives none), how many trials, configs or seeds it rests on, and the verdict with the
    reason for it."""

    statistic: str
    value: float
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan
    n: int = 0
    verdict: str = INCONCLUSIVE
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in (HOLDS, CONTRADICTED, INCONCLUSIVE):
            raise ValueError(
                f"a finding's verdict is holds, contradicted or inconclusive, not {self.verdict!r}"
            )


def with_note(finding: Finding, note: str) -> Finding:
    """``finding`` with ``note`` appended to its reason."""
    return dataclasses.replace(finding, reason=f"{finding.reason}; {note}")


@dataclass(frozen=True)
class SweepData:
    """One sweep of a results dir: its tables, and how many trials its plan had (None when the
    results hold no ``sweep.json``)."""

    name: str
    path: Path
    results: SweepResults
    planned: int | None

    @property
    def finished(self) -> pd.DataFrame:
        return finished_trials(self.results.trials)


@dataclass(frozen=True)
class ClaimData:
    """The sweeps a claim reads, by name (what ``Claim.test`` receives)."""

    sweeps: Mapping[str, SweepData]

    def trials(self, sweep: str) -> pd.DataFrame:
        """The sweep's finished trials (terminated with a result, not stopped by a scheduler)."""
        return self.sweeps[sweep].finished

    def epochs(self, sweep: str) -> pd.DataFrame:
        return self.sweeps[sweep].results.epochs

    def table(self, sweep: str, name: str) -> pd.DataFrame:
        return self.sweeps[sweep].results.table(name)


class Claim(abc.ABC):
    """A paper's finding as a check. Subclass it, set the attributes, write ``test`` and register the
    class with ``@register_claim("name")`` (in a plugin file or module, like any other component)."""

    name: ClassVar[str] = ""
    # Who found it and where: "Huang et al. (NeurIPS'21)", "Fig. 1b".
    paper: ClassVar[str] = ""
    where: ClassVar[str] = ""
    # One sentence, in our words.
    statement: ClassVar[str] = ""
    # The sweeps it reads (by name, in one results dir) and the columns it needs in each.
    sweeps: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    # When the verdict is holds / contradicted, printed with it.
    thresholds: ClassVar[str] = ""
    # The report figure (or table) the statistic rests on.
    figure: ClassVar[str] = ""
    # Finished trials each sweep needs before the claim is judged, and whether every planned trial of
    # each sweep must have ended (a grid's first trials are not a sample of it, and a top-k over part
    # of a grid is not the grid's top-k).
    min_trials: ClassVar[int] = 3
    complete: ClassVar[bool] = False
    # Sweeps whose comparison needs several train.seed values: `sweep.py claims --run --seeds 0,1,2`
    # trains them once per seed where their fidelity has no seeds of its own.
    seeded: ClassVar[tuple[str, ...]] = ()
    # The accuracy column of the "did the networks learn" check, per sweep ("" = no check there).
    learned: ClassVar[Mapping[str, str]] = {}

    @abc.abstractmethod
    def test(self, data: ClaimData) -> Finding:
        """The claim's statistic and verdict on the finished trials of its sweeps."""


C = TypeVar("C", bound=type[Claim])

CLAIMS: Registry[type[Claim]] = Registry("claim", plugin="claims")


def register_claim(name: str) -> Callable[[C], C]:
    """Register a Claim subclass under ``name`` (its ``name`` attribute is set to it)."""
    return CLAIMS.register_class(name)


def claims_for(papers: Sequence[str] = (), sweeps: Sequence[str] = ()) -> list[type[Claim]]:
    """Registered claims, all or those of the named papers (a name matches a paper that starts with it,
    case-insensitively: "huang", "robnet") or reading any of ``sweeps``."""
    out = [CLAIMS.get(n) for n in CLAIMS.names()]
    if papers:
        keys = [p.lower() for p in papers]
        out = [
            c for c in out if any(c.name.lower().startswith(k) or c.paper.lower().startswith(k) for k in keys)
        ]
    if sweeps:
        out = [c for c in out if set(c.sweeps) & set(sweeps)]
    return out


def read_results(results_dir: str | Path) -> dict[str, SweepData]:
    """Every sweep under ``results_dir``, by its name (a results dir holds one run of each sweep)."""
    out: dict[str, SweepData] = {}
    for directory in sweep_dirs(results_dir):
        res = load_sweep(directory)
        name = (
            str(res.trials["sweep"].iloc[0]) if len(res.trials) and "sweep" in res.trials else directory.name
        )
        if name in out:
            raise ConfigError(
                f"{results_dir} holds sweep {name} twice ({out[name].path.name}/ and {directory.name}/); "
                f"judge one run at a time: move one of them to another results dir"
            )
        out[name] = SweepData(name, directory, res, _planned(directory))
    return out


def _planned(directory: Path) -> int | None:
    path = directory / "sweep.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(
            f"{path} cannot be read ({e}); restore it or remove the sweep's directory"
        ) from None
    fp = state.get("fingerprint", {})
    samples = fp.get("strategy", {}).get("num_samples")
    return int(samples) if samples else (len(fp.get("configs", [])) or None)


# The claims table's columns (claims.parquet), in order: one row per Judgement.
TABLE_COLUMNS = (
    "claim",
    "paper",
    "where",
    "statement",
    "statistic",
    "value",
    "low",
    "high",
    "p",
    "n",
    "verdict",
    "reason",
    "thresholds",
    "learned",
    "sweeps",
    "fidelity",
    "figure",
)


@dataclass(frozen=True)
class Judgement:
    """A claim's row of the claims table."""

    claim: type[Claim]
    finding: Finding | None
    verdict: str
    reason: str
    learned: str = ""
    fidelity: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        f = self.finding
        c = self.claim
        return {
            "claim": c.name,
            "paper": c.paper,
            "where": c.where,
            "statement": c.statement,
            "statistic": f.statistic if f else "",
            "value": f.value if f else math.nan,
            "low": f.low if f else math.nan,
            "high": f.high if f else math.nan,
            "p": f.p if f else math.nan,
            "n": f.n if f else 0,
            "verdict": self.verdict,
            "reason": self.reason,
            "thresholds": c.thresholds,
            "learned": self.learned,
            "sweeps": ", ".join(c.sweeps),
            "fidelity": self.fidelity,
            "figure": c.figure,
        }


def judge(claim: type[Claim], sweeps: Mapping[str, SweepData]) -> Judgement:
    """Check that what ``claim`` needs is there, that its networks learned, then run its test."""
    missing = _missing(claim, sweeps)
    if missing:
        return Judgement(claim, None, CANNOT_JUDGE, missing)
    data = ClaimData({s: sweeps[s] for s in claim.sweeps})
    fidelity = ", ".join(sorted({_fidelity(sweeps[s]) for s in claim.sweeps} - {""}))
    learned, learned_ok = _learned(claim, data)
    if not learned_ok:
        return Judgement(
            claim, None, INCONCLUSIVE, f"the networks did not learn: {learned}", learned, fidelity
        )
    try:
        finding = claim().test(data)
    except MissingData as e:
        return Judgement(claim, None, CANNOT_JUDGE, str(e), learned, fidelity)
    except ValueError as e:  # too few values left for a statistic (missing cells, one group empty)
        return Judgement(claim, None, CANNOT_JUDGE, f"{type(e).__name__}: {e}", learned, fidelity)
    return Judgement(claim, finding, finding.verdict, finding.reason, learned, fidelity)


def _missing(claim: type[Claim], sweeps: Mapping[str, SweepData]) -> str:
    absent = [s for s in claim.sweeps if s not in sweeps]
    if absent:
        return (
            f"needs {', '.join(absent)} (not in this results dir): run it with python sweep.py "
            f"{absent[0]} --results-dir <this dir>, or every sweep of the claims with sweep.py claims --run"
        )
    for name in claim.sweeps:
        sweep = sweeps[name]
        trials = sweep.results.trials
        done, ended = len(sweep.finished), len(trials)
        if claim.complete and sweep.planned and ended < sweep.planned:
            return (
                f"needs the whole {name} sweep: {ended} of {sweep.planned} planned trials have ended "
                f"(continue it with --resume)"
            )
        failed = int((trials["status"].astype(str) == "ERROR").sum()) if "status" in trials else 0
        if claim.complete and failed:
            return f"needs the whole {name} sweep: {failed} of its trials failed (the report lists them)"
        if done < claim.min_trials:
            return f"needs at least {claim.min_trials} finished trials of {name}; it has {done}"
        needed = [*claim.columns.get(name, ()), *([claim.learned[name]] if claim.learned.get(name) else [])]
        absent = [c for c in dict.fromkeys(needed) if c not in sweep.finished]
        if absent:
            return f"{name} has no column {', '.join(absent)}"
        empty = [c for c in claim.columns.get(name, ()) if sweep.finished[c].notna().sum() < claim.min_trials]
        if empty:
            return f"{name}: fewer than {claim.min_trials} finished trials have a value of {', '.join(empty)}"
    return ""


def _fidelity(sweep: SweepData) -> str:
    trials = sweep.results.trials
    return ", ".join(sorted(trials["fidelity"].dropna().astype(str).unique())) if "fidelity" in trials else ""


def chance(trials: pd.DataFrame) -> float:
    """1 / the number of classes of the trials' dataset (0.1 when the dataset is not registered)."""
    from tune_robust.data import DATASETS

    names = trials["data.dataset"].dropna().astype(str).unique() if "data.dataset" in trials else []
    classes = [DATASETS.get(n).num_classes for n in names if n in DATASETS]
    return 1.0 / max(classes) if classes else 0.1


def _learned(claim: type[Claim], data: ClaimData) -> tuple[str, bool]:
    """One line per checked sweep ("wrn_depth_grid: median best_robust_acc 0.79, chance 0.10") and
    whether every one is at least LEARN_MARGIN above chance."""
    parts, ok = [], True
    for sweep, column in claim.learned.items():
        trials = data.trials(sweep)
        if not column or column not in trials:
            continue
        level, median = chance(trials), float(trials[column].median())
        ok = ok and median >= level + LEARN_MARGIN
        parts.append(f"{sweep}: median {column} {median:.3f}, chance {level:.2f}")
    return "; ".join(parts), ok


def judge_all(results_dir: str | Path, claims: Sequence[type[Claim]]) -> pd.DataFrame:
    """The claims table of ``results_dir`` (one row per claim, columns as :meth:`Judgement.row`)."""
    sweeps = read_results(results_dir)
    rows = [judge(c, sweeps).row() for c in claims]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def by_interval(
    statistic: str,
    result: Mapping[str, float],
    *,
    expect: str = "above",
    bound: float = 0.0,
    unit: str = "",
) -> Finding:
    """The usual verdict: ``holds`` when the interval lies entirely on the expected side of ``bound``
    (``expect`` "above" or "below"), ``contradicted`` when it lies entirely on the other side, and
    ``inconclusive`` (too little power at this n) when it contains ``bound``. Against a bound of 0 the
    test's p value must also be below ``ALPHA`` (a bootstrap over a few seeds whose differences share a
    sign excludes 0 at any p).
    ``result``: a dict of :func:`tune_robust.analysis.stats.correlation` or ``mean_difference``."""
    if expect not in ("above", "below"):
        raise ValueError(f"expect must be 'above' or 'below', not {expect!r}")
    value, low, high, n = result["value"], result["low"], result["high"], int(result["n"])
    p = result.get("p", math.nan)
    span = f"the {LEVEL:.0%} interval [{low:.3g}, {high:.3g}]{unit}"
    weak = bound == 0 and not p < ALPHA
    if math.isnan(low) or math.isnan(high):
        verdict, reason = INCONCLUSIVE, f"no interval (every resample gave {low:.3g}; n = {n})"
    elif weak and ((low > bound) or (high < bound)):
        verdict, reason = (
            INCONCLUSIVE,
            f"{span} excludes 0 but p {p:.2g} >= {ALPHA:g}: too little power with n = {n}",
        )
    elif (low > bound) if expect == "above" else (high < bound):
        verdict, reason = HOLDS, f"{span} lies {expect} {bound:g}" + (f", p {p:.2g}" if bound == 0 else "")
    elif (high < bound) if expect == "above" else (low > bound):
        other = "below" if expect == "above" else "above"
        verdict, reason = (
            CONTRADICTED,
            f"{span} lies {other} {bound:g}" + (f", p {p:.2g}" if bound == 0 else ""),
        )
    else:
        verdict, reason = INCONCLUSIVE, f"{span} contains {bound:g}: too little power with n = {n}"
    return Finding(statistic, value, low, high, p, n, verdict, reason)
