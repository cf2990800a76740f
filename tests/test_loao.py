"""Leave one attack out: the held-out attack is absent from training and dev, and scored alone."""
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, make_feature_shards, repository_features
from pipeline.data.dataset import ShardDataset
from pipeline.data.shards import open_partition
from pipeline.settings import FeatureSettings


def test_excluded_attacks_leave_the_dataset_and_the_rest_keeps_its_order(tmp_path):
    make_feature_shards(tmp_path / "train", FeatureSettings(), n_utts=24, n_shards=3)
    readers = open_partition(tmp_path / "train", FeatureSettings())
    full = ShardDataset(readers, 32, train=False)
    held = ShardDataset(readers, 32, train=False, exclude_attacks=("A02",))
    everything = [full.utterance(i) for i in range(len(full))]
    kept = [held.utterance(i) for i in range(len(held))]
    assert kept == [u for u in everything if u[1] != "A02"] and len(kept) == 20
    assert list(held.labels) == [u[2] for u in kept]
    x, label, index = held[5]
    assert index == 5 and label == kept[5][2]
    assert len(held.eval_lengths()) == len(held)


@pytest.mark.slow
def test_loao_stage_trains_without_each_attack_and_scores_it(tmp_path):
    for part, n, seed in (("train", 48, 0), ("dev", 24, 1), ("eval", 24, 2)):
        make_feature_shards(tmp_path / "features" / part, repository_features(), n_utts=n, n_shards=1,
                            seed=seed)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8)
    params["train"].update(frames=32, batch_size=8, epochs=1, num_workers=0, precision="fp32")
    params["loao"] = {"enabled": True, "attacks": ["A01", "A03"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    command = [sys.executable, "-m", "pipeline.loao", "--params", tmp_path / "params.yaml",
               "--features", tmp_path / "features", "--out", tmp_path / "loao", "--metrics", tmp_path / "loao.json"]
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "loao.json").read_text())
    assert set(metrics["eer_per_attack"]) == {"A01", "A03"}
    assert np.isclose(metrics["mean_eer"], np.mean(list(metrics["eer_per_attack"].values())))
    # dev + eval: 24 bona fide, and A01's spoofs only (every third spoof of make_feature_shards)
    assert metrics["counts"]["A01"] == {"bonafide": 24, "spoof": 8}
    run_params = yaml.safe_load((tmp_path / "loao/A03/params.yaml").read_text())
    assert run_params["train"]["exclude_attacks"] == ["A03"]
    log = (tmp_path / "loao/A03/log.txt").read_text()
    assert "40 train / 20 dev utterances" in log  # 48 and 24 without A03's 8 and 4 spoofs
    # a rerun keeps the finished attacks
    again = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((tmp_path / "loao.json").read_text())["eer_per_attack"] == \
        metrics["eer_per_attack"]
    assert (tmp_path / "loao/A03/log.txt").read_text() == log


def test_loao_off_writes_that_it_is_off(tmp_path):
    command = [sys.executable, "-m", "pipeline.loao", "--metrics", tmp_path / "loao.json"]
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and json.loads((tmp_path / "loao.json").read_text()) == {"enabled": False}
