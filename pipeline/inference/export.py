"""Exporting a trained model (ONNX, TorchScript) with the sidecar that detect reads.

The `export` command (pipeline/export.py) runs this; see its docstring.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from features.streams import network_streams
from model import bonafide_score
from pipeline.scoring.modelfile import CheckpointError, ModelFile
from pipeline.scoring.scorer import MAX_SCORED_FRAMES, Scorer

FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}
# Version 2: the sidecar holds the model file's metadata (ModelFile.metadata) under "model".
EXPORT_FORMAT = "srla-export/2"


class ScoreModule(torch.nn.Module):
    """The network and its score in one module: input [B, C, rows, frames] -> score [B]."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bonafide_score(self.network(x))


def sidecar(model_file: ModelFile) -> dict:
    """What detect needs beside the exported network: the model file's metadata (everything but
    the weights, as ModelFile writes it) and the longest input the export takes."""
    return {"format": EXPORT_FORMAT, "model": model_file.metadata(), "max_frames": MAX_SCORED_FRAMES}


def export(model_path: Path, fmt: str, out: Path) -> Path:
    """Write the exported network to `out` and its settings to `out`.json; returns `out`."""
    model_file = ModelFile.load(model_path)
    module = ScoreModule(model_file.network().to(memory_format=torch.contiguous_format)).eval()
    channels = 2 if model_file.model_settings.f0_channel else 1
    rows = sum(network_streams(model_file.feature_settings).values())
    example = torch.randn(2, channels, rows, 160)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "onnx":
        batch = torch.export.Dim("batch", min=1, max=4096)
        frames = torch.export.Dim("frames", min=8, max=MAX_SCORED_FRAMES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(tmp), dynamo=True, input_names=["x"], output_names=["score"],
                              dynamic_shapes={"x": {0: batch, 3: frames}}, external_data=False, verbose=False)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated but still the format many tools load
            traced = torch.jit.trace(module, example)
        traced.save(str(tmp))
    tmp.replace(out)
    Path(str(out) + ".json").write_text(json.dumps(sidecar(model_file), indent=2) + "\n")
    return out


class OnnxNetwork:
    """An exported network's scores of model inputs, by onnxruntime, as scorer.score_inputs gives
    them with torch: inputs longer than max_frames are scored in equal pieces and the scores
    averaged. A Scorer's `network` for an exported model."""

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


def load_export(path: Path) -> ModelFile:
    """The model file (without weights) an export was made from, read from its sidecar; a clear
    error if the sidecar is missing, not ours, or of an older version."""
    info = Path(str(path) + ".json")
    try:
        state = json.loads(info.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: an exported model needs its settings in {info} ({err})") from None
    version = state.get("format") if isinstance(state, dict) else None
    if version != EXPORT_FORMAT:
        raise CheckpointError(f"{info}: not the settings of a model exported by this version of pipeline.export "
                              f"(format {version!r}, expected {EXPORT_FORMAT}); export the model again")
    return ModelFile.from_dict(state["model"], info)


def export_scorer(path: Path, threads: int = 0) -> Scorer:
    """The Scorer of an exported ONNX model: onnxruntime for the network, the sidecar for the rest."""
    return Scorer.of(load_export(path), network=OnnxNetwork(path, threads))
