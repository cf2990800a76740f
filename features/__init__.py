"""Pure signal code: (waveform, sample rate, settings) -> arrays. No file formats, no parallelism."""
from __future__ import annotations

import numpy as np

from .audio import AudioError, check_waveform, load_audio, resample, to_mono
from .excitation import N_UTTERANCE_STATISTICS, excitation_statistics, utterance_statistics
from .f0 import compute_f0
from .harmonic_phase import N_PHASE_STATISTICS, frame_harmonic_phase, utterance_phase_statistics
from .harmonicity import frame_hnr, utterance_hnr
from .subband import n_frames, preemphasis, subband_spectrogram

__all__ = ["AudioError", "check_finite", "check_waveform", "compute_f0", "excitation_statistics", "extract", "frame_harmonic_phase",
           "frame_hnr", "fusion_statistics", "load_audio", "n_frames", "n_fusion_statistics", "preemphasis", "resample",
           "subband_spectrogram", "to_mono"]


def check_finite(source, **streams) -> None:
    """Raise AudioError naming `source` and the stream if a stream holds NaN or an infinity:
    nothing non-finite may reach a shard, a network input or a score."""
    for name, values in streams.items():
        if values is None:
            continue
        bad = ~np.isfinite(values)
        if bad.any():
            frames = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
            raise AudioError(source, f"non-finite values in its {name} feature ({bad.sum()} values in "
                                     f"{len(frames)} frames, the first at frame {frames[0]}); this is a "
                                     f"bug in the feature code, please report it with the file")


def extract(waveform: np.ndarray, sample_rate: int, settings,
            with_f0: bool = True, source="<waveform>") -> tuple[np.ndarray, np.ndarray | None]:
    """The one feature implementation used by extraction and detect.

    Returns (subband [frames, bins] float32, f0 [frames] float32 in Hz), aligned frame for frame
    (with settings.excitation the excitation statistics are the subband's last rows, with
    settings.harmonicity each frame's HNR after them, with settings.harmonic_phase the harmonics'
    phases and levels after that); f0 is None with with_f0=False (a model without an F0 channel:
    pyworld is the costly part).
    The waveform is mixed to mono and resampled to settings.sample_rate first if needed.
    Every value returned is finite: otherwise AudioError names `source` (the file) and the stream.
    """
    waveform = check_waveform(np.asarray(to_mono(np.asarray(waveform)), dtype=np.float32), source)
    waveform = resample(waveform, sample_rate, settings.sample_rate)
    subband = subband_spectrogram(waveform, settings)
    check_finite(source, subband=subband)
    if getattr(settings, "excitation", False):
        statistics = excitation_statistics(waveform, settings.sample_rate, settings.hop_length,
                                           preemphasis_coefficient=settings.preemphasis)
        check_finite(source, excitation=statistics)
        subband = np.concatenate([subband, statistics], axis=1)
    if getattr(settings, "harmonicity", False):
        hnr = frame_hnr(waveform, settings.sample_rate, settings.hop_length, len(subband))
        check_finite(source, harmonicity=hnr)
        subband = np.concatenate([subband, hnr[:, None]], axis=1)
    phase = getattr(settings, "harmonic_phase", False)
    if not with_f0 and not phase:
        return subband, None
    f0 = compute_f0(waveform, settings.sample_rate, len(subband), settings)
    check_finite(source, f0=f0)
    if phase:
        rows = frame_harmonic_phase(waveform, settings.sample_rate, settings.hop_length, f0)
        check_finite(source, harmonic_phase=rows)
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
