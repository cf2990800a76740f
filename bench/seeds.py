"""Run one recipe for several seeds and report dev and eval EER / min t-DCF as mean, min and max.

    python bench/seeds.py [--seeds 1 2 3] [--set train.epochs=10 ...] [--jobs 2] [--out bench/results/seeds/NAME]

A recipe is params.yaml plus the --set overrides (same syntax as `python -m pipeline.preset --set`).
Each seed trains with train.py and is scored with the evaluate stage's own code
(`python -m pipeline.evaluate`), with `--set loao.enabled=true` also left one attack out at a
time (`python -m pipeline.loao`), with `--set loso.enabled=true` one recording source out at a time
(`python -m pipeline.loso`), the sources training never heard scored by each seed's model
(bench/unseen.py), and with channels.enabled (params.yaml's default) scored under each
channel condition (`python -m pipeline.channels`), on the feature shards under data/features (run `dvc repro` first;
a recipe that changes features.* needs its own shards). Runs go side by side in --jobs processes,
the cores shared out evenly between them; each run's wall time is reported with its figures.
Nothing in the workspace (models/, metrics/, scores/) is touched: everything goes under --out.
Choose recipes on dev; eval is reported beside it, never used to choose.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

from pipeline.overrides import deep_update, parse_set
from pipeline.settings import load_settings


def write_params(out: Path, overrides: list[str], seed: int) -> Path:
    params = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()),
                         parse_set(overrides + [f"train.seed={seed}"]))
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    load_settings(path)  # a wrong key stops here, before any training
    return path


def run_seed(seed: int, overrides: list[str], out: Path, features: Path, threads: int) -> dict:
    run = out / f"seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    params = write_params(run, overrides, seed)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = open(run / "log.txt", "w")
    started = time.perf_counter()
    commands = [[sys.executable, "train.py", "--params", str(params), "--features", str(features),
                 "--out_fold", str(run / "models"), "--metrics", str(run / "metrics/train.json"),
                 "--live", str(run / "dvclive"), "--fresh"]]
    commands += [[sys.executable, "-m", "pipeline.evaluate", part, "--params", str(params),
                  "--model", str(run / "models/model.pt"), "--features", str(features),
                  "--scores", str(run / "scores"), "--metrics", str(run / "metrics"),
                  "--plots", str(run / "plots"), "--reports", str(run / "reports")] for part in ("dev", "eval")]
    settings = load_settings(params)
    if settings.loao.enabled:  # --set loao.enabled=true: leave-one-attack-out too
        commands.append([sys.executable, "-m", "pipeline.loao", "--params", str(params), "--features", str(features),
                         "--out", str(run / "loao"), "--metrics", str(run / "metrics/loao.json")])
    if settings.loso.enabled:  # --set loso.enabled=true: leave one recording source out too
        commands.append([sys.executable, "-m", "pipeline.loso", "--params", str(params), "--features", str(features),
                         "--model", str(run / "models/model.pt"), "--out", str(run / "loso"),
                         "--metrics", str(run / "metrics/loso.json")])
    if settings.channels.enabled:
        commands.append([sys.executable, "-m", "pipeline.channels", "--params", str(params),
                         "--model", str(run / "models/model.pt"), "--features", str(features),
                         "--manifest", str(features.parent / "manifest"), "--out", str(run / "channels"),
                         "--metrics", str(run / "metrics/channels.json")])
    # the sources training and dev never held (loso.sources), scored by this run's model
    commands.append([sys.executable, "bench/unseen.py", "--params", str(params), "--model", str(run / "models/model.pt"),
                     "--features", str(features), "--out", str(run / "metrics/unseen.json")])
    for command in commands:
        if subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
            raise RuntimeError(f"seed {seed}: {' '.join(command[:3])} failed; see {run / 'log.txt'}")
    result = {"seed": seed, "minutes": (time.perf_counter() - started) / 60}
    for part in ("dev", "eval"):
        metrics = json.loads((run / "metrics" / f"{part}.json").read_text())
        result[f"{part}_eer"], result[f"{part}_min_tdcf"] = metrics["eer"], metrics["min_tdcf"]
    result["train"] = json.loads((run / "metrics/train.json").read_text())
    if (run / "metrics/loao.json").is_file():
        loao = json.loads((run / "metrics/loao.json").read_text())
        result["loao_mean_eer"], result["loao_eer_per_attack"] = loao["mean_eer"], loao["eer_per_attack"]
    if (run / "metrics/loso.json").is_file():
        loso = json.loads((run / "metrics/loso.json").read_text())
        result["loso_mean_eer"], result["loso_mean_rejected"] = loso["mean_eer"], loso["mean_rejected"]
        result["loso_eer_per_source"] = loso["eer_per_source"]
    result["unseen_sources"] = json.loads((run / "metrics/unseen.json").read_text())
    if (run / "metrics/channels.json").is_file():
        channels = json.loads((run / "metrics/channels.json").read_text())
        result["channels_eer"], result["channels_max_ratio"] = channels["eer"], channels["max_eer_ratio"]
        result["channels_rejected"] = channels["rejected"]
        for alone in ("eer_network", "eer_statistics"):  # a fused model's two inputs, each alone
            if alone in channels:
                result[f"channels_{alone}"] = channels[alone]
    return result


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summarise(results: list[dict]) -> dict:
    summary = {}
    for key in ("dev_eer", "dev_min_tdcf", "eval_eer", "eval_min_tdcf", "minutes", "loao_mean_eer", "loso_mean_eer",
                "loso_mean_rejected"):
        if key in results[0]:
            summary[key] = spread([r[key] for r in results])
    for source in results[0]["unseen_sources"]:
        summary[f"unseen {source}"] = {k: spread([r["unseen_sources"][source][k] for r in results])
                                       for k in ("eer", "rejected", "eer_network", "eer_statistics")
                                       if all(k in r["unseen_sources"][source] for r in results)}
    for key in ("channels_eer", "channels_rejected", "channels_eer_network", "channels_eer_statistics"):
        if key in results[0]:
            summary[key] = {part: {c: spread([r[key][part][c] for r in results]) for c in conditions}
                            for part, conditions in results[0][key].items()}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained side by side")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: the cores / --jobs)")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out", default="bench/results/seeds/default")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"recipe: params.yaml {' '.join('--set ' + o for o in args.overrides) or '(as it is)'}; "
          f"seeds {args.seeds}, {args.jobs} at a time, {threads} threads each", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda s: run_seed(s, args.overrides, out, (ROOT / args.features).resolve(),
                                                   threads), args.seeds))
    for r in results:
        print(f"seed {r['seed']}: dev EER {r['dev_eer']:.2%} min t-DCF {r['dev_min_tdcf']:.3f} | "
              f"eval EER {r['eval_eer']:.2%} min t-DCF {r['eval_min_tdcf']:.3f} | {r['minutes']:.1f} min")
    summary = summarise(results)
    for key in ("dev_eer", "eval_eer", "loao_mean_eer", "loso_mean_eer", "loso_mean_rejected"):
        if key not in summary:
            continue
        s = summary[key]
        print(f"{key}: mean {s['mean']:.2%} (min {s['min']:.2%}, max {s['max']:.2%})")
    for key in ("dev_min_tdcf", "eval_min_tdcf"):
        s = summary[key]
        print(f"{key}: mean {s['mean']:.3f} (min {s['min']:.3f}, max {s['max']:.3f})")
    for key, s in summary.items():
        if key.startswith("unseen "):
            print(f"{key}: EER mean {s['eer']['mean']:.2%}, bona fide rejected mean {s['rejected']['mean']:.1%}")
    for part, conditions in summary.get("channels_eer", {}).items():
        print(f"channels {part}: " + ", ".join(f"{c} {s['mean']:.1%}" for c, s in conditions.items()))
    (out / "summary.json").write_text(json.dumps({"overrides": args.overrides, "seeds": args.seeds,
                                                  "jobs": args.jobs, "runs": results, "summary": summary},
                                                 indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
