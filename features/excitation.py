"""Excitation statistics: how pulse-like the LPC residual of each frame is.

A vocoder rebuilds speech from a source and a filter, and its source is rarely the voice's own:
a pulse train (LPC, WORLD, Codec 2) makes a residual more impulsive than a human glottis does,
and a phase reconstruction (Griffin-Lim, a mel inversion) smears each pulse over the period, so
its residual is less impulsive. Both keep the spectral envelope and the F0 that the spectrogram
views look at. On the mini corpus one of these numbers per utterance (the median residual
kurtosis) alone separates bona fide from both kinds of vocoder well (docs/experiments.md).
"""
from __future__ import annotations

import numpy as np

from .subband import n_frames, preemphasis

# Statistics per frame, in this order (each a log, so 0 is a neutral value for silent frames).
STATISTICS = ("kurtosis", "crest", "envelope_peak", "prediction_gain")
FRAME_SECONDS = 0.025     # analysis frame
ENVELOPE_SECONDS = 0.002  # block of the residual's energy envelope


def levinson(autocorrelation: np.ndarray, order: int) -> np.ndarray:
    """Prediction-error filters [frames, order + 1] (a[0] = 1) from autocorrelations [frames, >= order + 1],
    by the Levinson-Durbin recursion, all frames at once."""
    r = autocorrelation.astype(np.float64)
    a = np.zeros((len(r), order + 1))
    a[:, 0] = 1.0
    error = r[:, 0].copy()
    for i in range(1, order + 1):
        reflection = -(a[:, :i] * r[:, i:0:-1]).sum(axis=1) / np.maximum(error, 1e-12)
        a[:, 1:i + 1] = a[:, 1:i + 1] + reflection[:, None] * a[:, i - 1::-1][:, :i]
        error *= 1.0 - reflection ** 2
    return a


def excitation_statistics(waveform: np.ndarray, sample_rate: int, hop_length: int, order: int = 12,
                          preemphasis_coefficient: float = 0.97) -> np.ndarray:
    """[frames, 4] float32, one row per hop, frame t centred on sample t * hop_length (the
    subband's frames): the log kurtosis, log crest factor and log peak-to-mean ratio of the 2 ms
    energy envelope of the order-`order` LPC residual over a 25 ms frame (Hann-windowed for the
    analysis, the residual over the plain samples), and the log prediction gain (frame energy /
    residual energy). Frames without energy get 0s."""
    window = int(round(FRAME_SECONDS * sample_rate))
    block = max(1, int(round(ENVELOPE_SECONDS * sample_rate)))
    x = preemphasis(np.asarray(waveform, dtype=np.float32), preemphasis_coefficient).astype(np.float64)
    frames = n_frames(len(x), hop_length)
    half = window // 2
    padded = np.pad(x, (half + order, half + hop_length))
    # Each row: `order` samples of history, then the frame's `window` samples.
    rows = np.lib.stride_tricks.sliding_window_view(padded, window + order)[::hop_length][:frames]
    segment = rows[:, order:]
    taper = np.hanning(window)
    spectrum = np.fft.rfft(segment * taper, n=2 * window, axis=1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :order + 1]
    autocorrelation[:, 0] *= 1.0 + 1e-9  # white-noise correction: keeps the recursion stable
    a = levinson(autocorrelation, order)
    # Residual e[n] = sum_k a[k] x[n - k] over the frame's samples.
    history = np.lib.stride_tricks.sliding_window_view(rows, order + 1, axis=1)  # [frames, window, order+1]
    residual = np.einsum("fnk,fk->fn", history[:, :, ::-1], a)
    power = np.mean(residual ** 2, axis=1)
    energy = np.mean(segment ** 2, axis=1)
    live = (energy > 1e-10) & (power > 1e-14)
    out = np.zeros((frames, len(STATISTICS)), dtype=np.float32)
    if not live.any():
        return out
    e, p = residual[live], power[live]
    squared = np.square(e)  # (e ** 4 is numpy's general power: 8x slower than squaring twice)
    blocks = squared[:, :window // block * block].reshape(len(e), -1, block)
    envelope = np.mean(blocks, axis=2)
    out[live, 0] = np.log(np.mean(np.square(squared), axis=1) / p ** 2)
    out[live, 1] = np.log(np.sqrt(np.max(squared, axis=1)) / np.sqrt(p))
    # The envelope's blocks leave out the frame's last window % block samples: a frame whose only
    # non-zero residual lies there (digital silence before an onset) has a flat, zero envelope,
    # which gets the neutral 0 like a silent frame rather than log(0).
    peak = np.max(envelope, axis=1)
    out[live, 2] = np.log(np.where(peak > 0, peak / np.maximum(np.mean(envelope, axis=1), 1e-20), 1.0))
    out[live, 3] = np.log(energy[live] / p)
    return out


# Per utterance, for the score fusion (model/fusion.py): the median and the interquartile range of
# each frame statistic over voiced frames, the same over unvoiced frames, and the voiced share.
N_UTTERANCE_STATISTICS = 4 * len(STATISTICS) + 1
MIN_FRAMES = 3  # fewer voiced (or unvoiced) frames than this: that half uses all speech frames


def utterance_statistics(frames: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """[N_UTTERANCE_STATISTICS] float64 of one utterance from its per-frame statistics [frames, 4]
    (excitation_statistics, as the shards store them) and its F0 [frames] (0 = unvoiced).

    Silent frames (all four statistics 0) are left out. Medians and quartile ranges rather than
    means: a few frames at a word edge can have any value.
    """
    frames = np.asarray(frames, dtype=np.float64)
    f0 = np.asarray(f0)
    if frames.ndim != 2 or frames.shape[1] != len(STATISTICS) or len(f0) != len(frames):
        raise ValueError(f"expected [frames, {len(STATISTICS)}] statistics and as many F0 values, got "
                         f"{frames.shape} and {f0.shape}")
    speech = np.abs(frames).sum(axis=1) > 0
    if speech.sum() < MIN_FRAMES:
        speech = np.ones(len(frames), bool)  # (nearly) silent throughout: use what there is
    voiced = speech & (f0 > 0)
    parts = []
    for half in (voiced, speech & ~voiced):
        chosen = frames[half] if half.sum() >= MIN_FRAMES else frames[speech]
        q25, q50, q75 = np.percentile(chosen, [25, 50, 75], axis=0)
        parts += [q50, q75 - q25]
    return np.concatenate(parts + [[voiced.sum() / speech.sum()]])
