"""The feature streams: what extraction makes of one utterance, by name. Defined here once.

Every stream is [frames, width], aligned frame for frame with the subband (frame t centred on
sample t x hop); f0 is [frames] (Hz, 0 = unvoiced). Which streams exist depends on the feature
settings; who reads them is fixed:

| stream | width | made when | read by |
| --- | --- | --- | --- |
| subband | the STFT bins up to max_hz (45) | always | the network |
| view2 | view2_bands | view2_bands > 0 | the network (its own branch) |
| excitation | 4 (features/excitation.py) | excitation | the network (its own branch) and the score fusion |
| harmonicity | 1 (features/harmonicity.py) | harmonicity | the score fusion |
| harmonic_phase | 16 (features/harmonic_phase.py) | harmonic_phase | the score fusion |
| f0 | (1-D) | the F0 channel, the fusion or harmonic_phase need it | the network (F0 channel), the fusion |
"""
from __future__ import annotations

import numpy as np

from .excitation import STATISTICS as EXCITATION_STATISTICS
from .harmonic_phase import HARMONICS

# Storage order, and the order in which the network stacks the streams it reads: the spectra
# first (the masks of SpecAugment cover them), then the excitation statistics.
STREAMS = ("subband", "view2", "excitation", "harmonicity", "harmonic_phase")
NETWORK_STREAMS = ("subband", "view2", "excitation")
SPECTRAL_STREAMS = ("subband", "view2")
FUSION_STREAMS = ("excitation", "harmonicity", "harmonic_phase")


def stream_widths(settings) -> dict[str, int]:
    """{stream: width} of every stream these feature settings make (f0 aside), in STREAMS order."""
    widths = {"subband": settings.n_subband_bins, "view2": settings.view2_bands,
              "excitation": len(EXCITATION_STATISTICS) if settings.excitation else 0,
              "harmonicity": 1 if settings.harmonicity else 0,
              "harmonic_phase": 2 * HARMONICS if settings.harmonic_phase else 0}
    return {name: width for name, width in widths.items() if width}


def network_streams(settings) -> dict[str, int]:
    """The streams the network reads, in the order it stacks them, with their widths."""
    return {name: width for name, width in stream_widths(settings).items() if name in NETWORK_STREAMS}


def fusion_streams(settings) -> tuple[str, ...]:
    """The streams the score fusion's statistics model reads (beside f0)."""
    return tuple(name for name in stream_widths(settings) if name in FUSION_STREAMS)


class Streams(dict):
    """One utterance's features: {stream name: array}, f0 under "f0" when it was computed."""

    @property
    def subband(self) -> np.ndarray:
        return self["subband"]

    @property
    def f0(self) -> np.ndarray | None:
        return self.get("f0")

    @property
    def frames(self) -> int:
        return len(self["subband"])

    def stacked(self, names) -> np.ndarray:
        """The named streams side by side, [frames, sum of widths] (the network's input rows)."""
        return np.concatenate([self[name] for name in names], axis=1) if len(names) > 1 else self[names[0]]
