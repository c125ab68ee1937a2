"""Log-normal arithmetic for RACL's Lipschitz bound (Dong et al., Eqs. 11-13).

A sum of independent log-normal variables X_i ~ LN(m_i, s_i^2) is approximated by the log-normal with
the same mean and variance (Fenton-Wilkinson; RACL cites Marlow 1967):

    E[S]   = sum_i exp(m_i + s_i^2 / 2)
    Var[S] = sum_i exp(2 m_i + s_i^2) (exp(s_i^2) - 1)
    sigma_S^2 = ln(1 + Var[S] / E[S]^2),   mu_S = ln E[S] - sigma_S^2 / 2.

This is RACL Eq. 11. Eq. 12 (the node level) is printed with the variances halved and the sum indexed
over the wrong variable; we apply the same Eq. 11 form to the node's terms beta^(i,j) * lambda^(i,j), whose
log-normal parameters are (mu_beta + mu_I, sigma_beta^2 + sigma_I^2) (a product of independent
log-normals), as the issue and the paper's own derivation ask. A product of independent log-normals is
log-normal with the parameters added (the network level, Eq. 13's left side).
"""

from __future__ import annotations

import torch


def lognormal_sum(m: torch.Tensor, s2: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma^2) of the Fenton-Wilkinson log-normal of ``sum over dim`` of independent
    LN(m, s2) terms. A term with ``m = -inf`` is absent (a zero op, Lipschitz constant 0); at least one
    term per sum must be present. Differentiable in m and s2, also at s2 = 0 (deterministic terms)."""
    a = m + s2 / 2  # ln E[X_i]
    log_mean = torch.logsumexp(a, dim=dim)
    share = torch.softmax(a, dim=dim)  # E[X_i] / E[S]
    # Var[S] / E[S]^2 = sum_i share_i^2 (exp(s_i^2) - 1)
    ratio = (share.square() * torch.expm1(s2).expand_as(share)).sum(dim)
    sigma2 = torch.log1p(ratio)
    return log_mean - sigma2 / 2, sigma2


def sample_lognormal(mu: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """exp(mu + sigma * noise): a reparameterised LN(mu, sigma^2) draw for standard normal ``noise``
    (positive, differentiable in mu and sigma)."""
    return torch.exp(mu + sigma * noise)
