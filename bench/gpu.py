"""Does the shard loader keep a GPU fed? Training throughput, memory and data-wait fraction.

    python bench/gpu.py [--steps 50] [--workers auto] [--micro-batch 0] [--compile]

Installs and downloads nothing and needs no corpus: it writes synthetic shards in the real
format (45 bins, 3.2 s utterances on average, like the mini corpus) to a temporary folder and
uses train.py's own pieces: its loader (train.make_loader: the epoch sampler, persistent
workers, train.num_workers' auto rule), its step (pipeline.training.train_step, channels-last inputs, one
host sync per epoch, not per step) and train.precision's auto rule. It measures the loader alone
(samples/s on the CPU side), then trains the default SR-LA Res2Net on 45 x 600 crops from it,
and reports samples/s, the fraction of time spent waiting for data, and CUDA max allocated
memory. The loader should deliver at least 3x what the GPU trains. Runs on the CPU too
(slowly), for a dry run.
Writes bench/results/gpu.json.
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

from features.streams import Streams
from model import build_model, margin_lambda
from pipeline.data.dataset import ShardDataset
from pipeline.data.protocol import Utterance
from pipeline.data.shards import ShardReader, write_shard
from pipeline.scoring.scorer import resolve_device, resolve_precision, to_device
from pipeline.settings import FeatureSettings, ModelSettings, TrainSettings
from pipeline.training import loader_workers, make_loader, train_step


def synthetic_shards(folder: Path, settings, utterances: int, per_shard: int = 1000) -> list[ShardReader]:
    rng = np.random.default_rng(0)
    readers = []
    for number, start in enumerate(range(0, utterances, per_shard)):
        records = []
        for i in range(start, min(start + per_shard, utterances)):
            frames = int(rng.integers(150, 650))  # 1.2 - 5.3 s
            records.append((Utterance(f"SYN_{i:06d}", "S", "-" if i % 2 else "A01", i % 2),
                            Streams(subband=rng.normal(-4, 1, (frames, settings.n_subband_bins)).astype(np.float32),
                                    f0=rng.uniform(0, 250, frames).astype(np.float32))))
        path = folder / f"shard-{number:05d}.h5"
        write_shard(path, records, settings)
        readers.append(ShardReader(path, settings.fingerprint()))
    return readers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--workers", default="auto", help="loader workers, as train.num_workers")
    parser.add_argument("--micro-batch", type=int, default=0, help="as train.micro_batch")
    parser.add_argument("--utterances", type=int, default=8000)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = resolve_device("auto")
    precision, reason = resolve_precision("auto", device)
    workers = loader_workers(args.workers if args.workers == "auto" else int(args.workers), 1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    settings = FeatureSettings()
    train_settings = TrainSettings(frames=args.frames, batch_size=args.batch_size, micro_batch=args.micro_batch)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = ShardDataset(synthetic_shards(Path(tmp), settings, args.utterances), args.frames, train=True)
        loader = make_loader(dataset, train_settings, device, workers)

        def batches():
            epoch = 0
            while True:
                loader.sampler.set_epoch(epoch)
                yield from loader
                epoch += 1

        # 1. the loader alone
        stream = batches()
        next(stream)
        started, seen = time.perf_counter(), 0
        while time.perf_counter() - started < 10:
            seen += len(next(stream)[0])
        loader_rate = seen / (time.perf_counter() - started)

        # 2. training from the loader
        torch.manual_seed(0)
        model = build_model(ModelSettings()).to(device, memory_format=torch.channels_last)
        model.train()
        runner = torch.compile(model) if args.compile else model
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9, amsgrad=True)

        def step(x, y, n):
            train_step(runner, to_device(x, device), y.to(device, non_blocking=True),
                       optimizer, margin_lambda(n), device, precision, args.micro_batch)

        for n in range(3):  # warm-up (and compilation)
            x, y, _ = next(stream)
            step(x, y, n)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        waiting, started = 0.0, time.perf_counter()
        for n in range(args.steps):
            t = time.perf_counter()
            x, y, _ = next(stream)
            waiting += time.perf_counter() - t
            step(x, y, n)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
    train_rate = args.steps * args.batch_size / elapsed
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "frames": args.frames, "batch_size": args.batch_size, "workers": workers,
              "micro_batch": args.micro_batch, "precision": precision, "precision_reason": reason,
              "compiled": args.compile, "train_samples_per_s": train_rate, "data_wait_fraction": waiting / elapsed,
              "loader_samples_per_s": loader_rate, "loader_vs_training": loader_rate / train_rate}
    if device.type == "cuda":
        result["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/results/gpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"the loader delivers {result['loader_vs_training']:.1f}x what training consumes "
          f"({'enough' if result['loader_vs_training'] >= 3 else 'NOT enough'}: the goal is 3x); "
          f"{result['data_wait_fraction']:.1%} of training time waits for data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
