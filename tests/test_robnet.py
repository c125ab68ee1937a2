"""RobNet: codes, architecture statistics, the published models' sizes, the supernet and weight
inheritance (the one-shot lifecycle's core)."""

from __future__ import annotations

import pytest
import torch

from tune_robust.errors import ConfigError
from tune_robust.models import count_params, create_model
from tune_robust.models.oneshot import arch_record, inherit, read_record
from tune_robust.models.robnet import (
    FREE,
    LARGE,
    RobNetSpace,
    arch_stats,
    format_code,
    parse_code,
)


def test_codes_round_trip_in_every_spelling():
    cells = parse_code(LARGE)
    assert len(cells) == 1 and len(cells[0]) == 14 and cells[0][5] == "01"
    assert parse_code(format_code(cells)) == cells
    assert parse_code("".join(cells[0])) == cells  # 28 bits
    assert parse_code(",".join(cells[0])) == cells
    free = parse_code(FREE)
    assert len(free) == 20 and parse_code(format_code(free)) == free
    space = RobNetSpace(layers=20, share=False)
    sampled = space.sample(torch.Generator().manual_seed(3))
    assert space.from_text(space.to_text(sampled)) == sampled


@pytest.mark.parametrize("bad", ["11 11", "11 " * 13 + "12", "11 " * 15])
def test_a_bad_code_is_one_clear_error(bad):
    with pytest.raises(ConfigError, match="two-bit edge codes"):
        parse_code(bad)


def test_published_code_statistics():
    large = arch_stats(parse_code(LARGE))
    assert large["arch_density"] == pytest.approx(22 / 28)
    assert large["arch_sep_convs"] == 13
    # direct edges c_{k-1}->n0, n0->n1, n1->n2, n2->n3 carry 11, 11, 10, 11: three convs of four
    assert large["arch_direct_conv_portion"] == pytest.approx(0.75)
    hand = parse_code("01 00 00 00 01 00 00 00 00 00 00 00 00 00")  # convs on c_{k-2}->n0 and n0->n1
    s = arch_stats(hand)
    assert s["arch_sep_convs"] == 2 and s["arch_direct_conv_portion"] == pytest.approx(0.25)
    assert s["arch_density"] == pytest.approx(2 / 28)


@pytest.mark.parametrize(
    ("name", "released", "affine_everywhere"),
    # The authors' network code builds these (the supplement's Table 3: 6.89M, 33.42M, 5.49M sits between)
    [("robnet_large", 6.84, 6.94), ("robnet_large_v2", 33.33, 33.61), ("robnet_free", 5.44, 5.51)],
)
def test_published_models_have_the_released_sizes(name, released, affine_everywhere):
    with torch.device("meta"):
        plain = count_params(create_model(name))
        affine = count_params(create_model(name, affine=True))
    assert round(plain / 1e6, 2) == released
    assert round(affine / 1e6, 2) == affine_everywhere


def small_supernet(share: bool = True, seed: int = 0):
    return create_model(
        "robnet_supernet", num_classes=10, in_channels=1, channels=4, layers=5, share=share, seed=seed
    )


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("train_mode", [True, False])
def test_a_sampled_sub_network_computes_what_its_standalone_model_computes(share, train_mode):
    torch.manual_seed(0)
    supernet = small_supernet(share)
    # Make the BatchNorm running statistics non-trivial, so eval mode compares them too.
    x = torch.rand(16, 1, 8, 8)
    supernet.train()
    for _ in range(3):
        supernet.resample()
        supernet(x)
    arch = supernet.resample()
    if not share:  # include an all-zero node (both of node 0's edges off) in one cell
        arch = (("00", "00", *arch[0][2:]), *arch[1:])
        supernet.use(arch)
    standalone = create_model(
        "robnet", num_classes=10, in_channels=1, channels=4, layers=5, code=format_code(arch)
    )
    copied = inherit(supernet, standalone)
    assert copied == len(standalone.state_dict())
    assert count_params(standalone) < count_params(supernet)
    supernet.train(train_mode)
    standalone.train(train_mode)
    with torch.no_grad():
        assert torch.allclose(supernet(x), standalone(x), atol=1e-6)


def test_inherit_refuses_a_model_that_is_not_a_sub_network():
    supernet = small_supernet()
    wider = create_model("robnet", num_classes=10, in_channels=1, channels=6, layers=5)
    with pytest.raises(ConfigError, match="shape"):
        inherit(supernet, wider)
    deeper = create_model("robnet", num_classes=10, in_channels=1, channels=4, layers=8)
    with pytest.raises(ConfigError, match="not a sub-network"):
        inherit(supernet, deeper)


def test_sampling_is_seeded_and_resumes_from_the_state_dict():
    a, b = small_supernet(seed=1), small_supernet(seed=1)
    first = [a.resample() for _ in range(3)]
    assert first == [b.resample() for _ in range(3)]
    assert len(set(first)) == 3  # a new sub-network per draw
    assert small_supernet(seed=2).resample() != first[0]
    # A supernet restored from a mid-search checkpoint draws what the original draws next.
    restored = small_supernet(seed=1)
    restored.load_state_dict(a.state_dict())
    assert restored.resample() == a.resample()


def test_density_rule_spreads_densities_more_than_bernoulli():
    space = RobNetSpace(layers=20, share=True)
    g = torch.Generator().manual_seed(0)

    def spread(rule: str) -> float:
        d = torch.tensor([arch_stats(space.sample(g, {"sample": rule}))["arch_density"] for _ in range(300)])
        return float(d.std())

    assert spread("density") > 2 * spread("bernoulli")
    with pytest.raises(ConfigError, match="sampling rule"):
        space.sample(g, {"sample": "greedy"})


def test_the_architecture_record_is_versioned_and_builds_its_model():
    space = RobNetSpace(layers=5, share=True)
    arch = space.sample(torch.Generator().manual_seed(0))
    record = read_record(arch_record(space, arch))
    model_section = dict(record["model"])
    model = create_model(
        model_section.pop("arch"), num_classes=10, in_channels=1, channels=4, layers=5, **model_section
    )
    assert model.arch == arch * 5
    assert record["stats"] == arch_stats(arch)
    with pytest.raises(ConfigError, match="version"):
        read_record({**record, "version": 99})


def test_a_finetune_trial_starts_from_the_supernets_weights(tmp_path):
    """The finetune's model is built from the supernet checkpoint (inherited, not fresh weights)."""
    from tune_robust.config import TrialConfig
    from tune_robust.search_spaces.robnet import SUPERNET_SMOKE, _finetune, finetune_codes
    from tune_robust.training.loop import Trainer

    supernet = Trainer(TrialConfig.from_dict(SUPERNET_SMOKE))
    supernet.save(tmp_path)  # untrained is enough: its weights differ from a fresh init's
    code = finetune_codes(1, {"medium": 10})[0]
    cfg = _finetune(SUPERNET_SMOKE, epochs=1, lr=0.02)
    cfg = {**cfg, "model": {**cfg["model"], "code": code}, "upstream": {"init": str(tmp_path / "model.pt")}}
    finetune = Trainer(TrialConfig.from_dict(cfg))
    source = supernet.model.state_dict()
    target = finetune.model.state_dict()
    assert all(torch.equal(target[k], source[k]) for k in target)
    fresh = Trainer(TrialConfig.from_dict({**cfg, "upstream": {}, "train": {**cfg["train"], "seed": 1}}))
    assert not all(torch.equal(fresh.model.state_dict()[k], source[k]) for k in target if "weight" in k)


def test_finetune_codes_pass_the_filters_and_fill_each_budget():
    from tune_robust.search_spaces.robnet import BUDGETS, MIN_DENSITY, MIN_DIRECT, finetune_codes

    codes = finetune_codes(50, BUDGETS)
    assert len(codes) == len(set(codes)) == 150
    stats = [arch_stats(parse_code(c)) for c in codes]
    assert all(s["arch_density"] >= MIN_DENSITY and s["arch_direct_conv_portion"] > MIN_DIRECT for s in stats)
    assert [s["arch_sep_convs"] for s in stats] == [7] * 50 + [10] * 50 + [13] * 50
    assert finetune_codes(50, BUDGETS) == codes  # the paper sweep's grid is the same every time
