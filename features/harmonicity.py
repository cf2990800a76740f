"""Harmonicity: how exactly the signal repeats itself one period later, frame by frame.

A voice's glottis never repeats a cycle exactly and breath noise rides on every period; a vocoder
that drives a filter with pulses at a smooth F0 contour (WORLD, LPC, Codec 2) or a neural decoder
with a sine source repeats its periods more exactly, a phase reconstruction less. Per frame: the
largest normalised correlation r of a 1/60 s window with itself shifted by any lag of a 60-500 Hz
period (the peak refined by a parabola through its neighbours), as Praat's cross-correlation
harmonics-to-noise ratio computes it (HNR = 10 log10(r / (1 - r)) dB; Boersma 1993). Frames
whose window peaks below a tenth of the utterance's peak are silent. Per utterance, the score
fusion reads the median HNR of the frames that are not silent (what it gained: docs/experiments.md).

Why not Praat itself (praat-parselmouth is a dependency): its Harmonicity takes several times the
CPU time of this numpy version (`python bench/extract.py` times both; docs/benchmarks.md), and
they agree where it matters (the same gain in the fusion). Searching the whole pitch range
matters: the same correlation searched only near the pyworld F0 period gained nothing.

Pure signal code: (waveform, rate, hop, frames) -> per-frame values.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SILENT_DB", "frame_hnr", "frame_harmonicity", "hnr_db", "utterance_hnr"]

WINDOW_SECONDS = 1.0 / 60.0       # one period of the lowest pitch, as Praat's cross-correlation HNR
PITCH_FLOOR, PITCH_CEILING = 60.0, 500.0
SILENCE = 0.1                     # of the utterance's peak amplitude (Praat's silence threshold)
R_LIMIT = 1e-3                    # r is clipped to [R_LIMIT, 1 - R_LIMIT]: HNR within +-30 dB
SILENT_DB = -40.0                 # what a silent frame stores (below any frame that is not)
BLOCK_FRAMES = 1024               # frames computed at once (memory: ~25 MB per block)


def frame_harmonicity(waveform: np.ndarray, sample_rate: int, hop_length: int, n_frames: int) -> np.ndarray:
    """[n_frames] float64: r per frame (frame t centred on sample t * hop_length); NaN where silent."""
    x = np.asarray(waveform, dtype=np.float64)
    out = np.full(n_frames, np.nan)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak <= 0.0 or n_frames <= 0:
        return out
    window = int(round(WINDOW_SECONDS * sample_rate))
    shortest = int(np.floor(sample_rate / PITCH_CEILING))
    longest = int(np.ceil(sample_rate / PITCH_FLOOR))
    n_lags = longest + 2
    span = window + n_lags
    padded = np.pad(x, (window, span + hop_length))
    starts = np.arange(n_frames) * hop_length - window // 2 + window
    # Frames in blocks, so a long file never holds more than BLOCK_FRAMES x span samples at once.
    for first in range(0, n_frames, BLOCK_FRAMES):
        block = starts[first:first + BLOCK_FRAMES]
        segments = padded[block[:, None] + np.arange(span)[None, :]]  # [frames, window + lags]
        live = np.abs(segments[:, :window + longest]).max(axis=1) >= SILENCE * peak
        if live.any():
            out[first + np.flatnonzero(live)] = _best_correlation(segments[live], window, shortest, longest)
    return out


def _best_correlation(segments: np.ndarray, window: int, shortest: int, longest: int) -> np.ndarray:
    """r of each row of segments [frames, window + lags]: the best normalised correlation of its
    first `window` samples with the window `lag` samples later, lag in [shortest, longest]."""
    n_lags = segments.shape[1] - window
    n_fft = 1 << int(np.ceil(np.log2(segments.shape[1] + window)))
    head = np.fft.rfft(segments[:, :window], n_fft)
    correlation = np.fft.irfft(np.conj(head) * np.fft.rfft(segments, n_fft), n_fft)[:, :n_lags]
    cumulative = np.concatenate([np.zeros((len(segments), 1)), np.cumsum(segments ** 2, axis=1)], axis=1)
    energy = cumulative[:, window:window + n_lags] - cumulative[:, :n_lags]  # of segments[L:L + window]
    r = correlation / np.sqrt(np.maximum(energy[:, :1] * energy, 1e-20))
    lags = np.arange(n_lags)[None, :]
    best = np.argmax(np.where((lags >= shortest) & (lags <= longest), r, -np.inf), axis=1)
    rows = np.arange(len(best))
    before, top, after = r[rows, best - 1], r[rows, best], r[rows, best + 1]
    curvature = before - 2 * top + after
    # The maximum of the parabola through the three points, where they bend downwards.
    refined = np.where(curvature < 0, top - (after - before) ** 2 / (8 * np.where(curvature < 0, curvature, -1)),
                       top)
    return np.clip(refined, R_LIMIT, 1 - R_LIMIT)


def hnr_db(r: np.ndarray) -> np.ndarray:
    """Harmonics-to-noise ratio in dB of a normalised correlation r in (0, 1)."""
    r = np.asarray(r, dtype=np.float64)
    return 10.0 * np.log10(r / (1.0 - r))


def frame_hnr(waveform: np.ndarray, sample_rate: int, hop_length: int, n_frames: int) -> np.ndarray:
    """[n_frames] float32: each frame's HNR in dB (within +-30 dB), SILENT_DB where silent: the
    `harmonicity` stream the shards store (dB, not r: float16 cannot tell r = 0.9999 from 1)."""
    r = frame_harmonicity(waveform, sample_rate, hop_length, n_frames)
    live = np.isfinite(r)
    return np.where(live, hnr_db(np.where(live, r, 0.5)), SILENT_DB).astype(np.float32)


def utterance_hnr(hnr: np.ndarray) -> float:
    """The median HNR in dB of the frames that are not silent (frame_hnr's values); SILENT_DB for
    an utterance that is silent throughout."""
    hnr = np.asarray(hnr, dtype=np.float64)
    live = hnr > SILENT_DB + 1.0
    return float(np.median(hnr[live])) if live.any() else SILENT_DB
