"""SR-LA Res2Net: Res2Net whose splits are gated by spatial reconstruction, with local attention.

Fan, Xue et al., "Spatial reconstructed local attention Res2Net with F0 subband for fake
speech detection", Neural Networks 2024. Written from the paper's description; the authors'
code does not run.

Input [batch, channels, bins, frames] -> 256-d embedding (planes[-1] * expansion).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SpatialReconstruction(nn.Module):
    """Gate a feature map by where (bins x frames) its channels agree: mean map -> dilated conv -> sigmoid."""

    def __init__(self, kernel: int = 7, dilation: int = 2, dropout: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.dropout(self.conv(x.mean(dim=1, keepdim=True))))
        return x * gate


class LocalAttention(nn.Module):
    """ECA-style channel attention: global pool, 1-D conv across neighbouring channels, sigmoid."""

    def __init__(self, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))                            # [B, C]
        weight = torch.sigmoid(self.conv(pooled.unsqueeze(1))).squeeze(1)
        return x * weight[:, :, None, None]


class Bottle2neck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, settings, first: bool):
        super().__init__()
        self.scale = settings.scale
        width = int(math.floor(planes * settings.base_width / 64.0))
        self.width = width
        expansion = settings.expansion
        self.conv1 = nn.Conv2d(inplanes, width * self.scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * self.scale)
        # The first block of a stage ('stage' type) convolves every split from its own input,
        # and pools the last split so it matches the strided ones.
        self.first = first
        n_convs = max(1, self.scale - 1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, stride, 1, bias=False) for _ in range(n_convs))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(n_convs))
        # Where the spatial-reconstruction (SR) gates sit (model.sr_placement):
        # split_input (the authors' code): one SR per block, shared by its splits, gating each
        #   incoming split before it is added to the previous split's output; none in a stage's
        #   first block (whose splits are not chained).
        # split_output: one SR per split gating that split's conv output, in every block.
        use_sr = settings.arch == "srla_res2net"
        placement = getattr(settings, "sr_placement", "split_output")

        def gate():
            return SpatialReconstruction(settings.sr_kernel, settings.sr_dilation, settings.sr_dropout)

        self.sr = gate() if use_sr and placement == "split_input" and not first else None
        self.srs = (nn.ModuleList(gate() for _ in range(n_convs))
                    if use_sr and placement == "split_output" else None)
        self.pool = nn.AvgPool2d(3, stride, 1) if first and self.scale > 1 else None
        self.conv3 = nn.Conv2d(width * self.scale, planes * expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion)
        self.attention = LocalAttention(settings.la_kernel) if use_sr else nn.Identity()
        self.shortcut = None
        if stride != 1 or inplanes != planes * expansion:
            # Res2Net-v1b shortcut: average-pool, then a 1x1 conv (no information thrown away by stride).
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity(),
                nn.Conv2d(inplanes, planes * expansion, 1, bias=False),
                nn.BatchNorm2d(planes * expansion))

    def conv_norm_pairs(self):
        """(owner, conv key, owner, norm key) of each convolution whose output goes straight into a
        BatchNorm (model.fold_batchnorm); the shortcut's pair lies in its Sequential."""
        yield self, "conv1", self, "bn1"
        yield from ((self.convs, i, self.bns, i) for i in range(len(self.convs)))
        yield self, "conv3", self, "bn3"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        splits = torch.split(out, self.width, dim=1)
        outputs = []
        sp = None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i == 0 or self.first:
                sp = splits[i]
            else:
                sp = sp + (splits[i] if self.sr is None else self.sr(splits[i]))
            sp = F.relu(bn(conv(sp)), inplace=True)
            if self.srs is not None:
                sp = self.srs[i](sp)
            outputs.append(sp)
        if self.scale > 1:
            outputs.append(self.pool(splits[-1]) if self.pool is not None else splits[-1])
        out = self.bn3(self.conv3(torch.cat(outputs, dim=1)))
        out = self.attention(out)
        residual = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + residual, inplace=True)


class SRLARes2Net(nn.Module):
    def __init__(self, settings, in_channels: int):
        super().__init__()
        stem = settings.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        stages, inplanes = [], stem
        for index, (planes, blocks) in enumerate(zip(settings.planes, settings.layers)):
            stride = 1 if index == 0 else 2
            layer = [Bottle2neck(inplanes, planes, stride, settings, first=True)]
            inplanes = planes * settings.expansion
            layer += [Bottle2neck(inplanes, planes, 1, settings, first=False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layer))
        self.stages = nn.Sequential(*stages)
        self.embedding_dim = inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))
