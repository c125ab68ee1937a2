"""RNAS-CL's student search space (Nath et al., Sec. 3.3 and Table 7): stages of convolution blocks
whose output channels are searched FBNetV2-style, by Gumbel-softmax weights over each block's channel
options applied as channel masks (one forward pass serves every option).

The paper does not define the block. We use one 3x3 convolution, BatchNorm and ReLU per block (the
first block of stages 2 and 3 strides 2), global average pooling and a linear classifier: at the widest
options this gives Table 1's S3 / S5 / S7 sizes (0.11 / 0.21 / 0.32M; ours in docs/search-methods.md),
while M and L (3M, 11M) fit neither a one-conv nor a two-conv block (docs/search-methods.md, "One-shot
search: RNAS-CL").

A block's output is ``relu(bn(conv(x))) * mask`` with mask = sum_i g_i m_i, m_i the first f_i channels;
with a one-hot g this is exactly the narrow block of f_i channels (the next block's weights on the
masked channels multiply zeros). Training samples g = softmax((logits + Gumbel noise) / tau) once per
batch; eval mode and the derived student use the arg-max option. tau starts at ``tau`` and is
multiplied by e^-``tau_decay`` after every epoch (the paper: 5.0 and 0.045).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model
from tune_robust.models.oneshot import SearchSpace, Supernet, arch_record

# Table 7: depths per stage and the channel options of every block of each stage.
SPACES: dict[str, tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]] = {
    "S3": ((3, 3, 3), ((16, 12), (32, 28, 24, 20), (64, 60, 56, 52))),
    "S5": ((5, 5, 5), ((16, 12), (32, 28, 24, 20), (64, 60, 56, 52))),
    "S7": ((7, 7, 7), ((16, 12), (32, 28, 24, 20), (64, 60, 56, 52))),
    "M": ((9, 7, 1), ((80, 76), (160, 156, 152, 148), (128, 124, 120, 116))),
    "L": ((9, 7, 1), ((160, 156), (320, 316, 312, 308), (256, 252, 248, 244))),
}


def space_options(space: str, scale: float = 1.0) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(depths, channel options per stage) of a Table 7 space; ``scale`` shrinks the channels (smoke
    fidelities), keeping each option distinct and at least 1."""
    if space not in SPACES:
        raise ConfigError(f"rnascl: unknown space {space!r}; known: {', '.join(SPACES)}")
    if not 0 < scale <= 1:
        raise ConfigError(f"rnascl: scale must be in (0, 1], got {scale}")
    depths, options = SPACES[space]
    scaled = tuple(tuple(dict.fromkeys(max(1, round(c * scale)) for c in opts)) for opts in options)
    return depths, scaled


def format_channels(channels: Sequence[Sequence[int]]) -> str:
    """Per stage, the blocks' channels: ``16,12,16 | 32,28,20 | 64,52,64``."""
    return " | ".join(",".join(str(c) for c in stage) for stage in channels)


def parse_channels(text: str) -> tuple[tuple[int, ...], ...]:
    try:
        stages = tuple(tuple(int(c) for c in part.split(",")) for part in text.split("|"))
    except ValueError:
        raise ConfigError(
            f"rnascl channels {text!r}: write each stage's block widths comma-separated, stages separated "
            f"by '|' (e.g. '16,12,16 | 32,28,20 | 64,52,64')"
        ) from None
    if not stages or any(not s or min(s) < 1 for s in stages):
        raise ConfigError(f"rnascl channels {text!r}: every stage needs blocks of at least 1 channel")
    return stages


class Block(nn.Module):
    """3x3 conv - BatchNorm - ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class StudentNet(nn.Module):
    """Stages of blocks (``channels[s][b]`` output channels), stride 2 entering every stage after the
    first, global average pooling, linear classifier. ``features`` holds every block's output of the
    last forward pass while ``keep_features`` is on (the student layers of the attention loss)."""

    def __init__(self, channels: Sequence[Sequence[int]], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.channels = tuple(tuple(s) for s in channels)
        self.blocks = nn.ModuleList()
        c_in = in_channels
        for s, stage in enumerate(self.channels):
            for b, c_out in enumerate(stage):
                self.blocks.append(Block(c_in, c_out, 2 if s > 0 and b == 0 else 1))
                c_in = c_out
        self.fc = nn.Linear(c_in, num_classes)
        self.in_channels = in_channels
        self.keep_features = False
        self.features: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = self.block_masks()
        self.features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if masks is not None:
                x = x * masks[i, : x.shape[1]].view(1, -1, 1, 1)
            if self.keep_features:
                self.features.append(x)
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))

    def block_masks(self) -> torch.Tensor | None:
        """Per block, a multiplier per output channel (None: every channel as built)."""
        return None

    def arch_record(self) -> dict[str, Any]:
        return arch_record(RNASCLSpace(self.channels), self.channels)


class RNASCLSpace(SearchSpace):
    """Students of a channel space: per block one of its stage's options."""

    name = "rnascl"
    builder = "rnascl_student"
    arch_kwarg = "channels"

    def __init__(self, options: Sequence[Sequence[int]], depths: Sequence[int] | None = None) -> None:
        # (as a space of its own derived students: each stage's blocks and their widths)
        self.depths = tuple(depths) if depths is not None else tuple(len(s) for s in options)
        self.options = tuple(tuple(o) for o in options)

    def sample(
        self, generator: torch.Generator, rule: Mapping[str, Any] | None = None
    ) -> tuple[tuple[int, ...], ...]:
        if rule:
            raise ConfigError(f"rnascl sampling takes no options, got {sorted(rule)}")
        return tuple(
            tuple(opts[int(torch.randint(len(opts), (), generator=generator))] for _ in range(depth))
            for depth, opts in zip(self.depths, self.options, strict=True)
        )

    def to_text(self, arch: Sequence[Sequence[int]]) -> str:
        return format_channels(arch)

    def from_text(self, text: str) -> tuple[tuple[int, ...], ...]:
        return parse_channels(text)

    def stats(self, arch: Sequence[Sequence[int]]) -> dict[str, float]:
        return {f"arch_stage{s + 1}_channels": float(sum(stage)) for s, stage in enumerate(arch)}


class RNASCLSupernet(Supernet, StudentNet):
    """Every block at its widest option, masked by Gumbel-softmax weights over its options."""

    tau: torch.Tensor
    noise: torch.Tensor
    valid: torch.Tensor

    def __init__(
        self,
        depths: Sequence[int],
        options: Sequence[Sequence[int]],
        num_classes: int,
        in_channels: int,
        tau: float,
        tau_decay: float,
        seed: int,
    ) -> None:
        widest = [[max(opts)] * depth for depth, opts in zip(depths, options, strict=True)]
        super().__init__(widest, num_classes, in_channels)
        self.space = RNASCLSpace(options, depths)
        self.options = [opts for depth, opts in zip(depths, options, strict=True) for _ in range(depth)]
        width = max(len(o) for o in self.options)
        # logits per block, padded where a stage has fewer options; the padding is masked out (a finite
        # parameter, so weight decay and Adam never meet infinities)
        valid = torch.zeros(len(self.options), width, dtype=torch.bool)
        for b, opts in enumerate(self.options):
            valid[b, : len(opts)] = True
        self.register_buffer("valid", valid, persistent=False)
        self.logits = nn.Parameter(1e-3 * torch.randn(len(self.options), width).clamp(-1, 1))
        masks = torch.zeros(len(self.options), width, max(max(o) for o in self.options))
        for b, opts in enumerate(self.options):
            for i, c in enumerate(opts):
                masks[b, i, :c] = 1.0
        self.register_buffer("masks", masks, persistent=False)
        self.register_buffer("noise", torch.zeros(len(self.options), width))
        self.register_buffer("tau", torch.tensor(float(tau)))
        self.tau_decay = tau_decay
        self.sampling = True
        self._rng = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ the channel choice

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.logits]

    def resample(self) -> None:
        """Fresh Gumbel(0, 1) noise for every block's weights (used until the next call)."""
        u = torch.rand(self.noise.shape, generator=self._rng).clamp(1e-10, 1 - 1e-10)
        self.noise.copy_(-torch.log(-torch.log(u)).to(self.noise.device))

    def use_probe(self) -> None:
        self.noise.zero_()

    def use(self, arch: Any) -> None:
        raise ConfigError("the RNAS-CL supernet masks every option; derive() gives its student")

    def gumbel_weights(self) -> torch.Tensor:
        """Per block, the weights of its options: Gumbel-softmax in train mode, one-hot arg-max in eval."""
        logits = self.logits.masked_fill(~self.valid, -math.inf)
        if not self.training:
            return nn.functional.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
        return torch.softmax((logits + self.noise) / self.tau, dim=1)

    def block_masks(self) -> torch.Tensor:
        """sum_i g_i m_i per block: (blocks, widest channels)."""
        return torch.einsum("bo,boc->bc", self.gumbel_weights(), self.masks)

    def expected_width(self) -> torch.Tensor:
        """Per block, the expected output channels under the current weights (differentiable)."""
        g = self.gumbel_weights()
        widths = torch.zeros_like(g)
        for b, opts in enumerate(self.options):
            widths[b, : len(opts)] = torch.tensor(opts, dtype=g.dtype)
        return (g * widths).sum(1)

    def cost(self, input_hw: tuple[int, int]) -> torch.Tensor:
        """Expected multiply-accumulates of the convolutions and classifier over those of the widest
        network (FBNetV2's differentiable cost, RNAS-CL's n_f), in (0, 1]."""
        widths = self.expected_width()
        h, w = input_hw
        c_in: torch.Tensor | float = float(self.in_channels)
        macs, full, full_in = torch.zeros(()), 0.0, float(self.in_channels)
        b = 0
        for s, stage in enumerate(self.channels):
            for i in range(len(stage)):
                if s > 0 and i == 0:
                    h, w = (h + 1) // 2, (w + 1) // 2
                c_out = widths[b]
                macs = macs + 9 * h * w * c_in * c_out
                full += 9 * h * w * full_in * max(self.options[b])
                c_in, full_in, b = c_out, float(max(self.options[b])), b + 1
        macs = macs + c_in * self.fc.out_features
        full += full_in * self.fc.out_features
        return macs / full

    def end_epoch(self) -> None:
        """tau <- tau * e^-tau_decay (once per epoch)."""
        self.tau.mul_(math.exp(-self.tau_decay))

    def derive(self) -> tuple[tuple[int, ...], ...]:
        """Per block the option with the largest logit."""
        best = self.logits.detach().masked_fill(~self.valid, -math.inf).argmax(1).tolist()
        out, b = [], 0
        for stage in self.channels:
            out.append(tuple(self.options[b + i][best[b + i]] for i in range(len(stage))))
            b += len(stage)
        return tuple(out)

    def get_extra_state(self) -> Any:
        return {"rng": self._rng.get_state()}

    def set_extra_state(self, state: Any) -> None:
        if state:
            self._rng.set_state(state["rng"])


@register_model
def rnascl_supernet(
    num_classes: int = 10,
    in_channels: int = 3,
    space: str = "S3",
    scale: float = 1.0,
    tau: float = 5.0,
    tau_decay: float = 0.045,
    seed: int = 0,
) -> RNASCLSupernet:
    """An RNAS-CL student supernet of a Table 7 space (``S3``, ``S5``, ``S7``, ``M``, ``L``; ``scale``
    shrinks the channels for quick runs), its channels searched by Gumbel-softmax masks."""
    depths, options = space_options(space, scale)
    if tau <= 0 or tau_decay < 0:
        raise ConfigError(f"rnascl_supernet: tau must be > 0 and tau_decay >= 0, got {tau}, {tau_decay}")
    return RNASCLSupernet(depths, options, num_classes, in_channels, tau, tau_decay, seed)


@register_model
def rnascl_student(
    num_classes: int = 10, in_channels: int = 3, channels: str = "16,16,16 | 32,32,32 | 64,64,64"
) -> StudentNet:
    """A derived RNAS-CL student: each block's channels (``16,12,16 | 32,28,20 | 64,52,64``)."""
    return StudentNet(parse_channels(channels), num_classes, in_channels)
