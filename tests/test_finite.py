"""No non-finite value anywhere: awkward but real audio (digital silence, onsets after zeros,
clipping, DC, impulses, near-silence, tones, noise, any rate, length and channel count) gives
finite features and finite detect scores; what is not finite is refused where it would be stored
or written, with the utterance (or file) and the stream named."""
import dataclasses

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

import features
from conftest import make_feature_shards, train_tiny_model
from features.excitation import excitation_statistics
from features.streams import Streams, fusion_streams, stream_widths
from pipeline import detect
from pipeline.data.protocol import Utterance
from pipeline.data.shards import ShardError, ShardReader, write_shard
from pipeline.settings import FeatureSettings

# Every stream on: the default recipe's features (second view, excitation, harmonicity, phase).
ALL_STREAMS = dataclasses.replace(FeatureSettings(), view2_bands=24, excitation=True, harmonicity=True,
                                  harmonic_phase=True)
RATES = (16000, 8000, 22050, 44100, 48000)


def speech_like(rng, n: int, rate: int) -> np.ndarray:
    """A gliding harmonic tone with noise: voiced enough for pyworld to find an F0."""
    t = np.arange(n) / rate
    f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) + 0.05 * rng.standard_normal(n)
    return 0.3 * x / np.abs(x).max()


def awkward(kind: str, rng, n: int, rate: int) -> np.ndarray:
    """One awkward waveform of n samples."""
    if kind == "onset_after_zeros":   # digital silence, then speech from a random sample on, 8 times
        x = speech_like(rng, n, rate)
        for onset in np.sort(rng.integers(0, n, 8)):
            x[max(0, onset - int(rng.uniform(0.04, 0.12) * rate)):onset] = 0.0
        return x
    if kind == "silence_runs":        # speech with runs of exact zeros inside
        x = speech_like(rng, n, rate)
        for _ in range(4):
            start = int(rng.integers(0, n))
            x[start:start + int(rng.integers(1, rate // 4))] = 0.0
        return x
    if kind == "clipped":
        return np.clip(4 * speech_like(rng, n, rate), -1.0, 1.0)
    if kind == "dc_offset":
        return 0.4 + 0.2 * speech_like(rng, n, rate)
    if kind == "impulse":             # one sample, the rest zeros
        x = np.zeros(n)
        x[int(rng.integers(0, n))] = rng.choice([-1.0, 1.0])
        return x
    if kind == "near_silence":        # -90 dBFS noise
        return 10 ** (-90 / 20) * rng.standard_normal(n)
    if kind == "pure_tone":
        return 0.5 * np.sin(2 * np.pi * rng.uniform(50, rate / 2.5) * np.arange(n) / rate)
    if kind == "white_noise":
        return np.clip(0.3 * rng.standard_normal(n), -1, 1)
    if kind == "digital_silence":
        return np.zeros(n)
    raise ValueError(kind)


KINDS = ("onset_after_zeros", "silence_runs", "clipped", "dc_offset", "impulse", "near_silence", "pure_tone",
         "white_noise", "digital_silence")


def cases(count: int, seed: int = 7, longest: float = 30.0):
    """(name, waveform [samples] or [samples, 2], rate) drawn from a seeded generator: each kind
    at least once, every rate, 0.3 s up to `longest` s (log-uniform), a third of them stereo."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        rate = RATES[i % len(RATES)]
        seconds = longest if i == count - 1 else float(np.exp(rng.uniform(np.log(0.3), np.log(6.0))))
        n = int(seconds * rate)
        x = awkward(kind, rng, n, rate)
        if i % 3 == 2:  # stereo: the second channel a scaled, shifted copy
            x = np.stack([x, 0.5 * np.roll(x, 17)], axis=1)
        yield f"{i:02d}_{kind}_{rate}Hz_{seconds:.2f}s{'_stereo' if x.ndim == 2 else ''}", x.astype(np.float32), rate


def test_a_frame_whose_only_samples_lie_past_the_envelope_blocks_is_neutral():
    """The excitation envelope's 2 ms blocks leave out a 25 ms frame's last samples; a frame whose
    only non-zero samples lie there used to get log(0) = -inf (and a NaN score from detect)."""
    rate, hop = 16000, 130
    x = np.zeros(rate)
    onset = 10 * hop + 190  # frame 10 covers samples 1100..1499; the blocks end at 1483
    x[onset:] = speech_like(np.random.default_rng(0), rate - onset, rate)
    with np.errstate(divide="raise", invalid="raise"):
        statistics = excitation_statistics(x, rate, hop)
    assert np.isfinite(statistics).all()
    assert statistics[10, 2] == 0.0            # no envelope peak to measure: neutral, like silence
    assert statistics[12:20, 2].min() > 0.0    # frames of speech still measured


CASES = list(cases(14))


@pytest.mark.parametrize("name, waveform, rate", CASES, ids=[name for name, _, _ in CASES])
def test_every_stream_of_awkward_audio_is_finite(name, waveform, rate):
    streams = features.extract(waveform, rate, ALL_STREAMS)
    f0 = streams.f0
    assert set(streams) == {*stream_widths(ALL_STREAMS), "f0"}
    for name, width in stream_widths(ALL_STREAMS).items():
        assert streams[name].shape == (len(f0), width), name
        assert np.isfinite(streams[name]).all(), name
    assert np.isfinite(f0).all()
    # and what the fusion reads of them, as stored (NaN is its "no evidence", filled by the fitted model)
    stored = Streams({name: values.astype(np.float16) for name, values in streams.items() if name != "f0"}, f0=f0)
    statistics = features.fusion_statistics(stored, fusion_streams(ALL_STREAMS))
    assert len(statistics) == features.n_fusion_statistics(fusion_streams(ALL_STREAMS))
    assert not np.isinf(statistics).any()


def test_a_non_finite_stream_is_named_with_its_source(monkeypatch):
    monkeypatch.setattr(features, "frame_hnr", lambda *a: np.full(a[-1], -np.inf, np.float32))
    with pytest.raises(features.AudioError, match=r"clip\.wav: non-finite values in its harmonicity feature"):
        features.extract(speech_like(np.random.default_rng(0), 16000, 16000), 16000, ALL_STREAMS, source="clip.wav")


@pytest.fixture(scope="module")
def fused_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("finite"), ALL_STREAMS, fusion=True)


@pytest.mark.slow
def test_detect_scores_awkward_files_finitely(fused_model, tmp_path, capsys):
    folder = tmp_path / "awkward"
    folder.mkdir()
    for name, waveform, rate in cases(10, seed=11, longest=12.0):
        sf.write(folder / f"{name}.flac", waveform, rate)
    out = tmp_path / "scores.tsv"
    assert detect.main(["--model", str(fused_model), str(folder), "--out", str(out), "--workers", "0",
                        "--no-progress"]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert len(rows) == 10
    for path, score, llr, p_bonafide, decision in rows:
        assert np.isfinite([float(score), float(llr), float(p_bonafide)]).all(), path
        assert decision in ("bonafide", "spoof")


def test_a_non_finite_score_is_an_error_row_never_a_decision(fused_model, tmp_path, capsys):
    state = torch.load(fused_model, weights_only=True)  # a model file: a plain dict, its weights under "weights"
    first = next(k for k, v in state["weights"].items() if v.dtype.is_floating_point and "weight" in k)
    state["weights"][first] = torch.full_like(state["weights"][first], float("nan"))
    damaged = tmp_path / "damaged.pt"
    torch.save(state, damaged)
    clip = tmp_path / "clip.wav"
    sf.write(clip, speech_like(np.random.default_rng(1), 24000, 16000), 16000)
    out = tmp_path / "scores.tsv"
    assert detect.main(["--model", str(damaged), str(clip), "--out", str(out), "--workers", "0",
                        "--no-progress"]) == 1
    assert out.read_text().splitlines()[1:] == []
    assert "non-finite score" in capsys.readouterr().err
    with pytest.raises(features.AudioError, match="non-finite score"):
        detect.Detector(damaged).score(clip)


def test_the_shard_writer_refuses_non_finite_values_naming_the_utterance(tmp_path):
    settings = FeatureSettings()
    bins = settings.n_subband_bins
    zeros = np.zeros(5, np.float32)
    good = (Utterance("GOOD", "S1", "-", 1), Streams(subband=np.zeros((5, bins), np.float32), f0=zeros))
    bad_subband = np.zeros((5, bins), np.float32)
    bad_subband[3, 7] = -np.inf
    bad = Utterance("BAD", "S1", "A01", 0)
    with pytest.raises(ShardError, match="utterance BAD: its subband feature holds non-finite"):
        write_shard(tmp_path / "a.h5", [good, (bad, Streams(subband=bad_subband, f0=zeros))], settings)
    with pytest.raises(ShardError, match="utterance BAD: its subband feature"):  # float16 would make it inf
        write_shard(tmp_path / "a.h5", [(bad, Streams(subband=np.full_like(bad_subband, 1e6), f0=zeros))], settings)
    with pytest.raises(ShardError, match="utterance BAD: its f0 feature"):
        write_shard(tmp_path / "a.h5", [good, (bad, Streams(subband=good[1].subband,
                                                            f0=np.full(5, np.nan, np.float32)))], settings)
    # a stream of its own (here harmonicity, with every stream on) is checked by its name
    every = {name: np.zeros((5, width), np.float32) for name, width in stream_widths(ALL_STREAMS).items()}
    every["harmonicity"][2, 0] = np.nan
    with pytest.raises(ShardError, match="utterance BAD: its harmonicity feature holds non-finite"):
        write_shard(tmp_path / "a.h5", [(bad, Streams(every, f0=zeros))], ALL_STREAMS)
    assert not (tmp_path / "a.h5").exists() and not list(tmp_path.glob("*.tmp"))


def test_a_stored_non_finite_value_is_refused_when_read(tmp_path):
    settings = FeatureSettings()
    folder = make_feature_shards(tmp_path / "train", settings, n_utts=4, n_shards=1)
    shard = folder / "shard-00000.h5"
    reader = ShardReader(shard)
    start = int(reader.offsets[2])
    with h5py.File(shard, "r+") as h5:  # a shard written before the writer checked
        h5["subband"][start, 0] = np.inf
    reader.read(1)
    with pytest.raises(ShardError, match=f"utterance {reader.utt_id[2]}: its subband feature holds non-finite"):
        reader.read(2)
