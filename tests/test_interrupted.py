"""Killed runs (SIGKILL, in a real subprocess) resume to exactly what an uninterrupted run gives."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, make_feature_shards, make_tone_corpus, repository_features
from pipeline.data.manifests import build_manifest, write_manifest

# Whole stages or pipelines in processes of their own: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.end_to_end

def write_params(path, **sections):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params))
    return path


def run(args, **kw):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, **kw)


def kill_when(args, ready, timeout=300):
    """Start args, SIGKILL it as soon as ready() is true; returns True if it was still running."""
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    running = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return running


def test_killed_extraction_keeps_finished_shards_and_ends_identical(tmp_path):
    root = make_tone_corpus(tmp_path / "corpus", partitions=("train",), per_partition=24)
    rows, _ = build_manifest(root, "train")
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    write_manifest(rows, manifest / "train.tsv")
    # harvest is slow enough (~0.3 s per utterance) to catch the run between shards
    params = write_params(tmp_path / "params.yaml", features={"f0_method": "harvest"},
                          extract={"n_jobs": 1, "shard_size": 3})
    args = ["-m", "pipeline.extract", "train", "--params", params, "--manifest", manifest]
    reference = run([*args, "--out", tmp_path / "reference"])
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    assert kill_when([*args, "--out", out], lambda: len(list((out / "train").glob("shard-*.h5"))) >= 2)
    finished = sorted(p.name for p in (out / "train").glob("shard-*.h5"))
    assert 2 <= len(finished) < 8 and not (out / "train/index.json").exists()
    rerun = run([*args, "--out", out])
    assert rerun.returncode == 0, rerun.stderr
    assert f"({8 - len(finished)} computed, {len(finished)} kept)" in rerun.stdout
    assert json.loads((out / "train/index.json").read_text()) == \
        json.loads((tmp_path / "reference/train/index.json").read_text())


def test_killed_training_resumes_to_the_same_result(tmp_path):
    features = tmp_path / "features"
    make_feature_shards(features / "train", repository_features(), n_utts=64, seed=0)
    make_feature_shards(features / "dev", repository_features(), n_utts=32, n_shards=1, seed=1)
    params = write_params(tmp_path / "params.yaml",
                          model={"layers": [1, 1], "planes": [16, 32], "scale": 4, "stem_channels": 8},
                          train={"frames": 32, "batch_size": 16, "epochs": 4, "warmup_steps": 5,
                                 "num_workers": 0, "precision": "fp32"})

    def train_args(name):
        return ["train.py", "--params", params, "--features", features, "--out_fold", tmp_path / name,
                "--metrics", tmp_path / name / "train.json", "--live", tmp_path / name / "live"]

    reference = run(train_args("reference"))
    assert reference.returncode == 0, reference.stderr
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    assert kill_when(train_args("killed"), checkpoint.exists)
    rerun = run(train_args("killed"))
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming after epoch" in rerun.stdout
    got = json.loads((tmp_path / "killed/train.json").read_text())
    want = json.loads((tmp_path / "reference/train.json").read_text())
    got.pop("train_samples_per_s"), want.pop("train_samples_per_s")
    assert got == want and got["steps"] == 4 * 4
