"""The DARTS-family operations (tune_robust.models.ops): what RobNet's variants change, pinned to the
RobNet authors' release, and the checkpoint layout of every DARTS-family model.

What the release does (gmh14/RobNets, models/basic_operations.py; its ``Network`` in basic_model.py):

- ``ReLUConvBN(C_in, C_out, k, stride, padding)``: ``self.op`` = Sequential(ReLU, Conv2d without bias,
  BatchNorm2d(C_out, affine=False)); affine=False is hard-wired. RobNet uses it 1x1 for the cells'
  preprocessing.
- ``SepConv(C_in, C_out, k, stride, padding)``: ``self.op`` = one flat Sequential of eight modules,
  ReLU, depthwise k x k (stride, groups=C_in), pointwise 1x1, BN, then ReLU, depthwise (stride 1),
  pointwise to C_out, BN: the depthwise-pointwise pair is applied twice, every BN affine=False. An
  edge code ``01`` is a 3x3 SepConv with padding 1.
- ``FactorizedReduce(C_in, C_out)``: asserts an even C_out; ReLU, ``conv_1`` and ``conv_2`` (1x1,
  stride 2, C_out // 2 each) on x and on x[:, :, 1:, 1:] (cropped, no padding), concatenated, BN
  (affine=False).
- ``Zero(stride)``: x * 0 (strided); ``Identity``: x.
- ``ResSepConv`` (code ``11``): ``conv`` (the SepConv) + ``res`` (Identity, or FactorizedReduce on a
  stride-2 edge), summed.

Ours: ``ReLUConvBN(c_in, c_out, 1, 1, 0, affine=False)`` is the release's module sequence (no variant);
:class:`FlatSepConv` is DARTS' :class:`SepConv` (the same computation, its blocks nested as two DilConv
modules) in the release's flat layout; :class:`CroppedFactorizedReduce` is the release's
FactorizedReduce, where DARTS' :class:`FactorizedReduce` pads the offset grid (``conv1``/``conv2``;
odd sizes and channel counts work). Each reference below is written from the release's definition; ours
must give identical outputs with the release's weights (renamed as the ``robnet_release`` layout does).
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models import count_params, create_meta_model
from tune_robust.models.ops import (
    CroppedFactorizedReduce,
    DilConv,
    FactorizedReduce,
    FlatSepConv,
    ReLUConvBN,
    SepConv,
    Zero,
)
from tune_robust.models.robnet import Edge, RobNetRelease

# ------------------------------------------------------------------- the release's operations


class _ReleaseReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.op = nn.Sequential(nn.ReLU(inplace=False), conv, nn.BatchNorm2d(c_out, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class _ReleaseSepConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_in, affine=False),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_out, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class _ReleaseFactorizedReduce(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        assert c_out % 2 == 0
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class _ReleaseZero(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0) if self.stride == 1 else x[:, :, :: self.stride, :: self.stride].mul(0.0)


class _ReleaseResSepConv(nn.Module):
    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        self.conv = _ReleaseSepConv(c, c, 3, stride, 1)
        self.res: nn.Module = nn.Identity() if stride == 1 else _ReleaseFactorizedReduce(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.res(x)  # the release sums the list [conv, res]


# ------------------------------------------------------------------------------------ helpers


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and running statistics, so that outputs differ wherever two modules differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            fresh = (
                torch.rand(t.shape, generator=g) + 0.5
                if "running_var" in name
                else torch.randn(t.shape, generator=g)
            )
            t.copy_(fresh)
    return module


def _load_release(release: nn.Module, ours: nn.Module, at: str, ours_at: str) -> None:
    """Load the release module's tensors into ours, renamed as the ``robnet_release`` layout renames a
    checkpoint in which the release module sits at ``at`` (ours then sits at ``ours_at``). Strict: every
    tensor of ours comes from the release's."""
    state = {}
    for key, t in release.state_dict().items():
        renamed = RobNetRelease.rename(at + key)
        assert renamed is not None and renamed.startswith(ours_at), renamed
        state[renamed.removeprefix(ours_at)] = t
    ours.load_state_dict(state)


def _same_outputs(release: nn.Module, ours: nn.Module, x: torch.Tensor) -> None:
    for train in (True, False):  # batch statistics, then the (copied) running statistics
        release.train(train)
        ours.train(train)
        expected = release(x)
        assert expected.abs().mean() > 0.05  # a meaningful comparison, not two near-zero outputs
        torch.testing.assert_close(ours(x), expected, rtol=1e-6, atol=1e-6)


def _layer_types(module: nn.Module) -> list[str]:
    """The leaf modules in the order they run (Sequentials run their children in order)."""
    return [type(m).__name__ for m in module.modules() if not list(m.children())]


class _Coded(nn.Module):
    """An edge run with one code (as its cell runs it)."""

    def __init__(self, edge: Edge, code: str) -> None:
        super().__init__()
        self.edge, self.code = edge, code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.edge(x, self.code)
        assert out is not None
        return out


def _x(c: int, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(4, c, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------- the operations themselves


def test_relu_conv_bn_is_the_releases_module_sequence():
    """No RobNet variant: the release's ReLUConvBN is DARTS' with affine=False."""
    release = _randomise(_ReleaseReLUConvBN(6, 8, 1, 1, 0))
    ours = ReLUConvBN(6, 8, 1, 1, 0, affine=False)
    assert _layer_types(ours) == _layer_types(release) == ["ReLU", "Conv2d", "BatchNorm2d"]
    assert count_params(ours) == count_params(release) == 6 * 8
    assert count_params(ReLUConvBN(6, 8, 1, 1, 0)) == 6 * 8 + 2 * 8  # DARTS' default: affine BN
    _load_release(release, ours, "cells.0.preprocess0.", "cells.0.preprocess0.")
    _same_outputs(release, ours, _x(6))


@pytest.mark.parametrize("c", [4, 6])
def test_flat_sep_conv_is_darts_sep_conv_in_the_release_layout(c):
    """Both apply ReLU - depthwise - pointwise - BN twice (the RobNet release does too, not once);
    only the parameter names differ: nested DilConv blocks in DARTS', one flat sequence in RobNet's."""
    darts, flat = SepConv(c, c, 3, 1, 1, affine=False), FlatSepConv(c, c, 3, 1, 1, affine=False)
    block = ["ReLU", "Conv2d", "Conv2d", "BatchNorm2d"]
    assert (
        _layer_types(darts) == _layer_types(flat) == _layer_types(_ReleaseSepConv(c, c, 3, 1, 1)) == block * 2
    )
    assert all(isinstance(b, DilConv) for b in darts)
    assert count_params(darts) == count_params(flat) == 2 * (9 * c + c * c)
    assert (
        count_params(FlatSepConv(c, c, 3, 1, 1))
        == count_params(SepConv(c, c, 3, 1, 1))
        == 2 * (9 * c + c * c + 2 * c)
    )
    weights = {"weight"}
    stats = {"running_mean", "running_var", "num_batches_tracked"}
    assert set(flat.state_dict()) == {f"{i}.{w}" for i in (1, 2, 5, 6) for w in weights} | {
        f"{i}.{s}" for i in (3, 7) for s in stats
    }
    assert set(darts.state_dict()) == {f"{b}.{i}.{w}" for b in (0, 1) for i in (1, 2) for w in weights} | {
        f"{b}.3.{s}" for b in (0, 1) for s in stats
    }


@pytest.mark.parametrize("stride", [1, 2])
def test_flat_sep_conv_gives_the_releases_and_darts_outputs(stride):
    release = _randomise(_ReleaseSepConv(6, 6, 3, stride, 1))
    flat = FlatSepConv(6, 6, 3, stride, 1, affine=False)
    _load_release(release, flat, "cells.0._ops.3.op.", "cells.0.edges.3.conv.")  # an edge coded 01
    _same_outputs(release, flat, _x(6))
    darts = SepConv(6, 6, 3, stride, 1, affine=False)
    darts.load_state_dict(dict(zip(darts.state_dict(), flat.state_dict().values(), strict=True)))
    _same_outputs(flat, darts, _x(6, seed=2))


def test_cropped_factorized_reduce_is_the_releases():
    release = _randomise(_ReleaseFactorizedReduce(6, 8))
    ours = CroppedFactorizedReduce(6, 8, affine=False)
    assert set(ours.state_dict()) == set(release.state_dict())  # conv_1, conv_2, bn: the release's names
    _load_release(release, ours, "cells.0._ops.0.op.", "cells.0.edges.0.skip.")  # an edge coded 10
    _same_outputs(release, ours, _x(6))


def test_factorized_reduce_variants_agree_on_even_sizes_only():
    """DARTS' pads the offset grid (odd sizes and odd channel counts work); RobNet's, as the release,
    crops it: the halves only line up on even sizes, and the channels must split evenly."""
    cropped = _randomise(CroppedFactorizedReduce(6, 8, affine=False))
    padded = FactorizedReduce(6, 8, affine=False)
    assert count_params(padded) == count_params(cropped) == 2 * 6 * 4
    renames = {"conv_1.weight": "conv1.weight", "conv_2.weight": "conv2.weight"}
    padded.load_state_dict({renames.get(k, k): v for k, v in cropped.state_dict().items()})
    _same_outputs(cropped, padded, _x(6))
    odd = _x(6, size=7)
    assert padded(odd).shape == (4, 8, 4, 4)
    for module in (cropped, _ReleaseFactorizedReduce(6, 8)):
        with pytest.raises(RuntimeError):  # conv_1 gives 4 x 4, conv_2 on the 6 x 6 crop 3 x 3
            module(odd)
    assert [m.out_channels for m in (FactorizedReduce(6, 5).conv1, FactorizedReduce(6, 5).conv2)] == [2, 3]
    with pytest.raises(ConfigError, match="even channel count"):
        CroppedFactorizedReduce(6, 5)
    with pytest.raises(AssertionError):
        _ReleaseFactorizedReduce(6, 5)


@pytest.mark.parametrize("stride", [1, 2])
def test_zero_is_the_releases(stride):
    x = _x(3)
    assert torch.equal(Zero(stride)(x), _ReleaseZero(stride)(x))
    assert Zero(stride)(x).shape == (4, 3, 8 // stride, 8 // stride)


@pytest.mark.parametrize("stride", [1, 2])
def test_an_edge_coded_11_is_the_releases_res_sep_conv(stride):
    """Our edge's ``conv`` (FlatSepConv) plus ``skip`` (identity, CroppedFactorizedReduce at stride 2)."""
    release = _randomise(_ReleaseResSepConv(6, stride))
    edge = Edge(6, stride, "11", affine=False)
    assert isinstance(edge.conv, FlatSepConv)
    assert isinstance(edge.skip, nn.Identity if stride == 1 else CroppedFactorizedReduce)
    _load_release(release, edge, "cells.0._ops.3.op.", "cells.0.edges.3.")
    _same_outputs(release, _Coded(edge, "11"), _x(6))


# ------------------------------------------------------------ the models' checkpoint layouts


def _layout_digest(name: str, **kwargs: object) -> tuple[str, int]:
    state = create_meta_model(name, **kwargs).state_dict()
    rows = sorted(f"{k}:{tuple(v.shape) if isinstance(v, torch.Tensor) else '-'}" for k, v in state.items())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest(), len(rows)


# sha256 of the sorted "key:shape" lines of each model's state_dict, and their number. Published
# checkpoints (the robnet_release layout's renames) and saved trials depend on these names and shapes:
# a change here breaks loading them.
_RACL_SUPERNET = ("497f3fc4fb4f0453bb023a42ba896bd3eab193852c4d121c3e82f80598e5a47a", 2146)
LAYOUTS: list[tuple[str, dict[str, object], tuple[str, int]]] = [
    ("robnet_large", {}, ("d38c07b0a63837673954b273bad540827fc7634970d09b62b51f9254188a72a2", 2830)),
    ("robnet_large_v2", {}, ("18e1b36d12b59bb9aaf0588b098cd5c75fdbb4d9c4fe0b9ecf6412e348ac1eb9", 4624)),
    ("robnet_free", {}, ("9fff6d07f90e61f9c5fdfc0b116762645b7a513da54793c1f78d86527b4f5be1", 2015)),
    (
        "robnet",
        {"channels": 8, "layers": 3},
        ("74dedc92001f773885246bc0551c3541eec5debacd0837982c3e8df6e40151b6", 483),
    ),
    (
        "robnet",
        {"channels": 8, "layers": 3, "affine": True},
        ("ae323ab8e2c2269beafb4f0b58e0ca549387f77929276dfc507e1bc1c37cbb46", 675),
    ),
    (
        "robnet_supernet",
        {"channels": 8, "layers": 3},
        ("c92006ae5a5dfa43c880fe8e80cadcd0ec18253d994c66200dd0fbf7c6e2c0db", 534),
    ),
    (
        "robnet_supernet",
        {"channels": 8, "layers": 4, "share": False},
        ("fc933cce37b05cf6ce3e3f522c9590c0f3e2eeeea734228223bc3998e9468214", 683),
    ),
    (
        "darts",
        {"channels": 8, "layers": 5, "auxiliary": True},
        ("57d4ad5b8c7fafad5dc8536dbbb130fcfedf1e09c6255a7023b99c0f0ab55b35", 315),
    ),
    (
        "darts",
        {"genotype": "DARTS_V2"},
        ("498faeb8e7b8d696b8d3c953da3da16a3dca73aadc200dae46775d01b573e69c", 1636),
    ),
    (
        "darts",
        {"genotype": "PC_DARTS"},
        ("dd63ecb0903b1790444f237456ed846397ea7c00eafe4eda2d67ca4903abe602", 1706),
    ),
    (
        "darts",
        {"genotype": "NASNet"},
        ("b9b2358f6412a423640de0c59bd8a068f25f6a4cd803a079d57e5652951eff16", 1650),
    ),
    (
        "darts",
        {"genotype": "AmoebaNet"},
        ("bca8124cf78ac13483c49c3d32f5f2f76a5ac684c8df75a11672b4eeba630e66", 1384),
    ),
    (
        "darts",
        {"genotype": "RACL"},
        ("e43cad780a486fee66ff28c3b420ecb25a7a2d881fc3828c746589f4eef21f9f", 1678),
    ),
    # RACL's layout with and without confidence learning (sigma is then zero, but still there).
    ("racl_supernet", {"channels": 8, "layers": 4}, _RACL_SUPERNET),
    ("racl_supernet", {"channels": 8, "layers": 4, "confidence": False}, _RACL_SUPERNET),
    # PC-DARTS' own tensors only: RACL's layout less sigma_alpha, sigma_beta, theta, noise_alpha and
    # noise_beta (test_racl_adds_only_its_own_tensors), hence a digest of its own and 5 rows fewer.
    (
        "pcdarts_supernet",
        {"channels": 8, "layers": 4},
        ("8d4c10fc8c70a212a344ae7d6e0a05b5936bc6e7eef61acd9cd4b160917c8108", 2141),
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), LAYOUTS, ids=[f"{n}-{k}" for n, k, _ in LAYOUTS])
def test_state_dict_layouts_are_unchanged(name, kwargs, expected):
    assert _layout_digest(name, **kwargs) == expected


def test_racl_adds_only_its_own_tensors():
    """The two search supernets share every tensor of PC-DARTS (same names, same shapes); RACL adds its
    spreads sigma, its ADMM dual theta and each cell's standard-normal draw, and nothing else."""
    pcdarts = create_meta_model("pcdarts_supernet", channels=8, layers=4).state_dict()
    racl = create_meta_model("racl_supernet", channels=8, layers=4).state_dict()
    assert set(racl) - set(pcdarts) == {"sigma_alpha", "sigma_beta", "theta", "noise_alpha", "noise_beta"}
    assert set(pcdarts) <= set(racl)
    tensors = [k for k, v in pcdarts.items() if isinstance(v, torch.Tensor)]
    assert all(pcdarts[k].shape == racl[k].shape for k in tensors)
