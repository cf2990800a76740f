"""Throughput of `detect` on 4-second files, against the one-file-at-a-time loop it replaced.

    python bench/detect.py [--model models/model.pt] [--files 200] [--seconds 4]

Writes --files FLAC files of exactly --seconds each (mini corpus dev utterances, tiled or cut;
run `make repro` first) and scores them twice in the same run:
- one file at a time: load, features with pyworld F0 (computed whether the model uses it or
  not), one forward pass per file, all in one process (how detect worked before streaming);
- Detector.stream, model already loaded: one worker process per core (one thread each)
  extracts a few files at a time (no F0 unless the model uses it) and scores them in batches
  of equal input length;
- the same stream with the network's BatchNorms kept (Scorer.of folds them into the convolutions
  when it scores in fp32; bf16 keeps them, so there the two are the same network);
- the same stream with the network exported to ONNX (`pipeline.export`, not timed) and run by
  onnxruntime, as `detect --model model.onnx` runs it (its kernels follow the CPU);
- `python -m pipeline.detect FOLDER --out ...` as a user runs it, timed from start to exit
  (process start, model load and worker start-up included).
Prints files/s for both and their ratio; writes bench/results/detect.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]

import features
from pipeline.inference.detector import Detector
from pipeline.inference.export import export
from pipeline.scoring.scorer import available_cores


def write_files(folder: Path, count: int, seconds: float) -> list[Path]:
    sources = sorted((ROOT / "data/mini_corpus/ASVspoof2019_LA_dev/flac").glob("*.flac"))
    if not sources:
        raise SystemExit("bench/detect.py: no mini corpus dev audio; run `make repro` first")
    n = int(seconds * 16000)
    paths = []
    for i in range(count):
        x, sr = sf.read(sources[i % len(sources)], dtype="float32")
        x = np.tile(x, -(-n // len(x)))[:n]
        paths.append(folder / f"file_{i:05d}.flac")
        sf.write(paths[-1], x, sr)
    return paths


def one_at_a_time(detector: Detector, paths: list[Path]) -> float:
    fs = detector.feature_settings
    started = time.perf_counter()
    for path in paths:
        waveform = features.load_audio(path, fs.sample_rate)
        streams = features.extract(waveform, fs.sample_rate, fs)  # F0 always, as before
        detector.score_batch([detector.scorer.input_of(streams)], [detector.scorer.statistics_of(streams)])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "audio"
        folder.mkdir()
        paths = write_files(folder, args.files, args.seconds)
        detector = Detector(ROOT / args.model)
        warm = features.extract(np.zeros(16000, np.float32), 16000, detector.feature_settings)  # a warm-up pass
        detector.score_batch([detector.scorer.input_of(warm)], [detector.scorer.statistics_of(warm)])
        loop = one_at_a_time(detector, paths)
        started = time.perf_counter()
        for _ in detector.stream(paths, workers=available_cores(), progress=False):
            pass
        stream = time.perf_counter() - started
        unfolded = Detector(ROOT / args.model)
        if not unfolded.onnx:
            unfolded.scorer.network = unfolded.model_file.network()  # the norms kept
        started = time.perf_counter()
        for _ in unfolded.stream(paths, workers=available_cores(), progress=False):
            pass
        stream_unfolded = time.perf_counter() - started
        stream_onnx = None
        if not detector.onnx:
            onnx_path = export(ROOT / args.model, "onnx", Path(tmp) / "model.onnx")
            exported = Detector(onnx_path)
            started = time.perf_counter()
            for _ in exported.stream(paths, workers=available_cores(), progress=False):
                pass
            stream_onnx = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.detect", "--model", str(ROOT / args.model), str(folder),
                        "--out", str(Path(tmp) / "scores.tsv"), "--no-progress"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        streamed = time.perf_counter() - started
    result = {"files": args.files, "seconds_per_file": args.seconds, "precision": detector.scorer.precision,
              "eval_input": detector.scorer.eval_input, "workers": available_cores(),
              "one_at_a_time_files_per_s": args.files / loop, "stream_files_per_s": args.files / stream,
              "stream_norms_kept_files_per_s": args.files / stream_unfolded,
              "stream_onnx_files_per_s": args.files / stream_onnx if stream_onnx else None,
              "detect_files_per_s": args.files / streamed, "speedup": loop / streamed}
    print(f"{args.files} files of {args.seconds:g} s, {detector.scorer.precision}, eval input {detector.scorer.eval_input}:")
    print(f"  one file at a time (F0 included, in-process): {result['one_at_a_time_files_per_s']:6.1f} files/s")
    print(f"  Detector.stream, model loaded (a worker per core, each extracting and scoring): "
          f"{result['stream_files_per_s']:6.1f} files/s ({loop / stream:.2f}x)")
    print(f"  the same, the network's BatchNorms kept:       {result['stream_norms_kept_files_per_s']:6.1f} files/s "
          f"(folded: {stream_unfolded / stream:.2f}x)")
    if stream_onnx:
        print(f"  the same, the network exported to ONNX (onnxruntime): {args.files / stream_onnx:6.1f} files/s "
              f"({stream / stream_onnx:.2f}x the stream)")
    print(f"  python -m pipeline.detect (start to exit):    {result['detect_files_per_s']:6.1f} files/s "
          f"({result['speedup']:.2f}x)")
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "detect.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
