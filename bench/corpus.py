"""What the corpus stage spends its time on: seconds per utterance for each generator (and for the
bona fide, which only go through the channel), times how many utterances of each the corpus has.

    python bench/corpus.py [--params params.yaml] [--items 5] [--out bench/results/corpus.json]

Renders --items utterances of every attack (and of the bona fide) of the corpus plan, one process,
one at a time, after one untimed warm-up item per generator (model loads, imports), into a
temporary folder; the share of the stage is utterances x seconds each, as the workers split it.
The CPU's model and vector extensions are printed first and stored with the figures: the neural
TTS run in ONNX Runtime, whose kernels follow the CPU (AVX2, AVX-512, VNNI, AMX) whatever the
environment says, so a figure only holds for CPUs with the same extensions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from pipeline.mini.builder import PARTITIONS, find_prompts, plan_partition, render
from pipeline.mini.generators import ATTACKS, prepare
from pipeline.settings import load_settings

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_description() -> dict:
    """The CPU's model name and which of VECTOR_FLAGS it has (Linux's /proc/cpuinfo)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "extensions": [f for f in VECTOR_FLAGS if f in flags]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--items", type=int, default=5, help="timed utterances per generator")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    cpu = cpu_description()
    print(f"CPU: {cpu['model']}, {os.cpu_count()} cores; vector extensions: {' '.join(cpu['extensions'])}")
    settings = load_settings(args.params).corpus
    prompts = find_prompts(settings)
    by_kind: dict[str, list] = defaultdict(list)
    for part in PARTITIONS:
        for item in plan_partition(part, prompts, settings):
            by_kind[item.attack].append(item)
    prepare({ATTACKS[a].generator for a in by_kind if a != "-"})

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in sorted(by_kind):
            items = by_kind[kind]
            # spread over the plan (speakers, languages, texts), the first one a warm-up
            step = max(1, len(items) // (args.items + 1))
            sample = items[::step][:args.items + 1]
            started = time.perf_counter()
            render(sample[0], Path(tmp), settings)
            warm_up = time.perf_counter() - started
            seconds = []
            for item in sample[1:]:
                started = time.perf_counter()
                render(item, Path(tmp), settings)
                seconds.append(time.perf_counter() - started)
            each = sum(seconds) / len(seconds)
            name = "bona fide" if kind == "-" else f"{kind} {ATTACKS[kind].generator}"
            rows.append({"kind": name, "utterances": len(items), "seconds_each": each,
                         "warm_up_seconds": warm_up, "total_seconds": each * len(items)})
            print(f"{name:18s} {len(items):5d} utt  {each:6.3f} s each  (first {warm_up:5.1f} s)"
                  f"  -> {each * len(items):6.1f} s", flush=True)
    total = sum(r["total_seconds"] for r in rows)
    print(f"{'all':18s} {sum(r['utterances'] for r in rows):5d} utt  {total:.0f} s in one process, "
          f"{total / settings.n_jobs:.0f} s over corpus.n_jobs = {settings.n_jobs} workers")
    for r in rows:
        r["share"] = r["total_seconds"] / total
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cpu": cpu, "cpu_cores": os.cpu_count(), "items": args.items, "rows": rows,
                                        "total_seconds_one_process": total}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
