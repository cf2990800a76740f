"""A-Softmax (SphereFace): angular-margin head and loss, and a plain softmax head for ablation.

Head output for a batch: cos_theta [B, C] (cosine to each normalised class weight),
psi_theta [B, C] (the margin function psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi))
and the embedding norms [B]. The loss mixes psi into the target logit with weight
1 / (1 + lambda), lambda = max(lambda_min, lambda_base / (1 + gamma * step)), so the margin is
annealed in over the run.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# cos(m theta) as a polynomial in cos(theta) (Chebyshev polynomials of the first kind).
_COS_M_THETA = {
    0: lambda c: torch.ones_like(c), 1: lambda c: c, 2: lambda c: 2 * c ** 2 - 1,
    3: lambda c: 4 * c ** 3 - 3 * c, 4: lambda c: 8 * c ** 4 - 8 * c ** 2 + 1,
    5: lambda c: 16 * c ** 5 - 20 * c ** 3 + 5 * c,
}


class AngularOutput(NamedTuple):
    cos_theta: torch.Tensor
    psi_theta: torch.Tensor
    norm: torch.Tensor


def cos_m_theta(cos_theta: torch.Tensor, m: int) -> torch.Tensor:
    return _COS_M_THETA[m](cos_theta)


def psi(cos_theta: torch.Tensor, m: int) -> torch.Tensor:
    """(-1)^k cos(m theta) - 2k, monotonically decreasing in theta on [0, pi]."""
    theta = torch.acos(cos_theta.clamp(-1.0, 1.0))
    k = torch.floor(m * theta / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * cos_m_theta(cos_theta, m) - 2.0 * k


def margin_lambda(step: int, lambda_min: float = 5.0, lambda_base: float = 1500.0, gamma: float = 0.1) -> float:
    return max(lambda_min, lambda_base / (1.0 + gamma * step))


def floor_gamma(lambda_min: float, lambda_base: float, floor_at: float, total_steps: int) -> float:
    """The gamma with which margin_lambda reaches lambda_min after floor_at * total_steps steps,
    so the margin's weight 1 / (1 + lambda) grows over the run whatever its length."""
    return (lambda_base / lambda_min - 1.0) / max(1.0, floor_at * total_steps)


class AngleLinear(nn.Module):
    def __init__(self, in_features: int, n_classes: int = 2, m: int = 4):
        super().__init__()
        if m not in _COS_M_THETA:
            raise ValueError(f"A-Softmax margin m must be one of {sorted(_COS_M_THETA)}, got {m}")
        self.m = m
        self.weight = nn.Parameter(torch.empty(in_features, n_classes).uniform_(-1, 1))

    def forward(self, x: torch.Tensor) -> AngularOutput:
        # fp32 even under bf16 autocast: a bf16 matmul puts cos(theta) off by up to 2e-3 and
        # psi(theta) (a 4th-degree polynomial of it) by up to 1e-2.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            norm = x.norm(dim=1).clamp_min(1e-12)
            w = F.normalize(self.weight.float(), dim=0)
            cos_theta = ((x @ w) / norm[:, None]).clamp(-1.0, 1.0)
            return AngularOutput(cos_theta, psi(cos_theta, self.m), norm)


class SoftmaxHead(nn.Module):
    """Plain linear softmax, shaped like AngularOutput so the same loss and score code apply."""

    def __init__(self, in_features: int, n_classes: int = 2):
        super().__init__()
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, x: torch.Tensor) -> AngularOutput:
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.linear(x.float())
        ones = torch.ones(len(x), device=x.device)
        return AngularOutput(logits, logits, ones)


def asoftmax_logits(output: AngularOutput, target: torch.Tensor, lam: float) -> torch.Tensor:
    """Logits with the target class's cos replaced by (lam * cos + psi) / (1 + lam), times the norm."""
    cos_theta, psi_theta, norm = output
    onehot = F.one_hot(target, cos_theta.shape[1]).bool()
    mixed = torch.where(onehot, (lam * cos_theta + psi_theta) / (1.0 + lam), cos_theta)
    return mixed * norm[:, None]


def asoftmax_loss(output: AngularOutput, target: torch.Tensor, lam: float) -> torch.Tensor:
    return F.cross_entropy(asoftmax_logits(output, target, lam), target)
