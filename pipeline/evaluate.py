"""Stage `evaluate@<partition>`: score a partition with the trained model, write scores and metrics.

    python -m pipeline.evaluate PARTITION [--params params.yaml] [--model models/model.pt]

Writes scores/<partition>.txt (`UTT ATTACK KEY SCORE`, higher = more bona fide) and
metrics/<partition>.json (EER, min t-DCF with the ASVspoof 2019 cost model at the official ASV
system's operating point, EER per attack, counts).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from model import build_model
from pipeline.dataset import ShardDataset
from pipeline.metrics import DEFAULT_ASV, ScoreError, compute_eer, min_tdcf
from pipeline.settings import PARTITIONS, ModelSettings, SettingsError, load_settings
from pipeline.shards import ShardError, open_partition
from train import CheckpointError, load_checkpoint, resolve_device, score_dataset


def write_scores(path: Path, dataset: ShardDataset, scores: np.ndarray) -> None:
    """The one place score files are written: `UTT ATTACK KEY SCORE`, higher = bona fide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for i, score in enumerate(scores):
            utt, attack, label = dataset.utterance(i)
            f.write(f"{utt} {attack} {'bonafide' if label == 1 else 'spoof'} {score:.6f}\n")
    tmp.replace(path)


def partition_metrics(scores: np.ndarray, labels: np.ndarray, attacks: list[str]) -> dict:
    bonafide, spoof = scores[labels == 1], scores[labels == 0]
    eer, threshold = compute_eer(bonafide, spoof)
    attacks = np.asarray(attacks)
    per_attack = {a: compute_eer(bonafide, scores[(labels == 0) & (attacks == a)])[0]
                  for a in sorted(set(attacks[labels == 0]))}
    return {"eer": eer, "min_tdcf": min_tdcf(bonafide, spoof), "eer_threshold": threshold,
            "eer_per_attack": per_attack, "bonafide": int(len(bonafide)), "spoof": int(len(spoof)),
            "asv_operating_point": {**DEFAULT_ASV, "source": "official ASVspoof 2019 LA eval ASV system "
                                                          "(default; no ASV score file given)"}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("partition", choices=PARTITIONS)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--scores", default="scores")
    parser.add_argument("--metrics", default="metrics")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.params)
        state = load_checkpoint(Path(args.model))
        if state["feature_fingerprint"] != settings.features.fingerprint():
            raise CheckpointError(f"{args.model}: trained on other feature settings than params.yaml's; "
                                  f"rerun training (`dvc repro`)")
        model = build_model(ModelSettings(**state["model_settings"]))
        model.load_state_dict(state["model"])
        device = resolve_device(settings.train.device)
        model.to(device)
        readers = open_partition(Path(args.features) / args.partition, settings.features)
        dataset = ShardDataset(readers, state["frames"], train=False,
                               f0_channel=state["model_settings"]["f0_channel"])
        scores, labels = score_dataset(model, dataset, settings.train, device)
        write_scores(Path(args.scores) / f"{args.partition}.txt", dataset, scores)
        attacks = [dataset.utterance(i)[1] for i in range(len(dataset))]
        metrics = partition_metrics(scores, labels, attacks)
    except (SettingsError, ShardError, CheckpointError, ScoreError) as err:
        print(f"evaluate {args.partition}: {err}", file=sys.stderr)
        return 1
    out = Path(args.metrics) / f"{args.partition}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"evaluate {args.partition}: EER {metrics['eer']:.2%}, min t-DCF {metrics['min_tdcf']:.4f}; " +
          ", ".join(f"{a} {e:.2%}" for a, e in metrics["eer_per_attack"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
