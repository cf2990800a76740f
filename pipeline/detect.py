"""Score audio files with a trained model: is each one bona fide or spoofed?

    python -m pipeline.detect --model models/model.pt some.wav other.flac folder/ [--out scores.tsv] [--resume]
    python -m pipeline.detect --model models/model.pt --protocol PROTOCOL --root FLAC_FOLDER
    python -m pipeline.detect --model models/model.onnx ...     # a model from pipeline.export

Files may be any format soundfile reads, any sample rate, mono or stereo; folders are searched
recursively for audio files. Features are computed by the same code as the pipeline, with the
settings stored in the model, in worker processes (--workers, one thread each), each of which
extracts a few files at a time and scores them in batches of equal input length. Rows are
printed, and appended to --out, as soon as they are scored; --resume skips the files --out
already holds. Each row has the raw score (the
network's, or its fusion with the excitation statistics' model when the model file has one), the
calibrated score (LLR, natural log, from the calibration fitted on dev and stored in the model)
and the probability of bona fide at the stated prior (--prior-spoof, default 0.05 as ASVspoof 5).
The decision is the minimum-cost one for the ASVspoof 5 costs (a missed bona fide costs 1, an
accepted spoof 10) at that prior: bona fide when llr >= log(10 * 0.05 / 0.95); --threshold T
decides by score > T instead (a model file without a calibration: its dev EER threshold). A
file that cannot be used is reported with its reason and the rest are still scored; the exit
status is 1 if any file failed, 2 if the model, the protocol or --out cannot be used.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.cli import run_stage
from pipeline.data.protocol import parse_protocol
from pipeline.inference.detector import Detector
from pipeline.scoring.metrics import DCF_COSTS, ScoreError, compute_eer
from pipeline.scoring.scorer import available_cores, tune_allocator

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd",
                  ".w64", ".caf", ".rf64"}
HEADER = "path\tscore\tllr\tp_bonafide\tdecision\n"


def expand(paths: list[str]) -> list[Path]:
    """Files as given; folders searched recursively for audio files, in sorted order."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            out.append(p)
    return out


def read_done(out: Path) -> dict[str, float]:
    """Scores already in an --out file (path -> score), for --resume."""
    done = {}
    if out.is_file():
        for line in out.read_text().splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) in (3, 5):  # rows of this version, or of the earlier path/score/decision
                done[fields[0]] = float(fields[1])
    return done

def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt",
                        help="a model file from training, or a .onnx from pipeline.export (scored with onnxruntime)")
    parser.add_argument("paths", nargs="*", help="audio files or folders")
    parser.add_argument("--out", help="write a TSV (path, score, decision) here, row by row")
    parser.add_argument("--resume", action="store_true", help="skip the files --out already holds")
    parser.add_argument("--protocol", help="an ASVspoof protocol: score its utterances and print the EER")
    parser.add_argument("--root", help="with --protocol: the folder holding <UTT>.flac")
    parser.add_argument("--workers", type=int, default=available_cores(),
                        help="feature extraction processes (0 = in this process); default: the cores")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="files per forward pass at most (fewer for long files: about 2,048 frames a batch)")
    parser.add_argument("--prior-spoof", type=float, default=DCF_COSTS["Pspoof"],
                        help="prior probability of a spoof for the probability and the decision (default 0.05)")
    parser.add_argument("--threshold", type=float, help="decide bona fide when the raw score is above this")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.protocol) != bool(args.root):
        parser.error("--protocol and --root go together")
    if not args.paths and not args.protocol:
        parser.error("give audio files or folders, or --protocol and --root")
    if args.resume and not args.out:
        parser.error("--resume needs --out")
    if not 0 < args.prior_spoof < 1:
        parser.error("--prior-spoof must be in (0, 1)")
    return args


def open_detector(args) -> tuple[Detector, list[Path], dict[str, int]]:
    """The detector with its decision rule, the files to score and, with --protocol, their labels."""
    detector = Detector(Path(args.model), args.batch_size)
    print(f"detect: {detector.set_rule(args.prior_spoof, args.threshold)}", file=sys.stderr)
    labels = {}
    paths = expand(args.paths)
    if args.protocol:
        utterances, _ = parse_protocol(args.protocol)
        for utt in utterances:
            path = Path(args.root) / f"{utt.utt_id}.flac"
            labels[str(path)] = utt.label
            paths.append(path)
    return detector, paths, labels


def score_files(detector: Detector, todo: list[Path], args, width: int, out) -> tuple[dict, list]:
    """Score `todo`, printing each row (unless --protocol) and appending it to `out` (or None) as
    soon as it is scored. Returns (path -> score, [(path, reason)] of the files that failed)."""
    scores, failures = {}, []
    if not args.protocol:
        print(f"{'path':<{width}}  {'score':>9}  {'llr':>8}  {'p_bonafide':>10}  decision", flush=True)
    for path, score, reason in detector.stream(todo, args.workers, progress=not args.no_progress):
        if reason is not None:
            failures.append((path, reason))
            tqdm.write(f"detect: {path}: {reason}", file=sys.stderr)
            continue
        scores[str(path)] = score
        llr, p, decision = detector.judge(score)
        llr_text, p_text = ("-", "-") if llr is None else (f"{llr:.4f}", f"{p:.4f}")
        if out is not None:
            out.write(f"{path}\t{score:.6f}\t{llr_text}\t{p_text}\t{decision}\n")
            out.flush()
        if not args.protocol:
            print(f"{str(path):<{width}}  {score:9.4f}  {llr_text:>8}  {p_text:>10}  {decision}", flush=True)
    return scores, failures


def protocol_eer(labels: dict[str, int], scores: dict[str, float]) -> str | None:
    """Prints the EER of the protocol's scored utterances; returns why not where there is none."""
    scored = [p for p in labels if p in scores]
    values = np.array([scores[p] for p in scored])
    truth = np.array([labels[p] for p in scored])
    try:
        eer, _ = compute_eer(values[truth == 1], values[truth == 0])
    except ScoreError as err:
        print(f"detect: cannot compute the EER: {err}", file=sys.stderr)
        return str(err)
    print(f"{len(scored)} utterances scored: EER {eer:.2%}")
    return None


def detect(args) -> int:
    """Score the files args names; 1 if any could not be scored."""
    detector, paths, labels = open_detector(args)
    done = read_done(Path(args.out)) if args.resume else {}
    todo = [p for p in paths if str(p) not in done]
    if done:
        print(f"detect: {len(paths) - len(todo)} of {len(paths)} files already in {args.out}; "
              f"scoring the other {len(todo)}", file=sys.stderr)
    out = None
    if args.out:
        fresh = not (args.resume and Path(args.out).is_file())
        out = open(args.out, "w" if fresh else "a")
        if fresh:
            out.write(HEADER)
    try:
        scores, failures = score_files(detector, todo, args, max((len(str(p)) for p in paths), default=4), out)
    finally:
        if out is not None:
            out.close()
    if args.protocol:
        problem = protocol_eer(labels, {**done, **scores})
        if problem is not None:
            failures.append((args.protocol, problem))
    if failures:
        print(f"detect: {len(failures)} of {len(paths)} files could not be scored (listed above)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_arguments(argv)
    tune_allocator()
    # A model, protocol or output that cannot be used stops everything (2); files that cannot be
    # scored are error rows (1).
    return run_stage("detect", lambda: detect(args), failure=2)

if __name__ == "__main__":
    sys.exit(main())
