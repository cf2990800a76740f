"""Does each group of hand-made statistics earn its place in the score fusion? (issue #33, item 4)

    python bench/statistics_groups.py [--params params.yaml] [--model models/model.pt]
                                      [--features data/features] [--manifest data/manifest]
                                      [--channels data/channels] [--out bench/results/statistics_groups]
                                      [--no-conditions]

The statistics model reads three groups of per-utterance statistics: the excitation summaries (17
numbers: medians and quartile ranges of the 4 residual statistics over voiced and unvoiced frames,
the voiced share), the median HNR (1) and the harmonic phase statistics (9). For each subset of
the groups this refits the statistics model exactly as train.py does (training utterances and
their augmented copies, the same C and sidedness) and reports, without training any network:

- **LOSO, statistics model alone**: for each recording source of loso.sources, the model is fitted
  without that source's speakers (as the loso stage's runs leave them out of train and dev), and
  the source's bona fide (every partition) are scored against the eval spoofs of other speakers;
  the share rejected is at the statistics' own EER threshold on the remaining dev.
- **Fused with the committed network** (its scores do not depend on the statistics): the fusion
  weights refitted on clean dev, then clean dev (in-sample for the weights), clean eval, each
  source whose speakers are in neither train nor dev (the main model never met it: the loso stage
  scores it with the main model too; in the mini corpus the Dutch dub, fillets_nl) and each
  channel condition of the channels stage's sample (data/channels/PART.tsv), with the share
  of bona fide rejected at the fused dev EER threshold.

Then the same figures, on every group, for a few other statistics models (linear; ten times the L2
penalty; the training bona fide weighted so that each source weighs the same) and for fusion
weights fitted on dev and its augmented copies (the training augmentation, features.augment, made
for dev): channels that clean dev lacks.

The channel conditions are extracted once (the channels stage's extraction, same seed) and their
network scores and statistics cached in --out/conditions/ (the statistics of every partition and
dev's copies likewise), so a rerun only refits: the first run takes about 20 minutes on 2 cores,
a rerun a few. Needs a recipe with all three groups (features.excitation, harmonicity,
harmonic_phase). Prints tables and writes --out/result.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features import N_PHASE_STATISTICS, N_UTTERANCE_STATISTICS  # noqa: E402

# Columns of features.fusion_statistics with every stream on: excitation, HNR, harmonic phase.
_E, _P = N_UTTERANCE_STATISTICS, N_PHASE_STATISTICS
GROUPS = {"excitation": slice(0, _E), "hnr": slice(_E, _E + 1), "phase": slice(_E + 1, _E + 1 + _P)}
# Other statistics models and fusion fits, each on every group (none is the recipe's).
VARIANTS = {"linear (degree 1)": {"degree": 1},
            "C 0.1 (10x the L2 penalty)": {"c": 0.1},
            "bona fide weighted per source": {"source_balanced": True},
            "fusion weights on dev and its copies": {"fusion_on_dev_copies": True}}


def columns(groups) -> np.ndarray:
    return np.concatenate([np.arange(GROUPS["phase"].stop)[GROUPS[g]] for g in groups])


def training_statistics(features: Path, settings) -> dict:
    """{statistics, labels, speakers, version} of the training items as train.py fits the
    statistics model on them: each item followed by its augmented copies (version 0 = the
    original, k = its k-th copy)."""
    from features.streams import fusion_streams
    from pipeline.data.dataset import ShardDataset
    from pipeline.data.shards import open_partition

    readers = open_partition(features / "train", settings.features, verify=False)
    dataset = ShardDataset(readers, settings.train.frames, train=True, streams=("subband",))
    speakers = np.concatenate([np.asarray(r.speaker) for r in readers])[dataset.items]
    return {"statistics": dataset.utterance_statistics(fusion_streams(settings.features), with_copies=True),
            "labels": dataset.copy_labels(), "speakers": np.repeat(speakers, 1 + dataset.copies),
            "version": np.concatenate([np.arange(1 + c) for c in dataset.copies])}


def network_part(scorer, readers, batch_size: int) -> dict:
    """{network: the network's scores, statistics, labels, speakers} of one folder of shards."""
    from pipeline.studies.runs import scored_speakers

    dataset = scorer.dataset(readers)
    network, labels = scorer.score_dataset(dataset, batch_size)
    return {"network": network, "statistics": dataset.utterance_statistics(scorer.fusion["streams"]),
            "labels": labels, "speakers": scored_speakers(readers, dataset)}


def cached(path: Path, make) -> dict:
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    result = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--manifest", default="data/manifest", help="the manifest stage's output (dev.tsv)")
    parser.add_argument("--channels", default="data/channels", help="the channels stage's sample manifests")
    parser.add_argument("--out", default="bench/results/statistics_groups")
    parser.add_argument("--no-conditions", action="store_true", help="skip the channel conditions")
    args = parser.parse_args()
    from features.streams import FUSION_STREAMS, fusion_streams
    from model.fusion import combine, fit_fusion, fit_statistics_model, statistics_logit
    from pipeline.data.extraction import extract_partition
    from pipeline.data.shards import file_sha256, open_partition
    from pipeline.scoring.metrics import compute_eer
    from pipeline.scoring.modelfile import ModelFile
    from pipeline.scoring.scorer import Scorer
    from pipeline.settings import load_settings
    from pipeline.studies.loso import source_speakers

    settings = load_settings(ROOT / args.params)
    ms = settings.model
    features, out = ROOT / args.features, ROOT / args.out
    if fusion_streams(settings.features) != tuple(FUSION_STREAMS):
        sys.exit(f"{args.params}: the statistics groups are compared with all three on "
                 f"(features.excitation, harmonicity, harmonic_phase); this recipe has "
                 f"{fusion_streams(settings.features)}")
    for part in ("dev", "eval"):
        if not args.no_conditions and not (ROOT / args.channels / f"{part}.tsv").exists():
            sys.exit(f"{ROOT / args.channels / f'{part}.tsv'}: no channels sample (run the channels stage, "
                     f"or pass --no-conditions)")
    # the caches hold the network's scores and the statistics: made again for another model, other
    # shards or another channel draw
    made = {"model": file_sha256(ROOT / args.model),
            "features": {p: file_sha256(features / p / "index.json") for p in ("train", "dev", "eval")},
            "channels": None if args.no_conditions else {
                "seed": settings.channels.seed,
                "sample": {p: file_sha256(ROOT / args.channels / f"{p}.tsv") for p in ("dev", "eval")}}}
    if (out / "made_from.json").exists() and json.loads((out / "made_from.json").read_text()) != made:
        print(f"{out}: caches of another model or other shards, made again", flush=True)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "made_from.json").write_text(json.dumps(made, indent=1))
    started = time.perf_counter()
    train = cached(out / "train.npz", lambda: training_statistics(features, settings))
    model = ModelFile.load(ROOT / args.model)
    scorer = Scorer.of(model)
    parts = {part: cached(out / f"{part}.npz", lambda part=part: network_part(
        scorer, open_partition(features / part, settings.features, verify=False), settings.evaluate.batch_size))
        for part in ("dev", "eval")}
    print(f"statistics read ({time.perf_counter() - started:.0f} s)", flush=True)

    conditions = {}
    if not args.no_conditions:
        for condition in settings.channels.conditions:
            def make(condition=condition):
                result = {}
                for part in ("dev", "eval"):
                    shards = out / "shards" / condition / part
                    extract_partition(ROOT / args.channels / f"{part}.tsv", shards, settings.features,
                                      settings.extract, progress=False, channel=(condition, settings.channels.seed))
                    scored = network_part(scorer, open_partition(shards, settings.features, verify=False),
                                          settings.evaluate.batch_size)
                    result.update({f"{part}_{key}": value for key, value in scored.items()})
                shutil.rmtree(out / "shards" / condition)  # what is kept is in the cache
                return result
            t = time.perf_counter()
            conditions[condition] = cached(out / "conditions" / f"{condition}.npz", make)
            print(f"condition {condition} ({time.perf_counter() - t:.0f} s)", flush=True)

    everyone = set(train["speakers"]) | set(parts["dev"]["speakers"]) | set(parts["eval"]["speakers"])
    sources = source_speakers(settings.loso.sources, {"all": everyone})
    source_of = {speaker: source for source, members in sources.items() for speaker in members}
    heard = set(train["speakers"]) | set(parts["dev"]["speakers"])
    unheard = [source for source, members in sources.items() if not heard & set(members)]
    dev, ev = parts["dev"], parts["eval"]

    def source_balanced(speakers, labels):
        """Row weights under which each source's bona fide weigh the same in all (spoofs as they are)."""
        weight = np.ones(len(labels))
        origin = np.array([source_of.get(s, "") for s in speakers])
        bona = labels == 1
        for source in np.unique(origin[bona]):
            chosen = bona & (origin == source)
            weight[chosen] = bona.sum() / (len(np.unique(origin[bona])) * chosen.sum())
        return weight

    def fit(groups, keep, variant):
        cols = columns(groups)
        extra = {"degree": variant.get("degree", 2)}
        if variant.get("source_balanced"):
            extra["sample_weight"] = source_balanced(train["speakers"][keep], train["labels"][keep])
        return cols, fit_statistics_model(train["statistics"][keep][:, cols], train["labels"][keep],
                                          variant.get("c", ms.excitation_fusion_c), ms.excitation_fusion_one_sided,
                                          **extra)

    def dev_copies():
        """Dev with the training augmentation's copies (features.augment), every record an item."""
        def make():
            shards = out / "shards" / "dev_copies"
            extract_partition(ROOT / args.manifest / "dev.tsv", shards,
                              settings.features, settings.extract, progress=False, augment=settings.augment)
            readers = open_partition(shards, settings.features, verify=False)
            dataset = scorer.dataset(readers)
            dataset.items = np.arange(sum(len(r) for r in readers))  # the copies as items of their own
            dataset.labels = np.concatenate([r.label for r in readers]).astype(np.int64)
            dataset.copies = np.zeros(len(dataset.items), np.int64)
            network, labels = scorer.score_dataset(dataset, settings.evaluate.batch_size)
            result = {"network": network, "labels": labels,
                      "statistics": dataset.utterance_statistics(scorer.fusion["streams"])}
            shutil.rmtree(shards)
            return result
        return cached(out / "dev_copies.npz", make)

    def train_originals(speakers):
        """The statistics of these speakers' training bona fide: the originals only (an augmented copy
        is not a recording of the source)."""
        chosen = (train["labels"] == 1) & np.isin(train["speakers"], speakers) & (train["version"] == 0)
        return train["statistics"][chosen]

    def row(groups, variant):
        result = {"loso": {}}
        # LOSO, statistics model alone
        for source, speakers in sources.items():
            cols, sm = fit(groups, ~np.isin(train["speakers"], speakers), variant)
            held = [p["statistics"][(p["labels"] == 1) & np.isin(p["speakers"], speakers)] for p in (dev, ev)]
            bona = statistics_logit(sm, np.concatenate(held + [train_originals(speakers)])[:, cols])
            others = (ev["labels"] == 0) & ~np.isin(ev["speakers"], speakers)
            spoof = statistics_logit(sm, ev["statistics"][others][:, cols])
            dev_keep = ~np.isin(dev["speakers"], speakers)
            d = statistics_logit(sm, dev["statistics"][dev_keep][:, cols])
            threshold = compute_eer(d[dev["labels"][dev_keep] == 1], d[dev["labels"][dev_keep] == 0])[1]
            result["loso"][source] = {"eer": compute_eer(bona, spoof)[0], "rejected": float(np.mean(bona <= threshold)),
                                      "bonafide": int(len(bona))}
        result["loso_mean_eer"] = float(np.mean([r["eer"] for r in result["loso"].values()]))
        result["loso_mean_rejected"] = float(np.mean([r["rejected"] for r in result["loso"].values()]))
        # fused with the committed network: weights refitted on clean dev (or dev and its copies)
        cols, sm = fit(groups, np.ones(len(train["labels"]), bool), variant)
        dev_logit = statistics_logit(sm, dev["statistics"][:, cols])
        if variant.get("fusion_on_dev_copies"):
            fitted = dev_copies()
            weights = fit_fusion(fitted["network"], statistics_logit(sm, fitted["statistics"][:, cols]),
                                 fitted["labels"])
        else:
            weights = fit_fusion(dev["network"], dev_logit, dev["labels"])
        fused_dev = combine(weights, dev["network"], dev_logit)
        threshold = compute_eer(fused_dev[dev["labels"] == 1], fused_dev[dev["labels"] == 0])[1]

        def figures(network, statistics, labels, bona=None, spoof=None):
            fused = combine(weights, network, statistics_logit(sm, statistics[:, cols]))
            bona = labels == 1 if bona is None else bona
            spoof = labels == 0 if spoof is None else spoof
            return {"eer": compute_eer(fused[bona], fused[spoof])[0],
                    "rejected": float(np.mean(fused[bona] <= threshold))}

        result["weights"] = weights
        result["dev"] = figures(dev["network"], dev["statistics"], dev["labels"])
        result["eval"] = figures(ev["network"], ev["statistics"], ev["labels"])
        for source in unheard:
            held = np.isin(ev["speakers"], sources[source])
            result[source] = figures(ev["network"], ev["statistics"], ev["labels"], held & (ev["labels"] == 1),
                                     ~held & (ev["labels"] == 0))
        result["conditions"] = {
            condition: {part: figures(data[f"{part}_network"], data[f"{part}_statistics"], data[f"{part}_labels"])
                        for part in ("dev", "eval")} for condition, data in conditions.items()}
        return result

    subsets = [tuple(g for g in GROUPS if g in s) for n in (1, 2, 3) for s in combinations(GROUPS, n)]
    results = {"+".join(groups): row(groups, {}) for groups in subsets}
    every = tuple(GROUPS)
    for name, variant in VARIANTS.items():
        results[name] = row(every, variant)

    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(results, indent=1))
    print("\nLOSO, statistics model alone: EER (bona fide rejected at its dev EER threshold)")
    print("subset".ljust(40) + "".join(s[:11].rjust(16) for s in sources) + "mean".rjust(16))
    for name, result in results.items():
        print(name.ljust(40) + "".join(f"{r['eer']:6.1%} ({r['rejected']:5.1%})".rjust(16)
                                       for r in result["loso"].values())
              + f"{result['loso_mean_eer']:6.1%} ({result['loso_mean_rejected']:5.1%})".rjust(16))
    print("\nFused with the committed network (weights refitted on clean dev): EER (rejected)")
    heads = ["dev", "eval", *unheard] + [f"{c} {p}" for c in conditions for p in ("dev", "eval")]
    print("subset".ljust(40) + "".join(h.rjust(16) for h in heads))
    for name, result in results.items():
        cells = [result["dev"], result["eval"], *(result[s] for s in unheard),
                 *(result["conditions"][c][p] for c in conditions for p in ("dev", "eval"))]
        print(name.ljust(40) + "".join(f"{c['eer']:6.1%} ({c['rejected']:5.1%})".rjust(16) for c in cells))
    print(f"\n{time.perf_counter() - started:.0f} s; {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
