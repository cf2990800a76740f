"""Copy synthesis: spoofs made from a bona fide recording, for training only.

A vocoder that resynthesises a bona fide recording keeps its speaker, words and channel and
changes only what the vocoder does to the signal, so the pair teaches the artefact and nothing
else (vocoded bona fide as spoof training data: Wang and Yamagishi, ICASSP 2023). The extraction
stage adds one copy per method of each *training* bona fide utterance, as a spoof with the
method's attack id (COPY_ATTACKS); dev and eval never get any, and leave-one-attack-out never
holds them out (they are part of the training recipe, not of the corpus).

Pure signal code: (waveform, rate, rng) -> waveform of the same length and RMS.
"""
from __future__ import annotations

import hashlib

import librosa
import numpy as np

__all__ = ["COPY_ATTACKS", "METHODS", "copy_seed", "copy_synthesise", "copy_utt_id", "phase_vocoder_round_trip"]


def phase_vocoder_round_trip(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Time-stretch x by a factor r with a phase vocoder, then by 1 / r: the words and duration
    come back, the phase does not. A phase vocoder keeps each STFT bin's magnitude (interpolated
    between frames) and advances its phase by the bin's measured frequency, bin by bin, so the
    phase relations across bins and harmonics that a voice's pulses make are lost ("phasiness").
    Another way to make phase from magnitudes than Griffin-Lim's iterations (A04, A14), the
    resynthesis neural vocoders learned to avoid. Window 32 or 64 ms, hop a quarter of it;
    r in [0.6, 0.85] or [1.2, 1.6]."""
    n_fft = int(2 ** round(np.log2(rate * float(rng.choice([0.032, 0.064])))))
    hop = n_fft // 4
    factor = float(rng.uniform(0.6, 0.85)) if rng.random() < 0.5 else float(rng.uniform(1.2, 1.6))

    def stretch(y: np.ndarray, r: float) -> np.ndarray:
        spectrum = librosa.stft(y, n_fft=n_fft, hop_length=hop)
        return librosa.istft(librosa.phase_vocoder(spectrum, rate=r, hop_length=hop), hop_length=hop, n_fft=n_fft)

    x = np.asarray(x, dtype=np.float32)
    y = stretch(stretch(x, factor), 1.0 / factor)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[:len(x)]
    gain = np.sqrt(np.mean(np.square(x, dtype=np.float64)) / max(np.mean(np.square(y, dtype=np.float64)), 1e-20))
    return (y * gain).astype(np.float32)


# method -> (attack id in the train shards, function)
METHODS = {"phase_vocoder": ("V01", phase_vocoder_round_trip)}
COPY_ATTACKS = frozenset(attack for attack, _ in METHODS.values())


def copy_seed(seed: int, utt_id: str, method: str) -> int:
    """The seed of one copy: from the setting's seed, the utterance and the method only, so it
    does not depend on the shard, the worker or the order of work."""
    digest = hashlib.sha256(f"{seed}\t{utt_id}\tcopy_synthesis:{method}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def copy_utt_id(utt_id: str, method: str) -> str:
    """The id a copy is stored under: its bona fide's id and the method."""
    return f"{utt_id}~{method}"


def copy_synthesise(x: np.ndarray, rate: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """x resynthesised by `method` (a key of METHODS)."""
    if method not in METHODS:
        raise ValueError(f"unknown copy-synthesis method {method!r}; known: {sorted(METHODS)}")
    return METHODS[method][1](x, rate, rng)
