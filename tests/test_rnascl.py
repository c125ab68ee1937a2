"""RNAS-CL: attention maps and the attention loss against hand computation, the KL direction, Gumbel
annealing, channel masking against the narrow network, the derived student, and the search in the
trainer (channels and tutors trained by the architecture step, the record carrying the tutor map)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tune_robust.config import TrialConfig
from tune_robust.errors import ConfigError
from tune_robust.models import count_params, create_model
from tune_robust.models.rnascl import RNASCLSupernet, StudentNet, format_channels, parse_channels
from tune_robust.search_spaces.rnascl import SEARCH_SMOKE
from tune_robust.training.loop import Trainer
from tune_robust.training.rnascl import Teacher, attention_loss, attention_maps, student_teacher_kl


def test_attention_map_by_hand():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0] = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    a[0, 1] = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    # sum of squares over channels: [[1, 4], [9, 0]], L2-normalised: / sqrt(98)
    maps = attention_maps([a], size=2)
    assert maps.shape == (1, 1, 4)
    assert maps[0, 0].tolist() == pytest.approx(
        [1 / math.sqrt(98), 4 / math.sqrt(98), 9 / math.sqrt(98), 0.0]
    )
    pooled = attention_maps([a], size=1)  # to one pixel: the normalised map is 1
    assert pooled[0, 0].tolist() == pytest.approx([1.0])


def test_attention_loss_is_the_weighted_unsquared_distance():
    s = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # 2 student maps
    t = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]])  # 3 teacher maps
    g = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    d = torch.cdist(s, t)[0]
    assert d[0, 1] == pytest.approx(0.0) and d[1, 0] == pytest.approx(0.0)
    assert d[1, 2] == pytest.approx(math.sqrt(0.36 + 0.04))  # not squared
    # student 0 -> teacher 1 (distance 0); student 1 -> half teacher 0 (0), half teacher 2 (sqrt 0.4)
    expected = (1.0 * 0.0 + 0.5 * 0.0 + 0.5 * math.sqrt(0.4)) / (2 * 3)
    assert float(attention_loss(s, t, g)) == pytest.approx(expected)


def test_kl_is_student_to_teacher_as_printed():
    student = torch.tensor([[2.0, 0.0, -1.0]])
    teacher = torch.tensor([[0.0, 1.0, 0.0]])
    p, q = torch.softmax(student, 1), torch.softmax(teacher, 1)
    forward = float((p * (p / q).log()).sum())
    reverse = float((q * (q / p).log()).sum())
    assert float(student_teacher_kl(student, teacher)) == pytest.approx(forward)
    assert abs(forward - reverse) > 0.05  # the direction matters on this pair


def _supernet(**kw) -> RNASCLSupernet:
    torch.manual_seed(0)
    net = create_model("rnascl_supernet", in_channels=1, space="S3", scale=0.25, **kw)
    assert isinstance(net, RNASCLSupernet)
    return net


def test_gumbel_annealing_reaches_one_hot():
    net = _supernet(tau=5.0, tau_decay=0.5)
    with torch.no_grad():
        net.logits[:, 0] += 1.0  # a mild preference for the first option of every block
    net.train()
    torch.manual_seed(1)
    net.resample()
    early = net.gumbel_weights().max(1).values
    for _ in range(20):
        net.end_epoch()
    net.resample()
    late = net.gumbel_weights().max(1).values
    assert float(net.tau) == pytest.approx(5.0 * math.exp(-0.5 * 20))
    assert early.min() < 0.9 and late.min() > 0.99


def test_one_hot_masking_equals_the_narrow_network():
    net = _supernet()
    with torch.no_grad():
        for b, opts in enumerate(net.options):
            net.logits[b, : len(opts)] = torch.randn(len(opts))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    channels = net.derive()
    student = create_model("rnascl_student", in_channels=1, channels=format_channels(channels))
    assert isinstance(student, StudentNet)
    widths = [c for stage in channels for c in stage]
    c_in = 1
    with torch.no_grad():
        for b, (big, small) in enumerate(zip(net.blocks, student.blocks, strict=True)):
            c = widths[b]
            small.conv.weight.copy_(big.conv.weight[:c, :c_in])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(small.bn, name).copy_(getattr(big.bn, name)[:c])
            c_in = c
        student.fc.weight.copy_(net.fc.weight[:, :c_in])
        student.fc.bias.copy_(net.fc.bias)
    net.eval(), student.eval()
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(net(x), student(x), atol=1e-6)
    assert count_params(student) < count_params(net)


def test_derived_student_is_the_argmax_and_builds_with_that_size():
    net = _supernet()
    with torch.no_grad():
        net.logits.fill_(-1.0)
        for b, opts in enumerate(net.options):
            net.logits[b, len(opts) - 1] = 1.0  # the narrowest option everywhere
    channels = net.derive()
    assert channels == tuple(
        tuple(min(opts) for _ in range(d)) for d, opts in zip((3, 3, 3), net.space.options, strict=True)
    )
    student = create_model("rnascl_student", in_channels=1, channels=format_channels(channels))
    expected = 0
    c_in = 1
    for c in (c for stage in channels for c in stage):
        expected += 9 * c_in * c + 2 * c
        c_in = c
    assert count_params(student) == expected + c_in * 10 + 10
    assert parse_channels(format_channels(channels)) == channels
    with pytest.raises(ConfigError, match="comma-separated"):
        parse_channels("4,x | 8")


def test_teacher_taps_every_convolution():
    teacher = create_model("wrn", in_channels=1, depths=(1, 1, 1), widths=(0.5, 0.5, 0.5))
    taps = Teacher(teacher)
    convs = [m for m in teacher.modules() if isinstance(m, nn.Conv2d)]
    logits, features = taps(torch.rand(2, 1, 8, 8))
    assert len(features) == len(convs) == len(taps.layers) and logits.shape == (2, 10)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def _teacher_file(tmp_path) -> str:
    teacher = create_model("wrn", in_channels=1, depths=(1, 1, 1), widths=(0.5, 0.5, 0.5))
    path = tmp_path / "model.pt"
    torch.save(
        {
            "arch": "wrn",
            "kwargs": {"depths": (1, 1, 1), "widths": (0.5, 0.5, 0.5)},
            "num_classes": 10,
            "in_channels": 1,
            "state_dict": teacher.state_dict(),
            "epoch": 1,
        },
        path,
    )
    return str(path)


def _search_cfg(teacher: str) -> dict:
    cfg = {**SEARCH_SMOKE, "data": {**SEARCH_SMOKE["data"], "train_limit": 160}}
    cfg["train"] = {**cfg["train"], "epochs": 2}
    cfg["upstream"] = {"teacher": teacher}
    return cfg


def test_search_trains_channels_and_tutors_and_records_the_tutor_map(tmp_path):
    torch.set_num_threads(1)
    tr = Trainer(TrialConfig.from_dict(_search_cfg(_teacher_file(tmp_path))))
    net, method = tr.model, tr.method
    assert tr.arch_step is not None and len(tr.arch_step.split) == 32  # a fifth of 160
    tutor_logits = method.arch_parameters()[0]
    assert tutor_logits.shape == (9, len(method._teacher.layers))  # 9 student blocks x teacher convs
    before = net.logits.detach().clone(), tutor_logits.detach().clone()
    while not tr.finished:
        tr.run_epoch()
    assert not torch.equal(before[0], net.logits) and not torch.equal(before[1], tutor_logits)
    assert float(net.tau) == pytest.approx(5.0 * math.exp(-0.5 * 2))
    record = tr.arch_record(tr.model)
    assert record is not None and record["model"]["arch"] == "rnascl_student"
    tutors = [int(t) for t in record["method"]["tutors"].split(",")]
    assert tutors == tutor_logits.detach().argmax(1).tolist()
    assert record["method"]["teacher"] == "teacher" and record["method"]["kl"] is True
    # the restored method has the same tutor logits
    tr.save(tmp_path / "state")
    again = Trainer(TrialConfig.from_dict(_search_cfg(_teacher_file(tmp_path))))
    again.load(tmp_path / "state")
    assert torch.equal(again.method.arch_parameters()[0], tutor_logits)


def test_without_a_teacher_the_error_says_where_to_get_one():
    cfg = {**SEARCH_SMOKE}
    with pytest.raises(ConfigError, match="rnascl_teacher"):
        Trainer(TrialConfig.from_dict(cfg))
    standard = {**SEARCH_SMOKE, "method": {**SEARCH_SMOKE["method"], "kl": False, "attention": False}}
    assert Trainer(TrialConfig.from_dict(standard)).method.arch_parameters() == []


@pytest.mark.parametrize(
    ("space", "millions"),
    # Table 1: S3 0.11M, S5 0.21M, S7 0.32M, M 3M, L 11M (docs/search-methods.md: why M and L differ)
    [("S3", 0.122), ("S5", 0.219), ("S7", 0.316), ("M", 2.150), ("L", 8.586)],
)
def test_widest_students_have_the_documented_sizes(space, millions):
    from tune_robust.models.rnascl import SPACES

    depths, options = SPACES[space]
    widest = format_channels([[max(opts)] * d for d, opts in zip(depths, options, strict=True)])
    with torch.device("meta"):
        assert round(count_params(create_model("rnascl_student", channels=widest)) / 1e6, 3) == millions


def test_tutor_counts_per_teacher_layer():
    from tune_robust.analysis.architectures import tutor_counts

    counts = tutor_counts("3,5,3,3,0")
    assert counts.to_dict() == {0: 1, 3: 3, 5: 1}


def test_padded_options_survive_weight_decay():
    """Stage 1 has fewer options than the others: its padding must not turn Adam's weight decay NaN."""
    net = _supernet()
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.1, weight_decay=1e-3)
    net.train()
    for _ in range(3):
        net.resample()
        loss = net(torch.rand(4, 1, 8, 8)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(net.logits).all() and torch.isfinite(net.gumbel_weights()).all()
    for stage, opts in zip(net.derive(), net.space.options, strict=True):  # never a padded slot
        assert all(c in opts for c in stage)
