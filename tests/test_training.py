import math

import pytest
import torch

from tune_robust.attacks import create_attack
from tune_robust.config import TrialConfig
from tune_robust.data import Split
from tune_robust.evaluation import evaluate
from tune_robust.training.loop import Trainer, load_model_file
from tune_robust.training.precision import native_bf16
from tune_robust.training.schedule import lr_multiplier


def tiny_cfg(train_limit=256, **train):
    return TrialConfig.from_dict(
        {
            "data": {"dataset": "digits", "val_fraction": 0.1, "train_limit": train_limit, "test_limit": 64},
            "model": {"arch": "wrn", "depths": (1, 1, 1), "widths": (0.25, 0.25, 0.25)},
            "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "eval_limit": 64, **train},
            "attack": {"name": "pgd", "eps": "auto", "step": "eps/2", "steps": 2},
            "eval_attack": {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 3},
        }
    )


def test_checkpoint_restore_continues_identically(tmp_path):
    torch.set_num_threads(1)
    straight = Trainer(tiny_cfg())
    for _ in range(3):
        last_straight = straight.run_epoch()

    first = Trainer(tiny_cfg())
    first.run_epoch()
    first.save(tmp_path)
    del first
    resumed = Trainer(tiny_cfg())
    resumed.load(tmp_path)
    assert resumed.epoch == 1
    for _ in range(2):
        last_resumed = resumed.run_epoch()

    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert last_straight["train_loss"] == last_resumed["train_loss"]
    assert last_straight["val_robust_acc"] == last_resumed["val_robust_acc"]
    assert straight.best == resumed.best


def test_saved_model_rebuilds_with_best_weights(tmp_path):
    tr = Trainer(tiny_cfg(epochs=2))
    tr.run_epoch()
    tr.run_epoch()
    tr.save(tmp_path)
    model = load_model_file(tmp_path)
    best = tr.best_model()
    for k, v in best.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    assert not model.training
    assert (tmp_path / "config.json").exists()


def test_training_learns_and_reports_final_metrics():
    torch.manual_seed(0)
    tr = Trainer(tiny_cfg(train_limit=0, epochs=4, lr=0.1))
    history = [tr.run_epoch() for _ in range(4)]
    final = tr.final_metrics()
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert final["final_clean_acc"] > 0.5  # 10 classes: chance is 0.1
    assert 0 <= final["final_robust_acc"] <= final["final_clean_acc"]
    assert tr.finished


def test_nan_loss_raises_a_clear_error():
    tr = Trainer(tiny_cfg(lr=1e12))
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        for _ in range(3):
            tr.run_epoch()


def test_evaluate_uses_eval_mode_and_restores_mode():
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            seen.append(self.training)
            return self.lin(x.flatten(1))

    model = Spy().train()
    split = Split(torch.randint(0, 255, (8, 1, 2, 2), dtype=torch.uint8), torch.randint(0, 2, (8,)))
    res = evaluate(model, split, {"clean": create_attack("none"), "pgd": create_attack("pgd", eps=0.1)})
    assert seen and not any(seen)
    assert model.training
    assert res["worst_acc"] <= min(res["clean_acc"], res["pgd_acc"])


def test_step_schedule_decays_at_75_and_90_percent():
    f = lr_multiplier("step", epochs=100, steps_per_epoch=10, milestones=(0.75, 0.9), gamma=0.1)
    assert f(749) == 1.0 and f(750) == pytest.approx(0.1) and f(900) == pytest.approx(0.01)
    g = lr_multiplier("cosine", epochs=10, steps_per_epoch=10, warmup_epochs=1)
    assert g(0) == pytest.approx(0.1) and g(10) == pytest.approx(1.0) and g(99) < 0.01
    assert math.isclose(lr_multiplier("step", 10, 1, (5,), 0.5)(5), 0.5)


def test_the_bf16_probe_reads_the_cpu_flags_as_torch_finds_its_kernels(tmp_path):
    # torch's own answer (an internal op) only here, to hold the public probe to it.
    assert native_bf16() == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not native_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert native_bf16(info)
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # aarch64
    assert native_bf16(info)
    assert not native_bf16(tmp_path / "missing")


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 kernels")
def test_bf16_autocast_on_cpu_trains_in_bf16_and_validates_in_fp32():
    """train.amp=bf16 on a CPU with native bf16: the training forward passes (attack and update) run in
    bf16, the weights stay fp32 and learn, and validation runs in fp32."""
    tr = Trainer(tiny_cfg(epochs=1, amp="bf16", device="cpu"))
    seen: list[torch.dtype] = []
    conv = next(m for m in tr.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = conv.weight.detach().clone()
    metrics = tr.train_epoch()  # PGD-2 crafting and the update: 3 forward passes per batch
    assert len(seen) == 3 * math.ceil(metrics["train_examples"] / 64)
    assert set(seen) == {torch.bfloat16}
    assert conv.weight.dtype == torch.float32 and not torch.equal(conv.weight, before)
    assert math.isfinite(metrics["train_loss"])
    seen.clear()
    tr.run_epoch()  # its validation (clean and PGD) runs in fp32 after the bf16 training passes
    assert seen[-1] == torch.float32 and torch.float32 in seen


def test_fp16_autocast_is_refused_on_cpu():
    from tune_robust.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.amp=fp16 needs a CUDA device"):
        Trainer(tiny_cfg(epochs=1, amp="fp16", device="auto"))
