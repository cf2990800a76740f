"""How the score fusion's inputs meet recordings training never heard: each held-out source of a
LOSO run scored by the fused score, by each input alone, and by fusions that give the network less
weight than its dev fit does.

    python bench/fusion_loso.py RUNS [--model models/model.pt] [--shrink 0.75 0.5 0.25 0]

RUNS: a loso stage's --out folder (models/loso, or bench/results/loso/seed1/models), whose source
folders hold scores.npz (written by the stage) and, for a source with a run of its own, model.pt;
a source without one was scored by --model. Prints, per source and as a mean, the EER of the fused
score, of the network alone, of the statistics model alone, and of the fusion with the network's
weight times each --shrink (model.fusion.combine; 1 would be the fused score). No training, no
scoring: it reads what the stage kept. The held-out sources are what this looks at: choosing a
shrink here makes LOSO a tuning target (say so in docs/experiments.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from model.fusion import combine
from pipeline.scoring.metrics import compute_eer
from pipeline.scoring.modelfile import ModelFile


def source_rows(folder: Path, main_model: Path, shrinks: list[float]) -> dict:
    scores = np.load(folder / "scores.npz")
    result = json.loads((folder / "result.json").read_text())
    model = ModelFile.load(folder / "model.pt" if result["own_run"] else main_model)
    weights = model.fusion["weights"]
    row = {"fused": compute_eer(scores["bonafide"], scores["spoof"])[0],
           "network": compute_eer(scores["network_bonafide"], scores["network_spoof"])[0],
           "statistics": compute_eer(scores["statistics_bonafide"], scores["statistics_spoof"])[0],
           "w_network": weights["w_network"], "w_statistics": weights["w_statistics"]}
    for shrink in shrinks:
        shrunk = {**weights, "w_network": weights["w_network"] * shrink}
        fused = [combine(shrunk, scores[f"network_{kind}"], scores[f"statistics_{kind}"])
                 for kind in ("bonafide", "spoof")]
        row[f"shrink {shrink:g}"] = compute_eer(*fused)[0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--shrink", type=float, nargs="+", default=[0.75, 0.5, 0.25, 0.0])
    args = parser.parse_args()
    rows = {folder.name: source_rows(folder, args.model, args.shrink)
            for folder in sorted(args.runs.iterdir()) if (folder / "scores.npz").is_file()}
    if not rows:
        raise SystemExit(f"no source folder with scores.npz under {args.runs}")
    columns = list(next(iter(rows.values())))
    print("source".ljust(16) + "".join(c.rjust(13) for c in columns))
    for source, row in rows.items():
        print(source.ljust(16) + "".join(f"{row[c]:13.3f}" if c.startswith("w_") else f"{row[c]:13.2%}"
                                         for c in columns))
    print("mean".ljust(16) + "".join(f"{np.mean([r[c] for r in rows.values()]):13.3f}" if c.startswith("w_")
                                     else f"{np.mean([r[c] for r in rows.values()]):13.2%}" for c in columns))


if __name__ == "__main__":
    main()
