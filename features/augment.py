"""Training-data augmentation on the waveform: room reverberation, channel and codec simulation,
additive noise at a random SNR, and convolutive and impulsive distortions in the spirit of
RawBoost (Tak et al., ICASSP 2022: linear and non-linear convolutive noise, impulsive
signal-dependent noise, stationary signal-independent noise). Pure signal code: (waveform, rate, rng) -> waveform.

The extraction stage makes features.augment.copies augmented copies of each training utterance
with this module, each from its own seed (augment_seed), so a rerun is byte-identical.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import scipy.signal
import soundfile as sf

from .audio import resample

# Codec round trips (libsndfile's encoders; sample rate of the coded signal, container, subtype,
# whether compression_level applies) and a plain band limit.
CODECS = {
    "ulaw": (8000, "WAV", "ULAW", False),       # G.711 mu-law, telephone
    "alaw": (8000, "WAV", "ALAW", False),       # G.711 A-law, telephone
    "gsm": (8000, "WAV", "GSM610", False),      # GSM 06.10 full rate, mobile
    "adpcm": (8000, "WAV", "IMA_ADPCM", False),  # IMA ADPCM, 32 kbit/s
    "mp3": (16000, "MP3", "MPEG_LAYER_III", True),
    "opus": (16000, "OGG", "OPUS", True),       # VoIP
    "vorbis": (16000, "OGG", "VORBIS", True),
    "bandlimit": None,
}
RAWBOOST = ("lnl", "isd", "ssi")


def augment_seed(seed: int, utt_id: str, copy: int) -> int:
    """The seed of one copy: from the setting's seed, the utterance and the copy number only,
    so it does not depend on the shard, the worker or the order of work."""
    digest = hashlib.sha256(f"{seed}\t{utt_id}\t{copy}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def codec_round_trip(x: np.ndarray, rate: int, codec: str, rng: np.random.Generator,
                     compression_level: float | None = None) -> np.ndarray:
    """Encode and decode x with codec (a key of CODECS); same length, same rate. A lossy codec's
    compression_level (0 = best quality, 1 = lowest bit rate) is drawn from [0.3, 1] unless given."""
    if codec == "bandlimit":
        low = rng.uniform(50.0, 300.0)
        high = rng.uniform(2500.0, min(7500.0, 0.47 * rate))
        sos = scipy.signal.butter(6, [low, high], btype="bandpass", fs=rate, output="sos")
        return scipy.signal.sosfilt(sos, x).astype(np.float32)
    coded_rate, container, subtype, compressed = CODECS[codec]
    y = resample(x, rate, coded_rate)
    buffer = io.BytesIO()
    if compressed and compression_level is None:
        compression_level = float(rng.uniform(0.3, 1.0))
    options = {"compression_level": compression_level} if compressed else {}
    sf.write(buffer, np.clip(y, -1.0, 1.0), coded_rate, format=container, subtype=subtype, **options)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = resample(decoded, coded_rate, rate)
    # Some coders add or drop a few samples of delay and padding: keep x's length.
    return np.pad(decoded, (0, max(0, len(x) - len(decoded))))[:len(x)].astype(np.float32)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    spectrum *= 1.0 / np.maximum(f, 1.0) ** (exponent / 2)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def add_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    power = np.mean(x.astype(np.float64) ** 2)
    noise = noise * np.sqrt(power / (10 ** (snr_db / 10)) / (np.mean(noise ** 2) + 1e-20))
    return (x + noise).astype(np.float32)


def room(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """x in a random room: the direct path, 3-12 early reflections (3-40 ms, random signs, falling
    with delay) and a late tail whose decay depends on frequency (RT60 0.15-1.0 s below 1 kHz,
    0.3-0.8 times that above, as walls and air absorb the highs faster), at a direct-to-reverberant
    ratio of -8 to +10 dB; same length and RMS as x. Another room model than the `reverb` channel
    condition (features/channels.py: a white exponential tail, no reflections), so that condition
    stays a test of rooms training never drew."""
    rt60_low = rng.uniform(0.15, 1.0)
    rt60_high = rt60_low * rng.uniform(0.3, 0.8)
    t = np.arange(int(rt60_low * rate)) / rate
    sos = scipy.signal.butter(2, 1000.0, fs=rate, output="sos")
    low = scipy.signal.sosfilt(sos, rng.standard_normal(len(t))) * np.exp(-6.9 * t / rt60_low)
    high = (rng.standard_normal(len(t)) - scipy.signal.sosfilt(sos, rng.standard_normal(len(t)))) \
        * np.exp(-6.9 * t / rt60_high)
    tail = low + high
    onset = int(rng.uniform(0.01, 0.05) * rate)  # the late tail builds up after the first reflections
    tail[:onset] *= np.linspace(0.0, 1.0, onset, endpoint=False)[:len(tail)]
    early = np.zeros(int(0.041 * rate))
    for delay in rng.uniform(0.003, 0.04, size=int(rng.integers(3, 13))):
        early[int(delay * rate)] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.7) * 0.003 / delay
    reverberant = np.zeros(max(len(early), len(tail)))
    reverberant[:len(tail)] += tail * np.sqrt(np.sum(early ** 2) + 1e-3) / (np.sqrt(np.sum(tail ** 2)) + 1e-12)
    reverberant[:len(early)] += early
    drr_db = rng.uniform(-8.0, 10.0)
    reverberant *= 10 ** (-drr_db / 20) / (np.sqrt(np.sum(reverberant ** 2)) + 1e-12)
    response = np.concatenate([[1.0], reverberant[1:]])
    y = scipy.signal.fftconvolve(np.asarray(x, dtype=np.float64), response)[:len(x)]
    gain = np.sqrt(np.mean(np.square(x, dtype=np.float64)) / max(float(np.mean(y ** 2)), 1e-20))
    return np.clip(y * gain, -1.0, 1.0).astype(np.float32)


def random_notch_filter(rate: int, rng: np.random.Generator, taps: int = 101) -> np.ndarray:
    """An FIR filter with a few random stop bands: a colouring no recording chain would share."""
    edges = [0.0]
    for centre in np.sort(rng.uniform(100.0, 0.45 * rate, size=int(rng.integers(1, 5)))):
        width = rng.uniform(50.0, 600.0)
        low, high = max(centre - width / 2, edges[-1] + 1.0), min(centre + width / 2, 0.49 * rate)
        if low < high:
            edges += [low, high]
    edges.append(rate / 2)
    gains = [1.0 if i % 2 == 0 else rng.uniform(0.0, 0.3) for i in range(len(edges) // 2)]
    freq = [f for pair in zip(edges[0::2], edges[1::2]) for f in pair]
    gain = [g for g in gains for _ in range(2)]
    return scipy.signal.firwin2(taps, freq, gain, fs=rate)


def rawboost(x: np.ndarray, rate: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One RawBoost-style distortion. lnl: the signal and its powers (non-linear terms, up to
    cubic), each through its own random notch filter, summed with decaying weights; isd: up to
    5 % of samples get an impulse proportional to the signal there; ssi: white noise through a
    random filter, added at 10-40 dB SNR."""
    x = x.astype(np.float64)
    if kind == "lnl":
        y = np.zeros_like(x)
        for order in range(1, int(rng.integers(1, 4)) + 1):
            y += (0.3 ** (order - 1)) * scipy.signal.lfilter(random_notch_filter(rate, rng), [1.0], x ** order)
        y *= np.sqrt(np.mean(x ** 2) / (np.mean(y ** 2) + 1e-20))
    elif kind == "isd":
        y = x.copy()
        hits = rng.choice(len(x), size=int(len(x) * rng.uniform(0.005, 0.05)), replace=False)
        y[hits] += x[hits] * rng.uniform(-1.0, 1.0, size=len(hits)) * rng.uniform(1.0, 4.0)
    elif kind == "ssi":
        noise = scipy.signal.lfilter(random_notch_filter(rate, rng), [1.0], rng.standard_normal(len(x)))
        y = add_at_snr(x, noise, rng.uniform(10.0, 40.0))
    else:
        raise ValueError(f"unknown RawBoost kind {kind!r}; known: {RAWBOOST}")
    return y.astype(np.float32)


def augment(x: np.ndarray, rate: int, rng: np.random.Generator, codecs=tuple(CODECS),
            p_codec: float = 0.7, p_noise: float = 0.5, snr_db=(5.0, 30.0),
            p_rawboost: float = 0.5, p_reverb: float = 0.0) -> tuple[np.ndarray, str]:
    """One augmented copy of x and what was done ("room+lnl+noise:pink:12dB+gsm"): a room (the
    recording's own space comes first), a RawBoost-style distortion, additive noise, then a codec
    or band limit (the channel comes last, as in a call), each with its probability; at least
    one of them."""
    steps = []
    while not steps:
        if p_reverb and rng.random() < p_reverb:  # no draw at 0: copies made without rooms stay as they were
            steps.append(("room", None))
        if rng.random() < p_rawboost:
            steps.append(("rawboost", str(rng.choice(RAWBOOST))))
        if rng.random() < p_noise:
            steps.append(("noise", (int(rng.integers(0, 3)), float(rng.uniform(*snr_db)))))
        if codecs and rng.random() < p_codec:
            steps.append(("codec", str(rng.choice(list(codecs)))))
    y = np.asarray(x, dtype=np.float32)
    names = []
    for step, arg in steps:
        if step == "room":
            y = room(y, rate, rng)
            names.append("room")
        elif step == "rawboost":
            y = rawboost(y, rate, arg, rng)
            names.append(arg)
        elif step == "noise":
            exponent, snr = arg
            y = add_at_snr(y, coloured_noise(len(y), exponent, rng), snr)
            names.append(f"noise:{('white', 'pink', 'brown')[exponent]}:{snr:.0f}dB")
        else:
            y = codec_round_trip(y, rate, arg, rng)
            names.append(arg)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32), "+".join(names)
