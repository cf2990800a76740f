"""The model file: the one type that writes and reads models/model.pt, the best model a training
checkpoint carries and an export's sidecar (checkpoints themselves are plain dicts: train.py).

A model file holds the network's weights and everything that turns audio into its score and a
decision: the model and feature settings, the evaluation input rule (frames, eval_input), the
precision it was trained in (a hint), the dev EER threshold, the calibration (score -> LLR) and
the score fusion (model/fusion.py). It is versioned: a file of an older version, a training
checkpoint or a foreign file is refused on load with one line that says what to do.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from features.streams import fusion_streams, network_streams
from model import build_model
from pipeline.errors import PipelineError
from pipeline.settings import FeatureSettings, ModelSettings, SettingsError, build

# Version 2: named feature streams (the network's input holds the streams it reads and nothing
# else; the fusion names the streams it reads). Version 1 files stacked every stream's rows.
MODEL_FORMAT = "srla-model/2"
CHECKPOINT_FORMAT = "srla-checkpoint/2"
OLDER_FORMATS = {"srla-model/1": "model file", "srla-checkpoint/1": "training checkpoint"}


class CheckpointError(PipelineError, ValueError):
    """A model file or checkpoint that cannot be used, with the file and what to do."""


class OlderVersionError(CheckpointError):
    """A file of this project, written by an older version of it."""


@dataclass(frozen=True)
class ModelFile:
    model_settings: ModelSettings
    feature_settings: FeatureSettings
    frames: int          # train.frames: the input length the network was trained on
    eval_input: str      # train.eval_input: "crop" or "whole" (pipeline/data/dataset.py)
    precision: str       # what training ran in; a hint for scoring (bf16 only where native)
    threshold: float     # the raw score's dev EER threshold
    calibration: dict | None  # dev scores -> LLRs (pipeline/scoring/calibration.py)
    fusion: dict | None  # {"statistics_model", "streams", "weights"} (model/fusion.py), or None
    dev_eer: float
    epoch: int
    step: int
    weights: dict | None = None  # the network's state_dict; None in an export's sidecar

    @property
    def feature_fingerprint(self) -> str:
        return self.feature_settings.fingerprint()

    @property
    def network_streams(self) -> tuple[str, ...]:
        """The streams the network reads, in the order they are stacked into its input."""
        return tuple(network_streams(self.feature_settings))

    @property
    def fusion_streams(self) -> tuple[str, ...]:
        return tuple(self.fusion["streams"]) if self.fusion else ()

    def network(self) -> torch.nn.Module:
        """The network with these weights, in eval mode, channels-last."""
        if self.weights is None:
            raise CheckpointError("this model file holds no weights (an export's settings)")
        network = build_model(self.model_settings, self.feature_settings)
        try:
            network.load_state_dict(self.weights)
        except (RuntimeError, TypeError) as err:
            raise CheckpointError(f"a damaged model file: its weights do not fit its network ({err})") from None
        return network.to(memory_format=torch.channels_last).eval()

    def metadata(self) -> dict:
        """Everything but the weights, as plain JSON types (an export's sidecar holds this)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "weights"}
        fields["model_settings"] = dataclasses.asdict(self.model_settings)
        fields["feature_settings"] = dataclasses.asdict(self.feature_settings)
        return {"format": MODEL_FORMAT, "feature_fingerprint": self.feature_fingerprint, **fields}

    def to_dict(self) -> dict:
        return {**self.metadata(), "weights": self.weights}

    @classmethod
    def from_dict(cls, state, source) -> "ModelFile":
        """Validate what a model file (or a sidecar, without weights) holds; CheckpointError names
        `source` and the problem."""
        if not isinstance(state, dict) or "format" not in state:
            raise CheckpointError(f"{source}: not a model file of this project")
        version = state["format"]
        if version in OLDER_FORMATS:
            raise older_version(source, version)
        if version == CHECKPOINT_FORMAT:
            raise CheckpointError(f"{source}: a training checkpoint, not a model file; use models/model.pt")
        if version != MODEL_FORMAT:
            raise CheckpointError(f"{source}: not a model file of this project (format {version!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(state) - {"weights"})
        if missing:
            raise CheckpointError(f"{source}: a damaged model file: it lacks {', '.join(missing)}")
        try:
            values = {name: state[name] for name in names if name in state}
            values["model_settings"] = build(ModelSettings, state["model_settings"], "model_settings")
            values["feature_settings"] = build(FeatureSettings, state["feature_settings"], "feature_settings")
        except SettingsError as err:
            raise CheckpointError(f"{source}: a damaged model file: {err}") from None
        if values["eval_input"] not in ("crop", "whole") or values["precision"] not in ("fp32", "bf16"):
            raise CheckpointError(f"{source}: a damaged model file: eval_input {values['eval_input']!r}, precision "
                                  f"{values['precision']!r}")
        model_file = cls(**values)
        if model_file.fusion and not set(model_file.fusion_streams) <= set(fusion_streams(model_file.feature_settings)):
            raise CheckpointError(f"{source}: its score fusion reads streams its feature settings do not make")
        return model_file

    def save(self, path: Path) -> None:
        """Write atomically (temporary name, then rename)."""
        atomic_save(self.to_dict(), Path(path))

    @classmethod
    def load(cls, path: Path) -> "ModelFile":
        """A model file with its weights, validated; CheckpointError names the file and the problem."""
        model_file = cls.from_dict(load_checkpoint(path), path)
        if not isinstance(model_file.weights, dict):
            raise CheckpointError(f"{path}: a damaged model file: it holds no weights")
        try:
            model_file.network()
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None
        return model_file


def load_checkpoint(path: Path) -> dict:
    """A model file's or checkpoint's contents, loaded safely (weights_only); CheckpointError if it
    is not a loadable file of this project, OlderVersionError if it is one of an older version."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})") from None
    version = state.get("format") if isinstance(state, dict) else None
    if version in OLDER_FORMATS:
        raise older_version(path, version)
    if version not in (CHECKPOINT_FORMAT, MODEL_FORMAT):
        raise CheckpointError(f"{path}: not a checkpoint of this project")
    return state


def older_version(source, version: str) -> OlderVersionError:
    return OlderVersionError(f"{source}: a {OLDER_FORMATS[version]} of an older version of this project "
                             f"({version}; this one reads {MODEL_FORMAT}); retrain it (`dvc repro`)")


def atomic_save(obj, path: Path) -> None:
    """Write to a temporary name, then rename: a crash or a full disk never leaves a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
