"""Training throughput and peak memory of the SR-LA Res2Net step, against the straightforward way.

    python bench/train.py [--frames 600] [--steps 2] [--only NAME ...]

Each configuration runs in a fresh process (so its peak RSS is its own) and times full
training steps (forward, A-Softmax loss, backward, Adam) on random 45 x frames inputs through
train.train_step, the function the trainer uses. The reference is the straightforward way to
train the network: eager PyTorch, fp32, the whole batch at once. Data loading is not included.
Prints a table and writes bench/results/train.json. On a CUDA machine it also reports CUDA max
allocated memory.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (precision, batch, micro_batch, compile)
CONFIGS = {
    "reference fp32 b32": ("fp32", 32, 0, False),
    "reference fp32 b64": ("fp32", 64, 0, False),
    "eager bf16 b32": ("bf16", 32, 0, False),
    "eager bf16 b64": ("bf16", 64, 0, False),
    "compiled bf16 b64 (2x32)": ("bf16", 64, 32, True),
}


def run_one(name: str, frames: int, steps: int) -> dict:
    import torch

    from model import build_model
    from pipeline.settings import FeatureSettings, ModelSettings
    from train import resolve_device, train_step

    precision, batch, micro, compiled = CONFIGS[name]
    device = resolve_device("auto")
    torch.manual_seed(0)
    model = build_model(ModelSettings()).to(device)
    model.train()
    runner = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9, amsgrad=True)
    x = torch.randn(batch, 1, FeatureSettings().n_bins, frames, device=device)
    y = torch.randint(0, 2, (batch,), device=device)

    def step():
        train_step(runner, x, y, optimizer, 100.0, device, precision, micro)
        if device.type == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    step()  # warm-up (and compilation)
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - started
    result = {"samples_per_s": batch * steps / elapsed, "first_step_s": warmup,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
              "device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        result["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="run only these configurations")
    parser.add_argument("--one", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.frames, args.steps)))
        return 0
    results = {}
    for name in args.only or CONFIGS:
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--frames", str(args.frames),
                               "--steps", str(args.steps)], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:28s} {r['samples_per_s']:7.2f} samples/s  peak RSS {r['peak_rss_gb']:5.2f} GB  "
              f"first step {r['first_step_s']:6.1f} s", flush=True)
    base = results.get("reference fp32 b64") or next(iter(results.values()))
    for r in results.values():
        r["speedup_vs_reference_b64"] = r["samples_per_s"] / base["samples_per_s"]
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps({"frames": args.frames, "bins": 45, "results": results}, indent=2))
    print("speed-up against the reference (fp32, batch 64): " +
          ", ".join(f"{n} {r['speedup_vs_reference_b64']:.2f}x" for n, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
