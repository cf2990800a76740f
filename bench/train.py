"""Training throughput and peak memory of the SR-LA Res2Net step: fp32 and bf16, eager and
compiled, on this CPU's native instruction set and on its AVX2 code paths, in one run.

    python bench/train.py [--frames 100] [--batch 32] [--micro 0] [--steps 3] [--isa native avx2] [--only NAME ...]
                          [--params params.yaml]

Each configuration runs in a fresh process (so its peak RSS is its own) and times full
training steps (forward, A-Softmax loss, backward, Adam) on random inputs of --params' rows
(subband, second view, excitation statistics) x frames through pipeline.training.train_step, with the
network of --params laid out as train.py lays it out (channels-last) and glibc's malloc set as
train.py sets it (the "default malloc" rows leave it as it is).
--isa avx2 holds oneDNN, ATen and MKL to their AVX2 code (ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2), which is how a CPU without AVX-512/AMX
runs; each row reports the capability torch then reports and what train.precision: auto picks.
The reference is eager fp32 on the native ISA. Data loading is not included. Prints a table
and writes bench/results/train.json. On a CUDA machine it also reports CUDA max allocated memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# name -> (precision, compile, malloc as train.py sets it (pipeline.scoring.scorer.tune_allocator))
CONFIGS = {
    "fp32 eager": ("fp32", False, True),
    "bf16 eager": ("bf16", False, True),
    "fp32 compiled": ("fp32", True, True),
    "bf16 compiled": ("bf16", True, True),
    "fp32 eager, default malloc": ("fp32", False, False),
    "bf16 eager, default malloc": ("bf16", False, False),
}


def run_one(name: str, frames: int, batch: int, micro: int, steps: int, params: str) -> dict:
    import os
    import tempfile

    import torch

    from features.streams import network_streams
    from model import build_model
    from pipeline.scoring.scorer import resolve_device, resolve_precision, to_device, tune_allocator
    from pipeline.settings import load_settings
    from pipeline.training import train_step

    precision, compiled, tuned = CONFIGS[name]
    if tuned:
        tune_allocator()
    settings = load_settings(ROOT / params)
    device = resolve_device("auto")
    torch.manual_seed(0)
    model = build_model(settings.model, settings.features).to(device, memory_format=torch.channels_last)
    model.train()
    if compiled:  # a cold compile: its time is the first step's
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    runner = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9, amsgrad=True)
    x = to_device(torch.randn(batch, 1, sum(network_streams(settings.features).values()), frames), device)
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
              "device": str(device), "threads": torch.get_num_threads(),
              "capability": torch.backends.cpu.get_cpu_capability(),
              "auto_picks": resolve_precision("auto", device)[0]}
    if device.type == "cuda":
        result["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--micro", type=int, default=0, help="as train.micro_batch (0 = whole batch)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--isa", nargs="+", choices=["native", "avx2"], default=["native", "avx2"])
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="run only these configurations")
    parser.add_argument("--params", default="params.yaml", help="the network and input rows of these settings")
    parser.add_argument("--out", default="bench/results/train.json")
    parser.add_argument("--one", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.frames, args.batch, args.micro, args.steps, args.params)))
        return 0
    results = {}
    for isa in args.isa:
        env = {**os.environ, **(AVX2 if isa == "avx2" else {})}
        for name in args.only or CONFIGS:
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--frames", str(args.frames),
                                   "--batch", str(args.batch), "--micro", str(args.micro),
                                   "--steps", str(args.steps), "--params", args.params],
                                  capture_output=True, text=True, cwd=ROOT, env=env)
            if proc.returncode != 0:
                print(f"{isa} {name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            r = results[f"{isa} {name}"] = {"isa": isa, **json.loads(proc.stdout.strip().splitlines()[-1])}
            print(f"{isa:6s} {name:26s} {r['samples_per_s']:7.2f} samples/s  peak RSS {r['peak_rss_gb']:5.2f} GB  "
                  f"first step {r['first_step_s']:6.1f} s  (torch: {r['capability']}, auto: {r['auto_picks']})",
                  flush=True)
    base = results.get("native fp32 eager") or next(iter(results.values()))
    for r in results.values():
        r["vs_native_fp32_eager"] = r["samples_per_s"] / base["samples_per_s"]
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"frames": args.frames, "batch": args.batch,
                                                "micro_batch": args.micro, "params": args.params,
                                                "results": results}, indent=2))
    print("against native fp32 eager: " +
          ", ".join(f"{n} {r['vs_native_fp32_eager']:.2f}x" for n, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
