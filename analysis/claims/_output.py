"""What the claims give a user: the order their sweeps run in, the printed table and the Parquet file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tune_robust.analysis.claims._base import CANNOT_JUDGE, VERDICTS, Claim
from tune_robust.results.writer import write_table
from tune_robust.sweeps import get_sweep

CLAIMS_FILE = "claims.parquet"


def run_order(claims: Sequence[type[Claim]]) -> list[str]:
    """The sweeps ``claims`` read, each after the sweeps it takes inputs from: required upstream sweeps
    always, optional ones where another claim reads them (e.g. rnascl_ablation before rnascl_train)."""
    wanted = list(dict.fromkeys(s for c in claims for s in c.sweeps))
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in trail:
            raise ValueError(f"sweeps {' -> '.join((*trail, name))} take inputs from each other in a cycle")
        for up in get_sweep(name).upstream:
            if not up.optional or up.sweep in wanted:
                visit(up.sweep, (*trail, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def _number(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def format_claims(table: pd.DataFrame) -> str:
    """The claims table as text: one block per claim (verdict, statement, statistic with its interval,
    p value and n, the reason, the thresholds, the learned check) and a count of verdicts."""
    blocks = []
    for row in table.itertuples(index=False):
        lines = [f"{row.claim}  ({row.paper}, {row.where})  {str(row.verdict).upper()}", f"  {row.statement}"]
        if row.statistic:
            interval = f"  95% [{_number(row.low)}, {_number(row.high)}]" if _number(row.low) else ""
            p = f"  p {_number(row.p)}" if _number(row.p) else ""
            lines.append(f"  {row.statistic} = {_number(row.value)}{interval}{p}  n = {row.n}")
        lines.append(f"  {row.reason}")
        if row.verdict != CANNOT_JUDGE:
            lines.append(f"  thresholds: {row.thresholds}")
            if row.learned:
                lines.append(f"  learned: {row.learned}")
            if row.fidelity:
                lines.append(f"  fidelity: {row.fidelity}; rests on: {row.figure}")
        blocks.append("\n".join(lines))
    counts = table["verdict"].value_counts() if len(table) else pd.Series(dtype=int)
    tally = ", ".join(f"{int(counts[v])} {v}" for v in VERDICTS if v in counts)
    return "\n\n".join([*blocks, f"{len(table)} claims: {tally or 'none registered'}"])


def report_table(table: pd.DataFrame) -> pd.DataFrame:
    """The report's Claims table: statement, statistic, interval, verdict and the figure it rests on."""
    out = pd.DataFrame(
        {
            "claim": table["claim"],
            "where": table["where"],
            "statement": table["statement"],
            "statistic": table["statistic"],
            "value": table["value"],
            "95% interval": [
                f"[{_number(lo)}, {_number(hi)}]" if _number(lo) else ""
                for lo, hi in zip(table["low"], table["high"], strict=True)
            ],
            "p": table["p"],
            "n": table["n"],
            "verdict": table["verdict"],
            "reason": table["reason"],
            "rests on": table["figure"],
        }
    )
    return out


def write_claims(table: pd.DataFrame, results_dir: str | Path) -> Path:
    """``<results_dir>/claims.parquet`` (replaced whole: a failed write leaves the previous file)."""
    path = Path(results_dir) / CLAIMS_FILE
    write_table(table, path)
    return path
