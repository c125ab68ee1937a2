"""Each sanity flag fires on a model (or attack) built to break it, and none fires on an honest model."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from tune_robust.attacks.pgd import PGD
from tune_robust.config import EvalConfig
from tune_robust.data import Split, batches, prepare_data
from tune_robust.evaluation.sanity import MASKING_FLAGS, run_checks
from tune_robust.evaluation.suite import run_suite

EPS = 0.1
PGD20 = PGD(eps=EPS, step=EPS / 4, steps=20)
GOOD_EVAL = {"name": "pgd", "label": "pgd", "eps": EPS, "step": EPS / 4, "steps": 20}


@pytest.fixture(scope="module")
def digits():
    data = prepare_data("digits", torch.device("cpu"))
    x, y = next(batches(data.test, 256))
    return data, x, y


@pytest.fixture(scope="module")
def honest(digits):
    """A small MLP trained normally on digits for a few seconds (clean accuracy ~95%)."""
    data, _, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        for x, y in batches(data.train, 64, shuffle=True, generator=gen):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def checks(model, digits, pgd=PGD20, attack_fn=None):
    _, x, y = digits
    flags, msgs = run_checks(model.eval(), x, y, 10, pgd, tol=0.02, attack_fn=attack_fn)
    return flags, msgs


def test_honest_model_passes_every_check(honest, digits):
    flags, msgs = checks(honest, digits)
    assert all(flags.values()), msgs
    assert msgs == []


def test_honest_model_full_suite_no_flag_and_no_masking(honest, digits):
    data, _, _ = digits
    cfg = EvalConfig(attacks=("fgsm", GOOD_EVAL, "aa"), limit=120, sanity_examples=120)
    res = run_suite(honest, data.test, cfg, 10, "digits")
    m = res.metrics
    flags = {k: v for k, v in m.items() if k.startswith("sanity_") and k != "sanity_messages"}
    assert flags and all(v is True for v in flags.values()), m["sanity_messages"]
    assert m["suspect_gradient_masking"] is False and res.warnings == []
    assert m["test_aa_acc"] <= m["test_pgd_acc"] + 1e-9 <= m["test_fgsm_acc"] + 1e-9
    # Per-example worst case: robust to every attack at once. At most each attack's accuracy, and at
    # least clean minus every attack's losses (they need not nest, so the minimum is only a bound)
    accs = [m[f"test_{a}_acc"] for a in ("fgsm", "pgd", "aa")]
    assert m["test_worst_acc"] <= min(accs) + 1e-9
    assert m["test_worst_acc"] >= m["test_clean_acc"] - sum(m["test_clean_acc"] - a for a in accs) - 1e-9
    assert 0 <= m["stability_pgd"] <= 1 and m["lipschitz_logits"] > 0
    assert not honest.training


class Softmaxed(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


class Noisy(nn.Module):
    """A randomised defence: Gaussian input noise also at test time."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x + 0.05 * torch.randn_like(x))


class Quantised(nn.Module):
    """Input quantisation (4 levels) without a straight-through gradient: all input gradients are 0."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 3) / 3)


class _GridTrap(torch.autograd.Function):
    """Identity whose gradient is the true one on the 8-bit pixel grid (clean images) and reversed off
    it: single-step FGSM from the clean image is strong, PGD from a random start is misled."""

    @staticmethod
    def forward(ctx, x):
        on_grid = ((x * 255 - torch.round(x * 255)).abs() < 1e-3).flatten(1).all(1)
        ctx.save_for_backward(on_grid)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        (on_grid,) = ctx.saved_tensors
        sign = torch.where(on_grid, 1.0, -1.0).view(-1, *([1] * (g.ndim - 1)))
        return g * sign


class GridTrap(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(_GridTrap.apply(x))


class Memorising(nn.Module):
    """Vulnerable near the evaluated points, but answers the memorised label once an input is farther
    than ``radius`` (L-inf) from all of them: accuracy *rises* with eps."""

    def __init__(self, inner, x, y, radius):
        super().__init__()
        self.inner, self.x, self.y, self.radius = inner, x.flatten(1), y, radius

    def forward(self, x):
        d = (x.flatten(1)[:, None, :] - self.x[None]).abs().amax(2)
        dmin, idx = d.min(1)
        memo = 20.0 * nn.functional.one_hot(self.y[idx], 10).float()
        return torch.where((dmin > self.radius)[:, None], memo, self.inner(x))


class TrainModeBN(nn.Module):
    """A BatchNorm that always updates its running statistics (a forward in 'training' mode)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        x = nn.functional.batch_norm(x, self.bn.running_mean, self.bn.running_var, training=True)
        return self.inner(x)


def descend(attack, x, y, model):
    """A broken attack: it *minimises* the loss (sign error)."""
    x = x.detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y)
    (g,) = torch.autograd.grad(loss, x)
    eps = getattr(attack, "eps", 0.0)
    return (x - eps * g.sign()).clamp(0, 1).detach()


@pytest.mark.parametrize(
    "flag,build,pgd,attack_fn",
    [
        ("logits", lambda m, d: Softmaxed(m), PGD20, None),
        ("deterministic", lambda m, d: Noisy(m), PGD20, None),
        ("gradients", lambda m, d: Quantised(m), PGD20, None),
        ("large_eps_chance", lambda m, d: Quantised(m), PGD20, None),
        ("iterative_ge_fgsm", lambda m, d: GridTrap(m), PGD20, None),
        ("monotone_eps", lambda m, d: Memorising(m, d[1], d[2], 0.6 * EPS), PGD20, None),
        ("steps_converged", lambda m, d: m, PGD(eps=EPS, step=EPS / 20, steps=4), None),
        ("eps0", lambda m, d: m, PGD20, lambda a, x, y: (x + 0.2 * torch.rand_like(x)).clamp(0, 1)),
        ("adv_le_clean", lambda m, d: m, PGD20, "descend"),
    ],
)
def test_flag_fires(honest, digits, flag, build, pgd, attack_fn):
    model = build(honest, digits).eval()
    fn = (lambda a, x, y: descend(a, x, y, model)) if attack_fn == "descend" else attack_fn
    flags, msgs = checks(model, digits, pgd, fn)
    assert flags[flag] is False, flags
    assert any(m.startswith(f"sanity_{flag} failed") for m in msgs)
    if flag in MASKING_FLAGS:
        from tune_robust.evaluation.sanity import masking_suspected

        assert masking_suspected(flags)


def test_bn_flag_fires_through_the_suite(honest, digits):
    data, _, _ = digits
    res = run_suite(TrainModeBN(honest), data.test, EvalConfig(attacks=("fgsm",), limit=64), 10, "digits")
    assert res.metrics["sanity_bn_unchanged"] is False
    assert any("bn_unchanged" in w for w in res.warnings)


def test_autoattack_flag_fires_through_the_suite(honest, digits):
    data, _, _ = digits
    cfg = EvalConfig(attacks=("pgd20", "aa"), limit=48, sanity_examples=48)
    res = run_suite(Softmaxed(honest), data.test, cfg, 10, "digits")
    assert res.metrics["sanity_autoattack"] is False and res.metrics["sanity_logits"] is False
    assert res.metrics["suspect_gradient_masking"] is True


def test_a_users_attack_takes_part_by_its_class_attributes_not_its_name(honest, digits):
    """The Lipschitz x' and the self-check flag follow Attack.lipschitz_preference / self_checking, so a
    plugin's attack (any name) takes part as a built-in does."""
    from dataclasses import dataclass

    from tune_robust.attacks import ATTACKS, register_attack
    from tune_robust.attacks.fgsm import FGSM

    @register_attack("probe_first")
    @dataclass(frozen=True)
    class Preferred(FGSM):
        lipschitz_preference = 3

    @register_attack("probe_checked")
    @dataclass(frozen=True)
    class Checked(FGSM):
        self_checking = True

        def perturb_with_notes(self, model, x, y):
            return self.perturb(model, x, y), ["the probe's own check failed"]

    try:
        data, _, _ = digits
        attacks = ("pgd20", {"name": "probe_first", "label": "probe", "eps": 0.1})
        res = run_suite(
            honest, data.test, EvalConfig(attacks=attacks, limit=48, sanity_examples=48), 10, "digits"
        )
        assert res.metrics["lipschitz_attack"] == "probe"  # not pgd20, the built-in PGD
        assert res.metrics["sanity_autoattack"] is None  # no self-checking attack ran
        checked = EvalConfig(attacks=("fgsm", "probe_checked"), limit=48, sanity_examples=48, metrics=False)
        res = run_suite(honest, data.test, checked, 10, "digits")
        assert res.metrics["sanity_autoattack"] is False
        assert any("the probe's own check failed" in w for w in res.warnings)
    finally:
        ATTACKS.unregister("probe_first")
        ATTACKS.unregister("probe_checked")


def test_suite_restores_training_mode_and_runs_in_eval_mode(honest, digits):
    data, _, _ = digits
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = honest

        def forward(self, x):
            seen.append(self.training)
            return self.inner(x)

    spy = Spy().train()
    run_suite(spy, Split(data.test.x[:32], data.test.y[:32]), EvalConfig(attacks=("fgsm",)), 10, "digits")
    assert seen and not any(seen)
    assert spy.training


def test_curves_tables(honest, digits):
    data, _, _ = digits
    cfg = EvalConfig(attacks=("pgd20",), sanity=False, eps_curve=(0.0, 0.05, 0.1, 0.2), steps_curve=(1, 10))
    res = run_suite(honest, Split(data.test.x[:128], data.test.y[:128]), cfg, 10, "digits")
    eps_rows = [r for r in res.tables["acc_vs_eps"] if r["attack"] == "pgd"]
    accs = [r["value"] for r in sorted(eps_rows, key=lambda r: r["x"])]
    assert accs[0] == pytest.approx(res.metrics["test_clean_acc"])
    assert all(b <= a + 0.02 for a, b in itertools.pairwise(accs))
    steps = {r["x"]: r["value"] for r in res.tables["acc_vs_steps"]}
    assert steps[10.0] <= steps[1.0] + 0.02
    assert [r["label"] for r in res.tables["lipschitz"]][-1] == "logits"
