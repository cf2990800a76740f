import json

import numpy as np
import pytest

from conftest import make_tone_corpus
from pipeline.extract import ExtractionError, extract_partition
from pipeline.manifest import build_manifest, write_manifest
from pipeline.protocol import Utterance
from pipeline.settings import ExtractSettings, FeatureSettings
from pipeline.shards import ShardError, ShardReader, open_partition, write_shard


def records(n_bins, lengths):
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate(lengths):
        utt = Utterance(f"U{i}", f"S{i % 2}", "-" if i % 2 == 0 else "A01", 1 - i % 2)
        out.append((utt, rng.normal(size=(n, n_bins)).astype(np.float32), np.arange(n, dtype=np.float32) + i))
    return out


def test_shard_round_trip_keeps_ragged_utterances_aligned(tmp_path, feature_settings):
    recs = records(feature_settings.n_bins, [5, 1, 17])
    path = tmp_path / "shard-00000.h5"
    assert write_shard(path, recs, feature_settings) == 23
    reader = ShardReader(path, feature_settings.fingerprint())
    assert list(reader.offsets) == [0, 5, 6, 23]
    assert reader.utt_id == ["U0", "U1", "U2"] and list(reader.label) == [1, 0, 1]
    assert reader.attack == ["-", "A01", "-"]
    for i, (_, sub, f0) in enumerate(recs):
        got_sub, got_f0 = reader.read(i)
        assert got_sub.dtype == np.float16 and got_f0.dtype == np.float32
        np.testing.assert_allclose(got_sub, sub, atol=1e-2, rtol=1e-3)
        np.testing.assert_array_equal(got_f0, f0)
    assert not list(tmp_path.glob("*.tmp"))


def test_shard_from_other_settings_is_refused(tmp_path, feature_settings):
    path = tmp_path / "shard-00000.h5"
    write_shard(path, records(feature_settings.n_bins, [3]), feature_settings)
    other = FeatureSettings(hop_length=160)
    with pytest.raises(ShardError, match="made with other feature settings"):
        ShardReader(path, other.fingerprint())


def test_damaged_shard_is_refused(tmp_path, feature_settings):
    path = tmp_path / "shard-00000.h5"
    path.write_bytes(b"garbage")
    with pytest.raises(ShardError, match="not a readable feature shard"):
        ShardReader(path)


@pytest.fixture
def manifest(tmp_path):
    root = make_tone_corpus(tmp_path / "corpus", partitions=("train",), per_partition=10)
    rows, _ = build_manifest(root, "train")
    path = tmp_path / "train.tsv"
    write_manifest(rows, path)
    return path


def run_extract(manifest, out, settings=None, **extract):
    extract = {"n_jobs": 1, "shard_size": 4, **extract}
    return extract_partition(manifest, out, settings or FeatureSettings(), ExtractSettings(**extract),
                             progress=False)


def test_extraction_writes_every_utterance_and_a_checked_index(manifest, tmp_path):
    out = tmp_path / "features"
    summary = run_extract(manifest, out)
    assert summary == {"shards": 3, "computed": 3, "kept": 0, "utterances": 10, "skipped": []}
    readers = open_partition(out, FeatureSettings())
    assert sum(len(r) for r in readers) == 10
    for reader in readers:
        for i in range(len(reader)):
            sub, f0 = reader.read(i)
            assert sub.shape == (len(f0), 45)
    # another feature setting cannot read these shards
    with pytest.raises(ShardError, match="other settings"):
        open_partition(out, FeatureSettings(max_hz=800))
    # a changed file is named by the checksum check
    victim = out / "shard-00001.h5"
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ShardError, match="shard-00001.h5: checksum differs"):
        open_partition(out, FeatureSettings())


def test_rerun_keeps_finished_shards_and_gives_identical_files(manifest, tmp_path):
    out = tmp_path / "features"
    run_extract(manifest, out, n_jobs=2)
    first = json.loads((out / "index.json").read_text())
    (out / "shard-00001.h5").unlink()
    (out / "shard-00002.h5.tmp").write_bytes(b"half-written by a killed run")
    summary = run_extract(manifest, out)
    assert (summary["computed"], summary["kept"]) == (1, 2)
    assert not list(out.glob("*.tmp"))
    assert json.loads((out / "index.json").read_text()) == first


def test_changed_feature_settings_recompute_every_shard(manifest, tmp_path):
    out = tmp_path / "features"
    run_extract(manifest, out)
    summary = run_extract(manifest, out, FeatureSettings(max_hz=800))
    assert summary["computed"] == 3
    assert open_partition(out, FeatureSettings(max_hz=800))[0].n_bins == 88


def test_bad_audio_stops_or_is_skipped_and_reported(manifest, tmp_path):
    lines = manifest.read_text().splitlines()
    broken = lines[3].split("\t")[4]
    open(broken, "w").write("not audio")
    out = tmp_path / "features"
    with pytest.raises(ExtractionError, match=f"{broken}: not readable as audio"):
        run_extract(manifest, out)
    summary = run_extract(manifest, out, on_error="skip")
    assert summary["utterances"] == 9
    [skipped] = summary["skipped"]
    assert skipped["path"] == broken and "not readable" in skipped["reason"]
    index = json.loads((out / "index.json").read_text())
    assert index["skipped"] == [skipped]


def test_dask_backend_writes_the_same_shards_as_loky(manifest, tmp_path):
    loky = run_extract(manifest, tmp_path / "loky", n_jobs=2)
    dask = run_extract(manifest, tmp_path / "dask", n_jobs=2, backend="dask")
    assert dask["utterances"] == loky["utterances"] == 10
    loky_index = json.loads((tmp_path / "loky/index.json").read_text())
    dask_index = json.loads((tmp_path / "dask/index.json").read_text())
    assert dask_index == loky_index  # same files, same checksums


def test_shard_bytes_do_not_depend_on_the_number_of_workers(manifest, tmp_path):
    run_extract(manifest, tmp_path / "one", n_jobs=1)
    run_extract(manifest, tmp_path / "two", n_jobs=2)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 4
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
