"""Stage `evaluate@<partition>`: score a partition with the trained model, write scores and metrics.

    python -m pipeline.evaluate PARTITION [--params params.yaml] [--model models/model.pt]

Writes scores/<partition>.txt (`UTT ATTACK KEY SCORE`, higher = more bona fide), the same with
calibrated scores (natural-log LLRs) in scores/<partition>.llr.txt, metrics/<partition>.json
(EER, min t-DCF of ASVspoof 2019 and the revised one of 2021, the ASVspoof 5 minDCF / actDCF /
Cllr / minCllr, EER per attack, counts, the ASV operating point used), DET and score-histogram
plots under plots/<partition>/ (CSV for `dvc plots`, PNG for people) and reports/<partition>.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.dataset import ShardDataset
from pipeline import report
from pipeline.calibration import to_llr
from pipeline.metrics import (DCF_COSTS, ScoreError, act_dcf, asv_operating_point, cllr, compute_eer, min_cllr,
                              min_dcf, min_tdcf, min_tdcf_2021)
from pipeline.scoring import CheckpointError, load_model, resolve_device, score_dataset, scoring_precision
from pipeline.settings import PARTITIONS, EvaluateSettings, SettingsError, load_settings
from pipeline.shards import ShardError, open_partition


def write_scores(path: Path, utterances: list[tuple[str, str, int]], scores: np.ndarray) -> None:
    """The one place score files are written: `UTT ATTACK KEY SCORE`, higher = bona fide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for (utt, attack, label), score in zip(utterances, scores):
            f.write(f"{utt} {attack} {'bonafide' if label == 1 else 'spoof'} {score:.6f}\n")
    tmp.replace(path)


def asv_point(settings: EvaluateSettings, partition: str) -> dict:
    path = settings.asv_scores.get(partition)
    if path:
        return {**asv_operating_point(path), "source": f"ASV EER threshold of {path}"}
    return {**settings.asv_operating_point,
            "source": "evaluate.asv_operating_point (default: the official ASV system on ASVspoof 2019 LA eval)"}


def partition_metrics(scores: np.ndarray, labels: np.ndarray, attacks: list[str], asv: dict | None = None,
                      llr: np.ndarray | None = None) -> dict:
    """EER, min t-DCF (2019, 2021), the ASVspoof 5 metrics, per-attack EER. llr: the calibrated
    scores, for actDCF and Cllr (None for a model file without a calibration)."""
    asv = asv or asv_point(EvaluateSettings(), "eval")
    bonafide, spoof = scores[labels == 1], scores[labels == 0]
    eer, threshold = compute_eer(bonafide, spoof)
    attacks = np.asarray(attacks)
    spoof_attacks = sorted(set(attacks[labels == 0]))
    calibrated = llr is not None
    return {"eer": eer, "min_tdcf": min_tdcf(bonafide, spoof, asv),
            "min_tdcf_2021": min_tdcf_2021(bonafide, spoof, asv), "min_dcf": min_dcf(bonafide, spoof),
            "act_dcf": act_dcf(llr[labels == 1], llr[labels == 0]) if calibrated else None,
            "cllr": cllr(llr[labels == 1], llr[labels == 0]) if calibrated else None,
            "min_cllr": min_cllr(bonafide, spoof), "dcf_costs": DCF_COSTS,
            "eer_threshold": threshold,
            "eer_per_attack": {a: compute_eer(bonafide, scores[(labels == 0) & (attacks == a)])[0]
                               for a in spoof_attacks},
            "bonafide": int(len(bonafide)), "spoof": int(len(spoof)),
            "spoof_per_attack": {a: int(np.sum((labels == 0) & (attacks == a))) for a in spoof_attacks},
            "asv_operating_point": asv}


def write_plots_and_report(partition: str, scores, labels, attacks, metrics: dict,
                           plot_dir: Path, report_path: Path) -> None:
    attacks = np.asarray(attacks)
    bonafide, spoof = scores[labels == 1], scores[labels == 0]
    per_attack = {a: scores[(labels == 0) & (attacks == a)] for a in metrics["eer_per_attack"]}
    plot_dir.mkdir(parents=True, exist_ok=True)
    det_png, hist_png = plot_dir / "det.png", plot_dir / "score_histogram.png"
    report.det_plot(bonafide, spoof, per_attack, f"DET, {partition}: EER {metrics['eer']:.2%}",
                    plot_dir / "det.csv", det_png)
    report.histogram_plot({"bonafide": bonafide, **per_attack}, f"CM scores, {partition}",
                          plot_dir / "score_histogram.csv", hist_png)
    report.write_markdown(report_path, partition, metrics, det_png, hist_png)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("partition", choices=PARTITIONS)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--scores", default="scores")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--plots", default="plots")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.params)
        model, state = load_model(Path(args.model))
        if state["feature_fingerprint"] != settings.features.fingerprint():
            raise CheckpointError(f"{args.model}: trained on other feature settings than params.yaml's; "
                                  f"rerun training (`dvc repro`)")
        device = resolve_device(settings.train.device)
        model.to(device)
        readers = open_partition(Path(args.features) / args.partition, settings.features)
        dataset = ShardDataset(readers, state["frames"], train=False,
                               f0_channel=state["model_settings"]["f0_channel"],
                               eval_input=state.get("eval_input", "crop"))
        precision = scoring_precision(state.get("precision", "fp32"), device)
        scores, labels = score_dataset(model, dataset, settings.evaluate.batch_size, device, precision)
        utterances = [dataset.utterance(i) for i in range(len(dataset))]
        write_scores(Path(args.scores) / f"{args.partition}.txt", utterances, scores)
        llr = None
        if state.get("calibration"):
            # The same lines with the calibrated score (natural-log LLR) in place of the raw one.
            llr = to_llr(state["calibration"], scores)
            write_scores(Path(args.scores) / f"{args.partition}.llr.txt", utterances, llr)
        attacks = [attack for _, attack, _ in utterances]
        metrics = partition_metrics(scores, labels, attacks, asv_point(settings.evaluate, args.partition), llr)
        write_plots_and_report(args.partition, scores, labels, attacks, metrics,
                               Path(args.plots) / args.partition, Path(args.reports) / f"{args.partition}.md")
    except (SettingsError, ShardError, CheckpointError, ScoreError, OSError) as err:
        print(f"evaluate {args.partition}: {err}", file=sys.stderr)
        return 1
    out = Path(args.metrics) / f"{args.partition}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"evaluate {args.partition}: EER {metrics['eer']:.2%}, min t-DCF {metrics['min_tdcf']:.4f} "
          f"(2021: {metrics['min_tdcf_2021']:.4f}), minDCF {metrics['min_dcf']:.4f}"
          + (f", actDCF {metrics['act_dcf']:.4f}, Cllr {metrics['cllr']:.3f}" if llr is not None else "")
          + f", minCllr {metrics['min_cllr']:.3f}; " +
          ", ".join(f"{a} {e:.2%}" for a, e in metrics["eer_per_attack"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
