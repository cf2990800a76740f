"""Harmonicity (features/harmonicity.py): what each frame's HNR says, how the shards store it,
that the network never reads it and that every scorer fuses it alike."""
import dataclasses

import numpy as np
import pytest
import soundfile as sf

import features
from conftest import assert_every_scorer_fuses_alike, assert_network_reads_none_of, harmonic, train_tiny_model
from features.excitation import N_UTTERANCE_STATISTICS
from features.harmonicity import SILENT_DB, frame_hnr, utterance_hnr
from features.streams import Streams, stream_widths
from pipeline.scoring.modelfile import ModelFile
from pipeline.settings import FeatureSettings, ModelSettings, Settings, SettingsError

RATE, HOP = 16000, 130
HARMONICITY = dataclasses.replace(FeatureSettings(), view2_bands=24, excitation=True, harmonicity=True)


def pulses(f0: float, seconds: float, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """A glottal-like pulse train (decaying resonance per period); jitter: the relative spread of
    each period's length."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * RATE))
    ring = np.exp(-np.arange(160) / 25.0) * np.sin(2 * np.pi * 700 * np.arange(160) / RATE)
    t = 0.0
    while t < len(x) - len(ring):
        x[int(t):int(t) + len(ring)] += ring
        t += RATE / f0 * (1 + jitter * rng.standard_normal())
    return x


def median_hnr(x: np.ndarray) -> float:
    return utterance_hnr(frame_hnr(x, RATE, HOP, len(x) // HOP + 1))


def test_hnr_tracks_how_much_of_the_signal_repeats():
    rng = np.random.default_rng(0)
    clean = pulses(160, 1.0)  # a period of exactly 100 samples
    noise = rng.standard_normal(len(clean))
    scale = np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2))
    exact, at_10db, at_0db = (median_hnr(clean + scale * 10 ** (-snr / 20) * noise) for snr in (60, 10, 0))
    assert exact > 25.0  # an exact repetition: as high as the clip allows
    assert at_10db == pytest.approx(10.0, abs=1.5) and at_0db == pytest.approx(0.0, abs=1.5)
    assert median_hnr(noise) < -5.0
    # a voice's cycle-to-cycle jitter lowers it; a pitch-range search finds any F0 in 60-500 Hz
    assert median_hnr(pulses(160, 1.0, jitter=0.03)) < exact - 8.0
    assert median_hnr(pulses(80, 1.0)) > 25.0 and median_hnr(pulses(400, 1.0)) > 25.0


def test_silence_is_stored_apart_and_a_silent_utterance_is_no_error():
    x = np.r_[np.zeros(RATE // 2), pulses(150, 0.5)]
    hnr = frame_hnr(x, RATE, HOP, len(x) // HOP + 1)
    assert hnr.dtype == np.float32 and np.all(np.isfinite(hnr))
    silent = hnr == SILENT_DB
    assert silent[:50].all() and not silent[-50:-5].any()
    assert utterance_hnr(hnr) == pytest.approx(utterance_hnr(hnr[~silent]))
    assert utterance_hnr(frame_hnr(np.zeros(RATE), RATE, HOP, 124)) == SILENT_DB
    # float16, as the shards store it, keeps the median within a hundredth of a dB
    assert utterance_hnr(hnr.astype(np.float16)) == pytest.approx(utterance_hnr(hnr), abs=0.02)


def test_extract_makes_a_stream_of_one_row_the_shards_store_it_and_the_network_never_reads_it(tmp_path):
    from pipeline.data.protocol import Utterance
    from pipeline.data.shards import ShardReader, write_shard
    x = harmonic(180, seconds=1.0)
    without = features.extract(x, RATE, dataclasses.replace(HARMONICITY, harmonicity=False))
    with_row = features.extract(x, RATE, HARMONICITY)
    assert set(with_row) == set(without) | {"harmonicity"} and stream_widths(HARMONICITY)["harmonicity"] == 1
    assert with_row["harmonicity"].shape == (without.frames, 1)
    for name in without:  # the other streams, f0 included, are unchanged
        np.testing.assert_array_equal(with_row[name], without[name])
    # the shards store it as a dataset of its own, one row wide, float16 (as every stream)
    write_shard(tmp_path / "shard.h5", [(Utterance("U0", "S", "-", 1), with_row)], HARMONICITY)
    reader = ShardReader(tmp_path / "shard.h5")
    assert "harmonicity" in reader.streams
    stored = reader.read(0)
    assert isinstance(stored, Streams) and stored["harmonicity"].shape == (without.frames, 1)
    np.testing.assert_array_equal(stored["harmonicity"], with_row["harmonicity"].astype(np.float16))
    assert reader.read(0, ["harmonicity"]).keys() == {"harmonicity"}
    # shards made without it keep their fingerprint
    assert dataclasses.replace(HARMONICITY, harmonicity=False).fingerprint() != HARMONICITY.fingerprint()
    assert FeatureSettings(harmonicity=False).fingerprint() == FeatureSettings().fingerprint()
    assert_network_reads_none_of(HARMONICITY, ["harmonicity"])


def test_harmonicity_needs_the_score_fusion():
    settings = Settings(features=HARMONICITY, model=ModelSettings(excitation_fusion=False))
    with pytest.raises(SettingsError, match="features.harmonicity"):
        settings.check_across()


@pytest.mark.slow
def test_the_fusion_reads_the_harmonicity_and_every_scorer_applies_it(tmp_path):
    model_path = train_tiny_model(tmp_path, HARMONICITY, precision="fp32", fusion=True)
    fusion = ModelFile.load(model_path).fusion
    assert fusion["streams"] == ["excitation", "harmonicity"]
    assert len(fusion["statistics_model"]["mean"]) == N_UTTERANCE_STATISTICS + 1
    files = []
    for i, (f0, seconds) in enumerate(((150, 1.3), (210, 2.2))):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], harmonic(f0, seconds=seconds), RATE)
    statistics = assert_every_scorer_fuses_alike(tmp_path, model_path, HARMONICITY, files)
    assert statistics.shape[1] == N_UTTERANCE_STATISTICS + 1


def test_a_long_file_is_computed_in_blocks_with_the_same_values():
    from features.harmonicity import BLOCK_FRAMES
    x = pulses(160, 14.0, jitter=0.01, seed=3)  # > 1,700 frames: two blocks
    n = len(x) // HOP + 1
    assert n > BLOCK_FRAMES
    whole = frame_hnr(x, RATE, HOP, n)
    # the file from frame 600 on: its frame t is the whole file's frame 600 + t
    part = frame_hnr(x[600 * HOP:], RATE, HOP, n - 600)
    np.testing.assert_allclose(part[10:-10], whole[610:-10], atol=1e-4)
