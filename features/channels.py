"""Channel conditions real audio goes through: what a detector meets after the recording is made.

Each condition is (waveform, rate, rng) -> waveform of the same length and rate, drawn from its
own seed per utterance (condition_seed), so a condition's copy of a partition is the same on
every run. The `channels` stage scores dev and eval under each condition (metrics/channels.json);
features.augment is the training-side counterpart (its codecs and noise are reused here).

- mp3, opus: lossy coding at a low bit rate (libsndfile compression level 0.9, near its lowest)
- gsm: GSM 06.10 full rate at 8 kHz (mobile); g711: mu-law at 8 kHz (telephone)
- noise: white, pink or brown noise at 5-20 dB SNR
- reverb: a synthetic room (exponentially decaying noise tail, RT60 0.2-0.8 s) behind the direct path
- eq: a random equaliser (three peaking bands of -12 to +12 dB) and a band limit
- level: the level raised by 6-20 dB and hard-clipped at full scale, or lowered by 10-30 dB
"""
from __future__ import annotations

import hashlib

import numpy as np
import scipy.signal

from .augment import add_at_snr, codec_round_trip, coloured_noise


def condition_seed(seed: int, utt_id: str, condition: str) -> int:
    digest = hashlib.sha256(f"{seed}\t{utt_id}\tchannel:{condition}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# libsndfile refuses 1.0 (its lowest bit rate) for MP3: 0.9, near it.
LOW_RATE_LEVEL = 0.9


def _low_rate_codec(codec: str):
    def apply(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        return codec_round_trip(x, rate, codec, rng, compression_level=LOW_RATE_LEVEL)
    return apply


def noise(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    exponent = int(rng.integers(0, 3))
    return add_at_snr(x, coloured_noise(len(x), exponent, rng), float(rng.uniform(5.0, 20.0)))


def reverb(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.2, 0.8)
    t = np.arange(int(rt60 * rate)) / rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    response = np.concatenate([[1.0], np.zeros(int(rng.uniform(0.002, 0.02) * rate)), 0.5 * tail / np.abs(tail).max()])
    y = scipy.signal.fftconvolve(x.astype(np.float64), response)[:len(x)]
    return _same_rms(x, y)


def equaliser(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    y = x.astype(np.float64)
    for centre in rng.uniform(150.0, 0.4 * rate, size=3):
        b, a = _peaking(centre, rng.uniform(-12.0, 12.0), rng.uniform(0.5, 3.0), rate)
        y = scipy.signal.lfilter(b, a, y)
    low, high = rng.uniform(80.0, 300.0), rng.uniform(2500.0, 0.45 * rate)
    y = scipy.signal.sosfilt(scipy.signal.butter(4, [low, high], btype="bandpass", fs=rate, output="sos"), y)
    return _same_rms(x, y)


def level(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return np.clip(x * 10 ** (rng.uniform(6.0, 20.0) / 20), -1.0, 1.0).astype(np.float32)
    return (x * 10 ** (-rng.uniform(10.0, 30.0) / 20)).astype(np.float32)


def _peaking(centre: float, gain_db: float, q: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """A peaking-equaliser biquad (the Audio EQ Cookbook's form)."""
    amp, w0 = 10 ** (gain_db / 40), 2 * np.pi * centre / rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


def _same_rms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    gain = np.sqrt(np.mean(np.square(x, dtype=np.float64)) / max(np.mean(np.square(y)), 1e-20))
    return np.clip(y * gain, -1.0, 1.0).astype(np.float32)


CONDITIONS = {
    "mp3": _low_rate_codec("mp3"),
    "opus": _low_rate_codec("opus"),
    "gsm": _low_rate_codec("gsm"),
    "g711": _low_rate_codec("ulaw"),
    "noise": noise,
    "reverb": reverb,
    "eq": equaliser,
    "level": level,
}


def apply_condition(x: np.ndarray, rate: int, condition: str, seed: int) -> np.ndarray:
    """x through `condition` (a key of CONDITIONS), drawn from `seed`."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown channel condition {condition!r}; known: {sorted(CONDITIONS)}")
    return CONDITIONS[condition](np.asarray(x, dtype=np.float32), rate, np.random.default_rng(seed))
