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
status is 1 if any file failed.
"""
from __future__ import annotations

import argparse
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import features
from model.fusion import fused_scores, statistics_rows
from pipeline.dataset import eval_frames, eval_length, length_batches, model_input
from pipeline.calibration import bonafide_probability, to_llr
from pipeline.metrics import DCF_COSTS, ScoreError, bayes_threshold, compute_eer
from pipeline.protocol import parse_protocol
from pipeline.scoring import (CPU_BATCH_FRAMES, available_cores, load_model, score_inputs, scoring_precision,
                              tune_allocator)
from pipeline.settings import FeatureSettings

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd",
                  ".w64", ".caf", ".rf64"}
HEADER = "path\tscore\tllr\tp_bonafide\tdecision\n"
# A file whose features are finite but whose score is not (a damaged model file): an error row,
# never a NaN written as a decision.
NON_FINITE = "the model gave a non-finite score (is the model file damaged?)"
# Files a worker extracts and scores per task: enough for files of equal length to share a
# batch, few enough that rows reach --out every second or two.
CHUNK = 16


def file_features(path: Path, settings: FeatureSettings, with_f0: bool):
    """(path, subband, f0, None), or (path, None, None, reason) for a file that cannot be used.
    Runs in the worker processes."""
    try:
        waveform = features.load_audio(path, settings.sample_rate)
        subband, f0 = features.extract(waveform, settings.sample_rate, settings, with_f0=with_f0,
                                       source=path)
    except features.AudioError as err:
        return path, None, None, err.reason
    return path, subband, f0, None


class Detector:
    """A loaded model with the feature settings it was trained on."""

    def __init__(self, model_path: Path, batch_size: int = 32):
        self.onnx = None
        self.model_path = Path(model_path)
        if Path(model_path).suffix == ".onnx":  # exported by pipeline.export: onnxruntime, no torch model
            from pipeline.export import OnnxScorer, load_export
            state = load_export(model_path)
            self.model, self.onnx = None, OnnxScorer(model_path)
            self.f0_channel = state["f0_channel"]
        else:
            self.model, state = load_model(model_path)
            self.f0_channel = state["model_settings"]["f0_channel"]
        self.feature_settings = FeatureSettings.from_stored(state["feature_settings"])
        self.frames = state["frames"]
        self.eval_input = state.get("eval_input", "crop")  # model files from before the setting: crop
        self.threshold = state["threshold"]
        self.calibration = state.get("calibration")  # model files from before calibration: None
        self.fusion = state.get("fusion")  # the excitation statistics' score fusion, or None
        # F0 is computed only where it is used: the F0 channel, or the fusion's voiced frames.
        self.with_f0 = bool(self.f0_channel or self.fusion)
        self.set_rule()
        # The model file's precision is a hint: bf16 only where this CPU runs it natively.
        self.precision = scoring_precision(state.get("precision", "fp32"), torch.device("cpu"))
        self.batch_size = batch_size

    def set_rule(self, prior_spoof: float = DCF_COSTS["Pspoof"], threshold: float | None = None) -> str:
        """Choose the decision rule; returns it in words."""
        self.prior_spoof, self.user_threshold = prior_spoof, threshold
        if threshold is not None:
            return f"bona fide when score > {threshold:g} (--threshold)"
        if self.calibration is None:
            return (f"bona fide when score > {self.threshold:.4f} "
                    f"(the dev EER threshold; the model has no calibration)")
        self.llr_threshold = bayes_threshold({**DCF_COSTS, "Pspoof": prior_spoof})
        return (f"bona fide when LLR >= {self.llr_threshold:.3f} (minimum cost at P(spoof) {prior_spoof:g}, "
                f"Cmiss {DCF_COSTS['Cmiss']:g}, Cfa {DCF_COSTS['Cfa']:g})")

    def judge(self, score: float) -> tuple[float | None, float | None, str]:
        """(LLR, P(bona fide) at the prior, decision) of a raw score."""
        llr = p = None
        if self.calibration is not None:
            llr = float(to_llr(self.calibration, score))
            p = float(bonafide_probability(llr, 1 - self.prior_spoof))
        if self.user_threshold is not None:
            bonafide = score > self.user_threshold
        elif llr is not None:
            bonafide = llr >= self.llr_threshold
        else:
            bonafide = score > self.threshold
        return llr, p, "bonafide" if bonafide else "spoof"

    def input_of(self, subband, f0) -> torch.Tensor:
        return model_input(*eval_frames(subband, f0, self.frames, self.eval_input), self.f0_channel)

    def statistics_of(self, subband, f0):
        """The utterance statistics the score fusion reads (None without a fusion)."""
        if not self.fusion:
            return None
        return features.fusion_statistics(subband, f0, *statistics_rows(self.fusion))

    def score_batch(self, inputs: list[torch.Tensor], statistics: list | None = None) -> list[float]:
        """Scores of inputs of equal length, in one forward pass (fused with their utterance
        statistics when the model has a score fusion)."""
        if self.onnx is not None:
            scores = self.onnx(torch.stack(inputs)).numpy()
        else:
            scores = score_inputs(self.model, torch.stack(inputs), torch.device("cpu"), self.precision).numpy()
        if self.fusion:
            if statistics is None or any(u is None for u in statistics):
                raise ValueError("this model fuses its score with the utterance statistics: pass "
                                 "statistics_of(subband, f0) of each input")
            scores = fused_scores(self.fusion, scores, np.stack(statistics))
        return scores.tolist()

    def score(self, path) -> float:
        """One file's score (raises features.AudioError for a file that cannot be used)."""
        _, subband, f0, reason = file_features(Path(path), self.feature_settings, self.with_f0)
        if reason is not None:
            raise features.AudioError(path, reason)
        score = self.score_batch([self.input_of(subband, f0)], [self.statistics_of(subband, f0)])[0]
        if not np.isfinite(score):
            raise features.AudioError(path, NON_FINITE)
        return score

    def __getstate__(self):
        # An onnxruntime session does not pickle; a worker opens its own (start_worker).
        return {**self.__dict__, "onnx": None}

    def scored(self, paths: list[Path]):
        """Yields (path, score, None) or (path, None, reason) for each path: extracts the features of
        all of them, then scores them in batches of equal input length (batch_size files, or
        about CPU_BATCH_FRAMES frames), yielding each batch's rows as soon as it is scored."""
        usable, lengths = [], []
        for path in paths:
            _, subband, f0, reason = file_features(Path(path), self.feature_settings, self.with_f0)
            if reason is not None:
                yield path, None, reason
                continue
            usable.append((path, self.input_of(subband, f0), self.statistics_of(subband, f0)))
            lengths.append(eval_length(len(subband), self.frames, self.eval_input))
        for batch in length_batches(lengths, self.batch_size, CPU_BATCH_FRAMES):
            scores = self.score_batch([usable[i][1] for i in batch], [usable[i][2] for i in batch])
            yield from ((usable[i][0], score, None) if np.isfinite(score) else (usable[i][0], None, NON_FINITE)
                        for i, score in zip(batch, scores))

    def stream(self, paths: list[Path], workers: int, progress: bool = True):
        """Yields (path, score, None) or (path, None, reason) for every path, as each is scored.

        With workers > 0, each worker process (one thread each) takes CHUNK files at a time,
        extracts their features and scores them (`scored`), and its rows come back in the order
        the chunks were handed out; a bounded number of chunks is in flight, so memory stays flat
        for any number of files. With workers = 0 the same runs in this process, chunk by chunk.
        """
        bar = tqdm(total=len(paths), desc="detect", unit="file", disable=not progress, file=sys.stderr)
        if workers == 0:
            rows = (row for start in range(0, len(paths), CHUNK) for row in self.scored(paths[start:start + CHUNK]))
        else:
            rows = self._in_workers(paths, workers)
        for row in rows:
            bar.update(1)
            yield row
        bar.close()

    def _in_workers(self, paths: list[Path], workers: int):
        chunks = (paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK))
        with ProcessPoolExecutor(workers, initializer=start_worker, initargs=(self,)) as pool:
            pending = deque(pool.submit(score_chunk, chunk) for chunk in islice(chunks, 2 * workers))
            while pending:
                rows = pending.popleft().result()
                chunk = next(chunks, None)
                if chunk is not None:
                    pending.append(pool.submit(score_chunk, chunk))
                yield from rows


# Each worker process's own copy of the Detector (set by start_worker).
_worker_detector: Detector | None = None
_inherited: list = []


def start_worker(detector: Detector) -> None:
    """Set up a worker: one thread for torch and for numpy's BLAS (two processes on two cores
    that each start a thread per core fight over them), and the parent's detector, with an
    onnxruntime session of its own for an exported model."""
    global _worker_detector
    tune_allocator()
    torch.set_num_threads(1)
    threadpool_limits(1)
    if detector.model is None:
        from pipeline.export import OnnxScorer
        # A forked worker inherits the parent's session without its threads: freeing it would wait
        # for them for ever, so it is kept, unused, until the process exits.
        _inherited.append(detector.onnx)
        detector.onnx = OnnxScorer(detector.model_path, threads=1)
    _worker_detector = detector


def score_chunk(paths: list[Path]) -> list:
    """A worker's task: the rows of Detector.scored for these paths."""
    return list(_worker_detector.scored(paths))


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


def main(argv=None) -> int:
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
    tune_allocator()
    try:
        if not 0 < args.prior_spoof < 1:
            parser.error("--prior-spoof must be in (0, 1)")
        detector = Detector(Path(args.model), args.batch_size)
        rule = detector.set_rule(args.prior_spoof, args.threshold)
        labels = {}
        paths = expand(args.paths)
        if args.protocol:
            utterances, _ = parse_protocol(args.protocol)
            for utt in utterances:
                path = Path(args.root) / f"{utt.utt_id}.flac"
                labels[str(path)] = utt.label
                paths.append(path)
    except (ValueError, OSError) as err:  # CheckpointError and ProtocolError are ValueErrors
        print(f"detect: {err}", file=sys.stderr)
        return 2

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
    scores = dict(done)
    failures = []
    width = max((len(str(p)) for p in paths), default=4)
    print(f"detect: {rule}", file=sys.stderr)
    if not args.protocol:
        print(f"{'path':<{width}}  {'score':>9}  {'llr':>8}  {'p_bonafide':>10}  decision", flush=True)
    try:
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
    finally:
        if out is not None:
            out.close()

    if args.protocol:
        scored = [p for p in labels if p in scores]
        values = np.array([scores[p] for p in scored])
        truth = np.array([labels[p] for p in scored])
        try:
            eer, _ = compute_eer(values[truth == 1], values[truth == 0])
            print(f"{len(scored)} utterances scored: EER {eer:.2%}")
        except ScoreError as err:
            print(f"detect: cannot compute the EER: {err}", file=sys.stderr)
            failures.append((args.protocol, str(err)))
    if failures:
        print(f"detect: {len(failures)} of {len(paths)} files could not be scored (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
