"""Score audio files with a trained model: is each one bona fide or spoofed?

    python -m pipeline.detect --model models/model.pt some.wav other.flac folder/ [--out scores.tsv]
    python -m pipeline.detect --model models/model.pt --protocol PROTOCOL --root FLAC_FOLDER

Files may be any format soundfile reads, any sample rate, mono or stereo; folders are searched
recursively for audio files. Features are computed by the same code as the pipeline, with the
settings stored in the model. The decision threshold is the model's dev EER threshold. A file
that cannot be used is reported with its reason and the rest are still scored; the exit status
is 1 if any file failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import features
from pipeline.dataset import eval_frames, model_input
from pipeline.metrics import ScoreError, compute_eer
from pipeline.protocol import parse_protocol
from pipeline.scoring import load_model, score_inputs, scoring_precision
from pipeline.settings import FeatureSettings

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd",
                  ".w64", ".caf", ".rf64"}


class Detector:
    """A loaded model with the feature settings it was trained on."""

    def __init__(self, model_path: Path):
        self.model, state = load_model(model_path)
        self.feature_settings = FeatureSettings(**state["feature_settings"])
        self.f0_channel = state["model_settings"]["f0_channel"]
        self.frames = state["frames"]
        self.eval_input = state.get("eval_input", "crop")  # model files from before the setting: crop
        self.threshold = state["threshold"]
        # The model file's precision is a hint: bf16 only where this CPU runs it natively.
        self.precision = scoring_precision(state.get("precision", "fp32"), torch.device("cpu"))

    def score(self, path) -> float:
        fs = self.feature_settings
        waveform = features.load_audio(path, fs.sample_rate)
        subband, f0 = features.extract(waveform, fs.sample_rate, fs)
        x = model_input(*eval_frames(subband, f0, self.frames, self.eval_input), self.f0_channel)[None]
        return float(score_inputs(self.model, x, torch.device("cpu"), self.precision)[0])


def expand(paths: list[str]) -> list[Path]:
    """Files as given; folders searched recursively for audio files, in sorted order."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            out.append(p)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("paths", nargs="*", help="audio files or folders")
    parser.add_argument("--out", help="write a TSV (path, score, decision) here")
    parser.add_argument("--protocol", help="an ASVspoof protocol: score its utterances and print the EER")
    parser.add_argument("--root", help="with --protocol: the folder holding <UTT>.flac")
    args = parser.parse_args(argv)
    if bool(args.protocol) != bool(args.root):
        parser.error("--protocol and --root go together")
    if not args.paths and not args.protocol:
        parser.error("give audio files or folders, or --protocol and --root")
    try:
        detector = Detector(Path(args.model))
        labels = {}
        paths = expand(args.paths)
        if args.protocol:
            utterances, _ = parse_protocol(args.protocol)
            for utt in utterances:
                path = Path(args.root) / f"{utt.utt_id}.flac"
                labels[path] = utt.label
                paths.append(path)
    except (ValueError, OSError) as err:  # CheckpointError and ProtocolError are ValueErrors
        print(f"detect: {err}", file=sys.stderr)
        return 2

    rows, failures = [], []
    for path in paths:
        try:
            score = detector.score(path)
        except features.AudioError as err:
            failures.append((path, err.reason))
            print(f"detect: {path}: {err.reason}", file=sys.stderr)
            continue
        rows.append((path, score, "bonafide" if score >= detector.threshold else "spoof"))

    if not args.protocol:
        width = max((len(str(p)) for p, _, _ in rows), default=4)
        print(f"{'path':<{width}}  {'score':>9}  decision")
        for path, score, decision in rows:
            print(f"{str(path):<{width}}  {score:9.4f}  {decision}")
    if args.out:
        with open(args.out, "w") as f:
            f.write("path\tscore\tdecision\n")
            f.writelines(f"{p}\t{s:.6f}\t{d}\n" for p, s, d in rows)
    if args.protocol:
        scores = np.array([s for _, s, _ in rows])
        truth = np.array([labels[p] for p, _, _ in rows])
        try:
            eer, _ = compute_eer(scores[truth == 1], scores[truth == 0])
            print(f"{len(rows)} utterances scored: EER {eer:.2%}")
        except ScoreError as err:
            print(f"detect: cannot compute the EER: {err}", file=sys.stderr)
            failures.append((args.protocol, str(err)))
    if failures:
        print(f"detect: {len(failures)} of {len(paths)} files could not be scored (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
