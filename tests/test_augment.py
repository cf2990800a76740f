"""Cached augmentation: deterministic copies in the train shards, drawn by training, never by evaluation."""
import dataclasses
import hashlib
import json

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, harmonic
from features.augment import CODECS, augment, augment_seed, codec_round_trip, room
from pipeline import extract as extract_stage
from pipeline.data import extraction as extract
from pipeline.data.dataset import ShardDataset
from pipeline.data.shards import file_sha256, open_partition
from pipeline.settings import AugmentSettings, ExtractSettings, FeatureSettings, SettingsError, load_settings

ROOT_PARAMS = ROOT / "params.yaml"


def test_same_seed_same_copy_other_seed_other_copy():
    x = harmonic(180.0, seconds=1.0)
    first, done = augment(x, 16000, np.random.default_rng(5))
    again, done_again = augment(x, 16000, np.random.default_rng(5))
    other, _ = augment(x, 16000, np.random.default_rng(6))
    assert done == done_again and np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert len(first) == len(x) and np.all(np.isfinite(first)) and np.max(np.abs(first)) <= 0.99


def test_copy_seed_depends_on_setting_utterance_and_copy_only():
    assert augment_seed(1, "U1", 1) == augment_seed(1, "U1", 1)
    assert len({augment_seed(1, "U1", 1), augment_seed(2, "U1", 1), augment_seed(1, "U2", 1),
                augment_seed(1, "U1", 2)}) == 4


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_round_trip_keeps_length_and_changes_the_signal(codec):
    x = harmonic(150.0, seconds=1.0)
    y = codec_round_trip(x, 16000, codec, np.random.default_rng(0))
    assert len(y) == len(x) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert not np.allclose(x, y, atol=1e-4)
    assert np.sqrt(np.mean(y ** 2)) > 0.1 * np.sqrt(np.mean(x ** 2))


def test_a_room_keeps_length_and_level_and_spreads_an_impulse_over_a_falling_tail():
    x = np.zeros(16000, np.float32)
    x[100] = 0.5
    y = room(x, 16000, np.random.default_rng(2))
    assert len(y) == len(x) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert np.sqrt(np.mean(y ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=1e-3)
    energy = y[100:] ** 2
    assert energy[0] == energy.max()                                  # the direct path comes first
    assert energy[400:2000].sum() > 0.05 * energy.sum()               # then reflections and a tail
    assert energy[400:1200].sum() > energy[4000:4800].sum()           # which decays
    assert np.array_equal(y, room(x, 16000, np.random.default_rng(2)))
    assert not np.array_equal(y, room(x, 16000, np.random.default_rng(3)))
    assert not np.any(room(np.zeros(8000, np.float32), 16000, np.random.default_rng(2)))  # silence stays silent


def test_rooms_are_drawn_with_p_reverb_and_never_when_it_is_0():
    x = harmonic(180.0, seconds=1.0)
    done = [augment(x, 16000, np.random.default_rng(s), p_reverb=0.5)[1] for s in range(40)]
    assert 8 < sum(d.startswith("room") for d in done) < 32           # first, when drawn
    assert not any("room" in augment(x, 16000, np.random.default_rng(s))[1] for s in range(40))
    only, what = augment(x, 16000, np.random.default_rng(1), p_codec=0.0, p_noise=0.0, p_rawboost=0.0, p_reverb=1.0)
    assert what == "room" and not np.allclose(only, x, atol=1e-3)


def test_rooms_change_the_copies_digest_and_no_rooms_keeps_the_earlier_one():
    plain = AugmentSettings(copies=2)
    assert AugmentSettings(copies=2, p_reverb=0.3).digest() not in ("", plain.digest())
    payload = {k: v for k, v in dataclasses.asdict(plain).items() if k != "p_reverb"}
    assert plain.digest() == hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    with pytest.raises(SettingsError, match="p_reverb"):
        AugmentSettings(copies=1, p_reverb=1.5).validate("features.augment")


def test_statistics_with_copies_follow_each_item_with_its_copies(manifests, tmp_path):
    features = FeatureSettings(excitation=True)
    extract.extract_partition(manifests["train"], tmp_path / "train", features, ExtractSettings(n_jobs=1, shard_size=4),
                              progress=False, augment=AugmentSettings(copies=2))
    readers = open_partition(tmp_path / "train", features)
    training = ShardDataset(readers, frames=20, train=True, seed=1)
    names = ("excitation",)
    plain = training.utterance_statistics(names)
    both = training.utterance_statistics(names, with_copies=True)
    assert both.shape == (3 * len(training), plain.shape[1])
    assert np.array_equal(both[::3], plain)                           # each item, then its two copies
    assert not np.array_equal(both[1::3], plain)
    assert list(training.copy_labels()) == [int(label) for label in training.labels for _ in range(3)]
    shard, record = training.locate(0, 2)
    assert readers[shard].copy[record] == 2


def run(manifest, out, augment_settings):
    return extract.extract_partition(manifest, out, FeatureSettings(), ExtractSettings(n_jobs=1, shard_size=4),
                                     progress=False, augment=augment_settings)


def test_train_shards_hold_seeded_copies_after_each_original_and_rerun_byte_identical(manifests, tmp_path):
    settings = AugmentSettings(copies=2, seed=3)
    summary = run(manifests["train"], tmp_path / "a", settings)
    assert summary["utterances"] == 6
    readers = open_partition(tmp_path / "a", FeatureSettings())
    for reader in readers:
        assert list(reader.copy) == [0, 1, 2] * (len(reader) // 3)
        with h5py.File(reader.path) as h5:
            seeds = h5["aug_seed"][:]
            done = h5["augment"].asstr()[:]
        for i in range(len(reader)):
            k = int(reader.copy[i])
            assert seeds[i] == (augment_seed(3, reader.utt_id[i], k) if k else 0)
            assert (done[i] != "") == (k > 0)
        assert reader.utt_id[0] == reader.utt_id[1] == reader.utt_id[2]
        assert not np.array_equal(reader.read(0).subband, reader.read(1).subband)
    index = json.loads((tmp_path / "a/index.json").read_text())
    assert sum(e["augmented_copies"] for e in index["shards"]) == 12
    run(manifests["train"], tmp_path / "b", settings)
    for name in ("shard-00000.h5", "shard-00001.h5"):
        assert file_sha256(tmp_path / "a" / name) == file_sha256(tmp_path / "b" / name)


def test_changed_augmentation_recomputes_and_none_keeps_plain_shards(manifests, tmp_path):
    out = tmp_path / "f"
    plain = run(manifests["train"], out, None)
    first = json.loads((out / "index.json").read_text())
    assert run(manifests["train"], out, AugmentSettings(copies=0))["computed"] == 0   # off = unchanged
    assert json.loads((out / "index.json").read_text()) == first
    assert run(manifests["train"], out, AugmentSettings(copies=1))["computed"] == plain["shards"]
    assert run(manifests["train"], out, AugmentSettings(copies=1, seed=2))["computed"] == plain["shards"]
    assert run(manifests["train"], out, AugmentSettings(copies=1, seed=2))["computed"] == 0


def test_evaluation_never_sees_a_copy_and_training_draws_them(manifests, tmp_path):
    run(manifests["train"], tmp_path / "train", AugmentSettings(copies=2))
    readers = open_partition(tmp_path / "train", FeatureSettings())
    evaluation = ShardDataset(readers, frames=20, train=False)
    assert len(evaluation) == 6
    assert [evaluation.locate(i) for i in range(6)] == [(s, i) for s, r in enumerate(readers)
                                                       for i in r.originals]
    training = ShardDataset(readers, frames=20, train=True, seed=1)
    assert len(training) == 6 and list(training.copies) == [2] * 6
    read = []

    def recording(reader):
        plain = reader.read

        def read_and_note(i, names=None):
            read.append(int(reader.copy[i]))
            return plain(i, names)
        return read_and_note

    for reader in readers:
        reader.read = recording(reader)
    for epoch in range(8):
        for i in range(len(training)):
            training[(i, epoch)]
    assert set(read) == {0, 1, 2}
    read.clear()
    for i in range(len(evaluation)):
        evaluation[i]
    assert set(read) == {0}


def test_extract_stage_augments_train_only(manifests, tmp_path, monkeypatch):
    params = yaml.safe_load(open(ROOT_PARAMS))
    params["features"]["augment"] = {**params["features"]["augment"], "copies": 1}
    # augmented copies only
    params["features"]["copy_synthesis"] = {**params["features"]["copy_synthesis"], "methods": []}
    params["extract"] = {**params["extract"], "n_jobs": 1, "shard_size": 4}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for part in ("train", "dev"):
        (tmp_path / "manifest").mkdir(exist_ok=True)
        (tmp_path / "manifest" / f"{part}.tsv").write_text(manifests[part].read_text())
        assert extract_stage.main([part, "--params", str(tmp_path / "params.yaml"), "--manifest",
                             str(tmp_path / "manifest"), "--out", str(tmp_path / "features")]) == 0
    features = load_settings(tmp_path / "params.yaml").features
    train = open_partition(tmp_path / "features/train", features)
    dev = open_partition(tmp_path / "features/dev", features)
    assert sum(len(r) for r in train) == 12 and sum(len(r.originals) for r in train) == 6
    assert all((r.copy == 0).all() for r in dev) and sum(len(r) for r in dev) == 6


def test_augment_settings_are_checked_where_they_live(tmp_path):
    params = yaml.safe_load(open(ROOT_PARAMS))
    params["features"]["augment"] = {**params["features"]["augment"], "copies": 1,
                                     "codecs": ["gsm", "carrier-pigeon"]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match=r"features\.augment\.codecs: unknown \['carrier-pigeon'\]"):
        load_settings(tmp_path / "p.yaml")
    params["features"]["augment"] = {**params["features"]["augment"], "copies": 1}
    params["augment"] = {"copies": 2}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match="under features"):
        load_settings(tmp_path / "p.yaml")
    assert load_settings(ROOT_PARAMS).augment == AugmentSettings(**yaml.safe_load(open(ROOT_PARAMS))["features"]
                                                                 .get("augment", {}))
