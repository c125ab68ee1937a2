"""Training methods: registry-driven smoke, losses against hand-computed values, Free/Fast eps-ball."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from tune_robust.attacks import Attack, create_attack
from tune_robust.config import TrialConfig
from tune_robust.errors import ConfigError
from tune_robust.models import create_model
from tune_robust.training import METHODS, create_method
from tune_robust.training import trades as trades_module
from tune_robust.training.loop import Trainer
from tune_robust.training.schedule import lr_multiplier

# The training attack each method is normally configured with (Fast: FGSM-RS at 1.25 eps).
ATTACK_FOR = {
    "standard": {"name": "none"},
    "fast": {"name": "fgsm", "eps": "auto", "step": "eps*1.25", "random_start": True},
}
PGD = {"name": "pgd", "eps": "auto", "step": "eps/2", "steps": 2}


def method_cfg(method: str, options=None, **train) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "data": {"dataset": "digits", "val_fraction": 0.1, "train_limit": 128, "test_limit": 32},
            "model": {"arch": "wrn", "depths": (1, 1, 1), "widths": (0.25, 0.25, 0.25)},
            "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "eval_limit": 32, **train},
            "method": {"name": method, **(options or {})},
            "attack": ATTACK_FOR.get(method, PGD),
            "eval_attack": {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 2},
            "eval": {"attacks": ("fgsm",), "sanity": False, "metrics": False},
        }
    )


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_one_epoch(method):
    torch.manual_seed(0)
    # RNAS-CL without its teacher terms (its distillation has tests of its own: test_rnascl.py)
    options = {"rnascl": {"kl": False, "attention": False}}.get(method)
    tr = Trainer(method_cfg(method, options))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    metrics = tr.run_epoch()
    assert math.isfinite(metrics["train_loss"])
    assert tr.finished
    after = tr.model.state_dict()
    changed = [k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, f"{method} did not update the model"
    # every update of a replaying method is counted by the LR schedule (cosine/step end where they should)
    assert tr.scheduler.last_epoch == tr.steps_per_epoch * tr.method.updates_per_batch
    # Cost accounting: attack forward-backward passes per example. PGD-2 for pgd_at/trades/mart, none
    # for standard, one per replay for Free (m = 8), FGSM plus Fast's PGD-5 probe batch (32 examples).
    seen = metrics["train_examples"]
    expected = {"standard": 0, "rnascl": 0, "free": 8 * seen, "fast": seen + 5 * 32}.get(method, 2 * seen)
    assert metrics["train_attack_passes"] == expected == metrics["total_train_attack_passes"]
    assert metrics["val_attack_passes"] == 32 * 2  # eval_limit 32 x PGD-2 (clean costs none)


# ---------------------------------------------------------------------------------------------------
# Losses against hand-computed values on a fixed tiny batch: a linear model with fixed weights and a
# fixed "adversarial" input, so every term can be worked out with math.exp / math.log.

W = [[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]]  # 3 classes x 2 features
B = [0.1, 0.0, -0.2]
X = [[0.2, 0.4], [0.9, 0.1]]
X_ADV = [[0.3, 0.3], [0.8, 0.2]]
Y = [1, 0]


def linear() -> nn.Module:
    m = nn.Linear(2, 3)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(W))
        m.bias.copy_(torch.tensor(B))
    return m.train()


@dataclasses.dataclass(frozen=True)
class FixedAttack(Attack):
    """Returns the fixed X_ADV, so a method's loss can be checked apart from its attack."""

    eps: float = 0.1

    def perturb(self, model, x, y):
        return torch.tensor(X_ADV)


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def logits(x):
    return [sum(w * xi for w, xi in zip(row, x, strict=True)) + b for row, b in zip(W, B, strict=True)]


def ce(x, y):
    return -math.log(softmax(logits(x))[y])


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def batch():
    return torch.tensor(X), torch.tensor(Y)


def test_standard_and_pgd_at_losses_match_hand_computed():
    x, y = batch()
    loss, _ = create_method("standard").loss(linear(), x, y, FixedAttack())
    loss = loss.detach()
    assert float(loss) == pytest.approx(sum(ce(xi, yi) for xi, yi in zip(X, Y, strict=True)) / 2, rel=1e-6)
    loss, _ = create_method("pgd_at").loss(linear(), x, y, FixedAttack())
    loss = loss.detach()
    expected = sum(ce(xi, yi) for xi, yi in zip(X_ADV, Y, strict=True)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    loss, _ = create_method("fast").loss(linear(), x, y, FixedAttack())  # CE on its FGSM example
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)


def test_free_first_replay_loss_is_clean_ce_then_perturbed():
    x, y = batch()
    model = linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the loss changes only through delta
    losses = []

    def update(loss):
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()

    create_method("free", replays=2).train_batch(model, x, y, FixedAttack(eps=0.1), update)
    assert losses[0] == pytest.approx(sum(ce(xi, yi) for xi, yi in zip(X, Y, strict=True)) / 2, rel=1e-6)
    assert losses[1] > losses[0]  # the FGSM step on the carried perturbation raised the loss


def test_trades_loss_matches_hand_computed(monkeypatch):
    monkeypatch.setattr(trades_module, "trades_adversary", lambda *args: torch.tensor(X_ADV))
    x, y = batch()
    attack = create_attack("pgd", eps=0.1, step=0.05, steps=2)
    loss, _ = create_method("trades", beta=6.0).loss(linear(), x, y, attack)
    loss = loss.detach()
    natural = sum(ce(xi, yi) for xi, yi in zip(X, Y, strict=True)) / 2
    # KL(clean || adversarial): clean distribution first.
    robust = sum(kl(softmax(logits(c)), softmax(logits(a))) for c, a in zip(X, X_ADV, strict=True)) / 2
    assert float(loss) == pytest.approx(natural + 6.0 * robust, rel=1e-5)


def test_mart_loss_matches_hand_computed():
    x, y = batch()
    loss, _ = create_method("mart", beta=6.0).loss(linear(), x, y, FixedAttack())
    total = 0.0
    for c, a, yi in zip(X, X_ADV, Y, strict=True):
        q = softmax(logits(a))
        p = softmax(logits(c))
        wrong = max((k for k in range(3) if k != yi), key=lambda k: q[k])
        # Wang et al. 2020, Eq. (5) as written: BCE on the adversarial example plus the KL term weighted
        # by 1 - p_y(clean). (The implementation, like the authors' code, adds 1e-4 / 1e-7 guards inside
        # the logs; they move this batch's loss by well under 0.1%.)
        bce = -math.log(q[yi]) - math.log(1.0 - q[wrong])
        total += bce + 6.0 * kl(p, q) * (1.0 - p[yi])
    assert float(loss.detach()) == pytest.approx(total / 2, rel=1e-3)
    # beta weighs only the KL term: the loss grows linearly in it, by the weighted KL
    loss0, _ = create_method("mart", beta=0.0).loss(linear(), x, y, FixedAttack())
    weighted_kl = (
        sum(
            kl(softmax(logits(c)), softmax(logits(a))) * (1.0 - softmax(logits(c))[yi])
            for c, a, yi in zip(X, X_ADV, Y, strict=True)
        )
        / 2
    )
    assert float((loss - loss0).detach()) == pytest.approx(6.0 * weighted_kl, rel=1e-3)


def test_trades_adversary_stays_in_ball_and_raises_kl():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    x = torch.rand(8, 1, 4, 4)
    adv = trades_module.trades_adversary(model, x, eps=0.1, step=0.03, steps=5)
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        assert float(trades_module.kl_rows(model(adv), model(x)).sum()) > 1e-4


# ---------------------------------------------------------------------------------------------------
# Free and Fast: every input the model trains on lies in the eps-ball around the clean batch and in [0, 1]


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.net(x)


@pytest.mark.parametrize("method", ["free", "fast"])
def test_free_and_fast_stay_in_eps_ball(method):
    torch.manual_seed(0)
    eps = 0.1
    model = Recorder().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def update(loss):
        opt.zero_grad()
        loss.backward()
        opt.step()

    if method == "free":
        m = create_method("free", replays=4)
        attack = create_attack("pgd", eps=eps)
    else:
        m = create_method("fast", early_stop=False)
        attack = create_attack("fgsm", eps=eps, step=1.25 * eps, random_start=True)
    m.check_attack(attack)
    largest = 0.0
    for _ in range(5):
        x = torch.rand(6, 1, 4, 4)
        y = torch.randint(0, 10, (6,))
        model.inputs.clear()
        m.train_batch(model, x, y, attack, update)
        assert model.inputs
        # Every input is in the eps-ball; the examples trained on are in [0, 1] (Fast's FGSM takes its
        # gradient at the unclipped random start, as Wong et al.'s code does: that input may leave it).
        trained = model.inputs if method == "free" else model.inputs[-1:]
        for inp in model.inputs:
            dist = float((inp - x).abs().max())
            assert dist <= eps + 1e-6
            largest = max(largest, dist)
        for inp in trained:
            assert float(inp.min()) >= 0 and float(inp.max()) <= 1
    assert largest > eps / 2  # the perturbation is really there (Free's grows over the replays)


def test_free_carries_its_perturbation_across_batches_and_checkpoints():
    m = create_method("free", replays=2)
    attack = create_attack("pgd", eps=0.1)
    model = Recorder()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def update(loss):
        opt.zero_grad()
        loss.backward()
        opt.step()

    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    m.train_batch(model, x, y, attack, update)
    carried = m.state_dict()["delta"]
    assert carried is not None and float(carried.abs().max()) == pytest.approx(0.1)
    model.inputs.clear()
    m.train_batch(model, x, y, attack, update)
    # the next batch starts from the carried perturbation, not from zero
    assert torch.allclose(model.inputs[0], (x + carried).clamp(0, 1))
    other = create_method("free", replays=2)
    other.load_state_dict(m.state_dict())
    assert torch.equal(other.delta, m.delta)


def test_fast_stops_on_catastrophic_overfitting_and_restores_weights():
    torch.manual_seed(0)
    m = create_method("fast", probe_steps=3)
    attack = create_attack("fgsm", eps=0.01, step=0.0125, random_start=True)
    # A linear model that classifies the probe with a large margin, then is broken (all logits equal
    # -> predicts class 0; the probe's labels are all 1).
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-5.0, -5, -5, -5], [5.0, 5, 5, 5]]))
        model[1].bias.zero_()
    probe = (torch.full((8, 1, 2, 2), 0.5), torch.ones(8, dtype=torch.long))
    good = {k: v.clone() for k, v in model.state_dict().items()}
    first = m.end_epoch(model, probe, attack)
    assert first["probe_pgd_acc"] == 1.0 and "stop" not in first
    with torch.no_grad():
        model[1].weight.zero_()
    second = m.end_epoch(model, probe, attack)
    assert second["probe_pgd_acc"] == 0.0
    assert "catastrophic overfitting" in second["stop"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, good[k])


def test_trainer_runs_free_for_epochs_over_replays_and_stops_fast_early(monkeypatch):
    tr = Trainer(method_cfg("free", {"replays": 2}, epochs=4, schedule="cosine"))
    assert tr.epochs_total == 2
    while not tr.finished:
        tr.run_epoch()
    assert tr.epoch == 2

    tr = Trainer(method_cfg("fast", epochs=3))
    calls = iter([{"probe_pgd_acc": 0.5}, {"probe_pgd_acc": 0.1, "stop": "catastrophic overfitting: test"}])
    monkeypatch.setattr(tr.method, "end_epoch", lambda *a: dict(next(calls)))
    tr.run_epoch()
    last = tr.run_epoch()
    assert tr.finished and tr.epoch == 2
    assert last["stopped_early"].startswith("catastrophic")
    assert "val_robust_acc" in last  # the stopping epoch is still evaluated


def test_free_decays_at_milestones_of_the_epoch_budget():
    # 200-epoch budget, milestones 100/150, m=4: Free runs 50 epochs of 4 replays and must decay at
    # 25 and 37.5 of them (half-way and three quarters), not at 100/150 (never).
    tr = Trainer(method_cfg("free", {"replays": 4}, epochs=200, schedule="step", milestones=(100, 150)))
    assert tr.epochs_total == 50
    f = tr.scheduler.lr_lambdas[0]
    per_epoch = tr.steps_per_epoch * 4
    total = 50 * per_epoch
    assert f(total // 2 - 1) == 1.0 and f(total // 2) == pytest.approx(0.1)
    assert f(int(total * 0.75)) == pytest.approx(0.01) and f(total - 1) == pytest.approx(0.01)
    # Methods that run every epoch of the budget are unchanged.
    g = Trainer(
        method_cfg("pgd_at", epochs=200, schedule="step", milestones=(100, 150))
    ).scheduler.lr_lambdas[0]
    steps = Trainer(method_cfg("pgd_at", epochs=200)).steps_per_epoch
    assert g(100 * steps - 1) == 1.0 and g(100 * steps) == pytest.approx(0.1)


def test_cyclic_schedule_and_method_config_errors():
    f = lr_multiplier("cyclic", epochs=10, steps_per_epoch=10, cycle_peak=0.4)
    assert f(39) == pytest.approx(1.0)
    assert f(0) == pytest.approx(1 / 40)
    assert f(99) == pytest.approx(0.0)
    assert max(f(i) for i in range(100)) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match=r"attack\.random_start=true"):
        TrialConfig.from_dict({"method": {"name": "fast"}, "attack": PGD})
    with pytest.raises(ConfigError, match="takes eps, step and steps"):
        TrialConfig.from_dict({"method": {"name": "trades"}, "attack": {"name": "fgsm", "eps": 0.1}})
    with pytest.raises(ConfigError, match="needs a training attack"):
        TrialConfig.from_dict({"method": {"name": "pgd_at"}})
    with pytest.raises(ConfigError, match="unknown option 'gamma'"):
        TrialConfig.from_dict({"method": {"name": "trades", "gamma": 1}, "attack": PGD})
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        TrialConfig.from_dict({"train": {"amp": "fp16", "device": "cpu"}})


def test_darts_auxiliary_head_loss_is_added_to_the_update(monkeypatch):
    tr = Trainer(method_cfg("pgd_at"))
    # The auxiliary head needs 32x32 inputs; the update only needs a model that sets aux_logits.
    tr.model = create_model("darts", channels=4, layers=3, auxiliary=True).train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    logits = tr.model(x)
    aux = tr.model.aux_logits
    assert aux is not None
    expected = float(
        (nn.functional.cross_entropy(logits, y) + 0.4 * nn.functional.cross_entropy(aux, y)).detach()
    )
    seen = []
    real_backward = torch.Tensor.backward

    def spy(self, *a, **k):
        seen.append(float(self.detach()))
        return real_backward(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "backward", spy)
    tr._update(nn.functional.cross_entropy(logits, y), y=y)
    monkeypatch.undo()
    assert seen == [pytest.approx(expected, rel=1e-6)]
    assert tr.model.aux_logits is None


@pytest.mark.parametrize(
    "select_by,expected", [("auto", "val_clean_acc"), ("clean", "val_clean_acc"), ("last", None)]
)
def test_best_epoch_selection_for_standard_training(select_by, expected):
    tr = Trainer(method_cfg("standard", epochs=3, select_by=select_by))
    history = [tr.run_epoch() for _ in range(3)]
    if expected is None:
        assert tr.best["epoch"] == 3
    else:  # the first epoch with the highest validation clean accuracy, not the most "robust" one
        scores = [h[expected] for h in history]
        assert tr.best["epoch"] == scores.index(max(scores)) + 1
    assert Trainer(method_cfg("pgd_at")).select_metric == "val_robust_acc"


def test_weight_decay_covers_every_parameter_unless_excluded():
    tr = Trainer(method_cfg("pgd_at", weight_decay=2e-4))
    decays = {id(p): g["weight_decay"] for g in tr.optimizer.param_groups for p in g["params"]}
    assert set(decays.values()) == {2e-4}  # Huang/TRADES/MART: model.parameters() all decayed
    tr = Trainer(method_cfg("pgd_at", weight_decay=1e-4, exclude_norm_bias_decay=True))
    for group in tr.optimizer.param_groups:
        dims = {p.ndim for p in group["params"]}
        assert (dims == {1}) == (group["weight_decay"] == 0.0)  # RobNet: none on BN weights / biases


def test_pgd_at_crafts_in_the_configured_batchnorm_mode():
    seen: list[bool] = []

    class Spy(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(self.training)
            return self.inner(x)

    attack = create_attack("pgd", eps=0.1, step=0.05, steps=2)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 0, 1])
    for mode, crafting in (("eval", False), ("train", True)):
        seen.clear()
        model = Spy(nn.Sequential(nn.Flatten(), nn.Linear(16, 2))).train()
        create_method("pgd_at", craft_mode=mode).loss(model, x, y, attack)
        assert seen[:-1] == [crafting] * 2 and seen[-1] is True  # attack passes, then the training pass
    with pytest.raises(ConfigError, match="craft_mode"):
        create_method("pgd_at", craft_mode="both")


def test_eval_last_runs_the_suite_on_the_last_weights_too():
    from tune_robust.attacks import NoAttack
    from tune_robust.evaluation import evaluate

    cfg = method_cfg("pgd_at", epochs=2).to_dict()
    cfg["eval"] = {**cfg["eval"], "last": True}
    tr = Trainer(TrialConfig.from_dict(cfg))
    while not tr.finished:
        tr.run_epoch()
    # Make "best" differ from "last": a net that always answers the rarest test class.
    rare = int(torch.bincount(tr.data.test.y, minlength=10).argmin())
    state = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in tr.model.state_dict().items()}
    head = [n for n, m in tr.model.named_modules() if isinstance(m, nn.Linear)][-1]
    state[f"{head}.bias"][rare] = 1.0
    tr.best_state, tr.best["epoch"] = state, 0
    out = tr.final_metrics()
    clean = {"clean": NoAttack()}
    assert out["test_clean_acc"] == evaluate(tr.best_model(), tr.data.test, clean)["clean_acc"]
    assert out["last_test_clean_acc"] == evaluate(tr.model, tr.data.test, clean)["clean_acc"]
    assert out["test_clean_acc"] != out["last_test_clean_acc"]
    assert {"last_test_fgsm_acc", "last_test_worst_acc"} <= set(out)
    plain = Trainer(method_cfg("pgd_at", epochs=1))
    plain.run_epoch()
    assert not any(k.startswith("last_") for k in plain.final_metrics())
