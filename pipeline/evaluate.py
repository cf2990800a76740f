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

A cross-corpus run reads the corpus through its layout's adapter (pipeline/data/layouts.py) into
<work>/<name>/<name>.tsv, extracts features with the model's own feature settings into
<work>/<name>/features (parallel, resumable: a rerun with another model of the same feature
settings reuses them) and scores them exactly as the stage scores its partition.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.data.layouts import LAYOUTS, SUBSETS_2021, TRACKS_2021
from pipeline.reports.evaluation import asv_point, evaluate_features, manifest_conditions, prepare_corpus, summary_line
from pipeline.scoring.modelfile import CheckpointError, ModelFile
from pipeline.scoring.scorer import Scorer, resolve_device, tune_allocator
from pipeline.settings import PARTITIONS, load_settings


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
    cross.add_argument("--layout", choices=LAYOUTS, help="the corpus's layout (pipeline/data/layouts.py)")
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

    def body() -> None:
        settings = load_settings(args.params)
        model_file = ModelFile.load(Path(args.model))
        if args.layout is None:
            if model_file.feature_fingerprint != settings.features.fingerprint():
                raise CheckpointError(f"{args.model}: trained on other feature settings than params.yaml's; "
                                      f"rerun training (`dvc repro`)")
            feature_dir = Path(args.features) / args.partition
            conditions = manifest_conditions(Path(args.manifest) / f"{args.partition}.tsv")
        else:
            # Another corpus is scored as the model was trained, whatever params.yaml now says.
            feature_dir, conditions = prepare_corpus(args, settings, model_file.feature_settings)
        scorer = Scorer.of(model_file, device=resolve_device(settings.train.device))
        metrics = evaluate_features(name, scorer, model_file.calibration, feature_dir, model_file.feature_settings,
                                    settings.evaluate.batch_size, asv_point(settings.evaluate, name), conditions, out)
        print(summary_line(name, metrics))
    return run_stage(f"evaluate {name}", body)


if __name__ == "__main__":
    sys.exit(main())
