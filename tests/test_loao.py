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


def loao_params(tmp_path, **loao):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8)
    params["train"].update(frames=32, batch_size=8, epochs=1, num_workers=0, precision="fp32")
    params["loao"] = {"enabled": True, "attacks": ["A01", "A03"], "set_aside": ["D2"], **loao}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return [sys.executable, "-m", "pipeline.loao", "--params", tmp_path / "params.yaml",
            "--features", tmp_path / "features", "--out", tmp_path / "loao", "--metrics", tmp_path / "loao.json"]


def loao_features(tmp_path, train_speaker=lambda i: f"S{i % 4}"):
    """Train (speakers S0-S3) and dev (D0-D3) shards; no eval shards: LOAO must not read eval."""
    make_feature_shards(tmp_path / "features" / "train", repository_features(), n_utts=48, n_shards=1, seed=0,
                        speaker_of=train_speaker)
    make_feature_shards(tmp_path / "features" / "dev", repository_features(), n_utts=24, n_shards=1, seed=1,
                        speaker_of=lambda i: f"D{i % 4}")


@pytest.mark.slow
def test_loao_stage_trains_without_each_attack_and_scores_it_on_bona_fide_that_fitted_nothing(tmp_path):
    loao_features(tmp_path)
    command = list(map(str, loao_params(tmp_path)))
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "loao.json").read_text())
    assert set(metrics["eer_per_attack"]) == {"A01", "A03"}
    assert np.isclose(metrics["mean_eer"], np.mean(list(metrics["eer_per_attack"].values())))
    # the set-aside speaker D2's 6 bona fide, against A01's 4 dev spoofs (every third spoof)
    assert metrics["counts"]["A01"] == {"bonafide": 6, "spoof": 4}
    run_params = yaml.safe_load((tmp_path / "loao/A03/params.yaml").read_text())
    assert run_params["train"]["exclude_attacks"] == ["A03"] and run_params["train"]["exclude_speakers"] == ["D2"]
    log = (tmp_path / "loao/A03/log.txt").read_text()
    # train 48 without A03's 8 spoofs; dev 24 without A03's 4 spoofs and D2's 6 bona fide
    assert "40 train / 14 dev utterances" in log
    # a rerun keeps the finished attacks
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((tmp_path / "loao.json").read_text())["eer_per_attack"] == \
        metrics["eer_per_attack"]
    assert (tmp_path / "loao/A03/log.txt").read_text() == log


@pytest.mark.parametrize("set_aside, message", [
    (["D2", "X9"], "['X9'] are not speakers of the dev shards"),
    (["S1"], "['S1'] are not speakers of the dev shards"),
    (["D0", "D1", "D2", "D3"], "every dev speaker is set aside"),
    ([], "needs dev speakers set aside"),
])
def test_loao_refuses_set_aside_speakers_that_cannot_be_held_out(tmp_path, set_aside, message):
    loao_features(tmp_path)
    result = subprocess.run(list(map(str, loao_params(tmp_path, set_aside=set_aside))), cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "loao" / "A01").exists()  # refused before any training


def test_set_aside_speakers_in_train_are_refused(tmp_path):
    loao_features(tmp_path, train_speaker=lambda i: f"D{i % 4}")
    result = subprocess.run(list(map(str, loao_params(tmp_path))), cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "['D2'] are also in the train shards" in result.stderr, result.stderr


def test_loao_off_writes_that_it_is_off(tmp_path):
    command = [sys.executable, "-m", "pipeline.loao", "--metrics", tmp_path / "loao.json"]
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and json.loads((tmp_path / "loao.json").read_text()) == {"enabled": False}
