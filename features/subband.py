"""The F0 subband log-magnitude spectrogram."""
from __future__ import annotations

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


def subband_spectrogram(waveform: np.ndarray, settings) -> np.ndarray:
    """log(|STFT| + exp(floor)) of the pre-emphasised signal, bins 0..n_bins-1: [frames, bins] float32."""
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
    out = np.empty((frames, settings.n_bins), dtype=np.float32)
    floor = np.exp(settings.log_floor)
    # Blocks of frames keep memory bounded on long recordings (a full 10-minute STFT needs GBs).
    for start in range(0, frames, FRAME_BLOCK):
        block = strided[start:start + FRAME_BLOCK] * window
        spectrum = np.fft.rfft(block, n=settings.n_fft, axis=1)[:, :settings.n_bins]
        out[start:start + FRAME_BLOCK] = np.log(np.abs(spectrum) + floor)
    return out
