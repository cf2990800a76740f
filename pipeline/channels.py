"""Stage `channels`: dev and eval scored again after each channel condition real audio goes through.

    python -m pipeline.channels [--params params.yaml] [--model models/model.pt]
                                [--manifest data/manifest] [--features data/features]
                                [--out data/channels] [--metrics metrics/channels.json]

For each condition of channels.conditions (features/channels.py: low-rate MP3 and Opus, GSM,
G.711, noise at 5-20 dB SNR, reverberation, a random equaliser and band limit, level change and
clipping), the dev and eval utterances go through it (each its own draw, from channels.seed
and its id), are extracted as the features stage extracts (in parallel) and scored by the model:
every bona fide and channels.spoofs_per_attack spoofs of each attack (a seeded sample, the same
for every condition and for the clean figures; data/channels/PART.tsv lists it).
metrics/channels.json: per partition and condition the EER, the share of bona fide rejected at the
model's threshold and the EER's ratio to the clean one; with a score fusion also the EER of the
network's score alone and of the statistics model's alone (which of the two a channel moves). A
finished condition (the same model, settings and manifests) is not scored again when the stage is
rerun. channels.enabled false: the file says the stage is off.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.settings import load_settings
from pipeline.studies.channels import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--manifest", default="data/manifest")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out", default="data/channels")
    parser.add_argument("--metrics", default="metrics/channels.json")
    args = parser.parse_args(argv)

    def body() -> None:
        summary = run(load_settings(args.params), Path(args.model), Path(args.manifest), Path(args.features),
                      Path(args.out))
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics).write_text(json.dumps(summary, indent=2) + "\n")
        if not summary["enabled"]:
            print("channels: off (channels.enabled: false); metrics/channels.json says so")
            return
        for part, eers in summary["eer"].items():
            print(f"channels {part}: " + ", ".join(f"{c} {e:.2%}" for c, e in eers.items()))
    return run_stage("channels", body)


if __name__ == "__main__":
    sys.exit(main())
