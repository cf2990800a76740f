"""Exporting a trained model (ONNX, TorchScript) with the sidecar that detect reads.

The `export` command (pipeline/export.py) runs this; see its docstring.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch

from features.streams import network_streams
from model import bonafide_score
from pipeline.data.shards import file_sha256
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


def sidecar(model_file: ModelFile, network_sha256: str) -> dict:
    """What detect needs beside the exported network: the model file's metadata (everything but
    the weights, as ModelFile writes it), the longest input the export takes, and the network
    file's checksum, so a sidecar is never read beside another export's network."""
    return {"format": EXPORT_FORMAT, "model": model_file.metadata(), "max_frames": MAX_SCORED_FRAMES,
            "network_sha256": network_sha256}


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
    # The sidecar first (temporary name, then rename), the network last: an interrupted export
    # leaves a pair whose checksums disagree, which load_export refuses.
    info, info_tmp = Path(str(out) + ".json"), Path(str(out) + ".json.tmp")
    info_tmp.write_text(json.dumps(sidecar(model_file, file_sha256(tmp)), indent=2) + "\n")
    info_tmp.replace(info)
    tmp.replace(out)
    return out


class OnnxNetwork:
    """An exported network's scores of model inputs, by onnxruntime, as scorer.score_inputs gives
    them with torch: inputs longer than max_frames are scored in equal pieces and the scores
    averaged. A Scorer's `network` for an exported model."""

    def __init__(self, path: Path, max_frames: int, threads: int = 0):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.max_frames = max_frames

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pieces = -(-x.shape[-1] // self.max_frames)
        total = torch.zeros(x.shape[0])
        for piece in torch.tensor_split(x, pieces, dim=-1):
            total += torch.from_numpy(self.session.run(None, {"x": piece.contiguous().numpy()})[0])
        return total / pieces


def read_sidecar(path: Path) -> dict:
    """An export's sidecar, checked: ours, of this version, made with this very network file."""
    info = Path(str(path) + ".json")
    try:
        state = json.loads(info.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: an exported model needs its settings in {info} ({err})") from None
    version = state.get("format") if isinstance(state, dict) else None
    if version != EXPORT_FORMAT:
        raise CheckpointError(f"{info}: not the settings of a model exported by this version of pipeline.export "
                              f"(format {version!r}, expected {EXPORT_FORMAT}); export the model again")
    if not isinstance(state.get("max_frames"), int):
        raise CheckpointError(f"{info}: a damaged export sidecar (no max_frames); export the model again")
    if Path(path).is_file() and state.get("network_sha256") != file_sha256(path):
        raise CheckpointError(f"{info}: made for another network than {path} (an interrupted or mixed export); "
                              f"export the model again")
    return state


def load_export(path: Path) -> ModelFile:
    """The model file (without weights) an export was made from, read from its sidecar; a clear
    error if the sidecar is missing, not ours, of an older version or of another network."""
    return ModelFile.from_dict(read_sidecar(path).get("model"), Path(str(path) + ".json"))


def export_scorer(path: Path, threads: int = 0) -> Scorer:
    """The Scorer of an exported ONNX model: onnxruntime for the network (in fp32, whatever the model
    was trained in), the sidecar for the rest."""
    state = read_sidecar(path)
    model_file = dataclasses.replace(ModelFile.from_dict(state.get("model"), Path(str(path) + ".json")),
                                     precision="fp32")
    return Scorer.of(model_file, network=OnnxNetwork(path, state["max_frames"], threads))
