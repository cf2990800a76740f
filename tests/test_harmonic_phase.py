"""Harmonic phase (features/harmonic_phase.py): that it measures the harmonics' relative phases of a
known signal, that a phase reconstruction loses their steadiness, that an utterance without F0 is
no evidence either way, how the shards store the rows, and that every scorer fuses them alike."""
import dataclasses

import librosa
import numpy as np
import pytest
import soundfile as sf

import features
from conftest import assert_every_scorer_fuses_alike, assert_network_reads_none_of, harmonic, train_tiny_model
from features.excitation import N_UTTERANCE_STATISTICS
from features.harmonic_phase import (ABSENT_DB, HARMONICS, N_PHASE_STATISTICS, frame_harmonic_phase,
                                     utterance_phase_statistics)
from features.streams import Streams, stream_widths
from model.fusion import fit_statistics_model, statistics_logit
from pipeline.scoring.modelfile import ModelFile
from pipeline.settings import FeatureSettings, ModelSettings, Settings, SettingsError

RATE, HOP = 16000, 130
PHASE = dataclasses.replace(FeatureSettings(), view2_bands=24, excitation=True, harmonicity=True,
                            harmonic_phase=True)


def gliding_harmonics(phases, seconds: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Harmonics 1..len(phases) of an F0 gliding 120 -> 180 Hz, harmonic k at phase
    k x (the F0's running phase) + phases[k-1]; and the exact F0 on the frame grid."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 120 + 60 * t / seconds
    running = np.cumsum(2 * np.pi * f0 / RATE)
    x = sum(np.cos(k * running + p) / k for k, p in enumerate(phases, start=1))
    frames = np.arange(len(t) // HOP + 1) * HOP
    return 0.3 * x, 120 + 60 * np.minimum(frames, len(t) - 1) / RATE / seconds


def pulses_gliding(seconds: float = 2.0) -> np.ndarray:
    """Glottal-like pulses (a decaying 700 Hz resonance per period) at an F0 of 140 +- 30 Hz."""
    n = int(seconds * RATE)
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.5 * np.arange(n) / RATE)
    cycles = np.cumsum(f0 / RATE)
    ring = np.exp(-np.arange(160) / 25.0) * np.sin(2 * np.pi * 700 * np.arange(160) / RATE)
    x = np.zeros(n)
    for mark in np.flatnonzero(np.diff(np.floor(cycles)) > 0):
        if mark + len(ring) < n:
            x[mark:mark + len(ring)] += ring
    return 0.5 * x / np.abs(x).max()


def statistics(x: np.ndarray) -> np.ndarray:
    f0 = features.compute_f0(x, RATE, len(x) // HOP + 1, FeatureSettings())
    return utterance_phase_statistics(frame_harmonic_phase(x, RATE, HOP, f0).astype(np.float16))


def test_the_relative_phases_of_a_known_signal_are_measured():
    phases = np.array([0.3, -1.0, 2.0, 0.5, -2.5, 1.2])
    x, f0 = gliding_harmonics(phases)
    rows = frame_harmonic_phase(x, RATE, HOP, f0)
    assert rows.shape == (len(f0), 2 * HARMONICS) and rows.dtype == np.float32
    phase, level = rows[:, :HARMONICS].astype(np.float64), rows[:, HARMONICS:]
    inner = slice(5, -5)
    # relative phase shift of harmonic k: its phase minus k x the fundamental's
    measured = np.angle(np.exp(1j * (phase[inner, :6] - np.arange(1, 7) * phase[inner, :1])))
    expected = np.angle(np.exp(1j * (phases - np.arange(1, 7) * phases[0])))
    np.testing.assert_allclose(np.angle(np.exp(1j * (measured - expected))), 0.0, atol=0.05)
    # levels: harmonic k at 1/k; harmonics 7-8 are absent from the signal; windows over the edge are not measured
    np.testing.assert_allclose(level[inner, 1] - level[inner, 0], 20 * np.log10(1 / 2), atol=0.3)
    assert (level[inner, 6:] < level[inner, :1] - 40).all()
    assert (level[:2] == ABSENT_DB).all() and (level[-1] == ABSENT_DB).all()
    # the phases follow the F0 track: neighbouring frames' phases agree once its advance is taken out
    stats = utterance_phase_statistics(rows)
    assert stats.shape == (N_PHASE_STATISTICS,)
    assert stats[0] > 0.999 and stats[1] < 0.02 and stats[2] > 0.99   # harmonics 2-4 steady
    assert (stats[-3:] > 0.99).all()                                    # phase advance as the F0 says


def test_a_phase_reconstruction_loses_the_steadiness():
    x = pulses_gliding()
    stft = librosa.stft(x, n_fft=512, hop_length=128)
    rebuilt = librosa.griffinlim(np.abs(stft), n_iter=32, hop_length=128, n_fft=512, init="random", random_state=0)
    rebuilt = np.pad(rebuilt, (0, len(x) - len(rebuilt)))
    voice, reconstruction = statistics(x), statistics(rebuilt)
    assert voice[0] > 0.99 and reconstruction[0] < voice[0] - 0.05        # RPS change, harmonics 2-4
    assert reconstruction[1] > voice[1] + 0.2                             # its median size
    assert voice[2] > 0.9 and reconstruction[2] < 0.5                    # RPS over the utterance


def test_without_f0_there_is_no_evidence_and_the_fusion_fills_it_in():
    x = np.random.default_rng(0).standard_normal(RATE) * 0.1
    rows = frame_harmonic_phase(x, RATE, HOP, np.zeros(len(x) // HOP + 1))
    assert (rows[:, HARMONICS:] == ABSENT_DB).all()
    assert np.isnan(utterance_phase_statistics(rows)).all()
    # the statistics model fills a missing statistic with its training bona fide median
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(60), np.zeros(60)].astype(int)
    train = np.c_[rng.normal(labels, 1.0), rng.normal(2 * labels, 1.0)]
    train[::7, 1] = np.nan
    model = fit_statistics_model(train, labels)
    bonafide_median = np.nanmedian(train[labels == 1, 1])
    assert model["fill"][1] == pytest.approx(bonafide_median)
    np.testing.assert_allclose(statistics_logit(model, np.array([[0.5, np.nan]])),
                               statistics_logit(model, np.array([[0.5, bonafide_median]])))
    with pytest.raises(ValueError, match="infinite"):
        statistics_logit(model, np.array([[0.5, np.inf]]))


def test_extract_makes_a_stream_of_sixteen_rows_the_shards_store_it_and_the_network_never_reads_it(tmp_path):
    from pipeline.data.protocol import Utterance
    from pipeline.data.shards import ShardReader, write_shard
    x = harmonic(180, seconds=1.0)
    without = features.extract(x, RATE, dataclasses.replace(PHASE, harmonic_phase=False))
    with_rows = features.extract(x, RATE, PHASE)
    assert set(with_rows) == set(without) | {"harmonic_phase"} and stream_widths(PHASE)["harmonic_phase"] == 16
    assert with_rows["harmonic_phase"].shape == (without.frames, 2 * HARMONICS)
    for name in without:  # the other streams, f0 included, are unchanged
        np.testing.assert_array_equal(with_rows[name], without[name])
    # a model without an F0 channel still gets the phase rows (extract computes the F0 for them)
    no_f0 = features.extract(x, RATE, PHASE, with_f0=False)
    assert no_f0.f0 is None and set(no_f0) == set(with_rows) - {"f0"}
    for name in no_f0:
        np.testing.assert_array_equal(no_f0[name], with_rows[name])
    # the shards store it as a dataset of its own, sixteen rows wide, float16 (as every stream)
    write_shard(tmp_path / "shard.h5", [(Utterance("U0", "S", "-", 1), with_rows)], PHASE)
    reader = ShardReader(tmp_path / "shard.h5")
    assert "harmonic_phase" in reader.streams and "harmonicity" in reader.streams
    stored = reader.read(0)
    assert isinstance(stored, Streams) and stored["harmonic_phase"].shape == (without.frames, 2 * HARMONICS)
    np.testing.assert_array_equal(stored["harmonic_phase"], with_rows["harmonic_phase"].astype(np.float16))
    assert dataclasses.replace(PHASE, harmonic_phase=False).fingerprint() != PHASE.fingerprint()
    assert FeatureSettings(harmonic_phase=False).fingerprint() == FeatureSettings().fingerprint()
    assert_network_reads_none_of(PHASE, ["harmonicity", "harmonic_phase"])


def test_harmonic_phase_needs_the_score_fusion():
    settings = Settings(features=dataclasses.replace(PHASE, harmonicity=False), model=ModelSettings(excitation_fusion=False))
    with pytest.raises(SettingsError, match="features.harmonic_phase"):
        settings.check_across()


@pytest.mark.slow
def test_the_fusion_reads_the_harmonic_phase_and_every_scorer_applies_it(tmp_path):
    model_path = train_tiny_model(tmp_path, PHASE, precision="fp32", fusion=True)
    fusion = ModelFile.load(model_path).fusion
    assert fusion["streams"] == ["excitation", "harmonicity", "harmonic_phase"]
    width = N_UTTERANCE_STATISTICS + 1 + N_PHASE_STATISTICS
    assert len(fusion["statistics_model"]["mean"]) == width == len(fusion["statistics_model"]["fill"])
    files = []
    for i, (f0, seconds) in enumerate(((150, 1.3), (210, 2.2))):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], harmonic(f0, seconds=seconds), RATE)
    files.append(tmp_path / "whisper.wav")  # no F0: the phase statistics are missing, and filled
    sf.write(files[-1], np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1, RATE)
    statistics = assert_every_scorer_fuses_alike(tmp_path, model_path, PHASE, files)
    assert statistics.shape[1] == width
