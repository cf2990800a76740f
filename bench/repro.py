"""Time the whole pipeline from a cold start: a fresh clone, no data, no DVC cache.

    python bench/repro.py [--isa native|avx2] [--set KEY=VALUE ...] [--keep]

Clones this repository's committed HEAD (uncommitted changes are not in it) into a temporary
folder and runs every stage of dvc.yaml there, one `dvc repro --single-item STAGE` at a time in
pipeline order, with this checkout's installed environment (.venv: the install step of
`make repro` is not timed). Prints each stage's wall time and the total, and writes
bench/results/repro-<isa>.json.

--isa avx2 runs it as on a CPU without AVX-512 or AMX: oneDNN, ATen and MKL are held to their
AVX2 code (ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY / MKL_ENABLE_INSTRUCTIONS), so
train.precision: auto picks fp32 as it would there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", choices=["native", "avx2"], default="native")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change params.yaml in the clone first (pipeline.preset --set)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and print where it is")
    args = parser.parse_args()
    venv_bin = ROOT / ".venv" / "bin"
    if not (venv_bin / "dvc").exists():
        print("bench/repro.py: run `make install` first (it uses this checkout's .venv)", file=sys.stderr)
        return 1
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", **(AVX2 if args.isa == "avx2" else {})}
    tmp = Path(tempfile.mkdtemp(prefix="repro-"))
    clone = tmp / "repo"
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        if args.overrides:
            subprocess.run([sys.executable, "-m", "pipeline.preset", *sum((["--set", o] for o in args.overrides), [])],
                           cwd=clone, env=env, check=True)
        stages = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=clone, env=env, check=True,
                                capture_output=True, text=True).stdout.split()
        times = {}
        print(f"cold dvc repro in {clone} ({args.isa}): {', '.join(stages)}", flush=True)
        for stage in stages:
            started = time.perf_counter()
            proc = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=clone, env=env,
                                  capture_output=True, text=True)
            times[stage] = time.perf_counter() - started
            if proc.returncode:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                print(f"bench/repro.py: stage {stage} failed", file=sys.stderr)
                return 1
            print(f"  {stage:16s} {times[stage]:7.1f} s", flush=True)
        total = sum(times.values())
        print(f"  {'total':16s} {total:7.1f} s  ({total / 60:.1f} min)")
        metrics = {part: json.loads((clone / "metrics" / f"{part}.json").read_text())
                   for part in ("dev", "eval")}
        train = json.loads((clone / "metrics/train.json").read_text())
        print(f"  dev EER {metrics['dev']['eer']:.2%}, eval EER {metrics['eval']['eer']:.2%}, "
              f"training in {train.get('precision')} ({train.get('precision_reason')})")
        out = ROOT / "bench/results"
        out.mkdir(parents=True, exist_ok=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                                text=True).stdout.strip()
        (out / f"repro-{args.isa}.json").write_text(json.dumps({
            "commit": commit, "isa": args.isa, "overrides": args.overrides, "stage_seconds": times,
            "total_seconds": total, "dev_eer": metrics["dev"]["eer"], "eval_eer": metrics["eval"]["eer"],
            "precision": train.get("precision"), "cpu_cores": os.cpu_count()}, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"clone kept in {clone}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
