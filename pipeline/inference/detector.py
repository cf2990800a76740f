"""Scoring audio files with a trained model: features, batches, worker processes, decisions.

The `detect` command (pipeline/detect.py) runs this; see its docstring.
"""
from __future__ import annotations

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
from pipeline.data.dataset import length_batches
from pipeline.inference.export import export_scorer, load_export
from pipeline.scoring.calibration import bonafide_probability, to_llr
from pipeline.scoring.metrics import DCF_COSTS, bayes_threshold
from pipeline.scoring.modelfile import ModelFile
from pipeline.scoring.scorer import CPU_BATCH_FRAMES, Scorer, tune_allocator
from pipeline.settings import FeatureSettings

# A file whose features are finite but whose score is not (a damaged model file): an error row,
# never a NaN written as a decision.
NON_FINITE = "the model gave a non-finite score (is the model file damaged?)"
# Files a worker extracts and scores per task: enough for files of equal length to share a
# batch, few enough that rows reach --out every second or two.
CHUNK = 16


def file_features(path: Path, settings: FeatureSettings, with_f0: bool):
    """(path, Streams, None), or (path, None, reason) for a file that cannot be used.
    Runs in the worker processes."""
    try:
        waveform = features.load_audio(path, settings.sample_rate)
        streams = features.extract(waveform, settings.sample_rate, settings, with_f0=with_f0, source=path)
    except features.AudioError as err:
        return path, None, err.reason
    return path, streams, None


class Detector:
    """A model (a model file, or an ONNX export with its sidecar) and its decision rule: scores
    audio files through the model's Scorer, in batches and worker processes."""

    def __init__(self, model_path: Path, batch_size: int = 32):
        self.model_path = Path(model_path)
        self.onnx = self.model_path.suffix == ".onnx"  # exported by pipeline.export: onnxruntime, no torch
        if self.onnx:
            self.model_file = load_export(self.model_path)
            self.scorer = export_scorer(self.model_path)
        else:
            self.model_file = ModelFile.load(self.model_path)
            self.scorer = Scorer.of(self.model_file)
        self.feature_settings = self.model_file.feature_settings
        self.threshold = self.model_file.threshold
        self.calibration = self.model_file.calibration
        self.set_rule()
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

    def score_batch(self, inputs: list[torch.Tensor], statistics: list | None = None) -> list[float]:
        """The model's scores of inputs of equal length (Scorer.input_of), in one forward pass, fused
        with their utterance statistics (Scorer.statistics_of) when the model has a score fusion."""
        return self.scorer.fuse(self.scorer.network_scores(torch.stack(inputs)), statistics).tolist()

    def score(self, path) -> float:
        """One file's score (raises features.AudioError for a file that cannot be used)."""
        [(_, score, reason)] = self.scored([Path(path)])  # the rows detect writes, error rows included
        if reason is not None:
            raise features.AudioError(path, reason)
        return score

    def __getstate__(self):
        # An onnxruntime session does not pickle; a worker opens its own (start_worker).
        return {**self.__dict__, "scorer": None if self.onnx else self.scorer}

    def scored(self, paths: list[Path]):
        """Yields (path, score, None) or (path, None, reason) for each path: extracts the features of
        all of them, then scores them in batches of equal input length (batch_size files, or
        about CPU_BATCH_FRAMES frames), yielding each batch's rows as soon as it is scored."""
        usable, lengths = [], []
        for path in paths:
            _, streams, reason = file_features(Path(path), self.feature_settings, self.scorer.needs_f0)
            if reason is not None:
                yield path, None, reason
                continue
            usable.append((path, self.scorer.input_of(streams), self.scorer.statistics_of(streams)))
            lengths.append(self.scorer.input_length(streams))
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
    if detector.onnx:
        # A forked worker inherits the parent's session without its threads: freeing it would wait
        # for them for ever, so it is kept, unused, until the process exits.
        _inherited.append(detector.scorer)
        detector.scorer = export_scorer(detector.model_path, threads=1)
    _worker_detector = detector


def score_chunk(paths: list[Path]) -> list:
    """A worker's task: the rows of Detector.scored for these paths."""
    return list(_worker_detector.scored(paths))
