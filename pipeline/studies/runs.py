"""One held-out study run: a recipe trained by train.py in its own process, kept once finished.

The loao and loso studies (heldout.py, loso.py) train one model per held-out attack or source; a
run whose recipe and shards are unchanged is not trained again when its stage is rerun (the
channels stage keeps its per-condition figures the same way).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from model.fusion import combine, statistics_logit
from pipeline.data.shards import open_partition
from pipeline.errors import PipelineError
from pipeline.settings import PARTITIONS, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]  # where train.py is


def made_from(recipe: dict, features: Path, partitions=PARTITIONS) -> dict:
    """What a run's result was made from: the recipe and the shards it reads (their index files)."""
    return {"recipe": recipe, "features": {p: hashlib.sha256((features / p / "index.json").read_bytes()).hexdigest()
                                           for p in partitions}}


def corpus_speakers(features: Path, settings: Settings, partitions=PARTITIONS) -> dict[str, set[str]]:
    """Partition -> the speakers its shards hold."""
    return {part: {s for r in open_partition(features / part, settings.features, verify=False) for s in r.speaker}
            for part in partitions}


def scored_values(readers, dataset, column: str) -> np.ndarray:
    """A shard column ("speaker", "utt_id", ...) of each utterance a Scorer scored, in score order
    (dataset: what score_readers or score_parts returned)."""
    return np.concatenate([np.asarray(getattr(r, column)) for r in readers])[dataset.items]


def scored_speakers(readers, dataset) -> np.ndarray:
    """The speaker of each utterance a Scorer scored."""
    return scored_values(readers, dataset, "speaker")


def score_parts(scorer, readers, batch_size: int):
    """(dataset, the model's scores, labels, alone) of shards, as Scorer.score_readers, where alone
    holds each input of a score fusion by itself ({"network": its scores, "statistics": the
    statistics model's log-odds}; {} without a fusion): which of the two a held-out recording or a
    channel moves."""
    dataset = scorer.dataset(readers)
    network, labels = scorer.score_dataset(dataset, batch_size)
    if not scorer.fusion:
        return dataset, scorer.fuse(network, None), labels, {}
    logit = statistics_logit(scorer.fusion["statistics_model"], dataset.utterance_statistics(scorer.fusion["streams"]))
    # the model's score as Scorer.fuse makes it, from the log-odds computed once
    return dataset, combine(scorer.fusion["weights"], network, logit), labels, {"network": network, "statistics": logit}


def finished(path: Path, made: dict) -> dict | None:
    """The result file (JSON) of a finished run made from `made`, or None."""
    if path.is_file():
        result = json.loads(path.read_text())
        if result.get("made_from") == made:
            return result
    return None


def write_result(path: Path, result: dict) -> dict:
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def train(recipe: dict, features: Path, out: Path, study: str) -> Settings:
    """Train `recipe` into out/ (params.yaml, model.pt, train.json, log.txt, dvclive/) as the
    train stage runs train.py; a PipelineError naming the log if it fails. Returns its settings."""
    out.mkdir(parents=True, exist_ok=True)
    run_params = out / "params.yaml"
    run_params.write_text(yaml.safe_dump(recipe, sort_keys=False))
    settings = load_settings(run_params)
    with open(out / "log.txt", "w") as log:
        command = [sys.executable, str(ROOT / "train.py"), "--params", str(run_params), "--features", str(features),
                   "--out_fold", str(out), "--metrics", str(out / "train.json"), "--live", str(out / "dvclive")]
        if subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ).returncode:
            raise PipelineError(f"{study}: training failed; see {out / 'log.txt'}")
    return settings
