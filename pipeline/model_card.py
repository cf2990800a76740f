"""Stage `model_card`: reports/model_card.md, what the trained model is and what it is not.

    python -m pipeline.model_card [--params params.yaml]

Written from the run's own records (the manifests, metrics/train.json, metrics/{dev,eval,loao,loso,channels}.json,
params.yaml), so it always describes the model that `dvc repro` last made.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.errors import PipelineError
from pipeline.reports.card import partition_summary, render
from pipeline.settings import load_settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--manifest", default="data/manifest")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--out", default="reports/model_card.md")
    args = parser.parse_args(argv)

    def body() -> None:
        settings = load_settings(args.params)
        parts = {p: partition_summary(Path(args.manifest) / f"{p}.tsv") for p in ("train", "dev", "eval")}
        try:
            train = json.loads((Path(args.metrics) / "train.json").read_text())
            metrics = {p: json.loads((Path(args.metrics) / f"{p}.json").read_text()) for p in ("dev", "eval")}
            studies = {}
            for name in ("loao", "loso", "channels"):
                path = Path(args.metrics) / f"{name}.json"
                studies[name] = json.loads(path.read_text()) if path.is_file() else None
            text = render(settings, parts, train, metrics, **studies)
        except (KeyError, json.JSONDecodeError) as err:
            raise PipelineError(f"{args.metrics}: a metrics file is damaged or from another version ({err!r}); "
                                f"rerun `dvc repro`") from None
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"model_card: wrote {out}")
    return run_stage("model_card", body)

if __name__ == "__main__":
    sys.exit(main())
