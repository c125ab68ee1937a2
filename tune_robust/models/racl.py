"""The PC-DARTS search supernet and RACL's (Dong et al., "Adversarially Robust Neural Architectures",
Sec. 2), which is PC-DARTS plus log-normal architecture weights and a Lipschitz confidence constraint.

:class:`PCDartsSupernet` (Xu et al. 2020): partial channel connections (tune_robust.models.ops'
PartialMixedOp), softmax weights alpha over each edge's ops and beta over each node's inputs
(edge normalisation), one set for normal and one for reduction cells; ``derive`` keeps, per node, the
two inputs and per input the op with the largest softmax(alpha) x softmax(beta) ("none" excluded), as
PC-DARTS' genotype().

:class:`RACLSupernet` makes alpha (per edge and op) and beta (per edge) log-normal random variables with
trainable mu and sigma (RACL Eq. 5). Every cell draws its own alpha and beta from those distributions,
once per training batch (all forward passes of a batch, the attack's included, see one draw),
reparameterised so the draw is differentiable in mu and sigma. The sampled values mix the ops as drawn
(Eq. 5, no softmax): Eqs. 8-13 bound the network that mixes with alpha and beta themselves, so any
normalisation would make the bound describe another network. mu starts where PC-DARTS' softmax weights
start (ln 1/8 per op, ln 1/n over a node's n inputs).

RACL's architecture penalty (Eqs. 11-19): each op's Lipschitz constant (tune_robust.models.lipschitz;
detached, "lambda_o is treated as constant ... since the weights are fixed"), the edge, node and network
log-normal bound by Fenton-Wilkinson (tune_robust.models.lognormal), the constraint
c = mu + Phi^-1(eta) sigma^2 - ln(lambda*) with ln C folded into lambda*, and the ADMM terms
theta c + rho / 2 c^2 with the dual update theta <- theta + rho c after each architecture step.

``confidence=False`` is Table 5's "without CL": deterministic alpha = e^mu, beta = e^mu and the Eq. 10
bound (sigma = 0; the same constraint without the variance term).

RACL's eval mode and validation run the median architecture (every draw at its median e^mu); its
``derive`` ranks by e^mu_alpha * e^mu_beta: the median neither rewards nor penalises uncertainty (the
mean e^(mu+sigma^2/2) would favour the least confident weights).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model
from tune_robust.models.darts import DartsSpace, Genotype
from tune_robust.models.lipschitz import Member, log_lipschitz, stage_groups
from tune_robust.models.lognormal import lognormal_sum, sample_lognormal
from tune_robust.models.oneshot import Supernet
from tune_robust.models.ops import PRIMITIVES, PartialMixedOp, SearchCell, edge_count

NONE = PRIMITIVES.index("none")


class PCDartsSupernet(Supernet, nn.Module):
    """PC-DARTS' search supernet: deterministic softmax weights, nothing added to the architecture
    step's loss. ``mu_alpha`` (kind, edge, op) and ``mu_beta`` (kind, edge) are the logits; kind 0 is
    the normal cells', 1 the reduction cells'."""

    label = "PC-DARTS"

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        channels: int = 16,
        layers: int = 8,
        nodes: int = 4,
        partial: int = 4,
    ) -> None:
        super().__init__()
        self.layers, self.nodes = layers, nodes
        self.space = DartsSpace(nodes)
        c_stem = 3 * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
        )
        c_pp, c_p, c = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c = 2 * c if reduction else c
            self.cells.append(SearchCell(nodes, c_pp, c_p, c, reduction, reduction_prev, partial))
            reduction_prev = reduction
            c_pp, c_p = c_p, nodes * c
        self.classifier = nn.Linear(c_p, num_classes)
        edges = edge_count(nodes)
        alpha, beta = self.initial_logits(edges)
        self.mu_alpha = nn.Parameter(alpha)
        self.mu_beta = nn.Parameter(beta)
        self.kinds = [int(i in (layers // 3, 2 * layers // 3)) for i in range(layers)]

    def initial_logits(self, edges: int) -> tuple[torch.Tensor, torch.Tensor]:
        """PC-DARTS' initialisation: 1e-3 N(0, 1) logits (alpha's, then beta's, from the global
        generator)."""
        return 1e-3 * torch.randn(2, edges, len(PRIMITIVES)), 1e-3 * torch.randn(2, edges)

    # ------------------------------------------------------------------ architecture parameters

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.mu_alpha, self.mu_beta]

    def resample(self) -> None:
        """Nothing to draw: the weights are deterministic."""

    def use_probe(self) -> None:
        """The one architecture the weights give (the same in training and evaluation)."""

    def use(self, arch: Any) -> None:
        raise ConfigError(f"the {self.label} supernet mixes every op; derive() gives its architecture")

    def _node_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        parts, offset = [], 0
        for node in range(self.nodes):
            parts.append(torch.softmax(logits[..., offset : offset + 2 + node], -1))
            offset += 2 + node
        return torch.cat(parts, -1)

    def weights(self, cell: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This cell's (alpha, beta) as the forward pass uses them."""
        k = self.kinds[cell]
        return torch.softmax(self.mu_alpha[k], -1), self._node_softmax(self.mu_beta[k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, *self.weights(i))
        return self.classifier(nn.functional.adaptive_avg_pool2d(s1, 1).flatten(1))

    # ------------------------------------------------------------------ the derived architecture

    def log_strength(self, kind: int) -> torch.Tensor:
        """ln of each (edge, op)'s weight in the derivation: PC-DARTS' genotype() ranks by softmax(alpha)
        of the edge times softmax(beta) over the node's inputs."""
        return (
            torch.log_softmax(self.mu_alpha[kind], -1) + self._node_softmax(self.mu_beta[kind]).log()[:, None]
        )

    def derive(self) -> Genotype:
        """Per node the two inputs, and per input the op, with the largest ``log_strength`` ("none"
        excluded), as PC-DARTS' genotype() ranks them."""
        cells = []
        for k in (0, 1):
            strength = self.log_strength(k).detach().cpu().clone()
            strength[:, NONE] = -math.inf
            edges: list[tuple[str, int]] = []
            offset = 0
            for node in range(self.nodes):
                rows = strength[offset : offset + 2 + node]
                best = sorted(range(2 + node), key=lambda i: -float(rows[i].max()))[:2]
                edges.extend((PRIMITIVES[int(rows[i].argmax())], i) for i in sorted(best))
                offset += 2 + node
            cells.append(tuple(edges))
        concat = tuple(range(2, 2 + self.nodes))
        return Genotype(cells[0], concat, cells[1], concat)


class RACLSupernet(PCDartsSupernet):
    """PC-DARTS with log-normal alpha and beta (``confidence``: trainable sigma from ``sigma_init``)
    and the Lipschitz confidence constraint (``eta``, ``rho``, ``node_target``) in the architecture
    step's loss; ``seed`` seeds the per-batch draws and the power iteration's start."""

    label = "RACL"
    theta: torch.Tensor
    noise_alpha: torch.Tensor
    noise_beta: torch.Tensor

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        channels: int = 16,
        layers: int = 8,
        nodes: int = 4,
        partial: int = 4,
        confidence: bool = True,
        sigma_init: float = 0.5,
        eta: float = 0.9,
        rho: float = 0.001,
        node_target: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            channels=channels,
            layers=layers,
            nodes=nodes,
            partial=partial,
        )
        self.confidence = confidence
        self.rho = rho
        self.z = NormalDist().inv_cdf(eta)  # Phi^-1(eta)
        # ln(lambda* / C): a target of node_target per node bound, over every node of every cell.
        self.log_target = layers * nodes * math.log(node_target)
        # The spreads (0 and untrained without confidence learning), the ADMM dual and each cell's
        # standard-normal draw of its alpha and beta.
        edges, ops = self.mu_alpha.shape[1:]
        spread = sigma_init if confidence else 0.0
        self.sigma_alpha = nn.Parameter(torch.full((2, edges, ops), spread), requires_grad=confidence)
        self.sigma_beta = nn.Parameter(torch.full((2, edges), spread), requires_grad=confidence)
        self.register_buffer("theta", torch.zeros(()))
        self.register_buffer("noise_alpha", torch.zeros(layers, edges, ops))
        self.register_buffer("noise_beta", torch.zeros(layers, edges))
        # Power-iteration vectors, one per group of same-shaped stages, created at their input's size.
        self.power: dict[str, torch.Tensor] = {}
        self.sampling = confidence
        self._rng = torch.Generator().manual_seed(seed)
        self._power_rng = torch.Generator().manual_seed(seed + 1)
        self._constraint: torch.Tensor | None = None
        self._groups: dict[str, list[Member]] | None = None

    def initial_logits(self, edges: int) -> tuple[torch.Tensor, torch.Tensor]:
        """mu where PC-DARTS' softmax weights start (ln 1/8 per op, ln 1/n over a node's n inputs), plus
        1e-3 N(0, 1) jitter."""
        inputs = torch.tensor([2 + n for n in range(self.nodes) for _ in range(2 + n)], dtype=torch.float)
        alpha = -math.log(len(PRIMITIVES)) + 1e-3 * torch.randn(2, edges, len(PRIMITIVES))
        beta = -inputs.log().expand(2, edges) + 1e-3 * torch.randn(2, edges)
        return alpha, beta

    # ------------------------------------------------------------------ architecture parameters

    def arch_parameters(self) -> list[nn.Parameter]:
        params = super().arch_parameters()
        return [*params, self.sigma_alpha, self.sigma_beta] if self.confidence else params

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in (self.mu_alpha, self.mu_beta, self.sigma_alpha, self.sigma_beta)}
        return [p for p in self.parameters() if id(p) not in arch]  # sigma stays out where not trained

    def resample(self) -> None:
        """A fresh standard-normal draw for every cell's alpha and beta (used until the next call)."""
        for buf in (self.noise_alpha, self.noise_beta):
            buf.copy_(torch.randn(buf.shape, generator=self._rng).to(buf.device))

    def use_probe(self) -> None:
        """Run the median architecture (validation, evaluation, the derived genotype's weights)."""
        self.noise_alpha.zero_()
        self.noise_beta.zero_()

    def weights(self, cell: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.kinds[cell]
        alpha = sample_lognormal(self.mu_alpha[k], self.sigma_alpha[k], self.noise_alpha[cell])
        beta = sample_lognormal(self.mu_beta[k], self.sigma_beta[k], self.noise_beta[cell])
        return alpha, beta

    # ------------------------------------------------------------------ the Lipschitz bound

    @staticmethod
    def edges(cell: nn.Module) -> list[PartialMixedOp]:
        assert isinstance(cell, SearchCell)
        return [e for e in cell.edges if isinstance(e, PartialMixedOp)]

    def log_lipschitz(self) -> torch.Tensor:
        """ln lambda_o per (cell, edge, op) of the current weights (-inf for "none"), detached: one
        power-iteration step per convolutional stage (tune_robust.models.lipschitz.log_lipschitz), the
        vectors kept in ``power`` for the next call."""
        cells = [self.edges(cell) for cell in self.cells]
        if self._groups is None:  # fixed once the ops' input sizes are known
            self._groups = stage_groups(cells)
        return log_lipschitz(cells, self._groups, self.power, self._power_rng, self.mu_alpha.device)

    def bound(self, log_lipschitz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma^2) of ln of the network's bound prod_cells prod_nodes sum_i beta sum_o alpha
        lambda_o (Eqs. 10-13, ln C left out), from the per-(cell, edge, op) ln lambda_o."""
        kinds = torch.tensor(self.kinds, device=log_lipschitz.device)
        m_edge = self.mu_alpha[kinds] + log_lipschitz  # (cells, edges, ops)
        s2_edge = self.sigma_alpha[kinds].square()
        if not self.confidence:  # Eq. 10: alpha = e^mu, beta = e^mu exactly
            mu_i = torch.logsumexp(m_edge, -1)
            return self._nodes(self.mu_beta[kinds] + mu_i, None), torch.zeros((), device=mu_i.device)
        mu_i, s2_i = lognormal_sum(m_edge, s2_edge.expand_as(m_edge))  # Eq. 11, per edge
        m_node = self.mu_beta[kinds] + mu_i  # beta^(i,j) * lambda^(i,j): parameters add
        s2_node = self.sigma_beta[kinds].square() + s2_i
        return self._nodes(m_node, s2_node)

    def _nodes(self, m: torch.Tensor, s2: torch.Tensor | None) -> Any:
        """Sum each node's input terms (Eq. 12 in Eq. 11's form), then the product over every node of
        every cell (parameters add)."""
        mu, var, offset = m.new_zeros(()), m.new_zeros(()), 0
        for node in range(self.nodes):
            cols = slice(offset, offset + 2 + node)
            offset += 2 + node
            if s2 is None:
                mu = mu + torch.logsumexp(m[:, cols], -1).sum()
            else:
                mu_j, s2_j = lognormal_sum(m[:, cols], s2[:, cols])
                mu, var = mu + mu_j.sum(), var + s2_j.sum()
        return mu if s2 is None else (mu, var)

    def arch_penalty(self) -> tuple[torch.Tensor | float, dict[str, float]]:
        """The ADMM terms theta c + rho/2 c^2 of Eq. 17 (added to the architecture step's loss)."""
        mu, s2 = self.bound(self.log_lipschitz())
        c = mu + self.z * s2 - self.log_target
        self._constraint = c.detach()
        penalty = self.theta * c + self.rho / 2 * c.square()
        return penalty, {
            "search_bound_mu": float(mu.detach()),
            "search_bound_sigma2": float(s2.detach()),
            "search_constraint": float(c.detach()),
            "search_theta": float(self.theta),
        }

    def after_arch_step(self) -> None:
        """Eq. 19: theta <- theta + rho c(mu_t, Sigma_t), c as evaluated before the step."""
        if self._constraint is not None:
            self.theta.add_(self.rho * self._constraint)
            self._constraint = None

    def log_strength(self, kind: int) -> torch.Tensor:
        """ln(e^mu_alpha e^mu_beta): the medians of the edge's op weight and its input weight."""
        return self.mu_alpha[kind] + self.mu_beta[kind, :, None]

    def get_extra_state(self) -> Any:
        return {**super().get_extra_state(), "power": dict(self.power)}

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        self.power = dict(state.get("power", {}))


def _check(name: str, channels: int, layers: int, partial: int) -> None:
    if layers < 3:
        raise ConfigError(f"{name}: layers must be >= 3 (two of them reduce), got {layers}")
    if partial < 1 or channels % partial:
        raise ConfigError(f"{name}: channels ({channels}) must be a multiple of partial ({partial})")


@register_model
def racl_supernet(
    num_classes: int = 10,
    in_channels: int = 3,
    channels: int = 16,
    layers: int = 8,
    nodes: int = 4,
    partial: int = 4,
    confidence: bool = True,
    sigma_init: float = 0.5,
    eta: float = 0.9,
    rho: float = 0.001,
    node_target: float = 1.0,
    seed: int = 0,
) -> RACLSupernet:
    """RACL's search supernet (PC-DARTS: 8 cells of C=16, partial channels 1/4): log-normal alpha and
    beta with the Lipschitz confidence constraint (``eta``, ``rho``; the bound's target is
    ``node_target`` per node, i.e. ln(lambda*/C) = cells x nodes x ln node_target); ``confidence=False``
    is Table 5's "without CL"."""
    _check("racl_supernet", channels, layers, partial)
    for ok, msg in (
        (0 < eta < 1, f"eta must be in (0, 1), got {eta}"),
        (rho > 0, f"rho must be > 0, got {rho}"),
        (node_target > 0, f"node_target must be > 0, got {node_target}"),
        (
            not confidence or sigma_init > 0,
            f"sigma_init must be > 0 with confidence learning, got {sigma_init}",
        ),
    ):
        if not ok:
            raise ConfigError(f"racl_supernet: {msg}")
    return RACLSupernet(
        num_classes=num_classes,
        in_channels=in_channels,
        channels=channels,
        layers=layers,
        nodes=nodes,
        partial=partial,
        confidence=confidence,
        sigma_init=sigma_init,
        eta=eta,
        rho=rho,
        node_target=node_target,
        seed=seed,
    )


@register_model
def pcdarts_supernet(
    num_classes: int = 10,
    in_channels: int = 3,
    channels: int = 16,
    layers: int = 8,
    nodes: int = 4,
    partial: int = 4,
    seed: int = 0,
) -> PCDartsSupernet:
    """PC-DARTS' search supernet (softmax alpha and beta, partial channels 1/``partial``, no Lipschitz
    constraint): the baseline of RACL's search, searched the same way (``search`` section). ``seed`` is
    accepted as racl_supernet's is (shared sweep settings); PC-DARTS draws nothing per batch."""
    _check("pcdarts_supernet", channels, layers, partial)
    return PCDartsSupernet(
        num_classes=num_classes,
        in_channels=in_channels,
        channels=channels,
        layers=layers,
        nodes=nodes,
        partial=partial,
    )
