"""How cost grows with corpus size, a projection to full ASVspoof 2019 LA, and cached vs on-the-fly features.

    python bench/scale.py [--sizes 250 500 1000 1970] [--train-frames 200]

Run after `make repro` (it uses the mini corpus manifests). For each size N (the first N
utterances of train + dev + eval) it measures: feature extraction time (2 workers), shard
bytes, shard-loader throughput (45 x 600 inputs, 2 DataLoader workers) and one training epoch
(eager bf16, batch 32, `--train-frames` frames). A least-squares line per quantity shows how
linear the growth is and projects the full corpus (121,461 utterances; 25,380 in train).
Finally it compares the shard loader with extracting features in the data loader every epoch
(the seed's approach). Writes bench/results/scale.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch
from joblib import Parallel, delayed
from torch.utils.data import DataLoader, Dataset

import features
from pipeline.data.dataset import ShardDataset, fit_frames, model_input
from pipeline.data.extraction import extract_partition
from pipeline.data.manifests import read_manifest, write_manifest
from pipeline.data.shards import open_partition
from pipeline.settings import ExtractSettings, ModelSettings, load_settings

FULL_CORPUS = 121_461
FULL_TRAIN = 25_380
COMPILED_B64_SAMPLES_PER_S = 6.64  # bench/train.py, compiled bf16, batch 64 as 2 x 32, 45 x 600


class OnTheFly(Dataset):
    """The seed's approach: read the audio and compute the features for every item, every epoch."""

    def __init__(self, rows, settings, frames):
        self.rows, self.settings, self.frames = rows, settings, frames

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        utt, path, _ = self.rows[i]
        waveform = features.load_audio(path, self.settings.sample_rate)
        streams = features.extract(waveform, self.settings.sample_rate, self.settings)
        subband, _ = fit_frames(streams.subband, None, self.frames, None)
        return model_input(subband, None, False), utt.label


def loader_rate(dataset, min_seconds: float = 5.0, max_seconds: float = 60.0) -> float:
    """Samples/s delivered by a 2-worker DataLoader, after its first batch (worker start-up)."""
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2, persistent_workers=True,
                        generator=torch.Generator().manual_seed(0))
    started, seen = None, 0
    while started is None or time.perf_counter() - started < min_seconds:
        for x, *_ in loader:
            if started is None:
                started = time.perf_counter()
                continue
            seen += len(x)
            if time.perf_counter() - started > max_seconds:
                break
    return seen / (time.perf_counter() - started)


def train_epoch_seconds(folder: Path, feature_settings, frames: int) -> float:
    from model import build_model
    from pipeline.training import train_step
    torch.manual_seed(0)
    dataset = ShardDataset(open_partition(folder, feature_settings), frames, train=True)
    model = build_model(ModelSettings())
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=1)
    started = time.perf_counter()
    for x, y, _ in loader:
        train_step(model, x, y, optimizer, 100.0, torch.device("cpu"), "bf16")
    return time.perf_counter() - started


def fit_line(sizes, values) -> dict:
    slope, intercept = np.polyfit(sizes, values, 1)
    predicted = slope * np.asarray(sizes) + intercept
    residual = np.sum((np.asarray(values) - predicted) ** 2)
    total = np.sum((np.asarray(values) - np.mean(values)) ** 2)
    return {"per_utterance": float(slope), "fixed": float(intercept),
            "r2": float(1 - residual / total) if total > 0 else 1.0}


def compare(rows, settings) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "all.tsv"
        write_manifest(rows, manifest)
        extract_partition(manifest, Path(tmp) / "all", settings, ExtractSettings(n_jobs=2, shard_size=250),
                          progress=False)
        cached = loader_rate(ShardDataset(open_partition(Path(tmp) / "all", settings), 600, train=True))
    on_the_fly = loader_rate(OnTheFly(rows, settings, 600), max_seconds=30.0)
    print(f"shard loader {cached:.0f} samples/s vs on-the-fly extraction {on_the_fly:.1f} samples/s "
          f"({cached / on_the_fly:.0f}x)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 1970])
    parser.add_argument("--train-frames", type=int, default=200)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--compare-only", action="store_true",
                        help="only the cached vs on-the-fly comparison (on all utterances)")
    args = parser.parse_args()
    settings = load_settings(args.params).features
    manifests = [ROOT / "data/manifest" / f"{p}.tsv" for p in ("train", "dev", "eval")]
    if not all(m.is_file() for m in manifests):
        print("data/manifest/*.tsv not found: run `make repro` first", file=sys.stderr)
        return 1
    rows = [r for m in manifests for r in read_manifest(m)]
    Parallel(n_jobs=2)(delayed(abs)(i) for i in range(4))  # start the worker pool outside the timings
    sizes = [n for n in args.sizes if n <= len(rows)]
    if args.compare_only:
        return compare(rows, settings)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            manifest = Path(tmp) / f"n{n}.tsv"
            write_manifest(rows[:n], manifest)
            out = Path(tmp) / f"n{n}"
            started = time.perf_counter()
            extract_partition(manifest, out, settings, ExtractSettings(n_jobs=2, shard_size=max(1, n // 8)),
                              progress=False)
            extraction = time.perf_counter() - started
            shard_bytes = sum(f.stat().st_size for f in out.glob("shard-*.h5"))
            loader = loader_rate(ShardDataset(open_partition(out, settings), 600, train=True))
            epoch = train_epoch_seconds(out, settings, args.train_frames)
            row = {"utterances": n, "extraction_s": extraction, "shard_bytes": shard_bytes,
                   "loader_samples_per_s": loader, "train_epoch_s": epoch}
            table.append(row)
            print(f"{n:6d} utt: extraction {extraction:6.1f} s  shards {shard_bytes / 1e6:6.1f} MB  "
                  f"loader {loader:8.0f} samples/s  train epoch {epoch:6.1f} s", flush=True)
        largest = Path(tmp) / f"n{sizes[-1]}"
        cached = loader_rate(ShardDataset(open_partition(largest, settings), 600, train=True))
        on_the_fly = loader_rate(OnTheFly(rows[:sizes[-1]], settings, 600), max_seconds=30.0)

    ns = [r["utterances"] for r in table]
    fits = {k: fit_line(ns, [r[k] for r in table]) for k in ("extraction_s", "shard_bytes", "train_epoch_s")}
    extraction_core_h = fits["extraction_s"]["per_utterance"] * 2 * FULL_CORPUS / 3600
    projection = {
        "extraction_hours_per_core": extraction_core_h,
        "shard_gb": fits["shard_bytes"]["per_utterance"] * FULL_CORPUS / 1e9,
        "train_epoch_hours_this_cpu_45x600_compiled": FULL_TRAIN / COMPILED_B64_SAMPLES_PER_S / 3600,
        "feature_hours_saved_over_32_epochs_2_workers": 32 * FULL_TRAIN / on_the_fly / 3600
        - FULL_TRAIN / cached * 32 / 3600,
    }
    result = {"table": table, "fits": fits, "projection_full_corpus": projection,
              "cached_loader_samples_per_s": cached, "on_the_fly_samples_per_s": on_the_fly,
              "cached_vs_on_the_fly": cached / on_the_fly}
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/results/scale.json").write_text(json.dumps(result, indent=2))
    for k, f in fits.items():
        print(f"{k}: {f['per_utterance']:.4g} per utterance + {f['fixed']:.3g} fixed (R^2 {f['r2']:.4f})")
    print(f"full corpus ({FULL_CORPUS} utt): extraction {projection['extraction_hours_per_core']:.1f} core-hours, "
          f"shards {projection['shard_gb']:.1f} GB, one train epoch at 45x600 (compiled, this CPU) "
          f"{projection['train_epoch_hours_this_cpu_45x600_compiled']:.2f} h")
    print(f"shard loader {cached:.0f} samples/s vs on-the-fly extraction {on_the_fly:.1f} samples/s "
          f"({cached / on_the_fly:.0f}x); 32 epochs of the full train partition save "
          f"{projection['feature_hours_saved_over_32_epochs_2_workers']:.1f} h of feature computation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
