"""Parallel, resumable feature extraction of one partition into HDF5 shards.

The `extract` command (pipeline/extract.py) runs this; see its docstring.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, parallel_config
from tqdm import tqdm

import features
from features.augment import augment as augment_waveform
from features.augment import augment_seed
from features.channels import apply_condition, condition_seed
from features.copy_synthesis import METHODS, copy_seed, copy_synthesise, copy_utt_id
from pipeline.data.manifests import read_manifest
from pipeline.data.shards import (SHARD_FORMAT, ShardReader, file_sha256, shard_attrs, shard_name, write_index,
                                  write_shard)
from pipeline.errors import PipelineError
from pipeline.settings import AugmentSettings, CopySynthesisSettings, ExtractSettings, FeatureSettings


class ExtractionError(PipelineError, RuntimeError):
    pass


def plan_shards(rows: list, shard_size: int) -> list[list]:
    """Split rows into ceil(N / shard_size) shards of near-equal size, in manifest order."""
    n_shards = max(1, math.ceil(len(rows) / shard_size))
    return [rows[i * len(rows) // n_shards:(i + 1) * len(rows) // n_shards] for i in range(n_shards)]


def plan_digest(rows: list) -> str:
    """What a finished shard must have been made from: the records and the audio's checksums."""
    text = "\n".join(f"{u.utt_id}\t{u.speaker}\t{u.attack}\t{u.label}\t{path}\t{sha}" for u, path, sha in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def is_complete(path: Path, digest: str, fingerprint: str) -> bool:
    """A finished shard of this plan, these settings and this shard format (a shard of an older
    format is extracted again, not kept)."""
    attrs = shard_attrs(path) if path.is_file() else {}
    return (attrs.get("format") == SHARD_FORMAT and attrs.get("fingerprint") == fingerprint
            and attrs.get("plan_digest") == digest)


def extract_shard(rows: list, path: Path, settings: FeatureSettings, on_error: str,
                  digest: str, augment: AugmentSettings | None = None,
                  copy_synthesis: CopySynthesisSettings | None = None,
                  channel: tuple[str, int] | None = None) -> tuple[int, list[dict]]:
    """Compute and write one shard. Returns (utterances written, skipped [{utt_id, path, reason}]).

    Skipped utterances are recorded in the shard itself, so their reasons survive a resumed run.
    With augment.copies = K, each utterance is followed by K augmented copies (features.augment),
    each from its own seed. With copy_synthesis.methods, each bona fide utterance is followed
    (after its augmented copies) by one spoof per method, made from it by that vocoder
    (features.copy_synthesis): a training item of its own (copy -1), id UTT~method, attack the
    method's id. Neither kind counts as an utterance of the partition.
    """
    copies = augment.copies if augment is not None else 0
    methods = copy_synthesis.methods if copy_synthesis is not None else []
    records, skipped, versions = [], [], []
    for utt, audio_path in rows:
        try:
            waveform = features.load_audio(audio_path, settings.sample_rate)
            if channel is not None:
                condition, seed = channel
                waveform = apply_condition(waveform, settings.sample_rate, condition,
                                           condition_seed(seed, utt.utt_id, condition))
            made = [(utt, features.extract(waveform, settings.sample_rate, settings, source=audio_path), (0, 0, ""))]
            for k in range(1, copies + 1):
                seed = augment_seed(augment.seed, utt.utt_id, k)
                copy, done = augment_waveform(waveform, settings.sample_rate, np.random.default_rng(seed),
                                              augment.codecs, augment.p_codec, augment.p_noise,
                                              augment.snr_db, augment.p_rawboost, augment.p_reverb)
                made.append((utt, features.extract(copy, settings.sample_rate, settings,
                                                     source=f"{audio_path} (augmented copy {k})"), (k, seed, done)))
            for method in (methods if utt.label == 1 else []):
                seed = copy_seed(copy_synthesis.seed, utt.utt_id, method)
                spoof = copy_synthesise(waveform, settings.sample_rate, method, np.random.default_rng(seed))
                made.append((dataclasses.replace(utt, utt_id=copy_utt_id(utt.utt_id, method),
                                                 attack=METHODS[method][0], label=0),
                             features.extract(spoof, settings.sample_rate, settings,
                                              source=f"{audio_path} ({method} copy)"), (-1, seed, method)))
        except features.AudioError as err:
            if on_error == "stop":
                raise ExtractionError(f"{utt.utt_id}: {err}") from None
            skipped.append({"utt_id": utt.utt_id, "path": str(audio_path), "reason": err.reason})
            continue
        for record, streams, version in made:
            records.append((record, streams))
            versions.append(version)
    write_shard(path, records, settings, digest, skipped, versions if copies or methods else None)
    return len(rows) - len(skipped), skipped


@contextlib.contextmanager
def backend(settings: ExtractSettings):
    """joblib's backend: loky processes here, or a dask.distributed cluster."""
    if settings.backend == "loky":
        with parallel_config(backend="loky", n_jobs=settings.n_jobs):
            yield
        return
    from dask.distributed import Client, LocalCluster
    if settings.scheduler:
        client = Client(settings.scheduler)
    else:
        client = Client(LocalCluster(n_workers=settings.n_jobs, threads_per_worker=1, processes=True))
    with client, parallel_config(backend="dask", n_jobs=settings.n_jobs):
        yield


def extract_partition(manifest: Path, out: Path, feature_settings: FeatureSettings,
                      extract_settings: ExtractSettings, progress: bool = True,
                      augment: AugmentSettings | None = None,
                      copy_synthesis: CopySynthesisSettings | None = None,
                      channel: tuple[str, int] | None = None) -> dict:
    """Extract one partition into out/ (shards + index.json). Returns a summary.
    augment: augmented copies to add; copy_synthesis: vocoded copies of the bona fide to add as
    spoofs (both the train partition only; evaluation data never gets any); channel: (condition,
    seed), every utterance through that channel condition (the `channels` stage)."""
    rows = read_manifest(manifest)
    # Workers may run elsewhere (dask): they get absolute paths; the plan digests keep the
    # manifest's own paths, so moving the checkout does not invalidate finished shards.
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_shards(rows, extract_settings.shard_size)
    tasks = [[(u, str(Path(p).resolve())) for u, p, _ in plan] for plan in plans]
    fingerprint = feature_settings.fingerprint()
    names = [shard_name(i) for i in range(len(plans))]
    copies_digest = augment.digest() if augment is not None else ""
    vocoded_digest = copy_synthesis.digest() if copy_synthesis is not None else ""
    digests = [plan_digest(p) + (f"+augment:{copies_digest}" if copies_digest else "")
               + (f"+copy_synthesis:{vocoded_digest}" if vocoded_digest else "")
               + (f"+channel:{channel[0]}:{channel[1]}" if channel else "") for p in plans]
    todo = [i for i in range(len(plans)) if not is_complete(out / names[i], digests[i], fingerprint)]
    # Anything else in the folder is from an older plan or a killed run: it must not be trusted.
    for stale in out.iterdir():
        if stale.name not in names and (stale.suffix in (".h5", ".tmp")):
            stale.unlink()

    if todo:
        with backend(extract_settings):
            jobs = Parallel(return_as="generator_unordered")(
                delayed(_indexed)(i, tasks[i], out / names[i], feature_settings, extract_settings.on_error,
                                  digests[i], augment if copies_digest else None,
                                  copy_synthesis if vocoded_digest else None, channel)
                for i in todo)
            bar = tqdm(total=sum(len(plans[i]) for i in todo), unit="utt", disable=not progress,
                       desc=f"features {manifest.stem}")
            with bar:
                for i in jobs:
                    bar.update(len(plans[i]))

    entries, skipped_all = [], []
    for i, name in enumerate(names):
        path = out / name
        reader = ShardReader(path, fingerprint)
        entry = {"file": name, "utterances": len(reader.originals), "frames": int(reader.offsets[-1]),
                 "sha256": file_sha256(path)}
        if (reader.copy > 0).any():
            entry["augmented_copies"] = int((reader.copy > 0).sum())
        if (reader.copy < 0).any():
            entry["copy_synthesis"] = int((reader.copy < 0).sum())
        entries.append(entry)
        skipped_all += reader.skipped
    write_index(out, entries, feature_settings, skipped_all)
    return {"shards": len(plans), "computed": len(todo), "kept": len(plans) - len(todo),
            "utterances": sum(e["utterances"] for e in entries), "skipped": skipped_all}


def _indexed(i, *args):
    extract_shard(*args)
    return i
