"""HDF5 feature shards: the ragged layout of DESIGN.md, atomic writes, checked reads.

A shard holds many utterances' features concatenated along time, one dataset per stream
(features/streams.py): subband float16 [total_frames, bins], each optional stream float16
[total_frames, width] under its own name, f0 float32 [total_frames]; offsets int64 [N+1],
  utt_id / speaker / attack strings [N], label int8 [N];
  with augmentation or copy synthesis (train shards, features.augment.copies > 0 or
  features.copy_synthesis.methods) also copy int16 [N] (0 = an utterance of the partition,
  k > 0 = its k-th augmented copy, stored right after it, -1 = a copy-synthesis spoof made from
  the bona fide before it, a training item of its own), aug_seed int64 [N] (the copy's seed) and
  augment strings [N] (what was done; the method);
  attributes: the shard format (SHARD_FORMAT), the feature settings (JSON), their fingerprint,
  and the digest of the planned utterance list, so a rerun can tell a finished shard from one
  planned differently and a reader refuses a shard of an older format or other settings.
Every stored value is finite (the writer refuses others, the reader checks what it reads).
A partition folder has shard-NNNNN.h5 files and an index.json listing them with checksums.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

from features.streams import STREAMS, Streams, stream_widths
from pipeline.errors import PipelineError

INDEX_NAME = "index.json"
STREAM_ORDER = (*STREAMS, "f0")
# Version 2: one dataset per stream (version 1 stacked them all into `subband`).
SHARD_FORMAT = 2
FLOAT16_MAX, FLOAT32_MAX = float(np.finfo(np.float16).max), float(np.finfo(np.float32).max)


class ShardError(PipelineError, ValueError):
    pass


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.h5"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(path: str | Path, records, feature_settings, plan_digest: str = "",
                skipped: list[dict] = (), copies: list[tuple[int, int, str]] | None = None) -> int:
    """Write records [(utterance, Streams), ...] to path atomically. Returns the frame count.
    Every record must hold each stream the feature settings make, and f0.
    copies: per record (copy number, seed, what was done), for shards with augmented copies.

    The data goes to a temporary name first and is renamed only when complete, so a killed
    run never leaves a file that looks like a finished shard.
    """
    path = Path(path)
    widths = stream_widths(feature_settings)
    for utterance, streams in records:
        for name, limit in [*((n, FLOAT16_MAX) for n in widths), ("f0", FLOAT32_MAX)]:
            # the streams are stored as float16: a value past its range would be read back as infinite
            if name not in streams:
                raise ShardError(f"{path}: utterance {utterance.utt_id}: no {name} stream to store")
            if len(streams[name]) != streams.frames:
                raise ShardError(f"{path}: utterance {utterance.utt_id}: its {name} stream has {len(streams[name])} "
                                 f"frames, its subband {streams.frames}; streams are stored frame for frame")
            if not np.all(np.abs(streams[name]) <= limit):
                raise ShardError(f"{path}: utterance {utterance.utt_id}: its {name} feature holds non-finite "
                                 f"values (or values beyond what the shard stores); refusing to store them")
    lengths = [streams.frames for _, streams in records]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    text = h5py.string_dtype()
    tmp = path.with_name(path.name + ".tmp")
    try:
        # track_times=False keeps the bytes identical between runs with the same inputs.
        with h5py.File(tmp, "w", libver="v108", track_order=False) as h5:
            for name, width in widths.items():
                data = (np.concatenate([streams[name] for _, streams in records]) if records
                        else np.zeros((0, width)))
                h5.create_dataset(name, data=data.astype(np.float16), track_times=False)
            f0 = np.concatenate([streams["f0"] for _, streams in records]) if records else np.zeros(0)
            h5.create_dataset("f0", data=f0.astype(np.float32), track_times=False)
            h5.create_dataset("offsets", data=offsets, track_times=False)
            for name in ("utt_id", "speaker", "attack"):
                h5.create_dataset(name, data=[getattr(u, name) for u, _ in records], dtype=text, track_times=False)
            h5.create_dataset("label", data=np.array([u.label for u, _ in records], dtype=np.int8),
                              track_times=False)
            if copies is not None:
                h5.create_dataset("copy", data=np.array([c for c, _, _ in copies], dtype=np.int16),
                                  track_times=False)
                h5.create_dataset("aug_seed", data=np.array([s for _, s, _ in copies], dtype=np.int64),
                                  track_times=False)
                h5.create_dataset("augment", data=[a for _, _, a in copies], dtype=text, track_times=False)
            h5.attrs["format"] = SHARD_FORMAT
            h5.attrs["fingerprint"] = feature_settings.fingerprint()
            h5.attrs["settings"] = json.dumps(asdict(feature_settings), sort_keys=True)
            h5.attrs["plan_digest"] = plan_digest
            h5.attrs["skipped"] = json.dumps(list(skipped))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return int(offsets[-1])


def shard_attrs(path: str | Path) -> dict:
    """The shard's attributes, or {} if it is not a readable shard."""
    try:
        with h5py.File(path, "r") as h5:
            return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
    except (OSError, ValueError):
        return {}


class ShardReader:
    """Reads utterances from one shard; opens the file lazily, in the process that reads."""

    def __init__(self, path: str | Path, expected_fingerprint: str | None = None):
        self.path = Path(path)
        self._h5 = None
        try:
            with h5py.File(self.path, "r") as h5:
                version = int(h5.attrs.get("format", 1))
                if version != SHARD_FORMAT:
                    raise ShardError(f"{self.path}: a feature shard of format {version}, written by an older version "
                                     f"of this project (this one reads format {SHARD_FORMAT}); re-extract: delete "
                                     f"the partition's shards (or the folder) and run `dvc repro`")
                fingerprint = h5.attrs.get("fingerprint")
                self.offsets = h5["offsets"][:]
                self.utt_id = h5["utt_id"].asstr()[:].tolist()
                self.speaker = h5["speaker"].asstr()[:].tolist()
                self.attack = h5["attack"].asstr()[:].tolist()
                self.label = h5["label"][:]
                # 0 = an utterance of the partition; k > 0 = its k-th augmented copy; -1 = a
                # copy-synthesis spoof (train shards only)
                self.copy = h5["copy"][:] if "copy" in h5 else np.zeros(len(self.utt_id), np.int16)
                self.settings = json.loads(h5.attrs["settings"])
                self.streams = tuple(name for name in STREAM_ORDER if name in h5)
                self.skipped = json.loads(h5.attrs.get("skipped", "[]"))
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, ShardError):
                raise
            raise ShardError(f"{self.path}: not a readable feature shard ({err}); delete it and rerun "
                             f"extraction") from None
        if expected_fingerprint is not None and fingerprint != expected_fingerprint:
            raise ShardError(f"{self.path}: made with other feature settings (fingerprint {fingerprint}, "
                             f"expected {expected_fingerprint}); rerun extraction (`dvc repro`)")

    def __len__(self) -> int:
        """Records, augmented copies and copy-synthesis spoofs included."""
        return len(self.utt_id)

    @property
    def originals(self) -> np.ndarray:
        """Positions of the original utterances (what evaluation and reports read)."""
        return np.flatnonzero(self.copy == 0)

    def __getstate__(self):
        # Never carry an open HDF5 handle across a fork or a pickle.
        return {**self.__dict__, "_h5": None}

    def read(self, index: int, names=None) -> Streams:
        """Record `index`'s streams `names` (default: all, f0 included) as stored: float16, f0 float32."""
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        streams = Streams()
        for name in (self.streams if names is None else names):
            if name not in self.streams:
                raise ShardError(f"{self.path}: has no {name} stream (it holds {', '.join(self.streams)}); "
                                 f"extract with the settings that make it")
            values = self._h5[name][start:end]
            if not np.isfinite(values).all():
                raise ShardError(f"{self.path}: utterance {self.utt_id[index]}: its {name} feature holds "
                                 f"non-finite values; re-extract it: delete the partition's shards and run "
                                 f"`dvc repro`")
            streams[name] = values
        return streams

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def write_index(folder: str | Path, entries: list[dict], feature_settings, skipped: list[dict]) -> None:
    folder = Path(folder)
    index = {
        "fingerprint": feature_settings.fingerprint(),
        "settings": asdict(feature_settings),
        "utterances": sum(e["utterances"] for e in entries),
        "shards": entries,
        "skipped": skipped,
    }
    tmp = folder / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(tmp, folder / INDEX_NAME)


def open_partition(folder: str | Path, feature_settings, verify: bool = True) -> list[ShardReader]:
    """Readers for every shard listed in folder/index.json, checked against the settings.

    verify=True compares each file's checksum with the index once, so a damaged or replaced
    shard is named before training reads garbage from it.
    """
    folder = Path(folder)
    index_path = folder / INDEX_NAME
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{index_path}: no shard index; run feature extraction first (`dvc repro`)") from None
    except json.JSONDecodeError as err:
        raise ShardError(f"{index_path}: damaged index ({err}); rerun extraction") from None
    expected = feature_settings.fingerprint()
    if index.get("fingerprint") != expected:
        raise ShardError(f"{folder}: features were extracted with other settings (fingerprint "
                         f"{index.get('fingerprint')}, expected {expected}); rerun extraction (`dvc repro`)")
    readers = []
    for entry in index["shards"]:
        path = folder / entry["file"]
        if not path.is_file():
            raise ShardError(f"{path}: listed in {index_path} but missing; rerun extraction")
        if verify and file_sha256(path) != entry["sha256"]:
            raise ShardError(f"{path}: checksum differs from {index_path}; delete the shard and rerun "
                             f"extraction")
        readers.append(ShardReader(path, expected))
    return readers
