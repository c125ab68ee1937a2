import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tune_robust.attacks import ATTACKS, PRESETS, attack_loss, create_attack
from tune_robust.config import EvalConfig, eval_attack_specs
from tune_robust.errors import ConfigError
from tune_robust.models import create_model


class Linear2(nn.Module):
    """Two-class linear model f(x) = w.x + b with logits (-f, f)."""

    def __init__(self, w: torch.Tensor, b: float | torch.Tensor = 0.0) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s, s], 1)


CHEAP = ["fgsm", "pgd", "pgd_l2", "pgd_margin", "mim", "cw_inf"]


def small_cnn(seed: int = 0, classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, classes)
    ).eval()


def make(name: str, eps: float, steps: int = 3, restarts: int = 1, source: str = ""):
    step = eps / 2 + 1e-3
    if name == "pgd_l2":
        return create_attack("pgd", eps=eps, step=step, steps=steps, restarts=restarts, norm="l2")
    if name == "pgd_margin":
        return create_attack("pgd", eps=eps, step=step, steps=steps, restarts=restarts, loss="margin")
    if name in ("pgd", "cw_inf"):
        return create_attack(name, eps=eps, step=step, steps=steps, restarts=restarts)
    if name == "mim":
        return create_attack("mim", eps=eps, steps=steps)
    if name == "transfer":
        return create_attack("transfer", eps=eps, steps=steps, step=step, source=source)
    return create_attack(name, eps=eps) if name != "none" else create_attack("none")


def dist(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    d = (a - b).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@settings(max_examples=40, deadline=None)
@given(
    eps=st.floats(0.0, 0.5),
    steps=st.integers(1, 4),
    restarts=st.integers(1, 2),
    seed=st.integers(0, 1000),
    shape=st.sampled_from([(5, 1, 6, 6), (2, 1, 6, 6), (1, 1, 6, 6)]),
    name=st.sampled_from(CHEAP),
)
def test_perturbation_stays_in_eps_ball_and_unit_box(eps, steps, restarts, seed, shape, name):
    torch.manual_seed(seed)
    model = small_cnn(seed % 3)
    x = torch.rand(*shape)
    y = torch.randint(0, 10, (shape[0],))
    atk = make(name, eps, steps, restarts)
    adv = atk.perturb(model, x, y)
    assert adv.shape == x.shape
    assert (dist(adv, x, getattr(atk, "norm", "linf")) <= eps + 1e-5).all()
    assert adv.min() >= 0 and adv.max() <= 1


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory):
    model = create_model("wrn", num_classes=10, in_channels=1, depths=(1, 1, 1), widths=(0.25, 0.25, 0.25))
    path = tmp_path_factory.mktemp("src") / "model.pt"
    blob = {"arch": "wrn", "kwargs": {"depths": (1, 1, 1), "widths": (0.25, 0.25, 0.25)}, "num_classes": 10}
    torch.save({**blob, "in_channels": 1, "state_dict": model.state_dict()}, path)
    return str(path)


def test_every_attack_stays_in_ball_and_leaves_model_untouched(source_checkpoint):
    # Registry-driven: a new attack is covered without touching this test.
    model = create_model("wrn", num_classes=10, in_channels=1, depths=(1, 1, 1), widths=(0.25, 0.25, 0.25))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 8, 8), torch.arange(6)
    for name in [*ATTACKS.names(), "pgd_l2", "pgd_margin"]:
        atk = make(name, 0.05, source=source_checkpoint)
        adv = atk.perturb(model, x, y)
        assert (dist(adv, x, getattr(atk, "norm", "linf")) <= 0.05 + 1e-5).all(), name
        assert adv.min() >= 0 and adv.max() <= 1, name
        assert not model.training
        assert all(p.grad is None for p in model.parameters())
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), (name, k)


def test_linear_classifier_exact_minimal_flip():
    # For f(x) = w.x + b the smallest L-inf perturbation flipping the sign is |f(x)| / ||w||_1, and
    # FGSM / PGD / MIM / CW-inf with eps above it flip every point, below it flip none.
    torch.manual_seed(0)
    w = torch.randn(16)
    b = torch.tensor(0.1)
    model = Linear2(w, b)
    x = torch.rand(200, 1, 4, 4) * 0.5 + 0.25  # away from the box so clipping does not interfere
    s = x.flatten(1) @ w + b
    y = (s > 0).long()
    margin = s.abs() / w.abs().sum()
    sel = margin < 0.2
    for name, kwargs in (
        ("fgsm", {}),
        ("pgd", {"steps": 5, "random_start": False}),
        ("cw_inf", {"steps": 5, "random_start": False}),
        ("mim", {"steps": 1}),
        ("gama", {"steps": 30, "schedule": (20,)}),
    ):
        for scale, expect_flip in ((1.01, True), (0.99, False)):
            for i in torch.nonzero(sel).flatten()[:20]:
                eps = float(margin[i]) * scale
                step = {"step": eps} if name in ("pgd", "cw_inf") else {}
                atk = create_attack(name, eps=eps, **step, **kwargs)
                adv = atk.perturb(model, x[i : i + 1], y[i : i + 1])
                flipped = bool(model(adv).argmax(1) != y[i])
                assert flipped == expect_flip, (name, scale, float(margin[i]))


def test_linear_classifier_exact_l2():
    # L2: the minimal flip is |f(x)| / ||w||_2 along w; one PGD step of size eps is optimal.
    torch.manual_seed(0)
    w = torch.randn(16)
    model = Linear2(w)
    x = torch.rand(100, 1, 4, 4) * 0.5 + 0.25
    s = x.flatten(1) @ w
    y = (s > 0).long()
    margin = s.abs() / w.norm()
    for i in torch.nonzero(margin < 0.2).flatten()[:20]:
        for scale, expect in ((1.01, True), (0.99, False)):
            eps = float(margin[i]) * scale
            atk = create_attack("pgd", eps=eps, step=eps, steps=1, random_start=False, norm="l2")
            adv = atk.perturb(model, x[i : i + 1], y[i : i + 1])
            assert bool(model(adv).argmax(1) != y[i]) == expect


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


def test_margin_loss_is_cw_margin():
    from tune_robust.attacks import attack_loss

    logits = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]])
    y = torch.tensor([1, 0])
    assert attack_loss(logits, y, "margin").tolist() == [2.0 - 5.0, 3.0 - 0.0]


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


def test_autoattack_at_least_as_strong_as_pgd_and_reports_flags():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x, y = torch.rand(40, 1, 6, 6), torch.randint(0, 10, (40,))
    y = model(x).argmax(1)  # all correct clean, so accuracies compare robust points only
    aa = create_attack("autoattack", eps=0.03)
    adv, notes = aa.perturb_with_notes(model, x, y)
    pgd = create_attack("pgd", eps=0.03, step=0.0075, steps=20)
    acc_aa = float((model(adv).argmax(1) == y).float().mean())
    acc_pgd = float((model(pgd.perturb(model, x, y)).argmax(1) == y).float().mean())
    assert acc_aa <= acc_pgd + 1e-9
    assert notes == []
    # AutoAttack's own check: probability outputs are flagged by the library and reach us.
    soft = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    _, notes = aa.perturb_with_notes(soft, x[:8], y[:8])
    assert any("probability" in n for n in notes)
    with pytest.raises(ConfigError, match="needs >= 4 classes"):
        aa.perturb(small_cnn(classes=3), torch.rand(2, 1, 6, 6), torch.tensor([0, 1]))


def _square_note(decrease: float) -> str:
    """pyautoattack's own Square check, as it logs it for one call (one evaluated batch)."""
    import logging

    from pyautoattack.checks import check_square_sr

    records: list[str] = []
    logger = logging.getLogger("square-note-test")
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    check_square_sr({"apgd-ce": 0.5, "apgd-t": 0.5, "square": 0.5 - decrease}, logger=logger)
    logger.removeHandler(handler)
    return records[0]


def test_autoattack_square_warnings_become_one_line_with_their_total():
    from tune_robust.attacks import BatchNote

    aa = create_attack("autoattack", eps=0.3)
    # four batches of a real MNIST evaluation: Square's decrease per batch, as a share of the examples
    # attacked in that batch (those correct clean)
    notes = [
        BatchNote(_square_note(d), batch, attacked)
        for batch, (d, attacked) in enumerate([(0.0039, 256), (0.0391, 256), (0.0078, 256), (0.0117, 256)])
    ]
    assert "Square Attack has decreased the robust accuracy of 0.39%" in notes[0].text
    other = BatchNote(
        "there are 3 points with zero gradient! This might lead to unreliable evaluation", 1, 256
    )
    lines = aa.summarize_notes(
        [*notes, other, BatchNote(other.text.replace("3", "5"), 2, 256)], evaluated=1024
    )
    assert len(lines) == 2
    flipped = 256 * (0.0039 + 0.0391 + 0.0078 + 0.0117)  # examples Square turned, of the 1024 evaluated
    assert lines[0].startswith(
        f"Square Attack (black-box) lowered the robust accuracy below the white-box attacks' by "
        f"{100 * flipped / 1024:.2f}% of the 1024 evaluated examples (in 4 batches, 0.39% to 3.91%"
    )
    assert lines[1] == other.text + " (in 2 batches)"
    assert aa.summarize_notes([], evaluated=10) == []


def test_presets_resolve_on_every_dataset():
    for dataset, eps in (("digits", 0.1), ("cifar10", 8 / 255), ("mnist", 0.3)):
        specs = dict(eval_attack_specs(EvalConfig(attacks=tuple(PRESETS)), dataset))
        assert specs["pgd20"].kwargs["eps"] == pytest.approx(eps)
        assert specs["pgd20"].kwargs["step"] == pytest.approx(eps / 10)
        assert specs["pgd100"].kwargs["steps"] == 100
        assert specs["aa"].kwargs["version"] == "standard"
    cifar = dict(eval_attack_specs(EvalConfig(attacks=("pgd20_step2",)), "cifar10"))
    assert cifar["pgd20_step2"].kwargs["step"] == pytest.approx(2 / 255)


def test_bad_attack_settings():
    with pytest.raises(ConfigError, match="eps must be >= 0"):
        create_attack("pgd", eps=-0.1)
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        create_attack("pgd", steps=0)
    with pytest.raises(ConfigError, match="unknown option 'iters'"):
        create_attack("pgd", iters=3)
    with pytest.raises(ConfigError, match="expects float"):
        create_attack("pgd", eps="lots")
    with pytest.raises(ConfigError, match="one of 'linf', 'l2'"):
        create_attack("pgd", norm="l1")
    with pytest.raises(ConfigError, match="needs source"):
        create_attack("transfer")
    with pytest.raises(ConfigError, match="unknown attack 'pgd7000'"):
        eval_attack_specs(EvalConfig(attacks=("pgd7000",)), "digits")
    with pytest.raises(ConfigError, match="twice"):
        eval_attack_specs(EvalConfig(attacks=("pgd20", "pgd20")), "digits")
    assert create_attack("pgd", eps="8/255").eps == pytest.approx(8 / 255)
    assert dataclasses.replace(create_attack("cw_inf"), steps=2).loss == "clipped_margin"
    with pytest.raises(ConfigError, match="relax_steps"):
        create_attack("gama", relax_steps=0)


def test_clipped_margin_is_the_margin_capped_at_zero():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    assert attack_loss(logits, y, "margin").tolist() == [-2.0, 2.0]
    assert attack_loss(logits, y, "clipped_margin").tolist() == [-2.0, 0.0]  # fooled: no gradient


class _Recorder(nn.Module):
    """A linear model that keeps every input it is given (to see where gradients are taken)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.lin(x.flatten(1))


@pytest.mark.parametrize(
    "name, options, clipped",
    [
        ("fgsm", {"step": 0.375}, False),  # Wong et al.'s Fast AT: the start is not clipped
        ("fgsm", {"step": 0.375, "clip_start": True}, True),
        ("pgd", {"step": 0.01, "steps": 2}, True),  # Madry et al. / AutoAttack clip it
        ("pgd", {"step": 0.01, "steps": 2, "clip_start": False}, False),
    ],
)
def test_random_start_rule(name, options, clipped):
    torch.manual_seed(0)
    x = (torch.rand(64, 1, 4, 4) > 0.5).float()  # MNIST-like: every pixel 0 or 1
    y = torch.zeros(64, dtype=torch.long)
    model = _Recorder()
    adv = create_attack(name, eps=0.3, random_start=True, **options).perturb(model, x, y)
    start = model.seen[0]
    outside = (start < 0) | (start > 1)
    if clipped:
        assert not outside.any()
    else:  # about half the pixels' draws land outside [0, 1] and the gradient is taken there
        assert 0.4 < outside.float().mean() < 0.6
        assert ((start - x).abs() <= 0.3 + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1 and ((adv - x).abs() <= 0.3 + 1e-6).all()


def test_pgd_normal_start_is_x_plus_step_times_gaussian():
    torch.manual_seed(0)
    x = torch.full((256, 1, 4, 4), 0.5)
    model = _Recorder()
    create_attack("pgd", eps=0.3, step=0.01, steps=1, start="normal", clip_start=False).perturb(
        model, x, torch.zeros(256, dtype=torch.long)
    )
    noise = model.seen[0] - x
    assert noise.std().item() == pytest.approx(0.01, rel=0.05) and noise.mean().abs() < 1e-3
    with pytest.raises(ConfigError, match="start"):
        create_attack("pgd", eps=0.3, step=0.01, start="laplace")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_freeze_fooled_stops_examples_once_misclassified(norm):
    # On a linear classifier every PGD step moves an example by the same amount along w, so the margin
    # falls step by step; with freeze_fooled an example stops at the first iterate that is misclassified
    # (Wong et al.'s MNIST PGD training), and one that starts misclassified never moves.
    torch.manual_seed(0)
    w = torch.randn(16)
    model = Linear2(w)
    x = torch.rand(300, 1, 4, 4) * 0.5 + 0.25
    y = (x.flatten(1) @ w > 0).long()
    y[:50] = 1 - y[:50]  # misclassified from the start
    eps, step, steps = 0.2, 0.02, 10
    if norm == "l2":
        eps, step = 0.8, 0.08
    common = {"eps": eps, "step": step, "steps": steps, "random_start": False, "norm": norm}
    frozen = create_attack("pgd", freeze_fooled=True, **common).perturb(model, x, y)
    free = create_attack("pgd", **common).perturb(model, x, y)
    assert torch.equal(frozen[:50], x[:50]) and not torch.allclose(free[:50], x[:50])
    # Every example the attack fools is fooled by both; the frozen one stopped at the first success,
    # so it lies no farther from x than the free one and, where it moved, was still correct a step back
    fooled_free = model(free).argmax(1) != y
    fooled_frozen = model(frozen).argmax(1) != y
    assert torch.equal(fooled_free, fooled_frozen)
    dist = lambda a: (a - x).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)  # noqa: E731
    assert (dist(frozen) <= dist(free) + 1e-6).all()
    stopped = fooled_frozen[50:] & (dist(frozen)[50:] < dist(free)[50:] - 1e-6)
    assert stopped.sum() > 10  # the option changed something the attack's result depends on
    never = ~fooled_free
    assert torch.allclose(frozen[never], free[never])
