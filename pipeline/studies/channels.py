"""Dev and eval scored again after each channel condition: how far a channel moves the figures.

The `channels` command (pipeline/channels.py) runs this; see its docstring.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline.data.extraction import extract_partition
from pipeline.data.manifests import ManifestRow, read_manifest, write_manifest
from pipeline.data.shards import file_sha256, open_partition
from pipeline.scoring.metrics import compute_eer
from pipeline.scoring.modelfile import ModelFile
from pipeline.scoring.scorer import Scorer, resolve_device
from pipeline.settings import Settings
from pipeline.studies.runs import finished, score_parts, scored_values, write_result

PARTITIONS = ("dev", "eval")
FIGURES_VERSION = 2  # 2: with each fusion input's EER alone; a condition saved by version 1 is scored again


def sample(rows: list[ManifestRow], spoofs_per_attack: int, seed: int) -> list[ManifestRow]:
    """Every bona fide row and, of each attack, the spoofs_per_attack spoofs whose ids come first
    in an order drawn from the seed (0 = every spoof); in manifest order. Each spoof's rank in the
    draw depends only on the seed and its id, not on the manifest's order."""
    if spoofs_per_attack <= 0:
        return list(rows)
    by_attack: dict[str, list[str]] = {}
    for row in rows:
        if row.utt.label == 0:
            by_attack.setdefault(row.utt.attack, []).append(row.utt.utt_id)

    def rank(utt: str) -> str:
        return hashlib.sha256(f"{seed}:{utt}".encode()).hexdigest()

    kept = {utt for ids in by_attack.values() for utt in sorted(ids, key=rank)[:spoofs_per_attack]}
    return [row for row in rows if row.utt.label == 1 or row.utt.utt_id in kept]


def figures(scorer: Scorer, features: Path, settings: Settings, threshold: float,
            keep: set[str] | None = None) -> dict:
    """EER and the share of bona fide rejected at the model's threshold, of one folder of shards
    (only the utterances in keep, when given); with a score fusion also the EER of each of its two
    inputs alone (eer_network: the network's score, eer_statistics: the statistics model's
    log-odds), which tells which one a channel moves."""
    readers = open_partition(features, settings.features)
    dataset, scores, labels, alone = score_parts(scorer, readers, settings.evaluate.batch_size)
    chosen = np.ones(len(scores), bool)
    if keep is not None:
        chosen = np.isin(scored_values(readers, dataset, "utt_id"), list(keep))
    bonafide, spoof = scores[chosen & (labels == 1)], scores[chosen & (labels == 0)]
    result = {"eer": compute_eer(bonafide, spoof)[0], "rejected": float(np.mean(bonafide <= threshold)),
              "bonafide": int(len(bonafide)), "spoof": int(len(spoof))}
    for name, values in alone.items():
        result[f"eer_{name}"] = compute_eer(values[chosen & (labels == 1)], values[chosen & (labels == 0)])[0]
    return result


def condition_figures(condition: str, scorer: Scorer, threshold: float, manifests: dict[str, Path], out: Path,
                      settings: Settings, made_from: dict) -> dict:
    """One condition's figures per partition: the utterances of manifests[part] (the sample) are
    extracted into out/<condition>/, scored, then removed; out/<condition>.json keeps the figures,
    so a rerun of the same model, settings and sample skips the condition."""
    done = out / f"{condition}.json"
    kept = finished(done, made_from)
    if kept is not None:
        return kept["figures"]
    started = time.perf_counter()
    result = {}
    for part in PARTITIONS:
        shards = out / condition / part
        extract_partition(manifests[part], shards, settings.features, settings.extract,
                          channel=(condition, settings.channels.seed))
        result[part] = figures(scorer, shards, settings, threshold)
    shutil.rmtree(out / condition)
    write_result(done, {"figures": result, "minutes": (time.perf_counter() - started) / 60, "made_from": made_from})
    return result


def run(settings: Settings, model_path: Path, manifest: Path, features: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if not settings.channels.enabled:
        return {"enabled": False}
    model = ModelFile.load(model_path)
    scorer = Scorer.of(model, device=resolve_device(settings.train.device))
    # the sample of each partition scored under every condition, and clean for the ratios
    manifests, keep = {}, {}
    for part in PARTITIONS:
        rows = sample(read_manifest(manifest / f"{part}.tsv"), settings.channels.spoofs_per_attack,
                      settings.channels.seed)
        manifests[part] = out / f"{part}.tsv"
        write_manifest(rows, manifests[part])
        keep[part] = {row.utt.utt_id for row in rows}
    made_from = {"figures": FIGURES_VERSION, "model_sha256": file_sha256(model_path),
                 "features": settings.features.fingerprint(),
                 "seed": settings.channels.seed,
                 "manifests": {p: manifests[p].read_text() for p in PARTITIONS}}
    by_condition = {"clean": {p: figures(scorer, features / p, settings, model.threshold, keep[p])
                              for p in PARTITIONS}}
    for condition in settings.channels.conditions:
        print(f"channels: {condition}", flush=True)
        by_condition[condition] = condition_figures(condition, scorer, model.threshold, manifests, out, settings,
                                                    made_from)
    ratio = {p: {c: by_condition[c][p]["eer"] / max(by_condition["clean"][p]["eer"], 1e-9)
                 for c in settings.channels.conditions} for p in PARTITIONS}
    return {"enabled": True,
            "eer": {p: {c: f[p]["eer"] for c, f in by_condition.items()} for p in PARTITIONS},
            "rejected": {p: {c: f[p]["rejected"] for c, f in by_condition.items()} for p in PARTITIONS},
            **{key: {p: {c: f[p][key] for c, f in by_condition.items()} for p in PARTITIONS}
               for key in ("eer_network", "eer_statistics") if key in by_condition["clean"]["dev"]},
            "eer_ratio_to_clean": ratio,
            "max_eer_ratio": {p: max(ratio[p].values(), default=1.0) for p in PARTITIONS},
            "counts": {p: {"bonafide": by_condition["clean"][p]["bonafide"], "spoof": by_condition["clean"][p]["spoof"]}
                       for p in PARTITIONS}}
