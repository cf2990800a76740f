"""The network: SR-LA Res2Net (or plain Res2Net) with an A-Softmax (or softmax) head.

Device placement is the caller's: nothing here calls .cuda().
"""
from __future__ import annotations

import torch
from torch import nn

from .asoftmax import AngleLinear, AngularOutput, SoftmaxHead, asoftmax_loss, margin_lambda, psi
from .srla_res2net import SRLARes2Net

__all__ = ["AngularOutput", "Detector", "asoftmax_loss", "bonafide_score", "build_model",
           "count_parameters", "margin_lambda", "psi"]

BONAFIDE = 1  # class index of bona fide (label 1 in the shards)


class Detector(nn.Module):
    def __init__(self, settings):
        super().__init__()
        in_channels = 2 if settings.f0_channel else 1
        self.input_norm = settings.input_norm
        self.backbone = SRLARes2Net(settings, in_channels)
        dim = self.backbone.embedding_dim
        self.head = AngleLinear(dim, 2, settings.margin) if settings.head == "asoftmax" else SoftmaxHead(dim, 2)

    def forward(self, x: torch.Tensor) -> AngularOutput:
        if self.input_norm == "utterance":
            # x: [batch, channels, bins, frames]; channel 0 is the log spectrogram (an F0
            # channel, if any, is left as it is).
            sub = x[:, :1]
            x = torch.cat([sub - sub.mean(dim=-1, keepdim=True), x[:, 1:]], dim=1)
        return self.head(self.backbone(x))


def build_model(model_settings) -> Detector:
    return Detector(model_settings)


def bonafide_score(output: AngularOutput) -> torch.Tensor:
    """One score per utterance, higher = more bona fide: the bona fide cosine (logit for softmax)."""
    return output.cos_theta[:, BONAFIDE].detach().float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
