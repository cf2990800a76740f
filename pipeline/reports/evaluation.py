"""Scoring a partition or another corpus: score files, metrics, plots and the report.

The `evaluate` command (pipeline/evaluate.py) runs this; see its docstring.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pipeline.data.extraction import extract_partition
from pipeline.data.manifests import build_manifest, read_manifest, write_manifest
from pipeline.data.protocol import ProtocolError
from pipeline.data.shards import open_partition
from pipeline.reports import plots as report
from pipeline.scoring.calibration import to_llr
from pipeline.scoring.metrics import (DCF_COSTS, ScoreError, act_dcf, asv_operating_point, cllr, compute_eer, min_cllr,
                                      min_dcf, min_tdcf, min_tdcf_2021)
from pipeline.scoring.scorer import Scorer
from pipeline.settings import EvaluateSettings, FeatureSettings


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


def condition_metrics(scores: np.ndarray, labels: np.ndarray, conditions: list) -> dict:
    """EER per value of each protocol condition: {name: {value: {eer, bonafide, spoof}}}.

    As the ASVspoof evaluation packages do: a condition's spoofs against the bona fide of the
    same condition (a codec applies to both); where no bona fide has the value (a vocoder
    type), against all bona fide, as the per-attack figures are. eer is None where the
    condition has too few utterances for one."""
    result = {}
    for name in sorted({k for c in conditions for k, _ in c}):
        values = np.array([dict(c).get(name, "") for c in conditions])
        # One pass to group the utterances by value (thousands of speakers in ASVspoof 5).
        unique, group = np.unique(values, return_inverse=True)
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(len(unique) + 1))
        result[name] = {}
        for g, value in enumerate(unique):
            members = order[bounds[g]:bounds[g + 1]]
            spoof = scores[members[labels[members] == 0]]
            if len(spoof) == 0:
                continue
            bonafide = scores[members[labels[members] == 1]]
            if len(bonafide) == 0:
                bonafide = scores[labels == 1]
            try:
                eer = compute_eer(bonafide, spoof)[0]
            except ScoreError:  # a handful of utterances (fewer than 3 distinct scores): no EER
                eer = None
            result[name][str(value)] = {"eer": eer, "bonafide": int(len(bonafide)), "spoof": int(len(spoof))}
    return result


def partition_metrics(scores: np.ndarray, labels: np.ndarray, attacks: list[str], asv: dict | None = None,
                      llr: np.ndarray | None = None, conditions: list | None = None) -> dict:
    """EER, min t-DCF (2019, 2021), the ASVspoof 5 metrics, per-attack EER, per-condition EER.
    llr: the calibrated scores, for actDCF and Cllr (None for a model file without a
    calibration). conditions: each utterance's (name, value) pairs, or None."""
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
            "eer_per_condition": condition_metrics(scores, labels, conditions) if conditions else {},
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


def evaluate_features(name: str, scorer: Scorer, calibration: dict | None, feature_dir: Path,
                      feature_settings: FeatureSettings, batch_size: int, asv: dict, conditions: dict,
                      out: dict) -> dict:
    """Score one folder of shards and write scores, metrics, plots and report under `name`.
    calibration: the model file's (None: no LLRs). conditions: utt_id -> (name, value) pairs
    (empty without). out: the output folders."""
    dataset, scores, labels = scorer.score_readers(open_partition(feature_dir, feature_settings), batch_size)
    utterances = [dataset.utterance(i) for i in range(len(dataset))]
    write_scores(Path(out["scores"]) / f"{name}.txt", utterances, scores)
    llr = None
    if calibration:
        # The same lines with the calibrated score (natural-log LLR) in place of the raw one.
        llr = to_llr(calibration, scores)
        write_scores(Path(out["scores"]) / f"{name}.llr.txt", utterances, llr)
    attacks = [attack for _, attack, _ in utterances]
    # The speaker is a condition of every corpus: its spoofs (copies of its voice, or TTS with its
    # label) against its own bona fide, so a voice the model takes for a spoof shows.
    speakers = [dataset.readers[shard].speaker[i] for shard, i in map(dataset.locate, range(len(dataset)))]
    per_utt = [tuple(conditions.get(utt, ())) for utt, _, _ in utterances]
    per_utt = [c if any(k == "speaker" for k, _ in c) else c + (("speaker", spk),) for c, spk in zip(per_utt, speakers)]
    metrics = partition_metrics(scores, labels, attacks, asv, llr, per_utt)
    write_plots_and_report(name, scores, labels, attacks, metrics, Path(out["plots"]) / name,
                           Path(out["reports"]) / f"{name}.md")
    path = Path(out["metrics"]) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def manifest_conditions(path: Path) -> dict:
    """utt_id -> conditions from a manifest; empty when it has none (or does not exist)."""
    if not path.is_file():
        return {}
    return {row.utt.utt_id: row.utt.conditions for row in read_manifest(path) if row.utt.conditions}


def prepare_corpus(args, settings, feature_settings: FeatureSettings) -> tuple[Path, dict]:
    """Cross-corpus: the corpus's manifest and features under <work>/<name>. Returns (features, conditions)."""
    work = Path(args.work) / args.name
    work.mkdir(parents=True, exist_ok=True)
    rows, problems = build_manifest(args.root, args.partition, settings.data.on_error, args.layout,
                                    progress=True, track=args.track, subset=args.subset)
    if not rows:
        raise ProtocolError(f"{args.root}: {args.layout} {args.partition}: no usable utterances")
    manifest = work / f"{args.name}.tsv"
    write_manifest(rows, manifest)
    (work / "skipped.tsv").write_text("problem\n" + "".join(f"{p}\n" for p in problems))
    if problems:
        print(f"evaluate {args.name}: skipped {len(problems)} utterances, listed in {work / 'skipped.tsv'}",
              file=sys.stderr)
    summary = extract_partition(manifest, work / "features", feature_settings, settings.extract)
    for s in summary["skipped"]:
        print(f"  skipped {s['utt_id']} ({s['path']}): {s['reason']}", file=sys.stderr)
    return work / "features", {row.utt.utt_id: row.utt.conditions for row in rows if row.utt.conditions}


def summary_line(name: str, metrics: dict) -> str:
    calibrated = metrics["act_dcf"] is not None
    return (f"evaluate {name}: EER {metrics['eer']:.2%}, min t-DCF {metrics['min_tdcf']:.4f} "
            f"(2021: {metrics['min_tdcf_2021']:.4f}), minDCF {metrics['min_dcf']:.4f}"
            + (f", actDCF {metrics['act_dcf']:.4f}, Cllr {metrics['cllr']:.3f}" if calibrated else "")
            + f", minCllr {metrics['min_cllr']:.3f}; " +
            ", ".join(f"{a} {e:.2%}" for a, e in metrics["eer_per_attack"].items()))
