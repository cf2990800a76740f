"""The network: SR-LA Res2Net (or plain Res2Net) with an A-Softmax (or softmax, or one-class) head.

Device placement is the caller's: nothing here calls .cuda().
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from features.streams import NETWORK_STREAMS, network_streams

from .asoftmax import AngleLinear, AngularOutput, SoftmaxHead, asoftmax_loss, floor_gamma, margin_lambda, psi
from .one_class import OneClassHead, one_class_loss
from .srla_res2net import SRLARes2Net

__all__ = ["AngularOutput", "Detector", "asoftmax_loss", "bonafide_score", "build_model", "count_parameters",
           "decision_logit", "fold_batchnorm", "floor_gamma", "head_loss", "margin_lambda", "psi"]

BONAFIDE = 1  # class index of bona fide (label 1 in the shards)


class BandBranch(nn.Module):
    """The second view's own small CNN (features.view2_bands > 0): four 3x3 conv + BatchNorm +
    ReLU layers, the last three with stride 2, then the mean over bands and frames:
    [batch, channels, bands, frames] -> [batch, dim]."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        widths = [in_channels, dim // 4, dim // 2, dim // 2, dim]
        layers = []
        for index, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Conv2d(a, b, 3, 1 if index == 0 else 2, 1, bias=False), nn.BatchNorm2d(b),
                       nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.embedding_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))


class ExcitationBranch(nn.Module):
    """The excitation statistics' own branch (features.excitation): the statistics (times the
    input's channels) as channels of three 1-D convs over frames (BatchNorm + ReLU, the last two
    with stride 2), then the mean and the standard deviation over frames (how often frames are
    impulsive matters, not only on average): [batch, channels, statistics, frames] -> [batch, dim]."""

    def __init__(self, in_channels: int, statistics: int, dim: int):
        super().__init__()
        width = dim // 2
        widths = [in_channels * statistics, width, width, width]
        layers = []
        for index, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Conv1d(a, b, 5 if index == 0 else 3, 1 if index == 0 else 2, 2 if index == 0 else 1,
                                 bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.embedding_dim = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(x.flatten(1, 2))
        return torch.cat([h.mean(dim=2), h.std(dim=2, correction=0)], dim=1)  # finite for one frame too


class Detector(nn.Module):
    """SR-LA Res2Net on the F0 subband, and a branch of its own for each other stream it reads:
    a BandBranch for the second view (view2), an ExcitationBranch for the excitation statistics.
    The embeddings are concatenated before the head (embedding-level fusion).

    streams: {name: width} of the streams it reads (features.network_streams), in the order they
    are stacked into its input rows; the input holds those rows and nothing else."""

    def __init__(self, settings, streams: dict[str, int] | None = None):
        super().__init__()
        self.streams = dict(streams or {"subband": 0})
        unknown = set(self.streams) - set(NETWORK_STREAMS)
        if unknown:
            raise ValueError(f"the network reads none of the streams {sorted(unknown)}")
        in_channels = 2 if settings.f0_channel else 1
        self.input_norm = settings.input_norm
        # The second view starts after the subband's rows; the excitation statistics are the last rows.
        self.view2_split = self.streams["subband"] if "view2" in self.streams else None
        self.excitation_rows = self.streams.get("excitation", 0)
        self.backbone = SRLARes2Net(settings, in_channels)
        dim = self.backbone.embedding_dim
        self.view2 = None
        if self.view2_split is not None:
            self.view2 = BandBranch(in_channels, settings.view2_dim)
            dim += self.view2.embedding_dim
        self.excitation = None
        if self.excitation_rows:
            self.excitation = ExcitationBranch(in_channels, self.excitation_rows, settings.excitation_dim)
            dim += self.excitation.embedding_dim
        if settings.head == "asoftmax":
            self.head = AngleLinear(dim, 2, settings.margin)
        elif settings.head == "ocsoftmax":
            self.head = OneClassHead(dim, settings.oc_alpha)
        else:
            self.head = SoftmaxHead(dim, 2)

    def forward(self, x: torch.Tensor) -> AngularOutput:
        # x: [batch, channels, rows, frames]: the streams it reads, stacked (the subband's bins,
        # the second view's bands, the excitation statistics).
        excitation = None
        if self.excitation is not None:
            x, excitation = x[:, :, :-self.excitation_rows], x[:, :, -self.excitation_rows:]
        if self.input_norm == "utterance":
            # Channel 0 is the log spectrogram (an F0 channel, if any, is left as it is).
            sub = x[:, :1]
            x = torch.cat([sub - sub.mean(dim=-1, keepdim=True), x[:, 1:]], dim=1)
        embeddings = []
        if self.view2 is not None:
            x, bands = x[:, :, :self.view2_split], x[:, :, self.view2_split:]
            embeddings.append(self.view2(bands))
        if excitation is not None:
            embeddings.append(self.excitation(excitation))
        embedding = self.backbone(x)
        return self.head(torch.cat([embedding] + embeddings, dim=1) if embeddings else embedding)


def build_model(model_settings, feature_settings=None) -> Detector:
    """The network for these model settings, reading the streams the feature settings make for it
    (features.network_streams: the subband, and the second view and excitation statistics where
    they are on); without feature settings, the subband alone."""
    return Detector(model_settings, network_streams(feature_settings) if feature_settings is not None else None)


def head_loss(settings):
    """The training loss of model.head, as loss(output, target, lam); lam (the A-Softmax margin's
    annealing) is ignored by the other heads."""
    if settings.head == "ocsoftmax":
        bonafide_margin, spoof_margin = settings.oc_margins
        return lambda output, target, lam: one_class_loss(output, target, bonafide_margin, spoof_margin,
                                                          settings.oc_alpha, BONAFIDE)
    return asoftmax_loss  # the softmax head's psi is its logit, so this is plain cross-entropy


def bonafide_score(output: AngularOutput) -> torch.Tensor:
    """One score per utterance, higher = more bona fide: the model's own decision statistic.

    A-Softmax decides by the larger cosine, so the score is cos(theta_bonafide) - cos(theta_spoof)
    (in [-2, 2]; > 0 = the head's decision is bona fide). The margin-free cosines are used, as at
    test time the margin applies to no class. For the softmax head the same rule gives the logit
    difference, i.e. the log-odds of bona fide. Either way the score orders utterances exactly as
    the head's own class decision does (the bona fide cosine alone did not)."""
    cos = output.cos_theta.detach().float()
    return cos[:, BONAFIDE] - cos[:, 1 - BONAFIDE]


def decision_logit(output: AngularOutput) -> torch.Tensor:
    """The margin-free bona fide-vs-spoof logit difference: (cos_b - cos_s) * |embedding| for
    A-Softmax (its test-time logits are cos * |x|), the logit difference for softmax. Its
    softplus(-logit) / softplus(logit) is the cross-entropy of a bona fide / spoof utterance."""
    return bonafide_score(output) * output.norm.detach().float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _get(owner, key):
    return owner[key] if isinstance(key, int) else getattr(owner, key)


def _set(owner, key, module):
    if isinstance(key, int):
        owner[key] = module
    else:
        setattr(owner, key, module)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """The model for scoring only: put in eval mode, and every BatchNorm that a convolution feeds
    directly folded into that convolution's weights and bias (the norm becomes an Identity), in
    place. The same function of the input (in fp32 to about 1e-6), without the norms' passes over
    the activations; training it again would be wrong, so only a scorer's own copy is folded."""
    model.eval()
    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            pairs += [(module, i, module, i + 1) for i in range(len(module) - 1)
                      if isinstance(module[i], (nn.Conv1d, nn.Conv2d))
                      and isinstance(module[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d))]
        if hasattr(module, "conv_norm_pairs"):
            pairs += list(module.conv_norm_pairs())
    for conv_owner, conv_key, norm_owner, norm_key in pairs:
        _set(conv_owner, conv_key, fuse_conv_bn_eval(_get(conv_owner, conv_key), _get(norm_owner, norm_key)))
        _set(norm_owner, norm_key, nn.Identity())
    return model
