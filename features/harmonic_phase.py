"""Harmonic phase: how the phases of a voiced frame's harmonics hang together, frame by frame.

A voice's glottal pulse has a shape that changes slowly, so the phase of each harmonic relative
to the fundamental's (the relative phase shift, RPS; Saratxaga et al. 2009) stays nearly the same
from one frame to the next, and each harmonic's phase advances as the F0 says it should. A phase
reconstruction (Griffin-Lim, a phase vocoder) rebuilds the phases bin by bin and loses both; a
pulse-excited vocoder (WORLD, LPC, Codec 2) keeps them more exactly than a voice does.

Per voiced frame (pyworld F0 > 0): a Hann window of 3 periods centred on the frame, and the
complex amplitude of harmonics 1-8 below MAX_HZ, measured at exactly k x F0 (a DFT at those
frequencies, not the FFT's bins). Stored per frame and harmonic: the phase relative to an ideal
harmonic that follows the F0 track (the F0 integrated over the frames, so the phase advance the F0
predicts is already taken out), and the level in dB (ABSENT_DB where nothing was measured:
unvoiced frames, harmonics above MAX_HZ, windows over the file's edge). The score fusion reads 9
statistics per utterance of them (utterance_phase_statistics); the network never reads them.

Pure signal code: (waveform, rate, hop, F0 track) -> per-frame values.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ABSENT_DB", "HARMONICS", "N_PHASE_STATISTICS", "frame_harmonic_phase", "utterance_phase_statistics"]

HARMONICS = 8                     # harmonics 1-8: all below MAX_HZ for an F0 up to 475 Hz
MAX_HZ = 3800.0                   # harmonics above this are not measured (the corpus' band edge)
PERIODS = 3                       # the window: 3 periods of the frame's F0
ABSENT_DB = -100.0                # the level stored where a harmonic was not measured
BLOCK_FRAMES = 256                # voiced frames computed at once (memory: ~15 MB per block)
MIN_VALUES = 3                    # a statistic with fewer values to go on: no evidence (NaN)
GROUPS = ((1, 2, 3), (4, 5, 6, 7))  # harmonics 2-4 and 5-8 (0-based)
N_PHASE_STATISTICS = 3 * len(GROUPS) + 3


def frame_harmonic_phase(waveform: np.ndarray, sample_rate: int, hop_length: int, f0: np.ndarray) -> np.ndarray:
    """[frames, 2 x HARMONICS] float32 for the F0 track f0 [frames] (frame t centred on sample
    t * hop_length): harmonics 1-8's phases in radians (relative to the F0 track's own running
    phase, wrapped to +-pi), then their levels in dB (ABSENT_DB where not measured)."""
    x = np.asarray(waveform, dtype=np.float64)
    f0 = np.asarray(f0, dtype=np.float64)
    n_frames = len(f0)
    phases = np.zeros((n_frames, HARMONICS))
    levels = np.full((n_frames, HARMONICS), ABSENT_DB)
    # The running phase of the F0 track: between frames t and t+1 it advances by their mean F0.
    step = np.where((f0[:-1] > 0) & (f0[1:] > 0), 0.5 * (f0[:-1] + f0[1:]), 0.0) * hop_length / sample_rate
    running = 2 * np.pi * np.concatenate([[0.0], np.cumsum(step)])
    lengths = np.where(f0 > 0, np.round(PERIODS * sample_rate / np.where(f0 > 0, f0, 1.0)), 0).astype(int)
    centres = np.arange(n_frames) * hop_length
    inside = (f0 > 0) & (centres - lengths // 2 >= 0) & (centres - lengths // 2 + lengths <= len(x))
    frames = np.flatnonzero(inside)
    k = np.arange(1, HARMONICS + 1)
    for first in range(0, len(frames), BLOCK_FRAMES):
        block = frames[first:first + BLOCK_FRAMES]
        span = int(lengths[block].max())
        offsets = np.arange(span) - span // 2                              # samples from the centre
        length = lengths[block][:, None]
        window = np.where(np.abs(offsets)[None, :] < length / 2,
                          0.5 + 0.5 * np.cos(2 * np.pi * offsets[None, :] / length), 0.0)
        index = np.clip(centres[block][:, None] + offsets[None, :], 0, len(x) - 1)
        segments = x[index] * window                                       # [frames, span]
        # The DFT at k x F0 for k = 1..8: the fundamental's complex exponential, raised power by power.
        base = np.exp(-2j * np.pi * f0[block][:, None] * offsets[None, :] / sample_rate)
        kernel = np.ones_like(base)
        amplitude = np.empty((len(block), HARMONICS), complex)
        for h in range(HARMONICS):
            kernel *= base
            amplitude[:, h] = np.einsum("fs,fs->f", segments, kernel)
        amplitude /= window.sum(axis=1)[:, None]
        measured = k[None, :] * f0[block][:, None] < MAX_HZ
        phases[block] = np.where(measured, np.angle(amplitude * np.exp(-1j * k[None, :] * running[block][:, None])), 0.0)
        levels[block] = np.where(measured, 20 * np.log10(np.maximum(np.abs(amplitude), 1e-5)), ABSENT_DB)
    return np.concatenate([phases, levels], axis=1).astype(np.float32)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * angle))


def _resultant(angles: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean resultant length: 1 when every angle is the same, near 0 when they are spread evenly."""
    weights = np.ones_like(angles) if weights is None else weights
    return float(np.abs(np.sum(weights * np.exp(1j * angles))) / np.sum(weights))


def utterance_phase_statistics(rows: np.ndarray) -> np.ndarray:
    """[N_PHASE_STATISTICS] float64 of one utterance from frame_harmonic_phase's rows (as the shards
    store them): for harmonics 2-4 and for 5-8, how steady the RPS is from frame to frame (its
    change's resultant length, weighted by the harmonic's level, and its median size) and over
    the utterance (the RPS's resultant length); then for harmonics 1-3, how steadily each phase
    advances as the F0 says (the resultant length of the phase change between neighbouring
    frames). A statistic with fewer than MIN_VALUES values to go on (a whispered or silent
    utterance, one where pyworld found no F0) is NaN: no evidence either way, which the statistics
    model replaces by its training bona fide median (model/fusion.py)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 2 * HARMONICS:
        raise ValueError(f"expected [frames, {2 * HARMONICS}] harmonic phase rows, got {rows.shape}")
    phase, level = rows[:, :HARMONICS], rows[:, HARMONICS:]
    measured = level > ABSENT_DB + 1.0
    amplitude = 10.0 ** (level / 20.0)
    pairs = np.flatnonzero(measured[:-1, 0] & measured[1:, 0])
    rps = _wrap(phase - np.arange(1, HARMONICS + 1)[None, :] * phase[:, :1])
    out = []
    for group in GROUPS:
        changes, weights, steadiness = [], [], []
        for k in group:
            both = pairs[measured[pairs, k] & measured[pairs + 1, k]]
            changes.append(_wrap(rps[both + 1, k] - rps[both, k]))
            weights.append(np.sqrt(amplitude[both, k] * amplitude[both + 1, k]))
            if measured[:, k].sum() >= MIN_VALUES:
                steadiness.append(_resultant(rps[measured[:, k], k]))
        change, weight = np.concatenate(changes), np.concatenate(weights)
        if len(change) >= MIN_VALUES:
            out += [_resultant(change, weight), float(np.median(np.abs(change)))]
        else:
            out += [np.nan, np.nan]
        out.append(float(np.mean(steadiness)) if steadiness else np.nan)
    for k in range(3):
        both = pairs[measured[pairs, k] & measured[pairs + 1, k]]
        out.append(_resultant(_wrap(phase[both + 1, k] - phase[both, k])) if len(both) >= MIN_VALUES else np.nan)
    return np.array(out)
