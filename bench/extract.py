"""Extraction throughput: the whole pipeline vs the sum of its kernels, with 1 and 2 workers.

    python bench/extract.py [--manifest data/manifest/train.tsv] [--utterances 600]

Kernels are timed alone in this process (load + resample, F0, subband, the excitation statistics
when features.excitation is on, the harmonicity when features.harmonicity is, the harmonic phase
when features.harmonic_phase is, shard write); their
summed time per utterance is the limit one core can reach. The pipeline is
pipeline.extract.extract_partition with n_jobs 1 and 2 on the same utterances (without copy
synthesis). With features.copy_synthesis on, each method's vocoder is timed alone per bona fide
utterance too, and set against one utterance's feature kernels. With features.harmonicity on,
Praat's own cross-correlation harmonicity (praat-parselmouth) is timed on the same utterances
beside it, as the reference it replaces. Run after
`make repro` (it reads the mini corpus manifest). Prints a table and writes bench/results/extract.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

import features
from features.copy_synthesis import copy_synthesise
from pipeline.data.extraction import extract_partition
from pipeline.data.manifests import read_manifest, write_manifest
from pipeline.data.shards import write_shard
from pipeline.settings import ExtractSettings, load_settings


def time_kernels(rows, settings) -> dict[str, float]:
    """Seconds per utterance of each kernel, run alone in this process."""
    totals = {"load": 0.0, "f0": 0.0, "subband": 0.0, "write": 0.0}
    if settings.excitation:
        totals["excitation"] = 0.0
    if settings.harmonicity:
        totals["harmonicity"] = 0.0
    if settings.harmonic_phase:
        totals["harmonic_phase"] = 0.0
    records = []
    for utt, path, _ in rows:
        t0 = time.perf_counter()
        x = features.load_audio(path, settings.sample_rate)
        t1 = time.perf_counter()
        spectra = features.subband_spectrogram(x, settings)
        streams = features.Streams(subband=spectra[:, :settings.n_subband_bins])
        if settings.view2_bands:
            streams["view2"] = spectra[:, settings.n_subband_bins:]
        t2 = time.perf_counter()
        f0 = streams["f0"] = features.compute_f0(x, settings.sample_rate, streams.frames, settings)
        t3 = time.perf_counter()
        totals["load"] += t1 - t0
        totals["subband"] += t2 - t1
        totals["f0"] += t3 - t2
        if settings.excitation:
            stats = features.excitation_statistics(x, settings.sample_rate, settings.hop_length,
                                                   preemphasis_coefficient=settings.preemphasis)
            totals["excitation"] += time.perf_counter() - t3
            streams["excitation"] = stats
        if settings.harmonicity:
            t4 = time.perf_counter()
            hnr = features.frame_hnr(x, settings.sample_rate, settings.hop_length, streams.frames)
            totals["harmonicity"] += time.perf_counter() - t4
            streams["harmonicity"] = hnr[:, None]
        if settings.harmonic_phase:
            t5 = time.perf_counter()
            phase = features.frame_harmonic_phase(x, settings.sample_rate, settings.hop_length, f0)
            totals["harmonic_phase"] += time.perf_counter() - t5
            streams["harmonic_phase"] = phase
        records.append((utt, streams))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_shard(Path(tmp) / "shard.h5", records, settings)
        totals["write"] = time.perf_counter() - t0
    return {k: v / len(rows) for k, v in totals.items()}


def time_copy_synthesis(rows, settings, methods) -> dict[str, float]:
    """Seconds per bona fide utterance of making each copy-synthesis spoof (the vocoder alone;
    its features then cost what any utterance's do)."""
    bonafide = [features.load_audio(path, settings.sample_rate) for utt, path, _ in rows if utt.label == 1]
    seconds = {}
    for method in methods:
        total = 0.0
        for i, x in enumerate(bonafide):
            t0 = time.perf_counter()
            copy_synthesise(x, settings.sample_rate, method, np.random.default_rng(i))
            total += time.perf_counter() - t0
        seconds[method] = total / max(1, len(bonafide))
    return seconds


def time_praat_harmonicity(rows, settings) -> float:
    """Seconds per utterance of Praat's cross-correlation harmonicity (10 ms steps, 60 Hz floor,
    silence threshold 0.1, 1 period per window), what features.harmonicity computes in numpy."""
    import parselmouth
    from parselmouth.praat import call
    total = 0.0
    for utt, path, _ in rows:
        sound = parselmouth.Sound(features.load_audio(path, settings.sample_rate).astype(np.float64),
                                  float(settings.sample_rate))
        t0 = time.perf_counter()
        call(sound, "To Harmonicity (cc)", 0.01, 60.0, 0.1, 1.0)
        total += time.perf_counter() - t0
    return total / len(rows)


def time_pipeline(manifest: Path, settings, n_jobs: int, shard_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        extract_partition(manifest, Path(tmp), settings,
                          ExtractSettings(n_jobs=n_jobs, shard_size=shard_size), progress=False)
        return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/manifest/train.tsv")
    parser.add_argument("--utterances", type=int, default=600)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    if not Path(args.manifest).is_file():
        print(f"{args.manifest} not found: run `make repro` first", file=sys.stderr)
        return 1
    all_settings = load_settings(args.params)
    settings = all_settings.features
    rows = read_manifest(args.manifest)[: args.utterances]
    n = len(rows)
    Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4))  # start the worker pool once
    kernels = time_kernels(rows, settings)
    limit = 1.0 / sum(kernels.values())
    copies = time_copy_synthesis(rows, settings, all_settings.copy_synthesis.methods)
    praat = time_praat_harmonicity(rows, settings) if settings.harmonicity else None
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "bench.tsv"
        write_manifest(rows, manifest)
        shard_size = -(-n // 8)  # 8 shards: work for both workers, small tail
        pipeline = {jobs: n / time_pipeline(manifest, settings, jobs, shard_size) for jobs in (1, 2)}
    result = {
        "utterances": n,
        "kernel_ms_per_utt": {k: round(v * 1e3, 2) for k, v in kernels.items()},
        "kernel_limit_utt_per_s_per_core": round(limit, 1),
        "pipeline_utt_per_s": {str(k): round(v, 1) for k, v in pipeline.items()},
        "pipeline_1_worker_vs_kernel_limit": round(pipeline[1] / limit, 3),
        "speedup_2_vs_1_workers": round(pipeline[2] / pipeline[1], 2),
        # features.copy_synthesis: the vocoder per bona fide utterance (the train partition only),
        # and as a share of one utterance's feature kernels
        "copy_synthesis_ms_per_bonafide": {m: round(v * 1e3, 2) for m, v in copies.items()},
        "copy_synthesis_vs_feature_kernels": {m: round(v * limit, 2) for m, v in copies.items()},
    }
    if praat is not None:
        result["praat_harmonicity_ms_per_utt"] = round(praat * 1e3, 2)
        result["praat_vs_harmonicity_kernel"] = round(praat / kernels["harmonicity"], 1)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n} utterances; kernels per utterance (ms): " +
          ", ".join(f"{k} {v * 1e3:.1f}" for k, v in kernels.items()))
    print(f"kernel limit            {limit:7.1f} utt/s per core")
    print(f"pipeline, 1 worker      {pipeline[1]:7.1f} utt/s  ({pipeline[1] / limit:.0%} of the limit)")
    print(f"pipeline, 2 workers     {pipeline[2]:7.1f} utt/s  ({pipeline[2] / pipeline[1]:.2f}x of 1 worker)")
    for method, seconds in copies.items():
        print(f"copy synthesis {method}: {seconds * 1e3:.1f} ms per bona fide utterance "
              f"({seconds * limit:.2f}x one utterance's feature kernels)")
    if praat is not None:
        print(f"Praat's harmonicity: {praat * 1e3:.1f} ms per utterance "
              f"({praat / kernels['harmonicity']:.1f}x the harmonicity kernel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
