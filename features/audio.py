"""Audio loading and validation: any soundfile-readable file -> mono float32 at a target rate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """An audio file that cannot be used, with the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """Average channels; soundfile gives [frames, channels] for multi-channel audio."""
    return waveform.mean(axis=1) if waveform.ndim == 2 else waveform


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    if sample_rate == target_rate:
        return waveform
    return soxr.resample(waveform, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def check_waveform(waveform: np.ndarray, path="<waveform>") -> np.ndarray:
    if waveform.size == 0:
        raise AudioError(path, "no audio samples (empty file)")
    if not np.all(np.isfinite(waveform)):
        raise AudioError(path, "contains NaN or infinite samples")
    return waveform


def load_audio(path: str | Path, target_rate: int) -> np.ndarray:
    """Read a file as mono float32 in [-1, 1] at target_rate; AudioError names the file on failure."""
    if not Path(path).is_file():
        raise AudioError(path, "file not found")
    try:
        waveform, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"not readable as audio ({err})") from None
    waveform = check_waveform(to_mono(waveform), path)
    return resample(waveform, rate, target_rate)
