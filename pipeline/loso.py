"""Stage `loso`: leave one recording source out. For each bona fide source (a recording setup), train
the recipe without its speakers and score its bona fide against the eval spoofs.

    python -m pipeline.loso [--params params.yaml] [--features data/features] [--model models/model.pt]
                            [--out models/loso] [--metrics metrics/loso.json]

loso.sources names each source's speakers (id patterns). With loso.enabled false (the default: up to
one training run per source) the stage only writes metrics/loso.json saying so. Enabled, each
source S gets models/loso/S/: params.yaml (params.yaml with train.exclude_speakers: S's speakers,
who then leave train and dev, bona fide and the spoofs made from them), the model and its training
log; the model then scores every bona fide utterance of S, in any partition, against the eval
spoofs of the other speakers. A source that neither train nor dev holds is scored by the main
model (--model), which never met it. S's scores.npz keeps them (fused, and with a score fusion
each of its inputs alone; bench/fusion_loso.py reads them). metrics/loso.json: per source the
EER, min t-DCF and the share of its bona fide rejected at the model's own threshold, and their
means and maxima: the figures for real speech recorded elsewhere. A finished source is not
trained again when the stage is rerun.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.studies.loso import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--out", default="models/loso")
    parser.add_argument("--metrics", default="metrics/loso.json")
    args = parser.parse_args(argv)

    def body() -> None:
        summary = run(Path(args.params).resolve(), Path(args.features).resolve(), Path(args.out).resolve(),
                      Path(args.model).resolve())
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics).write_text(json.dumps(summary, indent=2) + "\n")
        if summary["enabled"]:
            print(f"loso: mean EER {summary['mean_eer']:.2%}, mean {summary['mean_rejected']:.1%} of bona fide "
                  f"rejected, over {len(summary['eer_per_source'])} held-out sources")
        else:
            print("loso: off (loso.enabled: false); metrics/loso.json says so")
    return run_stage("loso", body)


if __name__ == "__main__":
    sys.exit(main())
