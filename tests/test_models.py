import pytest
import torch

from tune_robust.errors import ConfigError
from tune_robust.models import MODELS, count_params, create_meta_model, create_model, profile_model


@pytest.mark.parametrize(
    "name,millions",
    [("wrn_34_10", 46.16), ("wrn_34_12", 66.46), ("wrn_34_r", 68.12), ("wrn_28_10", 36.48)],
)
def test_wrn_parameter_counts_match_huang_et_al(name, millions):
    params, _ = profile_model(name, (3, 32, 32))
    assert round(params / 1e6, 2) == millions


@pytest.mark.parametrize(
    "gamma,millions", [(0.25, 1.07), (0.5, 4.27), (1.0, 17.05), (1.5, 38.33), (2.0, 68.12)]
)
def test_w10_10_4_scaling_rows_of_table_1(gamma, millions):
    params, _ = profile_model("wrn", (3, 32, 32), widths=(10 * gamma, 10 * gamma, 4 * gamma))
    assert round(params / 1e6, 2) == millions


def test_d9_7_1_parameter_count_quoted_in_the_paper():
    params, _ = profile_model("wrn", (3, 32, 32), depths=(9, 7, 1))
    assert round(params / 1e6, 2) == 22.19  # "...the 22.19M of the d9-7-1 configuration" (Sec. 4.2)


def test_macs_scale_with_resolution_and_match_a_hand_count():
    _, macs32 = profile_model("wrn", (3, 32, 32), depths=(1, 1, 1), widths=(1, 1, 1))
    _, macs16 = profile_model("wrn", (3, 16, 16), depths=(1, 1, 1), widths=(1, 1, 1))
    fc = 64 * 10
    assert macs32 - fc == 4 * (macs16 - fc)  # convolutions scale with pixels; the fc layer does not
    # Hand count for d1-1-1 w1-1-1 at 32x32: stem 3->16, stage1 16->16 (two 3x3), stage2 16->32 at 16x16
    # (3x3 s2 + 3x3 + 1x1 shortcut), stage3 32->64 at 8x8 likewise, fc 64->10.
    hand = (
        32 * 32 * (16 * 3 * 9)
        + 32 * 32 * (16 * 16 * 9) * 2
        + 16 * 16 * (32 * 16 * 9 + 32 * 32 * 9 + 32 * 16)
        + 8 * 8 * (64 * 32 * 9 + 64 * 64 * 9 + 64 * 32)
        + 64 * 10
    )
    assert macs32 == hand


# Over a minute on 2 CPU cores (33M parameters, 33 cells); its size is pinned on the meta device in
# tests/test_robnet.py, and the slow run builds it here.
SLOW_TO_BUILD = {"robnet_large_v2"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_BUILD else n for n in MODELS.names()]
)
def test_every_registered_model_builds_and_counts(name):
    from tune_robust.config import builder_params
    from tune_robust.models import MODELS

    # Families with a fixed classifier input size (the MNIST CNNs) take their native 28x28 images.
    shape = (1, 28, 28) if "image_size" in builder_params(MODELS.get(name)) else (3, 32, 32)
    params, macs = profile_model(name, shape)
    model = create_model(name, 10, shape[0])
    # The profiler counts what the module holds, and at least one multiply per parameter of the
    # convolutions / linear layers it ran (each weight is used at least once per forward pass)
    assert params == sum(p.numel() for p in model.parameters())
    weights = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    )
    assert macs >= weights
    assert model(torch.rand(2, *shape)).shape == (2, 10)
    # The meta build the driver validates with (random fills skipped) has the real model's structure.
    # (a supernet's state also holds plain records, e.g. its probe architecture: equal as they are)
    meta = create_meta_model(name, 10, shape[0])

    def structure(v: object) -> object:
        if isinstance(v, torch.Tensor):
            return (tuple(v.shape), v.dtype)
        if isinstance(v, dict):
            return {k: structure(x) for k, x in v.items()}
        return [structure(x) for x in v] if isinstance(v, (list, tuple)) else v

    assert structure(meta.state_dict()) == structure(model.state_dict())
    assert all(t.is_meta for t in [*meta.parameters(), *meta.buffers()])


def test_tiny_wrn_forward_and_depth_zero_stage():
    model = create_model("wrn", num_classes=7, in_channels=1, depths=(1, 2, 0), widths=(0.5, 0.5, 0.5))
    out = model(torch.rand(4, 1, 8, 8))
    assert out.shape == (4, 7)
    assert (
        count_params(model)
        == profile_model("wrn", (1, 8, 8), num_classes=7, depths=(1, 2, 0), widths=(0.5, 0.5, 0.5))[0]
    )


def test_bad_model_options_are_clear():
    with pytest.raises(ConfigError, match="valid options: depths, width_scale, widths"):
        create_model("wrn", depth=3)
    with pytest.raises(ConfigError, match="depths must be >= 0"):
        create_model("wrn", depths=(1, -1, 1))
    with pytest.raises(ConfigError, match="known models"):
        create_model("resnet9000")
