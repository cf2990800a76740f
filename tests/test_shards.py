import json

import h5py
import numpy as np
import pytest

from conftest import make_tone_corpus, random_records
from features.streams import stream_widths
from pipeline.data.extraction import ExtractionError, extract_partition
from pipeline.data.manifests import build_manifest, write_manifest
from pipeline.data.shards import SHARD_FORMAT, ShardError, ShardReader, open_partition, write_shard
from pipeline.settings import ExtractSettings, FeatureSettings


def test_shard_round_trip_keeps_ragged_utterances_aligned(tmp_path, feature_settings):
    recs = random_records(feature_settings, [5, 1, 17])
    path = tmp_path / "shard-00000.h5"
    assert write_shard(path, recs, feature_settings) == 23
    reader = ShardReader(path, feature_settings.fingerprint())
    assert list(reader.offsets) == [0, 5, 6, 23]
    assert reader.utt_id == ["U0", "U1", "U2"] and list(reader.label) == [1, 0, 1]
    assert reader.attack == ["-", "A01", "-"]
    for i, (_, streams) in enumerate(recs):
        got = reader.read(i)
        assert got.subband.dtype == np.float16 and got.f0.dtype == np.float32
        np.testing.assert_allclose(got.subband, streams.subband, atol=1e-2, rtol=1e-3)
        np.testing.assert_array_equal(got.f0, streams.f0)
    assert not list(tmp_path.glob("*.tmp"))


# Every optional stream on: the second view, excitation, harmonicity and harmonic phase.
EVERY_STREAM = FeatureSettings(view2_bands=8, excitation=True, harmonicity=True, harmonic_phase=True)


def test_each_stream_is_its_own_dataset_and_read_gives_only_the_named_ones(tmp_path):
    recs = random_records(EVERY_STREAM, [4, 9])
    path = tmp_path / "shard-00000.h5"
    write_shard(path, recs, EVERY_STREAM)
    widths = stream_widths(EVERY_STREAM)
    with h5py.File(path, "r") as h5:
        assert h5.attrs["format"] == SHARD_FORMAT
        for name, width in widths.items():  # one dataset per stream, float16, its own width
            assert h5[name].shape == (13, width) and h5[name].dtype == np.float16
        assert h5["f0"].shape == (13,) and h5["f0"].dtype == np.float32
    reader = ShardReader(path, EVERY_STREAM.fingerprint())
    assert reader.streams == (*widths, "f0")
    only = reader.read(1, ["subband"])
    assert list(only) == ["subband"] and only.f0 is None
    np.testing.assert_allclose(only.subband, recs[1][1].subband, atol=1e-2, rtol=1e-3)
    some = reader.read(1, ["harmonicity", "f0"])
    assert list(some) == ["harmonicity", "f0"] and some["harmonicity"].shape == (9, 1)
    np.testing.assert_allclose(some["harmonicity"], recs[1][1]["harmonicity"], atol=1e-2, rtol=1e-3)
    np.testing.assert_array_equal(some.f0, recs[1][1].f0)
    everything = reader.read(0)
    assert list(everything) == [*widths, "f0"]
    for name in widths:
        np.testing.assert_allclose(everything[name], recs[0][1][name], atol=1e-2, rtol=1e-3)
    # a stream the shard does not hold is named, never made up
    plain = tmp_path / "plain.h5"
    write_shard(plain, random_records(FeatureSettings(), [3]), FeatureSettings())
    with pytest.raises(ShardError, match="has no excitation stream"):
        ShardReader(plain).read(0, ["excitation"])


def test_a_shard_missing_a_stream_the_settings_make_is_not_written(tmp_path):
    [(utt, streams)] = random_records(EVERY_STREAM, [5])
    del streams["harmonic_phase"]
    path = tmp_path / "shard-00000.h5"
    with pytest.raises(ShardError, match="U0: no harmonic_phase stream"):
        write_shard(path, [(utt, streams)], EVERY_STREAM)
    assert not path.exists() and not list(tmp_path.glob("*.tmp"))


def write_old_shard(path, settings, version=None):
    """A shard as format 1 wrote it: every stream stacked into one `subband` dataset (no "format"
    attribute, or format 1), with the same attributes otherwise."""
    from dataclasses import asdict
    with h5py.File(path, "w") as h5:
        h5.create_dataset("subband", data=np.zeros((7, sum(stream_widths(settings).values())), np.float16))
        h5.create_dataset("f0", data=np.full(7, 120.0, np.float32))
        h5.create_dataset("offsets", data=np.array([0, 3, 7], np.int64))
        for name, values in (("utt_id", ["U0", "U1"]), ("speaker", ["S0", "S1"]), ("attack", ["-", "A01"])):
            h5.create_dataset(name, data=values, dtype=h5py.string_dtype())
        h5.create_dataset("label", data=np.array([1, 0], np.int8))
        if version is not None:
            h5.attrs["format"] = version
        h5.attrs["fingerprint"] = settings.fingerprint()
        h5.attrs["settings"] = json.dumps(asdict(settings), sort_keys=True)
        h5.attrs["plan_digest"] = ""
        h5.attrs["skipped"] = "[]"


@pytest.mark.parametrize("version", [None, 1])
def test_a_shard_of_the_old_format_is_refused_never_read_wrongly(tmp_path, version):
    settings = FeatureSettings(excitation=True)
    path = tmp_path / "shard-00000.h5"
    write_old_shard(path, settings, version)
    with pytest.raises(ShardError, match="format 1.*re-extract"):
        ShardReader(path, settings.fingerprint())
    # and through a partition's index, as training and evaluation open it
    from pipeline.data.shards import file_sha256, write_index
    write_index(tmp_path, [{"file": path.name, "utterances": 2, "frames": 7, "sha256": file_sha256(path)}],
                settings, [])
    with pytest.raises(ShardError, match="re-extract"):
        open_partition(tmp_path, settings)


def test_shard_from_other_settings_is_refused(tmp_path, feature_settings):
    path = tmp_path / "shard-00000.h5"
    write_shard(path, random_records(feature_settings, [3]), feature_settings)
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
            streams = reader.read(i)
            assert streams.subband.shape == (len(streams.f0), 45)
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
    assert open_partition(out, FeatureSettings(max_hz=800))[0].read(0).subband.shape[1] == 88


def test_a_rerun_extracts_again_over_shards_of_the_old_format(manifest, tmp_path):
    """After an upgrade the finished shards of the old format (same settings, same plan) are not kept:
    `dvc repro` on the persisted folder re-extracts them instead of failing on them later."""
    out = tmp_path / "features"
    run_extract(manifest, out)
    for path in sorted(out.glob("shard-*.h5")):
        with h5py.File(path, "r+") as h5:
            del h5.attrs["format"]
    summary = run_extract(manifest, out)
    assert (summary["computed"], summary["kept"]) == (3, 0)
    assert all(len(r) for r in open_partition(out, FeatureSettings()))


def test_streams_of_other_lengths_than_the_subband_are_not_written(tmp_path):
    [(utt, streams)] = random_records(EVERY_STREAM, [5])
    streams["harmonicity"] = streams["harmonicity"][:4]
    path = tmp_path / "shard-00000.h5"
    with pytest.raises(ShardError, match="U0: its harmonicity stream has 4 frames, its subband 5"):
        write_shard(path, [(utt, streams)], EVERY_STREAM)
    assert not path.exists()


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
