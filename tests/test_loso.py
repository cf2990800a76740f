"""Leave one recording source out: a source's speakers leave training and dev, and its bona fide
are scored against the eval spoofs."""
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY_MODEL, make_feature_shards, repository_features, run_training
from pipeline.data.dataset import ShardDataset
from pipeline.data.shards import open_partition
from pipeline.scoring.metrics import compute_eer
from pipeline.settings import FeatureSettings, LosoSettings, SettingsError, load_settings
from pipeline.studies.loso import LosoError, source_speakers


def pairs(i):  # utterances 2k (bona fide) and 2k + 1 (spoof) are one speaker's, six speakers
    return f"S{(i // 2) % 6}"


def test_excluded_speakers_leave_the_dataset_bona_fide_and_spoofs(tmp_path):
    make_feature_shards(tmp_path / "train", FeatureSettings(), n_utts=24, n_shards=3, speaker_of=pairs)
    readers = open_partition(tmp_path / "train", FeatureSettings())
    full = ShardDataset(readers, 32, train=True)
    held = ShardDataset(readers, 32, train=True, exclude_speakers=("S1", "S4"))
    speakers = np.concatenate([np.asarray(r.speaker) for r in readers])
    assert len(full) == 24 and len(held) == 16
    assert not set(speakers[held.items]) & {"S1", "S4"}
    assert sorted(held.labels) == [0] * 8 + [1] * 8


def test_sources_are_speaker_patterns_and_each_speaker_has_one_source():
    speakers = {"train": {"TUB_DE", "TUB_SV", "KLT_DE", "ALLISON"}, "dev": {"JUNE"}, "eval": {"TUB_UK"}}
    found = source_speakers({"asterisk": ["ALLISON", "JUNE"], "ktuberling": ["TUB_*"], "klettres": ["KLT_*"]}, speakers)
    assert found == {"asterisk": ["ALLISON", "JUNE"], "ktuberling": ["TUB_DE", "TUB_SV", "TUB_UK"],
                     "klettres": ["KLT_DE"]}
    with pytest.raises(LosoError, match=r"loso\.sources\.games: 'DRA_\*' matches no speaker"):
        source_speakers({"games": ["DRA_*"]}, speakers)
    with pytest.raises(LosoError, match="speaker TUB_DE is in both ktuberling and german"):
        source_speakers({"ktuberling": ["TUB_*"], "german": ["*_DE"]}, speakers)
    with pytest.raises(SettingsError, match="at least two sources"):
        LosoSettings(enabled=True, sources={"only": ["X"]}).validate("loso")


def test_the_repository_sources_cover_every_corpus_speaker_once():
    settings = load_settings(ROOT / "params.yaml")
    corpus = {p: set(s) for p, s in settings.corpus.partition_speakers.items()}
    found = source_speakers(settings.loso.sources, corpus)
    assert sorted(s for members in found.values() for s in members) == sorted(set().union(*corpus.values()))
    assert len(found) >= 8
    for part, members in corpus.items():  # every partition holds at least three sources
        assert sum(bool(set(m) & members) for m in found.values()) >= 3, part


@pytest.mark.slow
def test_loso_stage_trains_without_each_source_and_scores_its_bona_fide(tmp_path):
    features = tmp_path / "features"
    for part, n, seed in (("train", 48, 0), ("dev", 24, 1)):
        make_feature_shards(features / part, repository_features(), n_utts=n, n_shards=1, seed=seed, speaker_of=pairs)
    # S6 speaks in eval only: training and dev never hold it
    make_feature_shards(features / "eval", repository_features(), n_utts=28, n_shards=1, seed=2,
                        speaker_of=lambda i: f"S{(i // 2) % 7}")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(TINY_MODEL)
    params["train"].update(frames=32, batch_size=8, epochs=1, num_workers=0, precision="fp32")
    params["loso"] = {"enabled": True, "sources": {"a": ["S0", "S1"], "b": ["S2", "S3"], "c": ["S4", "S5"],
                                                   "d": ["S6"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_training(load_settings(tmp_path / "params.yaml"), features, tmp_path / "main")
    command = [sys.executable, "-m", "pipeline.loso", "--params", tmp_path / "params.yaml", "--features", features,
               "--model", tmp_path / "main/model.pt", "--out", tmp_path / "loso", "--metrics", tmp_path / "loso.json"]
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "loso.json").read_text())
    assert set(metrics["eer_per_source"]) == {"a", "b", "c", "d"} and metrics["own_runs"] == ["a", "b", "c"]
    assert np.isclose(metrics["mean_eer"], np.mean(list(metrics["eer_per_source"].values())))
    assert all(0.0 <= r <= 1.0 for r in metrics["rejected_per_source"].values())
    # a: S0 and S1's bona fide of train (8), dev (4) and eval (4) against the 10 eval spoofs of the others
    assert metrics["counts"]["a"] == {"bonafide": 16, "spoof": 10}
    assert metrics["counts"]["d"] == {"bonafide": 2, "spoof": 12}
    # each source's scores are kept (fused, and each fusion input alone) for studies of the fusion
    kept = np.load(tmp_path / "loso/a/scores.npz")
    assert len(kept["bonafide"]) == 16 and len(kept["spoof"]) == 10
    assert np.isclose(compute_eer(kept["bonafide"], kept["spoof"])[0], metrics["eer_per_source"]["a"])
    for name in ("network", "statistics"):
        assert kept[f"{name}_bonafide"].shape == (16,) and kept[f"{name}_spoof"].shape == (10,)
        assert np.isclose(compute_eer(kept[f"{name}_bonafide"], kept[f"{name}_spoof"])[0],
                          metrics[f"eer_{name}_per_source"]["a"])
    run_params = yaml.safe_load((tmp_path / "loso/b/params.yaml").read_text())
    assert run_params["train"]["exclude_speakers"] == ["S2", "S3"]
    log = (tmp_path / "loso/b/log.txt").read_text()
    assert "32 train / 16 dev utterances" in log  # 48 and 24 without S2 and S3's 16 and 8
    assert not (tmp_path / "loso/d/model.pt").exists()
    again = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((tmp_path / "loso.json").read_text()) == metrics
    assert (tmp_path / "loso/b/log.txt").read_text() == log


def test_loso_off_writes_that_it_is_off(tmp_path):
    command = [sys.executable, "-m", "pipeline.loso", "--metrics", tmp_path / "loso.json", "--out", tmp_path / "out"]
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and json.loads((tmp_path / "loso.json").read_text()) == {"enabled": False}
