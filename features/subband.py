"""The F0 subband log-magnitude spectrogram."""
from __future__ import annotations

import functools

import numpy as np
import scipy.signal

FRAME_BLOCK = 2048


def preemphasis(waveform: np.ndarray, coefficient: float) -> np.ndarray:
    """y[n] = x[n] - a * x[n-1], with y[0] = x[0]."""
    if coefficient == 0:
        return waveform
    return np.concatenate([waveform[:1], waveform[1:] - coefficient * waveform[:-1]])


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT: one per hop, the first centred on sample 0."""
    return 1 + n_samples // hop_length


@functools.lru_cache(maxsize=8)
def band_filters(sample_rate: int, n_fft: int, bands: int, min_hz: float, max_hz: float) -> np.ndarray:
    """[n_fft // 2 + 1, bands] weights that average the STFT magnitude over `bands` mel-spaced
    triangular bands from min_hz to max_hz (each band's weights sum to 1)."""
    import librosa
    weights = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=bands, fmin=min_hz, fmax=max_hz,
                                  norm=None).astype(np.float64)
    return (weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)).T.astype(np.float32)


def subband_spectrogram(waveform: np.ndarray, settings) -> np.ndarray:
    """log(|STFT| + exp(floor)) of the pre-emphasised signal, bins 0..n_subband_bins-1, then (with
    settings.view2_bands > 0) the second view: the log of the mean magnitude in each of
    view2_bands mel-spaced bands from view2_min_hz to view2_max_hz, from the same STFT frames.
    [frames, n_subband_bins + view2_bands] float32 (features.extract splits it into two streams)."""
    x = preemphasis(np.asarray(waveform, dtype=np.float32), settings.preemphasis)
    frames = n_frames(len(x), settings.hop_length)
    # Zero-pad so frame t is centred on sample t*hop and every frame is full length.
    half = settings.n_fft // 2
    padded = np.pad(x, (half, half + settings.hop_length))
    window = scipy.signal.get_window(settings.window, settings.win_length,
                                     fftbins=not settings.window_symmetric).astype(np.float32)
    if settings.win_length < settings.n_fft:
        left = (settings.n_fft - settings.win_length) // 2
        window = np.pad(window, (left, settings.n_fft - settings.win_length - left))
    strided = np.lib.stride_tricks.sliding_window_view(padded, settings.n_fft)[::settings.hop_length][:frames]
    out = np.empty((frames, settings.n_subband_bins + settings.view2_bands), dtype=np.float32)
    floor = np.exp(settings.log_floor)
    # Blocks of frames keep memory bounded on long recordings (a full 10-minute STFT needs GBs).
    for start in range(0, frames, FRAME_BLOCK):
        block = strided[start:start + FRAME_BLOCK] * window
        n_sub = settings.n_subband_bins
        if not settings.view2_bands:
            spectrum = np.fft.rfft(block, n=settings.n_fft, axis=1)[:, :n_sub]
            out[start:start + FRAME_BLOCK] = np.log(np.abs(spectrum) + floor)
            continue
        magnitude = np.abs(np.fft.rfft(block, n=settings.n_fft, axis=1))
        filters = band_filters(settings.sample_rate, settings.n_fft, settings.view2_bands,
                               settings.view2_min_hz, settings.view2_max_hz)
        out[start:start + FRAME_BLOCK, :n_sub] = np.log(magnitude[:, :n_sub] + floor)
        out[start:start + FRAME_BLOCK, n_sub:] = np.log(magnitude @ filters + floor)
    return out
