"""Leave one attack out: which attacks, each one's recipe and training run, and its held-out score.

The `loao` command (pipeline/loao.py) runs this; see its docstring.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import yaml

from features.copy_synthesis import COPY_ATTACKS, kin_copies
from pipeline.data.shards import open_partition
from pipeline.errors import PipelineError
from pipeline.overrides import deep_update
from pipeline.scoring.metrics import ScoreError, compute_eer, min_dcf
from pipeline.scoring.modelfile import ModelFile
from pipeline.scoring.scorer import Scorer, resolve_device
from pipeline.settings import Settings, load_settings
from pipeline.studies.runs import corpus_speakers, finished, made_from, scored_speakers, train, write_result


def train_attacks(features: Path, settings: Settings) -> list[str]:
    """The attacks of the training partition, as its shards list them; not the copy-synthesis
    spoofs (features.copy_synthesis), which are part of the recipe and have none in dev or eval."""
    readers = open_partition(features / "train", settings.features, verify=False)
    return sorted({a for r in readers for a in r.attack} - {"-"} - COPY_ATTACKS)


class LoaoError(PipelineError, ValueError):
    pass


def check_set_aside(features: Path, settings: Settings) -> list[str]:
    """loao.set_aside, checked against the shards: every speaker in dev and none in train, and dev
    left with speakers of its own to choose and fit on. An error names the speakers at fault."""
    speakers = corpus_speakers(features, settings, partitions=("train", "dev"))
    set_aside = list(settings.loao.set_aside)
    missing = sorted(set(set_aside) - speakers["dev"])
    if missing:
        raise LoaoError(f"loao.set_aside: {missing} are not speakers of the dev shards under {features / 'dev'}")
    trained = sorted(set(set_aside) & speakers["train"])
    if trained:
        raise LoaoError(f"loao.set_aside: {trained} are also in the train shards; set aside speakers training "
                        f"never hears")
    if not speakers["dev"] - set(set_aside):
        raise LoaoError("loao.set_aside: every dev speaker is set aside; leave some to choose the checkpoint "
                        "and fit the fusion on")
    return set_aside


def heldout_scores(model_path: Path, features: Path, settings: Settings, attack: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores of `attack`'s dev spoofs and of the bona fide of the set-aside dev speakers (score,
    label): none of them fitted anything in the run, and no eval utterance is read."""
    scorer = Scorer.of(ModelFile.load(model_path), device=resolve_device(settings.train.device))
    readers = open_partition(features / "dev", settings.features)
    present = {a for r in readers for a in r.attack}
    if attack not in present:
        raise ScoreError(f"attack {attack} has no spoofs in dev to score")
    dataset, scores, labels = scorer.score_readers(readers, settings.evaluate.batch_size,
                                                   exclude_attacks=tuple(present - {"-", attack}))
    keep = (labels == 0) | np.isin(scored_speakers(readers, dataset), settings.loao.set_aside)
    return scores[keep], labels[keep]


def heldout_recipe(params: Path, attack: str) -> dict:
    """The recipe of params.yaml without `attack`, without the copy-synthesis spoofs made by its
    mechanism (features.copy_synthesis.KIN), which would otherwise have shown it to training, and
    without the set-aside dev speakers (loao.set_aside), whose bona fide it is scored against."""
    recipe = yaml.safe_load(params.read_text())
    set_aside = (recipe.get("loao") or {}).get("set_aside") or []
    return deep_update(recipe, {"train": {"exclude_attacks": [attack, *kin_copies(attack)],
                                          "exclude_speakers": sorted(set(recipe["train"].get("exclude_speakers") or [])
                                                                     | set(set_aside))}})


def run_attack(attack: str, params: Path, features: Path, out: Path) -> dict:
    """Train without `attack` (train.py in its own process, as the train stage runs it) and score it."""
    recipe = heldout_recipe(params, attack)
    made = made_from(recipe, features, partitions=("train", "dev"))
    result = finished(out / "result.json", made)
    if result is not None:
        return result
    started = time.perf_counter()
    run_settings = train(recipe, features, out, f"loao {attack}")
    scores, labels = heldout_scores(out / "model.pt", features, run_settings, attack)
    bonafide, spoof = scores[labels == 1], scores[labels == 0]
    return write_result(out / "result.json", {
        "attack": attack, "eer": compute_eer(bonafide, spoof)[0], "min_dcf": min_dcf(bonafide, spoof),
        "bonafide": int(len(bonafide)), "spoof": int(len(spoof)),
        "minutes": (time.perf_counter() - started) / 60, "made_from": made})


def run(params: Path, features: Path, out: Path) -> dict:
    settings = load_settings(params)
    out.mkdir(parents=True, exist_ok=True)  # the stage's output, empty when off
    if not settings.loao.enabled:
        return {"enabled": False}
    check_set_aside(features, settings)
    attacks = settings.loao.attacks or train_attacks(features, settings)
    results = []
    for attack in attacks:
        print(f"loao: training without {attack}", flush=True)
        result = run_attack(attack, params, features, out / attack)
        print(f"loao {attack}: EER {result['eer']:.2%} ({result['spoof']} spoofs, {result['bonafide']} bona fide, "
              f"{result['minutes']:.1f} min)", flush=True)
        results.append(result)
    eers = [r["eer"] for r in results]
    return {"enabled": True, "mean_eer": float(np.mean(eers)), "max_eer": float(np.max(eers)),
            "eer_per_attack": {r["attack"]: r["eer"] for r in results},
            "min_dcf_per_attack": {r["attack"]: r["min_dcf"] for r in results},
            "counts": {r["attack"]: {"bonafide": r["bonafide"], "spoof": r["spoof"]} for r in results},
            "set_aside": list(settings.loao.set_aside),
            "minutes": sum(r["minutes"] for r in results)}
