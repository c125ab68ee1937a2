"""Executable claims: each seed paper's findings as checks over the sweeps of a results dir.

``python sweep.py claims --results-dir R`` prints the table (statement, statistic with its interval,
verdict) and writes ``R/claims.parquet``; ``sweep.py report`` adds the claims that read the reported
sweep. One module per paper registers its claims (``huang``, ``robnet``, ``racl``, ``rnascl``); a user's
claim is a :class:`Claim` subclass registered with :func:`register_claim` in a plugin, like any other
component (docs/claims.md).
"""

from __future__ import annotations

from tune_robust.analysis.claims._base import (
    ALPHA,
    CANNOT_JUDGE,
    CLAIMS,
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    LEARN_MARGIN,
    LEVEL,
    VERDICTS,
    Claim,
    ClaimData,
    Finding,
    Judgement,
    MissingData,
    SweepData,
    by_interval,
    chance,
    claims_for,
    judge,
    judge_all,
    read_results,
    register_claim,
    with_note,
)
from tune_robust.analysis.claims._output import (
    CLAIMS_FILE,
    format_claims,
    report_table,
    run_order,
    write_claims,
)

__all__ = [
    "ALPHA",
    "CANNOT_JUDGE",
    "CLAIMS",
    "CLAIMS_FILE",
    "CONTRADICTED",
    "HOLDS",
    "INCONCLUSIVE",
    "LEARN_MARGIN",
    "LEVEL",
    "VERDICTS",
    "Claim",
    "ClaimData",
    "Finding",
    "Judgement",
    "MissingData",
    "SweepData",
    "by_interval",
    "chance",
    "claims_for",
    "format_claims",
    "judge",
    "judge_all",
    "read_results",
    "register_claim",
    "report_table",
    "run_order",
    "with_note",
    "write_claims",
]
