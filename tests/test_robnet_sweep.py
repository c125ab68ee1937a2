"""RobNet's search end to end through sweep.py on the embedded default: supernet, then finetunes of
sampled architectures that inherit its weights."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tune_robust.cli import main
from tune_robust.models.checkpoint import resolve_path
from tune_robust.models.oneshot import read_record
from tune_robust.models.robnet_codes import arch_stats, parse_code


def test_supernet_then_finetunes_through_sweep_py(tmp_path, capsys):
    common = ["--results-dir", str(tmp_path), "-q"]
    assert main(["robnet_supernet", *common]) == 0, capsys.readouterr().err
    supernet = pd.read_parquet(tmp_path / "robnet_supernet" / "trials.parquet")
    assert (supernet["status"] == "TERMINATED").all() and "arch" not in supernet  # not one architecture
    assert main(["robnet_finetune", *common]) == 0, capsys.readouterr().err
    df = pd.read_parquet(tmp_path / "robnet_finetune" / "trials.parquet")
    assert len(df) == 3 and (df["status"] == "TERMINATED").all()
    assert (df["upstream.init"].map(lambda p: Path(p).parents[1].name) != "").all()
    assert df["upstream.init"].str.contains("robnet_supernet").all()
    for _, row in df.iterrows():
        record = read_record(row["arch"])
        assert record["model"]["code"] == row["model.code"]
        stats = arch_stats(parse_code(row["model.code"]))
        assert row["arch_sep_convs"] == stats["arch_sep_convs"] and stats["arch_density"] >= 0.5
        on_disk = json.loads((resolve_path(row["checkpoint_path"]).parent / "arch.json").read_text())
        assert on_disk == record
    assert sorted(df["arch_sep_convs"]) == [7, 10, 13]  # one per budget
    assert df["best_robust_acc"].between(0, 1).all()
