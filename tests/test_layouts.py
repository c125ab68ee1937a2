"""Published checkpoint layouts load into our architectures unchanged and compute the same function.

Each reference network below is written from the public definition of a layout (its module names, its
block wiring), independently of our modules; a state dict saved from it must load through
``load_checkpoint`` and give the same logits. The pytorch-cifar ResNet is checked against the reference
that ships with the checkpoint (pyautoattack's ``examples/resnet.py``) and on real CIFAR-10 images.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyautoattack
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models.checkpoint import load_checkpoint
from tune_robust.models.layouts import LAYOUTS, fit
from tune_robust.models.robnet_codes import FREE, LARGE, edge_inputs, parse_code

ROOT = Path(__file__).resolve().parents[1]
AA_DIR = Path(pyautoattack.__file__).parent / "examples"
AA_MODEL = AA_DIR / "model_test.pt"


# --- reference definitions (module names and wiring as the public code has them) -------------------------


class _PreActBlock(nn.Module):  # Rice et al. / Wong et al.: shortcut in a Sequential, sees relu(bn1(x))
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        skip = self.shortcut(pre) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.bn2(self.conv1(pre)))) + skip


class _PreActResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        cin = 64
        for i, (c, s) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2), strict=True)):
            setattr(self, f"layer{i + 1}", nn.Sequential(_PreActBlock(cin, c, s), _PreActBlock(c, c, 1)))
            cin = c
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        for i in range(1, 5):
            out = getattr(self, f"layer{i}")(out)
        return self.linear(F.avg_pool2d(F.relu(self.bn(out)), 4).flatten(1))


class _WRNBlock(nn.Module):
    """The TRADES/RobustBench block (``convShortcut`` when channels change); ``stride_shortcut`` adds
    RobustWideResNet's rule (also on a stride-2 block)."""

    def __init__(self, cin: int, cout: int, stride: int, stride_shortcut: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        need = not self.equal or (stride_shortcut and stride == 2)
        self.convShortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if need else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.equal:
            out = F.relu(self.bn1(x))
        else:
            x = F.relu(self.bn1(x))
            out = x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + (x if self.convShortcut is None else self.convShortcut(x))


class _Group(nn.Module):
    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.layer = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _group(n: int, cin: int, cout: int, stride: int, stride_shortcut: bool = False) -> _Group:
    return _Group(
        [_WRNBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, stride_shortcut) for i in range(n)]
    )


class _TradesWRN(nn.Module):
    def __init__(self, depth: int, widen: int, sub_block1: bool = False) -> None:
        super().__init__()
        n, ch = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block1 = _group(n, ch[0], ch[1], 1)
        if sub_block1:  # built by the TRADES code, never called
            self.sub_block1 = _group(n, ch[0], ch[1], 1)
        self.block2 = _group(n, ch[1], ch[2], 2)
        self.block3 = _group(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.avg_pool2d(F.relu(self.bn1(out)), 8).flatten(1))


class _RobustWRN(nn.Module):
    def __init__(self, channels: tuple[int, ...], depths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(3, channels[0], 3, 1, 1, bias=False)
        self.blocks = nn.ModuleList(
            _group(d, channels[i], channels[i + 1], (1, 2, 2)[i], stride_shortcut=True)
            for i, d in enumerate(depths)
        )
        self.bn1 = nn.BatchNorm2d(channels[-1])
        self.fc = nn.Linear(channels[-1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem_conv(x)
        for block in self.blocks:
            out = block(out)
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1).flatten(1))


def _aa_resnet18() -> nn.Module:
    spec = importlib.util.spec_from_file_location("aa_resnet", AA_DIR / "resnet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResNet18()  # type: ignore[no-any-return]


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and running statistics, so that a misplaced tensor changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.is_floating_point():
                fan = t[0].numel() if t.ndim > 1 else 1
                t.copy_(
                    torch.randn(t.shape, generator=g) / fan**0.5
                    if t.ndim > 1
                    else torch.rand(t.shape, generator=g) + 0.5
                )
    return model.eval()


def assert_uses_every_tensor(model: nn.Module, x: torch.Tensor) -> None:
    """Every parameter gets a gradient and every BatchNorm runs (its running statistics are used)."""
    ran: set[str] = set()
    hooks = [
        m.register_forward_hook(lambda mod, i, o, name=name: ran.add(name))
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    model.zero_grad()
    model(x).square().sum().backward()
    for h in hooks:
        h.remove()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unused, f"parameters without gradient: {unused[:5]}"
    bns = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert bns == ran, f"BatchNorms never run: {sorted(bns - ran)[:5]}"


# name, reference builder, our arch and options, how the file wraps the state dict
CASES: list[tuple[str, Callable[[], nn.Module], str, dict[str, object], str]] = [
    ("pytorch_cifar_resnet", _aa_resnet18, "resnet18", {}, "plain"),
    ("pytorch_cifar_preact_resnet", _PreActResNet18, "preact_resnet18", {}, "nested"),
    (
        "trades_wideresnet",
        lambda: _TradesWRN(16, 4, sub_block1=True),
        "wrn",
        {"depths": (2, 2, 2), "widths": (4, 4, 4)},
        "dataparallel",
    ),
    (
        "robust_wide_resnet",
        lambda: _RobustWRN((16, 40, 80, 32), (2, 1, 2)),
        "wrn",
        {"depths": (2, 1, 2), "widths": (2.5, 2.5, 0.5)},
        "robustwrn",
    ),
]


def _save(state: dict[str, torch.Tensor], wrap: str, path: Path) -> Path:
    if wrap == "nested":
        blob: object = {"state_dict": state, "epoch": 200}
    elif wrap == "dataparallel":
        blob = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "robustwrn":  # Huang et al.'s util.save_model
        blob = {"epoch": 99, "model_state_dict": state, "optimizer_state_dict": {}, "genotype": None}
    else:
        blob = state
    torch.save(blob, path)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_published_layout_loads_and_computes_what_its_own_code_computes(case, tmp_path):
    layout, build, arch, kwargs, wrap = case
    ref = _randomise(build())
    keys = set(ref.state_dict())
    assert LAYOUTS.get(layout).recognises(keys)
    others = [n for n in LAYOUTS.names() if n not in ("ours", layout) and LAYOUTS.get(n).recognises(keys)]
    assert not others, f"{layout} keys are also claimed by {others}"
    path = _save(ref.state_dict(), wrap, tmp_path / "published.pt")
    ours = load_checkpoint(path, arch=arch, model_kwargs=kwargs, num_classes=10, in_channels=3)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert expected.abs().mean() > 0.1  # a meaningful comparison, not two near-zero outputs
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert_uses_every_tensor(ours, x)


def _robnet_release_state(
    cells: list[tuple[str, ...]], c: int = 36, layers: int = 20
) -> dict[str, torch.Tensor]:
    """The state dict of the authors' RobNet ``Network``, written from its definition: ``stem.{0,1}``;
    per cell ``preprocess{0,1}`` (``op.{1,2}`` ReLU-conv-BN, or FactorizedReduce ``conv_1/conv_2/bn``
    after a reduction); edge E as ``_ops.E.op`` (01: SepConv ``op.K``; 11: ``conv.op.K`` plus ``res`` on
    a stride-2 edge; 10 on a stride-2 edge: FactorizedReduce); BatchNorms in cells without affine."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, ch: int, affine: bool = False) -> None:
        state[f"{prefix}.running_mean"] = torch.randn(ch, generator=g) * 0.1
        state[f"{prefix}.running_var"] = torch.rand(ch, generator=g) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(7)
        if affine:
            state[f"{prefix}.weight"] = torch.rand(ch, generator=g) + 0.5
            state[f"{prefix}.bias"] = torch.randn(ch, generator=g) * 0.1

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        state[key] = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5

    def factorized(prefix: str, cin: int, cout: int) -> None:
        conv(f"{prefix}.conv_1.weight", cout // 2, cin, 1)
        conv(f"{prefix}.conv_2.weight", cout // 2, cin, 1)
        bn(f"{prefix}.bn", cout)

    def sepconv(prefix: str, ch: int) -> None:
        for dw, pw, norm in ((1, 2, 3), (5, 6, 7)):
            conv(f"{prefix}.{dw}.weight", ch, 1, 3)
            conv(f"{prefix}.{pw}.weight", ch, ch, 1)
            bn(f"{prefix}.{norm}", ch)

    conv("stem.0.weight", 3 * c, 3, 3)
    bn("stem.1", 3 * c, affine=True)
    c_pp, c_p, c_cur, reduction_prev = 3 * c, 3 * c, c, False
    for n in range(layers):
        reduction = n in (layers // 3, 2 * layers // 3)
        c_cur = c_cur * 2 if reduction else c_cur
        if reduction_prev:
            factorized(f"cells.{n}.preprocess0", c_pp, c_cur)
        else:
            conv(f"cells.{n}.preprocess0.op.1.weight", c_cur, c_pp, 1)
            bn(f"cells.{n}.preprocess0.op.2", c_cur)
        conv(f"cells.{n}.preprocess1.op.1.weight", c_cur, c_p, 1)
        bn(f"cells.{n}.preprocess1.op.2", c_cur)
        for e, code in enumerate(cells[n]):
            stride2 = reduction and edge_inputs()[e] < 2
            op = f"cells.{n}._ops.{e}.op"
            if code == "01":
                sepconv(f"{op}.op", c_cur)
            elif code == "11":
                sepconv(f"{op}.conv.op", c_cur)
                if stride2:
                    factorized(f"{op}.res", c_cur, c_cur)
            elif code == "10" and stride2:
                factorized(op, c_cur, c_cur)
        c_pp, c_p, reduction_prev = c_p, 4 * c_cur, reduction
    state["classifier.weight"] = torch.randn(10, c_p, generator=g) / c_p**0.5
    state["classifier.bias"] = torch.randn(10, generator=g)
    return state


@pytest.mark.parametrize("arch,codes", [("robnet_large", LARGE), ("robnet_free", FREE)])
def test_the_robnet_release_layout_loads_into_the_published_robnets(arch, codes, tmp_path):
    parsed = [tuple(cell) for cell in parse_code(codes)]
    cells = parsed * 20 if len(parsed) == 1 else parsed
    state = _robnet_release_state(cells)
    path = tmp_path / "RobNet.pth.tar"
    torch.save({"state_dict": state}, path)  # the release's container
    ours = load_checkpoint(path, arch=arch, num_classes=10, in_channels=3)
    assert len(ours.state_dict()) == len(state)
    assert_uses_every_tensor(ours, torch.rand(2, 3, 32, 32))
    with pytest.raises(ConfigError, match=f"its tensors fit {arch}; pass --set model.arch={arch}"):
        load_checkpoint(path, arch="robnet_free" if arch == "robnet_large" else "robnet_large")


def test_a_mismatch_names_the_architecture_and_options_the_tensors_fit():
    with torch.device("meta"):
        trades_34_10 = _TradesWRN(34, 10).state_dict()
        trades_16_4 = _TradesWRN(16, 4).state_dict()
    with pytest.raises(
        ConfigError,
        match=r"trades_wideresnet layout.*its tensors fit wrn_34_10; pass --set model.arch=wrn_34_10 ",
    ):
        fit(trades_34_10, "wrn_28_10", {}, 10, 3, "w.pt")
    hint = "pass --set model.arch=wrn --set model.depths=2,2,2 --set model.widths=4,4,4 "
    with pytest.raises(ConfigError, match=hint):
        fit(trades_16_4, "wrn_34_10", {}, 10, 3, "w.pt")
    with pytest.raises(
        ConfigError,
        match="are wrn_34_10 for 10 classes / 3 channels; evaluate it on the dataset it was trained on",
    ):
        fit(trades_34_10, "wrn_34_10", {}, 100, 3, "w.pt")
    with pytest.raises(ConfigError, match=r"check model\.arch and its options"):
        fit({"encoder.weight": torch.zeros(3, 3)}, "resnet18", {}, 10, 3, "w.pt")


def test_the_autoattack_resnet18_gives_its_reference_codes_logits_on_real_cifar10(cifar_dir):
    """pyautoattack's example checkpoint: our resnet18 gives the logits of the reference network shipped
    beside it on real CIFAR-10 images (the slow test evaluates all 932: 872 right, as the reference)."""
    from tune_robust.data import load_dataset

    data = load_dataset("cifar10", cifar_dir, False)
    x = torch.from_numpy(data.test_x[:64]).float().div(255)
    y = torch.from_numpy(data.test_y[:64]).long()
    ref = _aa_resnet18()
    ref.load_state_dict(torch.load(AA_MODEL, map_location="cpu", weights_only=True))
    ref.eval()
    ours = load_checkpoint(AA_MODEL, arch="resnet18")
    with torch.no_grad():
        ref_logits, our_logits = ref(x), ours(x)
    torch.testing.assert_close(our_logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert int((our_logits.argmax(1) == y).sum()) >= 56  # a trained model (93.6% on all 932), not noise


def test_a_checkpoint_of_another_architecture_fails_before_ray_starts(tmp_path, cifar_dir):
    cmd = [sys.executable, "sweep.py", "evaluate", "--checkpoint", f"aa={AA_MODEL}", "--dataset", "cifar10"]
    cmd += ["--data-dir", str(cifar_dir), "--results-dir", str(tmp_path), "--set", "model.arch=resnet50"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr[-2000:]
    assert "does not fit model.arch=resnet50" in errors[0]
    assert "its tensors fit resnet18; pass --set model.arch=resnet18" in errors[0]
    assert "Ray instance" not in out.stderr + out.stdout, "Ray started before the check"
    assert not (tmp_path / "evaluate" / "trials.parquet").exists()


@pytest.mark.slow
def test_evaluate_the_autoattack_resnet18_through_sweep_py(tmp_path, cifar_dir):
    """The issue's command: clean 872/932, PGD-10 near 0 (not a robust model), no masking flag."""
    from tests.conftest import read_parquet

    cmd = [sys.executable, "sweep.py", "evaluate", "--checkpoint", f"aa={AA_MODEL}", "--dataset", "cifar10"]
    cmd += ["--data-dir", str(cifar_dir), "--results-dir", str(tmp_path), "-q"]
    cmd += ["--set", "model.arch=resnet18", "--set", "eval.attacks=pgd10", "--set", "eval.metrics=false"]
    cmd += ["--set", "eval.sanity_examples=128"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "pytorch_cifar_resnet layout" in out.stdout
    row = read_parquet(tmp_path / "evaluate" / "trials.parquet").iloc[0]
    assert row["test_clean_acc"] == pytest.approx(872 / 932)
    assert row["test_pgd10_acc"] < 0.02
    assert not row["suspect_gradient_masking"], row["sanity_messages"]


def test_the_driver_checks_every_plain_upstream_checkpoint_before_ray(tmp_path):
    """Plain files the trial builds as its model.arch must fit it; a plain teacher names no architecture."""
    from tune_robust.config import TrialConfig
    from tune_robust.run.validate import check_checkpoint

    path = tmp_path / "preact.pt"
    torch.save(_PreActResNet18().state_dict(), path)
    tc = TrialConfig.from_dict({"model": {"arch": "preact_resnet18"}, "data": {"dataset": "cifar10"}})
    for key in ("model", "init", "source", "target:b"):
        check_checkpoint(key, str(path), tc)  # fits: no error
    wrong = TrialConfig.from_dict({"model": {"arch": "resnet18"}, "data": {"dataset": "cifar10"}})
    for key in ("init", "target:b"):
        with pytest.raises(
            ConfigError, match=r"its tensors fit preact_resnet18; pass --set model\.arch=preact_resnet18"
        ):
            check_checkpoint(key, str(path), wrong)
    with pytest.raises(
        ConfigError, match=r"upstream\.teacher: .* is a plain state dict, which names no architecture"
    ):
        check_checkpoint("teacher", str(path), tc)
