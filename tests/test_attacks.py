import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tune_robust.attacks import ATTACKS, create_attack
from tune_robust.errors import ConfigError
from tune_robust.models import create_model


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)
    ).eval()


@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(0.0, 0.5),
    steps=st.integers(1, 4),
    restarts=st.integers(1, 2),
    seed=st.integers(0, 1000),
    name=st.sampled_from(["pgd", "fgsm"]),
)
def test_perturbation_stays_in_eps_ball_and_unit_box(eps, steps, restarts, seed, name):
    torch.manual_seed(seed)
    model = small_cnn(seed % 3)
    x = torch.rand(5, 1, 6, 6)
    y = torch.randint(0, 3, (5,))
    kwargs = {"eps": eps}
    if name == "pgd":
        kwargs |= {"step": eps / 2 + 1e-3, "steps": steps, "restarts": restarts}
    adv = create_attack(name, **kwargs).perturb(model, x, y)
    assert adv.shape == x.shape
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


def test_attacks_leave_model_untouched():
    model = create_model("wrn", num_classes=3, in_channels=1, depths=(1, 1, 1), widths=(0.25, 0.25, 0.25))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    for name in ATTACKS:
        create_attack(name).perturb(model, x, y)
        assert not model.training
        assert all(p.grad is None for p in model.parameters())
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), (name, k)


def test_linear_classifier_exact_minimal_flip():
    # For f(x) = w.x + b the smallest L-inf perturbation flipping the sign is |f(x)| / ||w||_1, and
    # FGSM / PGD with eps above it flip every point, below it flip none.
    torch.manual_seed(0)
    w = torch.randn(16)
    b = torch.tensor(0.1)

    class Linear2(nn.Module):
        def forward(self, x):
            s = x.flatten(1) @ w + b
            return torch.stack([-s, s], 1)

    model = Linear2()
    x = torch.rand(200, 1, 4, 4) * 0.5 + 0.25  # away from the box so clipping does not interfere
    s = x.flatten(1) @ w + b
    y = (s > 0).long()
    margin = s.abs() / w.abs().sum()
    sel = margin < 0.2
    for name, kwargs in (("fgsm", {}), ("pgd", {"steps": 5, "random_start": False})):
        for scale, expect_flip in ((1.01, True), (0.99, False)):
            for i in torch.nonzero(sel).flatten()[:20]:
                eps = float(margin[i]) * scale
                atk = create_attack(name, eps=eps, **({"step": eps} if name == "pgd" else {}), **kwargs)
                adv = atk.perturb(model, x[i : i + 1], y[i : i + 1])
                flipped = bool(model(adv).argmax(1) != y[i])
                assert flipped == expect_flip, (name, scale, float(margin[i]))


def test_eps_zero_is_clean_and_pgd_at_least_as_strong_as_fgsm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    x, y = torch.rand(256, 1, 6, 6), torch.randint(0, 3, (256,))
    assert torch.equal(create_attack("pgd", eps=0.0, step=0.01).perturb(model, x, y), x)

    def acc(atk):
        return float((model(atk.perturb(model, x, y)).argmax(1) == y).float().mean())

    fgsm = acc(create_attack("fgsm", eps=0.1))
    pgd = acc(create_attack("pgd", eps=0.1, step=0.025, steps=10))
    pgd_r = acc(create_attack("pgd", eps=0.1, step=0.025, steps=10, restarts=3))
    assert pgd <= fgsm + 1e-9 and pgd_r <= pgd + 1e-9


def test_restarts_keep_per_example_worst_case():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3)).eval()
    x, y = torch.rand(64, 1, 6, 6), torch.randint(0, 3, (64,))
    atk = create_attack("pgd", eps=0.05, step=0.02, steps=2, restarts=4)
    adv = atk.perturb(model, x, y)
    fooled = model(adv).argmax(1) != y
    torch.manual_seed(7)
    single = create_attack("pgd", eps=0.05, step=0.02, steps=2).perturb(model, x, y)
    # Each example broken by a single run is very likely broken by the best of 4 restarts
    assert fooled.sum() >= (model(single).argmax(1) != y).sum()


def test_bad_attack_settings():
    with pytest.raises(ConfigError, match="eps must be >= 0"):
        create_attack("pgd", eps=-0.1)
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        create_attack("pgd", steps=0)
    with pytest.raises(ConfigError, match="unknown option 'iters'"):
        create_attack("pgd", iters=3)
    with pytest.raises(ConfigError, match="expects float"):
        create_attack("pgd", eps="lots")
    assert create_attack("pgd", eps="8/255").eps == pytest.approx(8 / 255)
