"""FSP-matrix distance (RobNet's cell-free screen): the matrix on a hand-built case, the distance's
normalisation, and the trial-level screen that rejects architectures before any training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tune_robust.attacks import NoAttack, create_attack
from tune_robust.evaluation.fsp import cell_distances, fsp_distance, fsp_matrix


def test_fsp_matrix_by_hand():
    # one example, 2 input channels, 1 output channel, 2x2 maps
    f_in = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    f_out = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    g = fsp_matrix(f_in, f_out)
    # G[i, 0] = sum_{s,t} f_in[i] * f_out[0] / (h w): (1 + 4) / 4 and (0 + 1) / 4
    assert g.shape == (1, 2, 1)
    assert g[0, :, 0].tolist() == pytest.approx([5 / 4, 1 / 4])


def test_a_reduction_cells_input_is_pooled_to_the_output_size():
    f_in = torch.arange(16.0).reshape(1, 1, 4, 4)
    f_out = torch.ones(1, 1, 2, 2)
    pooled = nn.functional.avg_pool2d(f_in, 2)
    assert fsp_matrix(f_in, f_out)[0, 0, 0] == pytest.approx(float(pooled.sum() / 4))


class TwoCells(nn.Module):
    """A model recording (input, output) of two 'cells': scale by 2, then square."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.feature_hook = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = 2 * x * self.w
        b = a**2
        if self.feature_hook is not None:
            self.feature_hook(x, a)
            self.feature_hook(a, b)
        return b.mean((2, 3))


def test_cell_distance_is_the_mean_squared_fsp_difference():
    model = TwoCells()
    x = torch.ones(3, 1, 2, 2)
    assert cell_distances(model, x, x) == [0.0, 0.0]
    # x' = 2x: cell 0: G(x) = 2, G(x') = 8 (1x1 matrices, entries averaged over 1): (8 - 2)^2 = 36
    # cell 1: G = sum(a * a^2) / 4 = a^3: 8 vs 64 -> 56^2
    d = cell_distances(model, x, 2 * x)
    assert d == pytest.approx([36.0, 56.0**2])
    assert model.feature_hook is None  # switched off after


class Doubling(NoAttack):
    """A deterministic 'attack': x' = 2x (the distance of a batch then depends on its examples)."""

    def perturb(self, model, x, y):
        return 2 * x


def test_fsp_distance_weights_batches_by_size_and_restores_the_mode():
    model = TwoCells().train()
    x = torch.rand(5, 1, 2, 2)
    y = torch.zeros(5, dtype=torch.long)
    whole = fsp_distance(model, [(x, y)], NoAttack())
    assert whole == [0.0, 0.0] and model.training
    doubled = Doubling()
    one = fsp_distance(model, [(x, y)], doubled)
    split = fsp_distance(model, [(x[:1], y[:1]), (x[1:], y[1:])], doubled)
    assert all(v > 0 for v in one) and split == pytest.approx(one)  # weighted 1:4, not averaged 1:1
    pgd = create_attack("pgd", eps=0.1, step=0.05, steps=2)
    with pytest.raises(TypeError, match="cell features"):
        fsp_distance(nn.Linear(2, 2), [(x, y)], pgd)


def _free_trial(tmp_path, threshold):
    from tune_robust.config import TrialConfig
    from tune_robust.search_spaces.robnet import FSP_SMOKE, SUPERNET_SMOKE, _free_finetune, free_codes
    from tune_robust.training.loop import Trainer

    sup = {**SUPERNET_SMOKE, "model": {**SUPERNET_SMOKE["model"], "share": False}}
    Trainer(TrialConfig.from_dict(sup)).save(tmp_path)
    cfg = _free_finetune(sup, epochs=1, lr=0.02, screen={**FSP_SMOKE, "fsp_threshold": threshold})
    cfg = {**cfg, "model": {**cfg["model"], "code": free_codes(1, layers=5)[0]}}
    return Trainer(TrialConfig.from_dict({**cfg, "upstream": {"init": str(tmp_path / "model.pt")}}))


def test_the_screen_rejects_above_the_threshold_and_keeps_its_numbers(tmp_path):
    trainer = _free_trial(tmp_path, threshold=0.0)
    assert trainer.needs_screen
    out = trainer.screen()
    assert out["screened_out"] and trainer.stopped == "screened_out" and trainer.finished
    cells = [out[f"fsp_cell_{i}"] for i in range(5)]
    assert out["fsp_distance"] == pytest.approx(sum(cells[-3:]) / 3) and out["fsp_examples"] == 128
    assert trainer.epoch == 0 and not trainer.needs_screen
    kept = _free_trial(tmp_path / "b", threshold=out["fsp_distance"] * 1.01)
    assert not kept.screen()["screened_out"] and kept.stopped is None
    kept.save(tmp_path / "state")  # the screen's numbers survive a restart
    again = _free_trial(tmp_path / "c", threshold=1e9)
    again.load(tmp_path / "state")
    assert not again.needs_screen and again.screened["fsp_distance"] == pytest.approx(out["fsp_distance"])


def test_screen_options_are_validated():
    from tune_robust.config import ScreenConfig
    from tune_robust.errors import ConfigError

    with pytest.raises(ConfigError, match=r"needs screen\.fsp=true"):
        ScreenConfig(fsp_threshold=0.1)
    with pytest.raises(ConfigError, match=">= 0"):
        ScreenConfig(fsp=True, fsp_threshold=-1)
