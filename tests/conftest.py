import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

from pipeline.settings import FeatureSettings


def repository_features() -> FeatureSettings:
    """The feature settings of the repository's params.yaml (the default recipe's: its second view
    included), for tests that run the stages with that file."""
    from pipeline.settings import load_settings
    return load_settings(ROOT / "params.yaml").features


@pytest.fixture
def feature_settings():
    return FeatureSettings()


def harmonic(f0_hz: float, seconds: float = 2.0, sr: int = 16000, harmonics: int = 6) -> np.ndarray:
    """A voiced-like test tone: a fundamental plus decaying harmonics."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0_hz * k * t) / k for k in range(1, harmonics + 1))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def make_tone_corpus(root: Path, partitions=("train", "dev", "eval"), per_partition: int = 8, seed: int = 0):
    """A tiny corpus in the ASVspoof layout: bona fide tones with vibrato, 'spoofs' without."""
    import soundfile as sf

    from pipeline.data.protocol import audio_dir, protocol_path

    rng = np.random.default_rng(seed)
    for part in partitions:
        folder = audio_dir(root, part)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(per_partition):
            bonafide = i % 2 == 0
            utt = f"TONE_{part[0].upper()}_{i:04d}"
            seconds = rng.uniform(0.6, 1.6)
            t = np.arange(int(seconds * 16000)) / 16000
            f0 = rng.uniform(100, 250) * (1 + (0.05 * np.sin(2 * np.pi * 5 * t) if bonafide else 0))
            x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) + 0.01 * rng.standard_normal(len(t))
            sf.write(folder / f"{utt}.flac", x.astype(np.float32), 16000)
            lines.append(f"SPK{i % 3} {utt} - {'-' if bonafide else 'A0' + str(1 + i % 3)} "
                         f"{'bonafide' if bonafide else 'spoof'}\n")
        path = protocol_path(root, part)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines))
    return root


def make_feature_shards(folder: Path, settings, n_utts: int = 64, n_shards: int = 2, seed: int = 0,
                        speaker_of=lambda i: f"S{i % 4}", copies: int = 0):
    """Feature shards with a learnable class difference: bona fide F0 tracks wander, spoof ones are flat.

    The subband gets a harmonic ridge at the F0's bin, so the model sees the difference; every
    other stream the settings make holds noise. Utterance i (bona fide when even) is speaker_of(i)'s.
    copies: each utterance is followed by this many augmented copies (its streams shifted by noise),
    stored as the extraction stage stores features.augment's.
    """
    from features.streams import Streams, stream_widths
    from pipeline.data.protocol import Utterance
    from pipeline.data.shards import file_sha256, shard_name, write_index, write_shard

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    hz_per_bin = settings.sample_rate / settings.n_fft
    widths = stream_widths(settings)
    utts = []
    for i in range(n_utts):
        label = int(i % 2 == 0)
        frames = int(rng.integers(30, 80))
        base = rng.uniform(110, 220)
        wobble = 0.15 * np.sin(np.arange(frames) / rng.uniform(2, 4)) if label else 0.0
        f0 = (base * (1 + wobble) * np.ones(frames)).astype(np.float32)
        streams = Streams({name: rng.normal(-4.0, 1.0, size=(frames, width)).astype(np.float32)
                           for name, width in widths.items()}, f0=f0)
        ridge = np.clip(np.round(f0 / hz_per_bin).astype(int), 0, widths["subband"] - 1)
        streams["subband"][np.arange(frames), ridge] += 4.0
        attack = "-" if label else f"A0{1 + i % 3}"
        utts.append((Utterance(f"SYN_{i:05d}", speaker_of(i), attack, label), streams))
    entries = []
    for s in range(n_shards):
        part = utts[s * n_utts // n_shards:(s + 1) * n_utts // n_shards]
        path = folder / shard_name(s)
        records, versions = [], []
        for utt, streams in part:
            records.append((utt, streams))
            versions.append((0, 0, ""))
            for k in range(1, copies + 1):
                noise = {name: rng.normal(0.5, 0.5, size=streams[name].shape).astype(np.float32) for name in widths}
                shifted = Streams({name: streams[name] + noise[name] for name in widths}, f0=streams.f0)
                records.append((utt, shifted))
                versions.append((k, k, "noise"))
        frames = write_shard(path, records, settings, copies=versions if copies else None)
        entries.append({"file": path.name, "utterances": len(part), "frames": frames,
                        "sha256": file_sha256(path)})
    write_index(folder, entries, settings, [])
    return folder


def random_records(settings, lengths):
    """[(Utterance, Streams)] of random features, one per length: every stream the settings make, and f0."""
    from features.streams import Streams, stream_widths
    from pipeline.data.protocol import Utterance
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate(lengths):
        utt = Utterance(f"U{i}", f"S{i % 2}", "-" if i % 2 == 0 else "A01", 1 - i % 2)
        streams = Streams({name: rng.normal(size=(n, width)).astype(np.float32)
                           for name, width in stream_widths(settings).items()},
                          f0=np.arange(n, dtype=np.float32) + i)
        out.append((utt, streams))
    return out


def run_training(settings, features_dir: Path, out_dir: Path, *extra: str, check: bool = True,
                 live: bool = False) -> subprocess.CompletedProcess:
    """train.py on `settings` (built in code: written to out_dir/params.yaml), as the train stage runs
    it, in a process of its own; check: fail the test, with train.py's output, if it fails."""
    import yaml

    from pipeline.settings import settings_as_params
    out_dir.mkdir(parents=True, exist_ok=True)
    params = out_dir / "params.yaml"
    params.write_text(yaml.safe_dump(settings_as_params(settings), sort_keys=False))
    command = [sys.executable, str(ROOT / "train.py"), "--params", str(params), "--features", str(features_dir),
               "--out_fold", str(out_dir), "--metrics", str(out_dir / "train.json"),
               "--live", str(out_dir / "live") if live else "", "--no-progress", *extra]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    if check and result.returncode:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def training_summary(out_dir: Path) -> dict:
    """The metrics/train.json a run_training run wrote."""
    import json
    return json.loads((out_dir / "train.json").read_text())


TINY_MODEL = dict(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8, view2_dim=16)


def train_tiny_model(root: Path, features: FeatureSettings = FeatureSettings(), precision: str = "auto",
                     fusion: bool = False, exclude_attacks=()) -> Path:
    """A small model trained for one epoch on learnable synthetic shards (for detect, export and
    cross-corpus tests); fusion: with the excitation statistics' score fusion. Returns its model.pt."""
    from pipeline.settings import ModelSettings, Settings, TrainSettings

    make_feature_shards(root / "features/train", features, n_utts=32, seed=0)
    make_feature_shards(root / "features/dev", features, n_utts=16, n_shards=1, seed=1)
    settings = Settings(features=features, model=ModelSettings(**TINY_MODEL, excitation_fusion=fusion),
                        train=TrainSettings(frames=32, batch_size=16, epochs=1, warmup_steps=2, num_workers=0,
                                            precision=precision, exclude_attacks=list(exclude_attacks)))
    run_training(settings, root / "features", root / "models")
    return root / "models/model.pt"


def assert_network_reads_none_of(features: FeatureSettings, streams) -> None:
    """The network built for `features` reads none of `streams` (the fusion-only ones): they are
    not in its declared streams, so they never reach its input."""
    from features.streams import network_streams, stream_widths
    from model import build_model
    from pipeline.settings import ModelSettings
    network = build_model(ModelSettings(**TINY_MODEL, f0_channel=False), features)
    assert set(streams) <= set(stream_widths(features))  # the settings do make them
    assert not set(streams) & set(network.streams) and network.streams == network_streams(features)


def assert_every_scorer_fuses_alike(root: Path, model_path: Path, features: FeatureSettings, audio_files) -> np.ndarray:
    """For a fused model of train_tiny_model: evaluate's dev scores are the fusion of the network's
    scores with each utterance's statistics (read from the streams the model file's fusion names),
    and detect and its ONNX export score audio_files alike. Returns the dev statistics
    [utterances, inputs]."""
    from model.fusion import fused_scores
    from pipeline.data.shards import open_partition
    from pipeline.inference import export
    from pipeline.inference.detector import Detector
    from pipeline.scoring.modelfile import ModelFile
    from pipeline.scoring.scorer import Scorer
    model_file = ModelFile.load(model_path)
    scorer = Scorer.of(model_file)
    dev = open_partition(root / "features/dev", features)
    dataset, scores, _ = scorer.score_readers(dev, 64)
    network, _ = scorer.score_dataset(dataset, 64)
    statistics = dataset.utterance_statistics(model_file.fusion["streams"])
    np.testing.assert_allclose(scores, fused_scores(model_file.fusion, network, statistics))
    detector = Detector(model_path)
    one_by_one = np.array([detector.score(f) for f in audio_files])
    assert np.isfinite(one_by_one).all()
    onnx = Detector(export.export(model_path, "onnx", root / "m.onnx"))
    assert np.max(np.abs(np.array([onnx.score(f) for f in audio_files]) - one_by_one)) <= 1e-3
    return statistics


@pytest.fixture
def manifests(tmp_path):
    """Manifests {train, dev: path} of a tiny tone corpus (6 utterances each, half bona fide)."""
    from pipeline.data.manifests import build_manifest, write_manifest
    root = make_tone_corpus(tmp_path / "corpus", partitions=("train", "dev"), per_partition=6)
    paths = {}
    for part in ("train", "dev"):
        rows, _ = build_manifest(root, part)
        paths[part] = tmp_path / f"{part}.tsv"
        write_manifest(rows, paths[part])
    return paths
