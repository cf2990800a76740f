"""Export a trained model for use without this project's Python code: ONNX or TorchScript.

    python -m pipeline.export --model models/model.pt --format onnx [--out models/model.onnx]
    python -m pipeline.export --model models/model.pt --format torchscript [--out models/model.ts]

The exported network maps a batch of network inputs [batch, channels, rows, frames] (its streams stacked)
(any batch size; any number of frames from 8 up to MAX_SCORED_FRAMES) to one score per input,
the same decision statistic as `model.bonafide_score`. Beside it, <out>.json holds what turns
audio into that input and the score into a decision: the feature settings, the evaluation input
rule, the calibration (score -> LLR) and the dev EER threshold, and for a model with a score
fusion (model.excitation_fusion) its numbers: the network's score is then one input of
model/fusion.py's fused score, which the calibration and threshold apply to. `python -m
pipeline.detect --model model.onnx` scores audio with onnxruntime from these two files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.inference.export import FORMATS, export


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    parser.add_argument("--out", help="default: the model's path with .onnx or .ts")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.model).with_suffix(FORMATS[args.format])

    def body() -> None:
        export(Path(args.model), args.format, out)
        print(f"export: wrote {out} and {out}.json")
    return run_stage("export", body)


if __name__ == "__main__":
    sys.exit(main())
