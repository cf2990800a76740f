"""Copy synthesis: vocoded copies of the training bona fide, stored as spoofs in the train shards only."""
import json

import librosa
import numpy as np
import pytest
import pyworld
import yaml

from conftest import ROOT
from features.copy_synthesis import (COPY_ATTACKS, KIN, METHODS, copy_seed, copy_synthesise, copy_utt_id,
                                     harmonic_plus_noise, kin_copies, phase_vocoder_round_trip)
from pipeline import extract as extract_stage
from pipeline.data import extraction as extract
from pipeline.data.dataset import ShardDataset
from pipeline.data.shards import file_sha256, open_partition
from pipeline.settings import (AugmentSettings, CopySynthesisSettings, ExtractSettings, FeatureSettings, SettingsError,
                               load_settings)
from pipeline.studies import heldout as loao

ROOT_PARAMS = ROOT / "params.yaml"


def voiced(seconds: float = 2.0, sr: int = 16000) -> np.ndarray:
    """Six harmonics with vibrato and a slow loudness change."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(150.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 7)) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_copy_keeps_length_level_and_magnitudes_and_changes_the_waveform(method):
    x = voiced()
    y = copy_synthesise(x, 16000, method, np.random.default_rng(3))
    assert np.array_equal(y, copy_synthesise(x, 16000, method, np.random.default_rng(3)))
    assert len(y) == len(x) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert np.sqrt(np.mean(y ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=1e-4)
    log_x, log_y = (np.log(np.abs(librosa.stft(v, n_fft=512)) + 1e-3).ravel() for v in (x, y))
    assert np.corrcoef(log_x, log_y)[0, 1] > 0.95      # the same sound, by its magnitudes
    assert np.corrcoef(x, y)[0, 1] < 0.95              # with other phases


def test_phase_vocoder_draws_its_settings_from_the_rng():
    x = voiced(1.0)
    copies = [phase_vocoder_round_trip(x, 16000, np.random.default_rng(seed)) for seed in range(3)]
    assert not np.array_equal(copies[0], copies[1]) and not np.array_equal(copies[1], copies[2])


def test_harmonic_plus_noise_keeps_the_pitch_and_makes_noise_noise():
    x = voiced(2.0)
    y = harmonic_plus_noise(x, 16000, np.random.default_rng(5))
    f0 = [pyworld.stonemask(v.astype(np.float64), *pyworld.dio(v.astype(np.float64), 16000), 16000) for v in (x, y)]
    both = (f0[0] > 0) & (f0[1] > 0)
    assert both.mean() > 0.9 and np.median(np.abs(f0[1][both] / f0[0][both] - 1)) < 0.01
    # no voice, no harmonics: white noise comes back as noise of the same level, not as a tone
    noise = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    z = harmonic_plus_noise(noise, 16000, np.random.default_rng(5))
    assert np.all(np.isfinite(z)) and abs(np.corrcoef(noise, z)[0, 1]) < 0.2
    spectrum = np.abs(np.fft.rfft(z)) ** 2
    assert spectrum.max() < 50 * spectrum.mean()
    assert not np.array_equal(y, harmonic_plus_noise(x, 16000, np.random.default_rng(6)))


def test_a_copy_method_of_a_corpus_attacks_mechanism_is_held_out_with_it():
    assert set(KIN) <= COPY_ATTACKS
    assert kin_copies("A12") == ["V02"] and kin_copies("A03") == []
    assert kin_copies("A04") == ["V01"] and kin_copies("A14") == ["V01"]
    assert loao.heldout_recipe(ROOT_PARAMS, "A12")["train"]["exclude_attacks"] == ["A12", "V02"]
    assert loao.heldout_recipe(ROOT_PARAMS, "A04")["train"]["exclude_attacks"] == ["A04", "V01"]
    assert loao.heldout_recipe(ROOT_PARAMS, "A03")["train"]["exclude_attacks"] == ["A03"]


def test_copy_seed_and_id_depend_on_setting_utterance_and_method_only():
    assert copy_seed(1, "U1", "phase_vocoder") == copy_seed(1, "U1", "phase_vocoder")
    assert len({copy_seed(1, "U1", "phase_vocoder"), copy_seed(2, "U1", "phase_vocoder"),
                copy_seed(1, "U2", "phase_vocoder")}) == 3
    assert copy_utt_id("U1", "phase_vocoder") == "U1~phase_vocoder"
    with pytest.raises(ValueError, match="unknown copy-synthesis method"):
        copy_synthesise(voiced(0.5), 16000, "tape_recorder", np.random.default_rng(0))


def run(manifest, out, copy_synthesis):
    return extract.extract_partition(manifest, out, FeatureSettings(), ExtractSettings(n_jobs=1, shard_size=4),
                                     progress=False, copy_synthesis=copy_synthesis)


def test_each_bona_fide_is_followed_by_its_vocoded_spoof_and_reruns_are_byte_identical(manifests, tmp_path):
    settings = CopySynthesisSettings(methods=["phase_vocoder"], seed=2)
    run(manifests["train"], tmp_path / "a", settings)
    readers = open_partition(tmp_path / "a", FeatureSettings())
    ids = [u for r in readers for u in r.utt_id]
    attacks = [a for r in readers for a in r.attack]
    labels = [int(v) for r in readers for v in r.label]
    speakers = [s for r in readers for s in r.speaker]
    copies = [int(c) for r in readers for c in r.copy]
    bonafide = [i for i, label in enumerate(labels) if label == 1 and copies[i] == 0]
    assert len(bonafide) == 3 and len(ids) == 6 + 3 and copies.count(-1) == 3
    for i in bonafide:   # the copy: next record, a spoof of the method's attack, the same speaker
        assert ids[i + 1] == copy_utt_id(ids[i], "phase_vocoder") and copies[i + 1] == -1
        assert (attacks[i + 1], labels[i + 1], speakers[i + 1]) == ("V01", 0, speakers[i])
    # the partition's utterances are the manifest's: the copies are counted on their own
    index = json.loads((tmp_path / "a/index.json").read_text())
    assert sum(e["utterances"] for e in index["shards"]) == 6
    assert sum(e.get("copy_synthesis", 0) for e in index["shards"]) == 3
    run(manifests["train"], tmp_path / "b", settings)
    for entry in index["shards"]:
        assert file_sha256(tmp_path / "a" / entry["file"]) == file_sha256(tmp_path / "b" / entry["file"])
    # another seed recomputes; the same settings keep every shard
    assert run(manifests["train"], tmp_path / "a", CopySynthesisSettings(["phase_vocoder"], 3))["computed"] == 2
    assert run(manifests["train"], tmp_path / "a", CopySynthesisSettings(["phase_vocoder"], 3))["computed"] == 0
    # training reads the copies as spoofs like any other; evaluation never sees them
    readers = open_partition(tmp_path / "a", FeatureSettings())
    training = ShardDataset(readers, frames=20, train=True, seed=1)
    assert len(training) == 9 and int(training.labels.sum()) == 3 and not training.copies.any()
    assert sum(training.utterance(i)[1] == "V01" for i in range(9)) == 3
    evaluation = ShardDataset(readers, frames=20, train=False)
    assert len(evaluation) == 6 and all("~" not in evaluation.utterance(i)[0] for i in range(6))
    assert len(ShardDataset(readers, frames=20, train=True, exclude_attacks=["V01"])) == 6


def test_extract_stage_copies_train_only_and_loao_never_holds_a_copy_out(manifests, tmp_path):
    params = yaml.safe_load(open(ROOT_PARAMS))
    params["features"]["copy_synthesis"] = {**params["features"]["copy_synthesis"], "methods": ["phase_vocoder"]}
    params["extract"] = {**params["extract"], "n_jobs": 1, "shard_size": 4}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "manifest").mkdir()
    for part in ("train", "dev"):
        (tmp_path / "manifest" / f"{part}.tsv").write_text(manifests[part].read_text())
        assert extract_stage.main([part, "--params", str(tmp_path / "params.yaml"), "--manifest",
                             str(tmp_path / "manifest"), "--out", str(tmp_path / "features")]) == 0
    settings = load_settings(tmp_path / "params.yaml")
    train = open_partition(tmp_path / "features/train", settings.features)
    dev = open_partition(tmp_path / "features/dev", settings.features)
    assert sum(a == "V01" for r in train for a in r.attack) == 3
    assert not any(a in COPY_ATTACKS for r in dev for a in r.attack) and sum(len(r) for r in dev) == 6
    assert loao.train_attacks(tmp_path / "features", settings) == ["A01", "A02", "A03"]


def test_copy_synthesis_settings_are_checked_where_they_live(tmp_path):
    params = yaml.safe_load(open(ROOT_PARAMS))
    params["features"]["copy_synthesis"] = {**params["features"]["copy_synthesis"],
                                            "methods": ["phase_vocoder", "tape_recorder"]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match=r"features\.copy_synthesis\.methods: unknown \['tape_recorder'\]"):
        load_settings(tmp_path / "p.yaml")
    params["features"]["copy_synthesis"] = {**params["features"]["copy_synthesis"],
                                            "methods": ["phase_vocoder", "phase_vocoder"]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match="listed twice"):
        load_settings(tmp_path / "p.yaml")
    del params["features"]["copy_synthesis"]
    params["copy_synthesis"] = {"methods": []}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match="under features"):
        load_settings(tmp_path / "p.yaml")


def test_copies_follow_augmented_copies_and_training_draws_versions_of_originals_only(manifests, tmp_path):
    extract.extract_partition(manifests["train"], tmp_path / "f", FeatureSettings(),
                              ExtractSettings(n_jobs=1, shard_size=4), progress=False,
                              augment=AugmentSettings(copies=1),
                              copy_synthesis=CopySynthesisSettings(["phase_vocoder"]))
    readers = open_partition(tmp_path / "f", FeatureSettings())
    layout = [(int(c), int(label)) for r in readers for c, label in zip(r.copy, r.label)]
    # a bona fide: itself, its augmented copy, its vocoded spoof; a spoof: itself and its copy
    assert layout == [(0, 1), (1, 1), (-1, 0), (0, 0), (1, 0)] * 3
    training = ShardDataset(readers, frames=20, train=True, seed=1)
    assert len(training) == 9
    assert [int(c) for c in training.copies] == [1, 0, 1] * 3
    assert len(ShardDataset(readers, frames=20, train=False)) == 6
