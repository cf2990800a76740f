"""Pure signal code: (waveform, sample rate, settings) -> arrays. No file formats, no parallelism."""
from __future__ import annotations

import numpy as np

from .audio import AudioError, check_waveform, load_audio, resample, to_mono
from .excitation import N_UTTERANCE_STATISTICS, excitation_statistics, utterance_statistics
from .f0 import compute_f0
from .harmonic_phase import N_PHASE_STATISTICS, frame_harmonic_phase, utterance_phase_statistics
from .harmonicity import frame_hnr, utterance_hnr
from .streams import Streams, fusion_streams, network_streams, stream_widths
from .subband import n_frames, preemphasis, subband_spectrogram

__all__ = ["AudioError", "check_finite", "check_waveform", "compute_f0", "excitation_statistics", "extract",
           "frame_harmonic_phase", "frame_hnr", "fusion_statistics", "fusion_streams", "load_audio", "n_frames",
           "n_fusion_statistics", "network_streams", "preemphasis", "resample", "stream_widths", "Streams",
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


def extract(waveform: np.ndarray, sample_rate: int, settings, with_f0: bool = True,
            source="<waveform>") -> Streams:
    """The one feature implementation used by extraction and detect: the utterance's named
    streams (features/streams.py) as float32 arrays, aligned frame for frame: subband, then each
    optional stream the settings turn on (view2, excitation, harmonicity, harmonic_phase), and f0
    (Hz) unless with_f0 is False and no stream needs it (pyworld is the costly part).
    The waveform is mixed to mono and resampled to settings.sample_rate first if needed.
    Every value returned is finite: otherwise AudioError names `source` (the file) and the stream.
    """
    waveform = check_waveform(np.asarray(to_mono(np.asarray(waveform)), dtype=np.float32), source)
    waveform = resample(waveform, sample_rate, settings.sample_rate)
    spectra = subband_spectrogram(waveform, settings)
    split = settings.n_subband_bins
    streams = Streams(subband=spectra[:, :split])
    if settings.view2_bands:
        streams["view2"] = spectra[:, split:]
    if settings.excitation:
        streams["excitation"] = excitation_statistics(waveform, settings.sample_rate, settings.hop_length,
                                                      preemphasis_coefficient=settings.preemphasis)
    if settings.harmonicity:
        streams["harmonicity"] = frame_hnr(waveform, settings.sample_rate, settings.hop_length,
                                           streams.frames)[:, None]
    if with_f0 or settings.harmonic_phase:
        streams["f0"] = compute_f0(waveform, settings.sample_rate, streams.frames, settings)
    if settings.harmonic_phase:
        streams["harmonic_phase"] = frame_harmonic_phase(waveform, settings.sample_rate, settings.hop_length,
                                                         streams["f0"])
    if not with_f0:
        streams.pop("f0", None)
    check_finite(source, **streams)
    return streams


def n_fusion_statistics(streams) -> int:
    """How many numbers fusion_statistics gives when it reads these streams."""
    return (N_UTTERANCE_STATISTICS + (1 if "harmonicity" in streams else 0)
            + (N_PHASE_STATISTICS if "harmonic_phase" in streams else 0))


def fusion_statistics(streams: Streams, names) -> np.ndarray:
    """What the score fusion's statistics model reads of one utterance (the whole utterance, as
    stored): the excitation statistics summarised (excitation.utterance_statistics, with f0),
    then, when `names` has them, the median HNR and the 9 harmonic phase statistics (NaN where
    there is no evidence)."""
    statistics = utterance_statistics(streams["excitation"], streams["f0"])
    if "harmonicity" in names:
        statistics = np.append(statistics, utterance_hnr(streams["harmonicity"][:, 0]))
    if "harmonic_phase" in names:
        statistics = np.append(statistics, utterance_phase_statistics(streams["harmonic_phase"]))
    return statistics
