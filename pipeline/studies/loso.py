"""Leave one recording source out: which speakers each source has, each one's training run, and its
held-out bona fide scored against the eval spoofs.

The `loso` command (pipeline/loso.py) runs this; see its docstring.
"""
from __future__ import annotations

import fnmatch
import time
from pathlib import Path

import numpy as np
import yaml

from pipeline.data.shards import open_partition
from pipeline.errors import PipelineError
from pipeline.overrides import deep_update
from pipeline.scoring.metrics import compute_eer, min_dcf
from pipeline.scoring.modelfile import ModelFile
from pipeline.scoring.scorer import Scorer, resolve_device
from pipeline.settings import PARTITIONS, Settings, load_settings
from pipeline.studies.runs import (corpus_speakers, finished, made_from, score_parts, scored_speakers, train,
                                   write_result)


class LosoError(PipelineError, ValueError):
    pass


def source_speakers(sources: dict, speakers: dict[str, set[str]]) -> dict[str, list[str]]:
    """Source -> its speakers in the corpus (loso.sources: speaker-id patterns per source). A
    pattern that matches no speaker, a source without speakers, or a speaker in two sources is
    an error naming them."""
    everyone = sorted(set().union(*speakers.values()))
    found, owner = {}, {}
    for source, patterns in sources.items():
        found[source] = []
        for pattern in patterns:
            matched = fnmatch.filter(everyone, pattern)
            if not matched:
                raise LosoError(f"loso.sources.{source}: {pattern!r} matches no speaker of the corpus")
            found[source] += [s for s in matched if s not in found[source]]
        for speaker in found[source]:
            if owner.setdefault(speaker, source) != source:
                raise LosoError(f"loso.sources: speaker {speaker} is in both {owner[speaker]} and {source}")
    return found


def heldout_recipe(params: Path, speakers: list[str]) -> dict:
    return deep_update(yaml.safe_load(params.read_text()), {"train": {"exclude_speakers": sorted(speakers)}})


def source_scores(model_path: Path, features: Path, settings: Settings, speakers: list[str]):
    """(bona fide scores of `speakers` in every partition, scores of the eval spoofs, the model's
    threshold, alone: with a score fusion, {input: (bona fide, spoofs)} of each of its inputs by
    itself, runs.score_parts)."""
    model = ModelFile.load(model_path)
    scorer = Scorer.of(model, device=resolve_device(settings.train.device))
    scores = {}
    for part in PARTITIONS:
        readers = open_partition(features / part, settings.features)
        if part != "eval" and not {s for r in readers for s in r.speaker} & set(speakers):
            continue
        dataset, score, labels, alone = score_parts(scorer, readers, settings.evaluate.batch_size)
        scores[part] = ({"model": score, **alone}, labels, scored_speakers(readers, dataset))
    _, labels, speaker = scores["eval"]
    kept = {name: (np.concatenate([s[name][(lab == 1) & np.isin(spk, speakers)] for s, lab, spk in scores.values()]),
                   scores["eval"][0][name][(labels == 0) & ~np.isin(speaker, speakers)])
            for name in scores["eval"][0]}
    bonafide, spoof = kept.pop("model")
    if not len(bonafide) or not len(spoof):
        raise LosoError(f"loso: speakers {speakers} have {len(bonafide)} bona fide, eval {len(spoof)} spoofs to "
                        f"score against")
    return bonafide, spoof, model.threshold, kept


def source_figures(bonafide: np.ndarray, spoof: np.ndarray, threshold: float, alone: dict | None = None) -> dict:
    """EER, min DCF, the share of the bona fide rejected at the model's threshold, and the counts;
    with alone ({input: (bona fide, spoofs)}) also each fusion input's EER by itself (eer_INPUT)."""
    return {"eer": compute_eer(bonafide, spoof)[0], "min_dcf": min_dcf(bonafide, spoof),
            "rejected": float(np.mean(bonafide <= threshold)), "bonafide": int(len(bonafide)),
            "spoof": int(len(spoof)),
            **{f"eer_{name}": compute_eer(*pair)[0] for name, pair in (alone or {}).items()}}


def run_source(source: str, speakers: list[str], trained_on: set[str], params: Path, features: Path,
               out: Path, main_model: Path) -> dict:
    """Train without the source's speakers and score its bona fide. A source that training and dev
    never held (trained_on) needs no run of its own: the recipe's own model never met it."""
    recipe = heldout_recipe(params, speakers)
    made = made_from(recipe, features)
    out.mkdir(parents=True, exist_ok=True)
    result = finished(out / "result.json", made)
    if result is not None:
        return result
    started = time.perf_counter()
    own_run = bool(trained_on & set(speakers))
    if own_run:
        settings = train(recipe, features, out, f"loso {source}")
        model_path = out / "model.pt"
    else:
        settings, model_path = load_settings(params), main_model
    bonafide, spoof, threshold, alone = source_scores(model_path, features, settings, speakers)
    # each score by itself, for studies of the fusion (which input to trust on unfamiliar recordings)
    np.savez(out / "scores.npz", bonafide=bonafide, spoof=spoof,
             **{f"{name}_{kind}": pair[i] for name, pair in alone.items()
                for i, kind in enumerate(("bonafide", "spoof"))})
    return write_result(out / "result.json", {
        "source": source, "speakers": speakers, "own_run": own_run,
        **source_figures(bonafide, spoof, threshold, alone),
        "minutes": (time.perf_counter() - started) / 60, "made_from": made})


def run(params: Path, features: Path, out: Path, main_model: Path) -> dict:
    settings = load_settings(params)
    out.mkdir(parents=True, exist_ok=True)  # the stage's output, empty when off
    if not settings.loso.enabled:
        return {"enabled": False}
    speakers = corpus_speakers(features, settings)
    sources = source_speakers(settings.loso.sources, speakers)
    results = []
    for source, members in sources.items():
        print(f"loso: without {source} ({len(members)} speakers)", flush=True)
        result = run_source(source, members, speakers["train"] | speakers["dev"], params, features, out / source,
                            main_model)
        print(f"loso {source}: EER {result['eer']:.2%}, {result['rejected']:.1%} of its {result['bonafide']} "
              f"bona fide rejected ({result['minutes']:.1f} min)", flush=True)
        results.append(result)
    return {"enabled": True,
            "mean_eer": float(np.mean([r["eer"] for r in results])),
            "max_eer": float(np.max([r["eer"] for r in results])),
            "mean_rejected": float(np.mean([r["rejected"] for r in results])),
            "max_rejected": float(np.max([r["rejected"] for r in results])),
            "eer_per_source": {r["source"]: r["eer"] for r in results},
            "rejected_per_source": {r["source"]: r["rejected"] for r in results},
            "min_dcf_per_source": {r["source"]: r["min_dcf"] for r in results},
            **{f"{key}_per_source": {r["source"]: r[key] for r in results}
               for key in ("eer_network", "eer_statistics") if all(key in r for r in results)},
            "counts": {r["source"]: {"bonafide": r["bonafide"], "spoof": r["spoof"]} for r in results},
            "own_runs": [r["source"] for r in results if r["own_run"]],
            "minutes": sum(r["minutes"] for r in results)}
