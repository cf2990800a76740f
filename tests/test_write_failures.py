"""A full disk or a refused write leaves no file that a later run would trust."""
import errno

import h5py
import pytest
import torch

from conftest import random_records
from pipeline.data.shards import ShardReader, write_shard
from pipeline.scoring.modelfile import CHECKPOINT_FORMAT, atomic_save, load_checkpoint
from pipeline.settings import FeatureSettings


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_shard_write_failing_half_way_leaves_nothing(tmp_path, monkeypatch):
    settings = FeatureSettings()
    original = h5py.Group.create_dataset

    def fail_on_labels(self, name, *args, **kwargs):
        if name == "label":  # the streams and f0 data are already written by then
            disk_full()
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_labels)
    with pytest.raises(OSError, match="No space left"):
        write_shard(tmp_path / "shard-00000.h5", random_records(settings, [4, 5]), settings)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_shard_survives_a_failed_rewrite(tmp_path, monkeypatch):
    settings = FeatureSettings()
    path = tmp_path / "shard-00000.h5"
    write_shard(path, random_records(settings, [4, 5]), settings)
    before = path.read_bytes()
    monkeypatch.setattr(h5py.File, "__init__", disk_full)
    with pytest.raises(OSError):
        write_shard(path, random_records(settings, [7]), settings)
    monkeypatch.undo()
    assert path.read_bytes() == before and len(ShardReader(path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["shard-00000.h5"]


def test_checkpoint_write_failure_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"format": CHECKPOINT_FORMAT, "epoch": 1}, path)
    monkeypatch.setattr(torch, "save", lambda obj, f: (open(f, "wb").write(b"partial"), disk_full()))
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"format": CHECKPOINT_FORMAT, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
