"""Fundamental frequency with pyworld, on the spectrogram's frame grid."""
from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    # pyworld imports pkg_resources, which warns about its own deprecation.
    warnings.simplefilter("ignore")
    import pyworld


def compute_f0(waveform: np.ndarray, sample_rate: int, n_frames: int, settings) -> np.ndarray:
    """F0 in Hz per frame (0 = unvoiced), one value per hop, frame t centred on sample t*hop.

    pyworld's frame count can differ by one from the STFT's through rounding, so the track is
    trimmed or zero-padded to n_frames.
    """
    x = np.ascontiguousarray(waveform, dtype=np.float64)
    period = settings.frame_period_ms
    if settings.f0_method == "harvest":
        f0, times = pyworld.harvest(x, sample_rate, f0_floor=settings.f0_floor,
                                    f0_ceil=settings.f0_ceil, frame_period=period)
    else:
        f0, times = pyworld.dio(x, sample_rate, f0_floor=settings.f0_floor,
                                f0_ceil=settings.f0_ceil, frame_period=period)
        f0 = pyworld.stonemask(x, f0, times, sample_rate)
    f0 = f0.astype(np.float32)
    if len(f0) >= n_frames:
        return f0[:n_frames]
    return np.pad(f0, (0, n_frames - len(f0)))
