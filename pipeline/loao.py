"""Stage `loao`: leave one attack out. For each attack of the training partition, train the recipe
without it and score its spoofs against the bona fide of the unseen speakers.

    python -m pipeline.loao [--params params.yaml] [--features data/features] [--out models/loao]

With loao.enabled false (the default: it trains one model per attack, several times the main
run's cost) the stage only writes metrics/loao.json saying so. Enabled, each attack X gets
models/loao/X/ (params.yaml: params.yaml with train.exclude_attacks: [X] and the copy-synthesis
methods of its mechanism (features.copy_synthesis.KIN), the model, its training
log): train.py runs on the training partition without X, choosing and calibrating on dev without
X and without the dev speakers of loao.set_aside, and the model then scores X's dev spoofs against
the bona fide of the set-aside speakers, as `python -m pipeline.evaluate` scores: no held-out
score rests on bona fide that fitted anything, and no eval utterance is read. metrics/loao.json has each
attack's EER, their mean (the figure that says how the recipe meets a generator it has not
seen) and what each run cost. A finished attack (its model and scores match the settings) is not
trained again when the stage is rerun after an interruption.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.studies.heldout import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out", default="models/loao")
    parser.add_argument("--metrics", default="metrics/loao.json")
    args = parser.parse_args(argv)

    def body() -> None:
        summary = run(Path(args.params).resolve(), Path(args.features).resolve(), Path(args.out).resolve())
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics).write_text(json.dumps(summary, indent=2) + "\n")
        if summary["enabled"]:
            print(f"loao: mean EER {summary['mean_eer']:.2%} over {len(summary['eer_per_attack'])} held-out attacks")
        else:
            print("loao: off (loao.enabled: false); metrics/loao.json says so")
    return run_stage("loao", body)


if __name__ == "__main__":
    sys.exit(main())
