"""RACL: the log-normal bound against Monte Carlo, power iteration against exact operator norms, the
reparameterised draw's gradients, the ADMM terms, the derived genotype and the genotype text form."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from tune_robust.config import TrialConfig
from tune_robust.errors import ConfigError
from tune_robust.models import count_params, create_model
from tune_robust.models.darts import GENOTYPES, DartsSpace, format_genotype, parse_genotype
from tune_robust.models.lipschitz import grouped_linear, power_step, stage_modules, unit_blocks
from tune_robust.models.lognormal import lognormal_sum, sample_lognormal
from tune_robust.models.oneshot import record_of
from tune_robust.models.ops import DilConv, FactorizedReduce, SepConv
from tune_robust.models.racl import PCDartsSupernet, RACLSupernet
from tune_robust.training.loop import Trainer

# ---------------------------------------------------------------------------------------- log-normal


def test_fenton_wilkinson_matches_the_sums_mean_and_variance():
    """Eq. 11 is the log-normal with the sum's exact mean and variance: check both against 400k draws."""
    g = torch.Generator().manual_seed(0)
    m = torch.tensor([-1.0, 0.3, -0.5, 0.8], dtype=torch.float64)
    s2 = torch.tensor([0.25, 0.09, 0.5, 0.01], dtype=torch.float64)
    draws = torch.exp(m + s2.sqrt() * torch.randn(400_000, 4, generator=g, dtype=torch.float64)).sum(1)
    mu, sigma2 = lognormal_sum(m, s2)
    assert float(torch.exp(mu + sigma2 / 2)) == pytest.approx(float(draws.mean()), rel=2e-3)
    var = (torch.exp(sigma2) - 1) * torch.exp(2 * mu + sigma2)
    assert float(var) == pytest.approx(float(draws.var()), rel=2e-2)


def test_absent_terms_and_deterministic_terms():
    m = torch.tensor([0.0, -math.inf, math.log(3.0)])
    mu, s2 = lognormal_sum(m, torch.zeros(3))
    assert float(s2) == 0.0 and float(mu) == pytest.approx(math.log(4.0))  # 1 + 0 + 3, no variance
    grad_m = torch.tensor([0.1, 0.2], requires_grad=True)
    grad_s2 = torch.zeros(2, requires_grad=True)
    sum(lognormal_sum(grad_m, grad_s2)).backward()
    assert torch.isfinite(grad_m.grad).all() and torch.isfinite(grad_s2.grad).all()


def test_reparameterised_draw_is_positive_with_correct_gradients():
    mu = torch.randn(5, dtype=torch.float64, requires_grad=True)
    sigma = torch.rand(5, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: sample_lognormal(a, b, noise), (mu, sigma))
    draws = sample_lognormal(mu.detach(), sigma.detach(), torch.randn(10_000, 5, dtype=torch.float64))
    assert (draws > 0).all()


def _net(**kw):
    torch.manual_seed(0)
    kw = {"channels": 8, "layers": 4, "partial": 4, **kw}
    net = create_model("racl_supernet", num_classes=10, in_channels=1, **kw)
    assert isinstance(net, RACLSupernet)
    net.train()
    net(torch.rand(4, 1, 8, 8))  # input sizes for the Lipschitz bound
    return net


def test_network_bound_against_monte_carlo_of_the_whole_product():
    """The analytic (mu, sigma^2) of ln of prod_cells prod_nodes sum_i beta sum_o alpha lambda_o against
    samples of that expression (every cell its own draw): each level's Fenton-Wilkinson step is an
    approximation, so the tolerance is wider than for one sum (measured: mean within 0.3%, variance
    within 6% here)."""
    net = _net(sigma_init=0.4)
    with torch.no_grad():
        net.mu_alpha.normal_(-2.0, 0.5)
        net.sigma_alpha.uniform_(0.1, 0.6)
        net.sigma_beta.uniform_(0.1, 0.6)
    log_lam = net.log_lipschitz().double()
    mu, s2 = (float(v.detach()) for v in net.bound(log_lam))
    lam = log_lam.exp()  # "none" -> 0
    n = 100_000
    g = torch.Generator().manual_seed(1)
    kinds = torch.tensor(net.kinds)
    ma, sa = net.mu_alpha.detach().double()[kinds], net.sigma_alpha.detach().double()[kinds]
    mb, sb = net.mu_beta.detach().double()[kinds], net.sigma_beta.detach().double()[kinds]
    alpha = torch.exp(ma + sa * torch.randn(n, *ma.shape, generator=g, dtype=torch.float64))
    beta = torch.exp(mb + sb * torch.randn(n, *mb.shape, generator=g, dtype=torch.float64))
    edge = beta * (alpha * lam).sum(-1)  # (n, cells, edges)
    log_b = torch.zeros(n, dtype=torch.float64)
    offset = 0
    for node in range(net.nodes):
        log_b += edge[:, :, offset : offset + 2 + node].sum(-1).log().sum(-1)
        offset += 2 + node
    assert float(log_b.mean()) == pytest.approx(mu, rel=0.01)
    assert float(log_b.var()) == pytest.approx(s2, rel=0.1)


def test_without_confidence_the_bound_is_eq_10_exactly():
    net = _net(confidence=False)
    log_lam = net.log_lipschitz()
    mu, s2 = net.bound(log_lam)
    kinds = torch.tensor(net.kinds)
    edge = net.mu_beta.detach()[kinds].exp() * (net.mu_alpha.detach()[kinds].exp() * log_lam.exp()).sum(-1)
    expected, offset = 0.0, 0
    for node in range(net.nodes):
        expected += float(edge[:, offset : offset + 2 + node].sum(-1).log().sum())
        offset += 2 + node
    assert float(mu) == pytest.approx(expected, rel=1e-5) and float(s2) == 0.0
    assert not net.sigma_alpha.requires_grad and len(net.arch_parameters()) == 2


# ---------------------------------------------------------------------------------------- power iteration


def _exact_norm(linear, shape) -> float:
    """Largest singular value of the dense matrix of a linear map (its Jacobian)."""
    jac = torch.autograd.functional.jacobian(linear, torch.zeros(shape, dtype=torch.float64))
    return float(torch.linalg.matrix_norm(jac.reshape(-1, math.prod(shape)), ord=2))


@pytest.mark.parametrize(
    "make",
    [
        lambda: DilConv(3, 3, 3, 1, 2, 2, affine=False),
        lambda: DilConv(3, 3, 5, 2, 4, 2, affine=True),
        lambda: SepConv(2, 2, 3, 2, 1, affine=False),
        lambda: FactorizedReduce(4, 4, affine=False),
    ],
)
def test_power_iteration_converges_to_the_exact_operator_norm(make):
    torch.manual_seed(0)
    op = make().double().eval()
    for m in op.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
    hw = (6, 6)
    for stage in stage_modules(op):
        width = stage.conv1.in_channels if isinstance(stage, FactorizedReduce) else stage[1].in_channels
        linear = grouped_linear([stage])
        shape = (1, width, *hw)
        exact = _exact_norm(linear, shape)
        u = unit_blocks(torch.randn(shape, dtype=torch.float64), 1)
        for _ in range(300):
            norm, u = power_step(linear, u)
        assert float(norm) == pytest.approx(exact, rel=1e-4)
        assert float(norm) <= exact * (1 + 1e-9)  # ||A u|| never exceeds the norm
        hw = tuple(int(s) for s in linear(u).shape[-2:]) if not isinstance(stage, FactorizedReduce) else hw


def test_grouped_power_iteration_equals_separate_ones():
    """Batching same-shaped stages into one grouped convolution changes nothing per stage."""
    torch.manual_seed(0)
    ops = [DilConv(2, 2, 3, 1, 2, 2, affine=False).double().eval() for _ in range(3)]
    u0 = unit_blocks(torch.randn(1, 6, 5, 5, dtype=torch.float64), 3)
    norms, _ = power_step(grouped_linear(ops), u0, blocks=3)
    for i, op in enumerate(ops):
        alone, _ = power_step(
            grouped_linear([op]), u0[:, 2 * i : 2 * i + 2] / u0[:, 2 * i : 2 * i + 2].norm()
        )
        assert float(norms[i]) == pytest.approx(float(alone), rel=1e-10)


def test_conv_bounds_are_the_operator_not_the_reshaped_kernel():
    """A 3x3 depthwise conv of all-ones: the operator norm on a 6x6 input is below 9 (the border), the
    reshaped 1x9 kernel's norm is 3: power iteration must find the operator's (about 8.3)."""
    op = DilConv(1, 1, 3, 1, 1, 1, affine=False).double().eval()
    nn.init.ones_(op[1].weight)
    nn.init.ones_(op[2].weight)
    linear = grouped_linear([op])
    u = unit_blocks(torch.rand(1, 1, 6, 6, dtype=torch.float64), 1)
    for _ in range(200):
        norm, u = power_step(linear, u)
    assert 7.5 < float(norm) < 9.0


# ---------------------------------------------------------------------------------------- constraint, derive


def test_admm_terms_and_dual_update():
    net = _net(rho=0.01, eta=0.9, node_target=0.5)
    penalty, numbers = net.arch_penalty()
    c = numbers["search_constraint"]
    expected = numbers["search_bound_mu"] + NormalDist().inv_cdf(0.9) * numbers["search_bound_sigma2"]
    assert c == pytest.approx(expected - 4 * 4 * math.log(0.5), rel=1e-5)
    assert float(penalty) == pytest.approx(0.01 / 2 * c * c, rel=1e-5)  # theta starts at 0
    net.after_arch_step()
    assert float(net.theta) == pytest.approx(0.01 * c, rel=1e-5)
    # lambda_o is a constant of the architecture step: no gradient reaches the weights through it
    net.zero_grad()
    net.arch_penalty()[0].backward()
    assert all(p.grad is None for p in net.weight_parameters())
    assert net.mu_alpha.grad is not None and net.sigma_beta.grad is not None


def test_derived_genotype_from_hand_set_parameters():
    net = _net()
    with torch.no_grad():
        net.mu_alpha.fill_(-5.0)
        net.mu_beta.fill_(0.0)
        net.mu_alpha[:, :, 0] = 10.0  # "none" strongest everywhere: never chosen
        ops = {"sep_conv_3x3": 4, "skip_connect": 3, "avg_pool_3x3": 2, "dil_conv_5x5": 7}
        # normal cell: node 0 <- (0: sep3, 1: skip); node 1 <- inputs 0 and 2 (dil5), input 1 weak
        net.mu_alpha[0, 0, ops["sep_conv_3x3"]] = 1.0
        net.mu_alpha[0, 1, ops["skip_connect"]] = 1.0
        net.mu_alpha[0, 2, ops["avg_pool_3x3"]] = 0.5
        net.mu_alpha[0, 3, ops["sep_conv_3x3"]] = 3.0
        net.mu_beta[0, 3] = -4.0  # strong op, but a weak edge: alpha * beta = e^-1
        net.mu_alpha[0, 4, ops["dil_conv_5x5"]] = 0.2
    genotype = net.derive()
    assert genotype.normal[:4] == (
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("avg_pool_3x3", 0),
        ("dil_conv_5x5", 2),
    )
    record = record_of(net)
    assert record is not None and record["model"] == {"arch": "darts", "genotype": format_genotype(genotype)}
    built = create_model("darts", genotype=record["model"]["genotype"], channels=8, layers=5, in_channels=1)
    assert count_params(built) > 0


def test_genotype_text_round_trips_and_bad_text_is_one_error():
    for g in GENOTYPES.values():
        assert parse_genotype(format_genotype(g)) == g
    space = DartsSpace()
    sampled = space.sample(torch.Generator().manual_seed(2))
    assert space.from_text(space.to_text(sampled)) == sampled
    assert (
        create_model("darts", genotype="DARTS_V2").__class__
        is create_model("darts", genotype=format_genotype(GENOTYPES["DARTS_V2"])).__class__
    )
    with pytest.raises(ConfigError, match="reads a state that does not exist"):
        parse_genotype("sep_conv_3x3:0 sep_conv_3x3:2 | skip_connect:0 skip_connect:1")
    with pytest.raises(ConfigError, match="unknown operation"):
        parse_genotype("conv9:0 sep_conv_3x3:1 | skip_connect:0 skip_connect:1")


def test_named_and_text_genotypes_build_the_same_network():
    torch.manual_seed(0)
    a = create_model("darts", genotype="PC_DARTS", channels=8, layers=5, in_channels=1)
    torch.manual_seed(0)
    b = create_model(
        "darts", genotype=format_genotype(GENOTYPES["PC_DARTS"]), channels=8, layers=5, in_channels=1
    )
    x = torch.rand(2, 1, 8, 8)
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


# ---------------------------------------------------------------------------------------- PC-DARTS and RACL

RACL_ONLY = {"sigma_alpha", "sigma_beta", "theta", "noise_alpha", "noise_beta"}


def _supernet(arch: str, seed: int = 0) -> PCDartsSupernet:
    torch.manual_seed(seed)
    net = create_model(arch, num_classes=10, in_channels=1, channels=8, layers=4)
    assert isinstance(net, PCDartsSupernet)
    return net


def test_both_supernets_start_from_the_same_draws():
    """Same seed, same weights, and the same 1e-3 N(0, 1) jitter on the logits: PC-DARTS' logits are the
    jitter itself, RACL's mu adds it to ln 1/8 per op and ln 1/n over a node's n inputs."""
    pcdarts, racl = _supernet("pcdarts_supernet"), _supernet("racl_supernet")
    own, racl_state = pcdarts.state_dict(), racl.state_dict()
    same = [k for k, v in own.items() if isinstance(v, torch.Tensor) and "mu_" not in k]
    assert same and all(torch.equal(own[k], racl_state[k]) for k in same)
    inputs = torch.tensor([2 + n for n in range(4) for _ in range(2 + n)], dtype=torch.float)
    torch.testing.assert_close(pcdarts.mu_alpha, racl.mu_alpha + math.log(8), rtol=0, atol=1e-6)
    torch.testing.assert_close(pcdarts.mu_beta, racl.mu_beta + inputs.log(), rtol=0, atol=1e-6)
    assert 0 < float(pcdarts.mu_alpha.detach().abs().max()) < 0.01


@pytest.mark.parametrize("arch", ["pcdarts_supernet", "racl_supernet"])
def test_the_training_loops_interface(arch):
    """What the loop and the architecture step call, on each supernet: its own tensors, the parameter
    split, the penalty and the dual update, the epoch end, evaluation, derive and a state round trip."""
    net = _supernet(arch)
    racl = isinstance(net, RACLSupernet)
    names = set(net.state_dict())
    assert names >= RACL_ONLY if racl else not names & RACL_ONLY
    arch_params, weights = net.arch_parameters(), net.weight_parameters()
    assert arch_params[0] is net.mu_alpha and arch_params[1] is net.mu_beta
    assert len(arch_params) == (4 if racl else 2)  # + sigma_alpha, sigma_beta
    arch_ids = {id(p) for p in arch_params}
    assert not arch_ids & {id(p) for p in weights}
    assert arch_ids | {id(p) for p in weights} == {id(p) for p in net.parameters()}
    net.train()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    net.resample()
    nn.functional.cross_entropy(net(x), torch.arange(4)).backward()
    assert all(p.grad is not None for p in arch_params)
    theta = float(net.theta) if isinstance(net, RACLSupernet) else 0.0
    penalty, numbers = net.arch_penalty()
    if racl:
        assert isinstance(penalty, torch.Tensor) and set(numbers) >= {"search_constraint", "search_theta"}
    else:
        assert penalty == 0.0 and numbers == {}
    net.after_arch_step()
    net.end_epoch()
    if isinstance(net, RACLSupernet):
        assert float(net.theta) == pytest.approx(theta + net.rho * numbers["search_constraint"])
    assert net.alters_for_evaluation() is racl
    record = record_of(net)
    assert record is not None and record["space"] == "darts"
    assert parse_genotype(record["model"]["genotype"]) == net.derive()
    restored = _supernet(arch, seed=1)
    restored.load_state_dict(net.state_dict())  # strict: the same names, the extra state included
    if isinstance(net, RACLSupernet):
        assert isinstance(restored, RACLSupernet) and restored.power.keys() == net.power.keys()
    else:
        assert net.get_extra_state() == {}
    for model in (net, restored):
        model.eval()
        net.for_evaluation(model)
    assert torch.equal(net(x), restored(x)) and restored.derive() == net.derive()


# ---------------------------------------------------------------------------------------- in the trainer


def _search_cfg(**model):
    return {
        "data": {"dataset": "digits", "val_fraction": 0.15, "train_limit": 256},
        "model": {"arch": "racl_supernet", "channels": 8, "layers": 4, **model},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "constant", "select_by": "last"},
        "method": {"name": "standard"},
        "arch_step": {"fraction": 0.5, "lr": 0.05},
        "eval": {"attacks": ("fgsm",), "sanity": False, "metrics": False, "limit": 50},
    }


def test_a_search_model_needs_its_architecture_split():
    cfg = _search_cfg()
    cfg["arch_step"] = {}
    with pytest.raises(ConfigError, match=r"arch_step\.fraction"):
        Trainer(TrialConfig.from_dict(cfg))
    plain = {**_search_cfg(), "model": {"arch": "small_cnn"}}
    with pytest.raises(ConfigError, match="no supernet"):
        Trainer(TrialConfig.from_dict(plain))


def test_architecture_steps_train_mu_and_sigma_only_and_the_weights_their_half():
    tr = Trainer(TrialConfig.from_dict(_search_cfg()))
    net = tr.model
    assert isinstance(net, RACLSupernet) and tr.arch_step is not None
    assert len(tr.data.train) == 128 and len(tr.arch_step.split) == 128  # 256 -> two halves
    weights_in_opt = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert not weights_in_opt & {id(p) for p in net.arch_parameters()}
    before = {k: v.clone() for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    m = tr.run_epoch()
    assert m["search_arch_steps"] == 4 and "search_constraint" in m
    assert not torch.equal(before["mu_alpha"], net.mu_alpha) and not torch.equal(
        before["sigma_beta"], net.sigma_beta
    )
    assert float(net.theta) != 0.0


def test_pcdarts_searches_without_a_penalty():
    cfg = _search_cfg(arch="pcdarts_supernet")
    cfg["data"]["train_limit"] = 128
    tr = Trainer(TrialConfig.from_dict(cfg))
    net = tr.model
    assert isinstance(net, PCDartsSupernet) and not isinstance(net, RACLSupernet)
    weights_in_opt = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert weights_in_opt == {id(p) for p in net.weight_parameters()}
    before = net.mu_alpha.detach().clone()
    m = tr.run_epoch()
    assert m["search_arch_steps"] == 2 and "search_constraint" not in m  # 64 examples, batches of 32
    assert not torch.equal(before, net.mu_alpha)


@pytest.mark.slow  # default run under 10 minutes (CI runs it with the slow tests)
def test_a_larger_rho_pushes_the_bound_down_faster():
    """Table 5's direction on the embedded default: with everything else equal, rho = 0.1 ends with a
    lower expected ln bound than rho = 1e-4, and the strong one falls under its target."""
    ends = {}
    for rho in (1e-4, 0.1):
        cfg = _search_cfg(rho=rho, node_target=0.8)
        cfg["train"]["epochs"] = 3
        cfg["arch_step"]["lr"] = 0.1
        tr = Trainer(TrialConfig.from_dict(cfg))
        history = [tr.run_epoch()["search_constraint"] for _ in range(3)]
        ends[rho] = history
    assert ends[0.1][-1] < ends[1e-4][-1]
    assert ends[0.1][-1] < ends[0.1][0]
