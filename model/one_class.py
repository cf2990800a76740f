"""One-class softmax (OC-Softmax; Zhang, Jiang and Duan, IEEE SPL 2021) for model.head: ocsoftmax.

One learned direction w in embedding space stands for bona fide speech. The head's statistic is
the cosine c between an embedding and w. Training pulls bona fide embeddings to within an angle
of w (c >= margin_bonafide) and pushes spoofs only beyond a looser bound (c <= margin_spoof):

    loss = softplus(alpha * (margin_bonafide - c))   for bona fide
    loss = softplus(alpha * (c - margin_spoof))      for a spoof

Only the bona fide class is made compact; spoofs may lie anywhere outside the bound, so an
attack unlike every training attack still lands outside the bona fide cone. That is the point
for generators never seen in training (the paper's motivation, on ASVspoof 2019 LA).

The output is shaped like AngularOutput so scoring, calibration and export need no change:
cos_theta = [-c, c] in class order (spoof, bona fide), so bonafide_score = 2c orders utterances
by c, as the authors of OC-Softmax score, and the larger column is the class decision at c = 0.
norm carries alpha / 2, so decision_logit (score x norm) is alpha * c.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .asoftmax import AngularOutput


class OneClassHead(nn.Module):
    def __init__(self, in_features: int, alpha: float = 20.0):
        super().__init__()
        self.alpha = alpha
        self.weight = nn.Parameter(torch.empty(in_features).uniform_(-1, 1))

    def forward(self, x: torch.Tensor) -> AngularOutput:
        # fp32 even under bf16 autocast, as the A-Softmax head: the margins are cosines.
        with torch.autocast(device_type=x.device.type, enabled=False):
            c = F.normalize(x.float(), dim=1) @ F.normalize(self.weight.float(), dim=0)
            cos_theta = torch.stack([-c, c], dim=1)
            scale = torch.full_like(c, self.alpha / 2.0)
            return AngularOutput(cos_theta, cos_theta, scale)


def one_class_loss(output: AngularOutput, target: torch.Tensor, margin_bonafide: float,
                   margin_spoof: float, alpha: float, bonafide: int = 1) -> torch.Tensor:
    """Mean OC-Softmax loss of a batch; target holds class indices (bonafide = bona fide)."""
    c = output.cos_theta[:, bonafide]
    distance = torch.where(target == bonafide, margin_bonafide - c, c - margin_spoof)
    return F.softplus(alpha * distance).mean()
