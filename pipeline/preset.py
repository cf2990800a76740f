"""Apply a preset (a partial params.yaml) to params.yaml, keeping its comments.

    python -m pipeline.preset presets/asvspoof2019_la.yaml [--set data.root=/data/LA] [--params params.yaml]

Every key of the preset must already exist in params.yaml; the result is validated like any
params.yaml before it is written, so a typo leaves params.yaml untouched.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.cli import run_stage
from pipeline.errors import PipelineError
from pipeline.overrides import apply_preset, deep_update, parse_set


def apply(preset_path: str | None, assignments: list[str], params: Path) -> None:
    try:
        preset = yaml.safe_load(Path(preset_path).read_text()) if preset_path else {}
    except yaml.YAMLError as err:
        raise PipelineError(f"{preset_path}: not valid YAML: {err}") from None
    apply_preset(params, deep_update(preset or {}, parse_set(assignments)))
    print(f"preset: {params} updated; run `dvc repro`")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", help="a YAML file of params to set")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    return run_stage("preset", lambda: apply(args.preset, args.set, Path(args.params)))


if __name__ == "__main__":
    sys.exit(main())
