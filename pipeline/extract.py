"""Stage `features@<partition>`: manifest -> shards of the named feature streams, in parallel, resumable.

    python -m pipeline.extract PARTITION [--params params.yaml] [--manifest data/manifest]
                               [--out data/features]

The manifest is cut into shards of about extract.shard_size utterances. Each shard is one
joblib task (loky on this machine, or a dask cluster) that loads the audio, computes the
features and writes the whole shard atomically. A rerun keeps every finished shard that was
planned the same way with the same settings and computes only the rest.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.data.extraction import extract_partition
from pipeline.settings import PARTITIONS, load_settings


def extract(params: str, partition: str, manifest: Path, out: Path) -> None:
    settings = load_settings(params)
    train = partition == "train"  # only training data gets copies: dev and eval are what the model is judged on
    summary = extract_partition(manifest / f"{partition}.tsv", out / partition, settings.features, settings.extract,
                                augment=settings.augment if train else None,
                                copy_synthesis=settings.copy_synthesis if train else None)
    print(f"features {partition}: {summary['utterances']} utterances in {summary['shards']} shards "
          f"({summary['computed']} computed, {summary['kept']} kept)")
    for s in summary["skipped"]:
        print(f"  skipped {s['utt_id']} ({s['path']}): {s['reason']}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("partition", choices=PARTITIONS)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--manifest", default="data/manifest")
    parser.add_argument("--out", default="data/features")
    args = parser.parse_args(argv)
    return run_stage(f"features {args.partition}",
                     lambda: extract(args.params, args.partition, Path(args.manifest), Path(args.out)),
                     hint="finished shards are kept; fix the problem (or set extract.on_error: skip) and rerun")


if __name__ == "__main__":
    sys.exit(main())
