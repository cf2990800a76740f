"""Stage `evaluate@<partition>`, and cross-corpus scoring: a trained model on a partition or a corpus.

    python -m pipeline.evaluate PARTITION [--params params.yaml] [--model models/model.pt]
    python -m pipeline.evaluate --layout in_the_wild --root DIR [--partition eval] [--name NAME]
    python -m pipeline.evaluate --layout asvspoof2021 --track DF --root DIR   # also asvspoof5, asvspoof2019

Writes scores/<name>.txt (`UTT ATTACK KEY SCORE`, higher = more bona fide), the same with
calibrated scores (natural-log LLRs) in scores/<name>.llr.txt, metrics/<name>.json (EER, min
t-DCF of ASVspoof 2019 and the revised one of 2021, the ASVspoof 5 minDCF / actDCF / Cllr /
minCllr, EER per attack, per speaker and per condition where the protocol has conditions (codec,
transmission, ...), counts, the ASV operating point used), DET and score-histogram plots under
plots/<name>/ (CSV for `dvc plots`, PNG for people) and reports/<name>.md. The stage's name is
the partition; a cross-corpus run's is `<layout>[_<track>]_<partition>` unless --name says.

A cross-corpus run reads the corpus through its layout's adapter (pipeline/layouts.py) into
<work>/<name>/<name>.tsv, extracts features with the model's own feature settings into
<work>/<name>/features (parallel, resumable: a rerun with another model of the same feature
settings reuses them) and scores them exactly as the stage scores its partition.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.dataset import ShardDataset
from pipeline import report
from pipeline.extract import ExtractionError, extract_partition
from pipeline.layouts import LAYOUTS, SUBSETS_2021, TRACKS_2021
from pipeline.manifest import build_manifest, read_manifest, write_manifest
from pipeline.protocol import ProtocolError
from pipeline.calibration import to_llr
from pipeline.metrics import (DCF_COSTS, ScoreError, act_dcf, asv_operating_point, cllr, compute_eer, min_cllr,
                              min_dcf, min_tdcf, min_tdcf_2021)
from pipeline.scoring import (CheckpointError, load_model, model_scores, resolve_device, score_dataset,
                              scoring_precision, tune_allocator)
from pipeline.settings import PARTITIONS, EvaluateSettings, FeatureSettings, SettingsError, load_settings
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


def score_readers(model, state: dict, readers, settings, exclude_attacks=()):
    """Score shards as the model file says it is evaluated (its input frames, F0 channel,
    evaluation input, precision and score fusion), on settings.train.device. Returns (dataset, scores,
    labels)."""
    device = resolve_device(settings.train.device)
    model.to(device)
    dataset = ShardDataset(readers, state["frames"], train=False, f0_channel=state["model_settings"]["f0_channel"],
                           eval_input=state.get("eval_input", "crop"), exclude_attacks=exclude_attacks)
    precision = scoring_precision(state.get("precision", "fp32"), device)
    scores, labels = score_dataset(model, dataset, settings.evaluate.batch_size, device, precision)
    return dataset, model_scores(state, dataset, scores), labels


def evaluate_features(name: str, model, state: dict, feature_dir: Path, feature_settings: FeatureSettings,
                      settings, asv: dict, conditions: dict, out: dict) -> dict:
    """Score one folder of shards and write scores, metrics, plots and report under `name`.
    conditions: utt_id -> (name, value) pairs (empty without). out: the output folders."""
    dataset, scores, labels = score_readers(model, state, open_partition(feature_dir, feature_settings), settings)
    utterances = [dataset.utterance(i) for i in range(len(dataset))]
    write_scores(Path(out["scores"]) / f"{name}.txt", utterances, scores)
    llr = None
    if state.get("calibration"):
        # The same lines with the calibrated score (natural-log LLR) in place of the raw one.
        llr = to_llr(state["calibration"], scores)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("partition", nargs="?", choices=PARTITIONS,
                        help="the partition to score (cross-corpus: default eval)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--manifest", default="data/manifest", help="the stage's manifests (for conditions)")
    parser.add_argument("--scores", default="scores")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--plots", default="plots")
    parser.add_argument("--reports", default="reports")
    cross = parser.add_argument_group("cross-corpus: score another corpus with the trained model")
    cross.add_argument("--layout", choices=LAYOUTS, help="the corpus's layout (pipeline/layouts.py)")
    cross.add_argument("--root", help="the corpus folder")
    cross.add_argument("--track", choices=TRACKS_2021, default="LA", help="asvspoof2021: LA or DF")
    cross.add_argument("--subset", choices=SUBSETS_2021, default="eval",
                       help="asvspoof2021: the challenge phase to keep (default eval, as the challenge ranks)")
    cross.add_argument("--name", help="output name (default <layout>[_<track>]_<partition>)")
    cross.add_argument("--work", default="data/cross", help="where its manifest and features are kept")
    args = parser.parse_args(argv)
    if args.layout is None and args.partition is None:
        parser.error("give a PARTITION, or --layout and --root to score another corpus")
    if args.layout is not None and not args.root:
        parser.error("--layout needs --root, the corpus folder")
    if args.layout is not None:
        args.partition = args.partition or "eval"
        track = f"_{args.track.lower()}" if args.layout == "asvspoof2021" else ""
        args.name = args.name or f"{args.layout}{track}_{args.partition}"
    name = args.name or args.partition
    out = {"scores": args.scores, "metrics": args.metrics, "plots": args.plots, "reports": args.reports}
    tune_allocator()
    try:
        settings = load_settings(args.params)
        model, state = load_model(Path(args.model))
        if args.layout is None:
            if state["feature_fingerprint"] != settings.features.fingerprint():
                raise CheckpointError(f"{args.model}: trained on other feature settings than params.yaml's; "
                                      f"rerun training (`dvc repro`)")
            feature_settings = settings.features
            feature_dir = Path(args.features) / args.partition
            conditions = manifest_conditions(Path(args.manifest) / f"{args.partition}.tsv")
        else:
            # Another corpus is scored as the model was trained, whatever params.yaml now says.
            feature_settings = FeatureSettings.from_stored(state["feature_settings"])
            feature_dir, conditions = prepare_corpus(args, settings, feature_settings)
        metrics = evaluate_features(name, model, state, feature_dir, feature_settings, settings,
                                    asv_point(settings.evaluate, name), conditions, out)
    except (SettingsError, ShardError, CheckpointError, ScoreError, ProtocolError, ExtractionError, OSError) as err:
        print(f"evaluate {name}: {err}", file=sys.stderr)
        return 1
    print(summary_line(name, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
