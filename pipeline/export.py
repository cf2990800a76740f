"""Export a trained model for use without this project's Python code: ONNX or TorchScript.

    python -m pipeline.export --model models/model.pt --format onnx [--out models/model.onnx]
    python -m pipeline.export --model models/model.pt --format torchscript [--out models/model.ts]

The exported network maps a batch of F0-subband log spectrograms [batch, channels, bins, frames]
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
import json
import sys
import warnings
from pathlib import Path

import torch

from model import bonafide_score
from pipeline.scoring import MAX_SCORED_FRAMES, CheckpointError, load_model
from pipeline.settings import FeatureSettings

FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}
EXPORT_FORMAT = "srla-export/1"


class Scorer(torch.nn.Module):
    """The network and its score in one module: input [B, C, bins, frames] -> score [B]."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bonafide_score(self.network(x))


def sidecar(state: dict) -> dict:
    """What detect needs beside the network (the model file's entries of the same names)."""
    return {"format": EXPORT_FORMAT, "feature_settings": state["feature_settings"],
            "f0_channel": state["model_settings"]["f0_channel"], "frames": state["frames"],
            "eval_input": state.get("eval_input", "crop"), "threshold": state["threshold"],
            "calibration": state.get("calibration"), "dev_eer": state.get("dev_eer"),
            "fusion": state.get("fusion"),  # numbers only: detect applies it after the network
            "max_frames": MAX_SCORED_FRAMES}


def export(model_path: Path, fmt: str, out: Path) -> Path:
    """Write the exported network to `out` and its settings to `out`.json; returns `out`."""
    network, state = load_model(model_path)
    scorer = Scorer(network.to(memory_format=torch.contiguous_format)).eval()
    channels = 2 if state["model_settings"]["f0_channel"] else 1
    bins = FeatureSettings.from_stored(state["feature_settings"]).n_bins
    example = torch.randn(2, channels, bins, 160)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "onnx":
        batch = torch.export.Dim("batch", min=1, max=4096)
        frames = torch.export.Dim("frames", min=8, max=MAX_SCORED_FRAMES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(scorer, (example,), str(tmp), dynamo=True, input_names=["x"], output_names=["score"],
                              dynamic_shapes={"x": {0: batch, 3: frames}}, external_data=False, verbose=False)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated but still the format many tools load
            traced = torch.jit.trace(scorer, example)
        traced.save(str(tmp))
    tmp.replace(out)
    Path(str(out) + ".json").write_text(json.dumps(sidecar(state), indent=2) + "\n")
    return out


class OnnxScorer:
    """Scores model inputs with onnxruntime, as pipeline.scoring.score_inputs does with torch:
    inputs longer than max_frames are scored in equal pieces and the scores averaged."""

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.max_frames = json.loads(Path(str(path) + ".json").read_text())["max_frames"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pieces = -(-x.shape[-1] // self.max_frames)
        total = torch.zeros(x.shape[0])
        for piece in torch.tensor_split(x, pieces, dim=-1):
            total += torch.from_numpy(self.session.run(None, {"x": piece.contiguous().numpy()})[0])
        return total / pieces


def load_export(path: Path) -> dict:
    """The sidecar of an exported model; a clear error if it is missing or not ours."""
    info = Path(str(path) + ".json")
    try:
        state = json.loads(info.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: an exported model needs its settings in {info} ({err})") from None
    if state.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{info}: not the settings of a model exported by pipeline.export")
    return state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    parser.add_argument("--out", help="default: the model's path with .onnx or .ts")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.model).with_suffix(FORMATS[args.format])
    try:
        export(Path(args.model), args.format, out)
    except (CheckpointError, OSError) as err:
        print(f"export: {err}", file=sys.stderr)
        return 1
    print(f"export: wrote {out} and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
