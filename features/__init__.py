"""Pure signal code: (waveform, sample rate, settings) -> arrays. No file formats, no parallelism."""
from __future__ import annotations

import numpy as np

from .audio import AudioError, check_waveform, load_audio, resample, to_mono
from .excitation import excitation_statistics
from .f0 import compute_f0
from .subband import n_frames, preemphasis, subband_spectrogram

__all__ = ["AudioError", "check_waveform", "compute_f0", "excitation_statistics", "extract", "load_audio", "n_frames",
           "preemphasis", "resample", "subband_spectrogram", "to_mono"]


def extract(waveform: np.ndarray, sample_rate: int, settings,
            with_f0: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The one feature implementation used by extraction and detect.

    Returns (subband [frames, bins] float32, f0 [frames] float32 in Hz), aligned frame for frame
    (with settings.excitation the excitation statistics are the subband's last rows);
    f0 is None with with_f0=False (a model without an F0 channel: pyworld is the costly part).
    The waveform is mixed to mono and resampled to settings.sample_rate first if needed.
    """
    waveform = check_waveform(np.asarray(to_mono(np.asarray(waveform)), dtype=np.float32))
    waveform = resample(waveform, sample_rate, settings.sample_rate)
    subband = subband_spectrogram(waveform, settings)
    if getattr(settings, "excitation", False):
        statistics = excitation_statistics(waveform, settings.sample_rate, settings.hop_length,
                                           preemphasis_coefficient=settings.preemphasis)
        subband = np.concatenate([subband, statistics], axis=1)
    if not with_f0:
        return subband, None
    f0 = compute_f0(waveform, settings.sample_rate, len(subband), settings)
    return subband, f0
