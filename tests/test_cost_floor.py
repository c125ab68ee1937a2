"""Evaluation at its cost floor gives the numbers of attacking every example with the same starts.

The cost floor (tune_robust.evaluation.basic.attack_batch): only examples correct clean are attacked,
each leaves the batch at its first misclassified iterate, restarts run on the survivors, and the sanity
checks extend the suite's PGD (PGD-2k = PGD-k continued; restarts 2 and 3 only for PGD-k's survivors).
Each example's random start depends on its index alone (Starts), so none of this may change a number.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from tune_robust.attacks import Starts, create_attack
from tune_robust.attacks._base import in_ball
from tune_robust.config import EvalConfig
from tune_robust.data import batches, prepare_data
from tune_robust.evaluation import evaluate
from tune_robust.evaluation.basic import attack_batch
from tune_robust.evaluation.sanity import _Probe, run_checks
from tune_robust.evaluation.suite import run_suite

EPS = 0.1
ATTACKS = {
    "pgd": dict(name="pgd", eps=EPS, step=EPS / 10, steps=10),
    "pgd_normal_start": dict(name="pgd", eps=EPS, step=EPS / 10, steps=10, start="normal", clip_start=False),
    "pgd_l2": dict(name="pgd", eps=1.0, step=0.2, steps=10, norm="l2"),
    "pgd_restarts": dict(name="pgd", eps=EPS, step=EPS / 10, steps=5, restarts=3),
    "cw_inf": dict(name="cw_inf", eps=EPS, step=EPS / 10, steps=10),
    "mim": dict(name="mim", eps=EPS, steps=10),
    "gama": dict(name="gama", eps=EPS, steps=12, relax_steps=4, schedule=(8,)),
    "fgsm_rs": dict(name="fgsm", eps=EPS, step=1.25 * EPS, random_start=True),
}


@pytest.fixture(scope="module")
def setup():
    """A small conv net with BatchNorm, trained a few seconds on digits (eval mode)."""
    data = prepare_data("digits", torch.device("cpu"))
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 10),
    )
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        for x, y in batches(data.train, 64, shuffle=True, generator=gen):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x, y = next(batches(data.test, 200))
    return model.eval(), data, x, y


class Counter(nn.Module):
    """Counts the examples that go through the model (forward passes x batch size)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.examples = inner, 0

    def forward(self, x):
        self.examples += len(x)
        return self.inner(x)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_floor_equals_attacking_every_example_with_the_same_starts(setup, name):
    model, _, x, y = setup
    attack = create_attack(**ATTACKS[name])
    starts = Starts.of_batch(0, len(y), seed=3)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    counted = Counter(model)
    full = attack_batch(attack, counted, x, y, ok, starts, full=True)
    full_cost, counted.examples = counted.examples, 0
    floor = attack_batch(attack, counted, x, y, ok, starts)
    assert torch.equal(ok & ~full.fooled, ok & ~floor.fooled)
    # The numbers are not trivial: some examples survive, some are broken by the attack.
    robust = int((ok & ~floor.fooled).sum())
    assert 0 < robust < int(ok.sum()), robust
    # Every example counted as broken is a real adversarial example: in the threat model, misclassified.
    broken = ok & floor.fooled
    eps = ATTACKS[name]["eps"]
    norm = ATTACKS[name].get("norm", "linf")
    assert in_ball(floor.x_adv[broken], x[broken], eps, norm).all()
    with torch.no_grad():
        assert (model(floor.x_adv[broken]).argmax(1) != y[broken]).all()
    # Cheaper than attacking only the examples correct clean, but all of them through every iteration:
    # examples left the batch once fooled (FGSM has one step: nothing to stop early).
    per_example = full_cost / len(y)
    if name != "fgsm_rs":
        assert counted.examples < int(ok.sum()) * per_example, (counted.examples, full_cost)
    assert counted.examples <= int(ok.sum()) * per_example < full_cost


@pytest.mark.parametrize("name", ["pgd", "pgd_restarts", "gama"])
def test_numbers_do_not_depend_on_the_batch_size_or_order_of_examples(setup, name):
    model, data, _, _ = setup
    attacks = {"a": create_attack(**ATTACKS[name])}
    one = evaluate(model, data.test, attacks, batch_size=359, seed=1)
    many = evaluate(model, data.test, attacks, batch_size=37, seed=1)
    assert one == many


def test_each_attack_draws_its_own_starts_and_restarts_share_them():
    base = Starts.of_batch(0, 3, seed=1)
    pgd20, pgd100 = create_attack("pgd", eps=EPS, steps=20), create_attack("pgd", eps=EPS, steps=100)
    assert base.keyed(pgd20).stream != base.keyed(pgd100).stream
    assert base.keyed(pgd20).stream == base.keyed(dataclasses.replace(pgd20, restarts=5)).stream
    assert base.keyed(pgd20).keyed(pgd100).stream == base.keyed(pgd20).stream  # keyed once
    like = torch.zeros(3, 1, 8, 8)
    assert not torch.equal(base.keyed(pgd20).uniform(like), base.keyed(pgd100).uniform(like))


def test_an_examples_start_depends_on_its_index_seed_and_draw_only():
    like = torch.zeros(6, 1, 8, 8)
    all_six = Starts.of_batch(10, 6, seed=1)
    picked = all_six.subset(torch.tensor([1, 4]))
    assert torch.equal(picked.uniform(like[:2]), all_six.uniform(like)[[1, 4]])
    assert torch.equal(Starts(torch.tensor([14]), seed=1).normal(like[:1], 2), all_six.normal(like, 2)[4:5])
    assert torch.equal(all_six.shifted(1).uniform(like), all_six.uniform(like, 1))
    draws = [all_six.uniform(like), all_six.uniform(like, 1), Starts.of_batch(10, 6, seed=2).uniform(like)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    assert not torch.equal(draws[0][0], draws[0][1])  # examples differ within a batch


def test_any_iterate_counting_is_never_weaker_than_the_last_iterate(setup):
    """An example whose last iterate is misclassified is counted broken, and so is one that only an
    earlier iterate fooled: robust accuracy <= the last-iterate accuracy of the same run."""
    model, _, x, y = setup
    attack = create_attack(**ATTACKS["pgd"])
    out = attack.attack(model, x, y, Starts.of_batch(0, len(y)), early_stop=False)
    with torch.no_grad():
        ok, last_ok = model(x).argmax(1) == y, model(out.x_adv).argmax(1) == y
    assert not (ok & ~out.fooled & ~last_ok).any()  # a misclassified last iterate is always counted


def test_sanity_extensions_equal_the_runs_they_replace(setup):
    """PGD-2k as PGD-k continued from its survivors' k-th iterate, and 3 restarts as 2 more starts for
    PGD-k's survivors, equal PGD-2k and PGD x3 run from scratch with the same starts."""
    model, _, x, y = setup
    pgd = create_attack(**ATTACKS["pgd"])
    probe = _Probe(model, x, y, pgd, 0.02, None, [], seed=5)
    scratch = _Probe(model, x, y, pgd, 0.02, None, [], seed=5)
    # PGD-2k from PGD-k's starts (an attack's starts are its own: PGD-2k alone would draw others)
    with torch.no_grad():
        right = (model(x).argmax(1) == y).nonzero().squeeze(1)
    pgd_2k = dataclasses.replace(pgd, steps=2 * pgd.steps)
    starts = Starts.of_batch(0, len(y), seed=5).keyed(pgd).subset(right)
    fooled = pgd_2k.attack(model, x[right], y[right], starts, early_stop=True).fooled
    assert probe.doubled() == pytest.approx((len(right) - int(fooled.sum())) / len(y), abs=1e-6)
    assert probe.restarted(3) == scratch.acc(dataclasses.replace(pgd, restarts=3))  # restarts share a stream
    assert probe.doubled() < probe.acc(pgd)  # the extension attacks for real


def test_suite_reuse_gives_the_flags_of_fresh_checks_and_the_same_accuracies(setup):
    model, data, _, _ = setup
    cfg = EvalConfig(attacks=("fgsm", "pgd20"), sanity_examples=128, seed=4)
    res = run_suite(model, data.test, cfg, 10, "digits")
    xs, ys = next(batches(data.test.head(128), 128))
    from tune_robust.evaluation.sanity import sanity_attack

    pgd = sanity_attack([create_attack("pgd", eps=EPS, step=EPS / 10, steps=20)], EPS)
    flags, _ = run_checks(model, xs, ys, 10, pgd, cfg.tolerance, seed=4)
    assert {k: res.metrics[f"sanity_{k}"] for k in flags} == flags
    # metrics off: every attack at the cost floor; the accuracy columns are those of the full runs
    fast = run_suite(model, data.test, dataclasses.replace(cfg, metrics=False, sanity=False), 10, "digits")
    for col in ("test_clean_acc", "test_fgsm_acc", "test_pgd20_acc", "test_worst_acc"):
        assert fast.metrics[col] == res.metrics[col], col


def test_the_whole_suite_with_and_without_the_cost_floor_gives_the_same_columns(setup):
    model, data, _, _ = setup
    cfg = EvalConfig(attacks=("fgsm", "pgd20", "mim"), sanity_examples=128, metrics=False, seed=7)
    floor = run_suite(model, data.test, cfg, 10, "digits").metrics
    every = run_suite(model, data.test, dataclasses.replace(cfg, cost_floor=False), 10, "digits").metrics
    cols = [k for k in every if k.startswith(("test_", "sanity_")) and k != "sanity_messages"]
    assert len(cols) >= 14
    assert {k: floor[k] for k in cols} == {k: every[k] for k in cols}
    assert 0 < floor["test_pgd20_acc"] < floor["test_clean_acc"]


def test_the_checks_batched_variants_equal_their_separate_runs(setup):
    """eps x 1/4, 1/2, 2, PGD-2k, restarts 2-3 and the eps=1 attack in one batch give the accuracies of
    running each on its own (the floor without batching: a user's runner that is the plain attack)."""
    model, _, x, y = setup
    pgd = create_attack(**ATTACKS["pgd"], restarts=1)
    pgd = dataclasses.replace(pgd, steps=20)
    probe = _Probe(model, x, y, pgd, 0.02, None, [], seed=9)
    batched = probe.batched()
    assert set(batched) == {"eps0", "eps0.25", "eps0.5", "eps2.0", "doubled", "restarted", "chance"}
    assert batched["eps0"] == float(probe.ok.float().mean()) and not probe._eps0_moved
    alone = _Probe(model, x, y, pgd, 0.02, None, [], seed=9)
    alone._batch = {}  # every check runs its own attack
    separate = {f"eps{f}": alone.varied(eps=pgd.eps * f, step=pgd.step * f) for f in (0.25, 0.5, 2.0)}
    separate["eps0"] = alone.varied(eps=0.0)
    separate["doubled"], separate["restarted"] = alone.doubled(), alone.restarted(3)
    from tune_robust.attacks.pgd import PGD

    separate["chance"] = alone.acc(PGD(eps=1.0, step=0.1, steps=20, random_start=False))
    assert batched == separate
    assert len(set(batched.values())) >= 4  # the variants differ: a mix-up would show
