"""Pure signal code: (waveform, sample rate, settings) -> arrays. No file formats, no parallelism."""
from __future__ import annotations

import numpy as np

from .audio import AudioError, check_waveform, load_audio, resample, to_mono
from .excitation import N_UTTERANCE_STATISTICS, excitation_statistics, utterance_statistics
from .f0 import compute_f0
from .harmonic_phase import N_PHASE_STATISTICS, frame_harmonic_phase, utterance_phase_statistics
from .harmonicity import frame_hnr, utterance_hnr
from .subband import n_frames, preemphasis, subband_spectrogram

__all__ = ["AudioError", "check_waveform", "compute_f0", "excitation_statistics", "extract", "frame_harmonic_phase",
           "frame_hnr", "fusion_statistics", "load_audio", "n_frames", "n_fusion_statistics", "preemphasis", "resample",
           "subband_spectrogram", "to_mono"]


def extract(waveform: np.ndarray, sample_rate: int, settings,
            with_f0: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The one feature implementation used by extraction and detect.

    Returns (subband [frames, bins] float32, f0 [frames] float32 in Hz), aligned frame for frame
    (with settings.excitation the excitation statistics are the subband's last rows, with
    settings.harmonicity each frame's HNR after them, with settings.harmonic_phase the harmonics'
    phases and levels after that); f0 is None with with_f0=False (a model without an F0 channel:
    pyworld is the costly part).
    The waveform is mixed to mono and resampled to settings.sample_rate first if needed.
    """
    waveform = check_waveform(np.asarray(to_mono(np.asarray(waveform)), dtype=np.float32))
    waveform = resample(waveform, sample_rate, settings.sample_rate)
    subband = subband_spectrogram(waveform, settings)
    if getattr(settings, "excitation", False):
        statistics = excitation_statistics(waveform, settings.sample_rate, settings.hop_length,
                                           preemphasis_coefficient=settings.preemphasis)
        subband = np.concatenate([subband, statistics], axis=1)
    if getattr(settings, "harmonicity", False):
        hnr = frame_hnr(waveform, settings.sample_rate, settings.hop_length, len(subband))
        subband = np.concatenate([subband, hnr[:, None]], axis=1)
    phase = getattr(settings, "harmonic_phase", False)
    if not with_f0 and not phase:
        return subband, None
    f0 = compute_f0(waveform, settings.sample_rate, len(subband), settings)
    if phase:
        rows = frame_harmonic_phase(waveform, settings.sample_rate, settings.hop_length, f0)
        subband = np.concatenate([subband, rows], axis=1)
    return subband, f0 if with_f0 else None


def n_fusion_statistics(harmonicity_rows: int = 0, phase_rows: int = 0) -> int:
    """How many numbers fusion_statistics gives for these row counts."""
    return N_UTTERANCE_STATISTICS + (1 if harmonicity_rows else 0) + (N_PHASE_STATISTICS if phase_rows else 0)


def fusion_statistics(subband: np.ndarray, f0: np.ndarray, excitation_rows: int,
                      harmonicity_rows: int = 0, phase_rows: int = 0) -> np.ndarray:
    """What the score fusion's statistics model reads of one utterance, from its stored rows
    (extract's subband, the whole utterance): the excitation statistics summarised
    (excitation.utterance_statistics), then, with a harmonicity row, its median HNR, then, with
    harmonic phase rows, their 9 statistics (NaN where there is no evidence)."""
    end = subband.shape[1] - phase_rows
    statistics = utterance_statistics(subband[:, end - harmonicity_rows - excitation_rows:end - harmonicity_rows], f0)
    if harmonicity_rows:
        statistics = np.append(statistics, utterance_hnr(subband[:, end - 1]))
    if phase_rows:
        statistics = np.append(statistics, utterance_phase_statistics(subband[:, end:]))
    return statistics
