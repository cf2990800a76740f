"""Stage `manifest`: a corpus's protocols + audio -> one validated TSV per partition.

    python -m pipeline.manifest [--params params.yaml] [--out data/manifest]

Each row is `utt_id speaker attack label path audio_sha256 conditions`. The corpus is read
through its layout's adapter (data.layout, pipeline/data/layouts.py). Every protocol line must be
well formed and its audio file must exist; otherwise the stage stops naming the file and line,
or (with data.on_error: skip) leaves the utterance out and lists it in `skipped.tsv`. The audio
checksum makes a changed recording change the manifest, so its features are recomputed even when
the protocol stays the same (a rebuilt mini corpus keeps its utterance ids).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.data.manifests import write_partitions
from pipeline.settings import load_settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/manifest")
    args = parser.parse_args(argv)

    def body() -> None:
        counts = write_partitions(load_settings(args.params).data, Path(args.out))
        print("manifest: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    return run_stage("manifest", body)


if __name__ == "__main__":
    sys.exit(main())
