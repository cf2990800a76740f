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
import pyworld
import scipy.signal

__all__ = ["COPY_ATTACKS", "METHODS", "copy_seed", "copy_synthesise", "copy_utt_id", "harmonic_plus_noise",
           "kin_copies", "phase_vocoder_round_trip"]


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
    return _level_like(x, np.pad(y, (0, max(0, len(x) - len(y))))[:len(x)])


def harmonic_plus_noise(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Resynthesise x as sinusoids at the harmonics of its F0 plus filtered noise, the source of
    neural source-filter and DDSP vocoders (and of many neural TTS decoders: Kokoro's iSTFTNet
    starts from such a sine source). F0 every 5 ms by pyworld (dio + stonemask); harmonic k's
    amplitude is the magnitude spectrum (64 ms Hann) at k * F0, its phase k times the running
    phase of F0 plus a constant offset drawn per harmonic, so the harmonics stay locked to a
    perfectly smooth F0 with none of a voice's cycle-to-cycle jitter. Harmonics stop at a maximum
    voiced frequency drawn in [2, 4] kHz; noise with the spectrum's magnitudes fills unvoiced
    frames and the band above it, and a fraction drawn in [0.05, 0.3] lies under the harmonics.
    Its kin in the corpus is Codec 2 (A12), a sinusoidal harmonic coder: kin_copies."""
    x = np.asarray(x, dtype=np.float32)
    x64 = x.astype(np.float64)
    hop = int(round(rate * 0.005))
    n_fft = int(2 ** round(np.log2(rate * 0.064)))
    max_voiced_hz = float(rng.uniform(2000.0, 4000.0))
    noise_under_harmonics = float(rng.uniform(0.05, 0.3))
    f0, times = pyworld.dio(x64, rate, f0_floor=60.0, f0_ceil=500.0, frame_period=1000.0 * hop / rate)
    f0 = pyworld.stonemask(x64, f0, times, rate)
    magnitude = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann"))
    n = min(len(f0), magnitude.shape[1])
    f0, magnitude = f0[:n], magnitude[:, :n]
    frame_samples = np.arange(n) * hop
    samples = np.arange(len(x))
    voiced = f0 > 0
    harmonic = np.zeros(len(x))
    if voiced.any():
        # F0 through unvoiced gaps (for a continuous phase) and a voicing weight that fades in and out
        f0_filled = np.interp(frame_samples, frame_samples[voiced], f0[voiced])
        f0_samples = np.interp(samples, frame_samples, f0_filled)
        voicing = np.interp(samples, frame_samples, voiced.astype(np.float64))
        phase = 2 * np.pi * np.cumsum(f0_samples) / rate
        on = np.flatnonzero(voicing > 0)          # the harmonics are computed where they sound only
        on_samples, f0_on, phase_on, voicing_on = samples[on], f0_samples[on], phase[on], voicing[on]
        frames = np.arange(n)
        for k in range(1, int(min(max_voiced_hz, rate / 2) // f0[voiced].min()) + 1):
            # the spectrum at k * F0, between bins linearly; a sinusoid of amplitude A peaks at
            # A * n_fft / 4 in a Hann-windowed spectrum
            position = np.minimum(k * f0_filled * n_fft / rate, magnitude.shape[0] - 1.001)
            low = position.astype(int)
            weight = position - low
            amplitude = (1 - weight) * magnitude[low, frames] + weight * magnitude[low + 1, frames]
            taper = np.clip((max_voiced_hz - k * f0_on) / 100.0, 0.0, 1.0)
            harmonic[on] += (np.interp(on_samples, frame_samples, amplitude) * (4.0 / n_fft) * taper * voicing_on
                             * np.sin(k * phase_on + rng.uniform(0, 2 * np.pi)))
    # noise with the magnitudes of x: all of it where unvoiced and above the harmonics, a little under them
    freqs = np.arange(magnitude.shape[0]) * rate / n_fft
    share = np.where(voiced[None, :], np.where(freqs[:, None] < max_voiced_hz, noise_under_harmonics, 1.0), 1.0)
    white = librosa.stft(rng.standard_normal(len(x)), n_fft=n_fft, hop_length=hop, window="hann")[:, :n]
    white /= np.sqrt(np.sum(scipy.signal.get_window("hann", n_fft) ** 2))  # the window librosa used
    noise = librosa.istft(white * magnitude * share, n_fft=n_fft, hop_length=hop, window="hann", length=len(x))
    return _level_like(x, harmonic + noise)


def _level_like(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y as float32 at x's RMS level."""
    gain = np.sqrt(np.mean(np.square(x, dtype=np.float64)) / max(np.mean(np.square(y, dtype=np.float64)), 1e-20))
    return (y * gain).astype(np.float32)


# method -> (attack id in the train shards, function)
METHODS = {"phase_vocoder": ("V01", phase_vocoder_round_trip),
           "harmonic_noise": ("V02", harmonic_plus_noise)}
COPY_ATTACKS = frozenset(attack for attack, _ in METHODS.values())
# Corpus attacks made by the same mechanism as a copy method: leave-one-attack-out holds the
# method's copies out with them, or the held-out attack would have been seen in training after all.
# The phase vocoder (V01) rebuilds phase from magnitudes like Griffin-Lim (A04) and the mel
# inversion (A14); the harmonic-plus-noise model (V02) is the sinusoidal kind of A12.
KIN = {"V01": frozenset({"A04", "A14"}), "V02": frozenset({"A12"})}


def kin_copies(attack: str) -> list[str]:
    """The copy-synthesis attack ids to hold out of training together with corpus attack `attack`."""
    return sorted(copy for copy, kin in KIN.items() if attack in kin)


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
