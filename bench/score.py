"""Scoring cost of the two evaluation inputs (train.eval_input) on a partition's shards.

    python bench/score.py [--model models/model.pt] [--partition dev] [--repeats 1]

Scores the whole partition through the model's Scorer (pipeline/scoring/scorer.py), which training's dev
scoring and the evaluate stage use, once with the first-crop input and once with whole utterances (batches
of evaluate.batch_size; whole ones grouped by input length), and reports utterances/s, audio seconds scored per
wall second, and the whole/crop time ratio. Writes bench/results/score.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import torch

    from pipeline.data.shards import open_partition
    from pipeline.scoring.modelfile import ModelFile
    from pipeline.scoring.scorer import Scorer, resolve_device
    from pipeline.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models/model.pt"))
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--features", default=str(ROOT / "data/features"))
    parser.add_argument("--partition", default="dev")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    settings = load_settings(args.params)
    model_file = ModelFile.load(Path(args.model))
    device = resolve_device(settings.train.device)
    readers = open_partition(Path(args.features) / args.partition, settings.features)
    frames = sum(int(r.offsets[-1]) for r in readers)
    hop_s = settings.features.hop_length / settings.features.sample_rate
    rows = {}
    for rule in ("crop", "whole"):
        # the network's scores, as the model's Scorer gives them under each evaluation input rule
        scorer = Scorer.of(dataclasses.replace(model_file, eval_input=rule), device=device)
        dataset = scorer.dataset(readers)
        start = time.perf_counter()
        for _ in range(args.repeats):
            scorer.score_dataset(dataset, settings.evaluate.batch_size)
        seconds = (time.perf_counter() - start) / args.repeats
        audio = frames * hop_s if rule == "whole" else sum(
            min(int(r.offsets[i + 1] - r.offsets[i]), model_file.frames) for r in readers for i in range(len(r))) * hop_s
        rows[rule] = {"seconds": seconds, "utterances_per_s": len(dataset) / seconds,
                      "audio_seconds_per_s": audio / seconds}
        print(f"{rule:>5}: {seconds:7.1f} s for {len(dataset)} utterances ({len(dataset) / seconds:6.1f} /s, "
              f"{audio / seconds:6.1f} s of audio per s)")
    ratio = rows["whole"]["seconds"] / rows["crop"]["seconds"]
    print(f"whole / crop time: {ratio:.2f}x")
    out = ROOT / "bench/results/score.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"partition": args.partition, "device": str(device),
                               "threads": torch.get_num_threads(), "crop_frames": model_file.frames,
                               "frames_in_partition": frames, **rows, "whole_over_crop": ratio},
                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
