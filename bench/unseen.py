"""One trained model on the recording sources its training and dev never held: their bona fide
scored against the eval spoofs, as the loso stage scores such a source, without the loso stage's
training runs.

    python bench/unseen.py [--params params.yaml] [--model models/model.pt] [--features data/features]
                           [--out bench/results/unseen.json]

The sources are loso.sources of the params file; a source is scored only when none of its speakers
is in the train or dev shards (the default corpus: fillets_nl, the Dutch dub). Per source: EER,
min DCF, the share of its bona fide rejected at the model's own threshold, and with a score fusion
the EER of the network alone and of the statistics model alone. bench/seeds.py runs
it for every seed; it costs one scoring pass over eval.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unseen_sources(params: Path, model: Path, features: Path) -> dict:
    from pipeline.settings import load_settings
    from pipeline.studies.loso import source_figures, source_scores, source_speakers
    from pipeline.studies.runs import corpus_speakers

    settings = load_settings(params)
    speakers = corpus_speakers(features, settings)
    heard = speakers["train"] | speakers["dev"]
    return {source: source_figures(*source_scores(model, features, settings, members))
            for source, members in source_speakers(settings.loso.sources, speakers).items()
            if not heard & set(members)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out", default="bench/results/unseen.json")
    args = parser.parse_args()
    result = unseen_sources(Path(args.params), Path(args.model), Path(args.features))
    for source, r in result.items():
        alone = "".join(f", {name[4:]} alone {r[name]:.2%}" for name in ("eer_network", "eer_statistics") if name in r)
        print(f"{source}: EER {r['eer']:.2%}, {r['rejected']:.1%} of its {r['bonafide']} bona fide rejected{alone}")
    if not result:
        print("no source of loso.sources is absent from train and dev")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
