"""End to end: the real stages under `dvc repro` on a tiny mini corpus in a temporary copy."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from features.copy_synthesis import copy_utt_id
from features.streams import stream_widths
from pipeline.data.protocol import parse_protocol, protocol_path
from pipeline.data.shards import open_partition
from pipeline.settings import PARTITIONS, load_settings

# Whole stages or pipelines in processes of their own: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.end_to_end

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran_stages(output):
    return sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    work = tmp_path_factory.mktemp("project")
    for name in ("features", "pipeline", "model", "train.py", "dvc.yaml", "params.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name,
                                                          **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                             if src.is_dir() else {}))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["corpus"].update(bonafide={p: 4 for p in PARTITIONS}, spoofs_per_attack={p: 1 for p in PARTITIONS})
    params["extract"]["shard_size"] = 4
    params["model"].update(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8)
    params["train"].update(frames=32, batch_size=8, epochs=1, num_workers=0, precision="fp32")
    params["channels"]["conditions"] = ["g711", "noise"]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], work)
    sh(["dvc", "init", "-q"], work)
    sh(["dvc", "config", "core.analytics", "false"], work)
    sh(["dvc", "config", "core.check_update", "false"], work)
    sh(["git", "add", "-A"], work)
    sh(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-qm", "init"], work)
    first = sh(["dvc", "repro"], work)
    return work, first


def test_repro_builds_corpus_and_every_partitions_shards(project):
    work, first = project
    assert "corpus" in ran_stages(first) and "features@eval" in ran_stages(first)
    all_settings = load_settings(work / "params.yaml")
    settings, methods = all_settings.features, all_settings.copy_synthesis.methods
    assert methods  # the default makes copy-synthesis spoofs, for the train partition only
    assert all_settings.augment.copies  # and augmented copies, for the train partition only
    for part in PARTITIONS:
        utts, _ = parse_protocol(protocol_path(work / "data/mini_corpus", part))
        readers = open_partition(work / "data/features" / part, settings)
        stored = [u for r in readers for u, k in zip(r.utt_id, r.copy) if k <= 0]  # originals and vocoded copies
        copies = [copy_utt_id(u.utt_id, m) for u in utts for m in methods if u.label == 1 and part == "train"]
        assert sorted(stored) == sorted([u.utt_id for u in utts] + copies)
        # the default's augmented copies (features.augment.copies), for the train partition only
        augmented = sum(int((r.copy > 0).sum()) for r in readers)
        assert augmented == (all_settings.augment.copies * len(utts) if part == "train" else 0)
        index = json.loads((work / "data/features" / part / "index.json").read_text())
        assert index["utterances"] == len(utts)   # the copies are not utterances of the partition
        for reader in readers:
            # every stream the settings make, each its own width, and f0
            assert reader.streams == (*stream_widths(settings), "f0")
            streams = reader.read(0)
            assert {name: streams[name].shape[1] for name in stream_widths(settings)} == stream_widths(settings)
            assert stream_widths(settings)["subband"] == 45
            assert streams.subband.shape[0] == streams.f0.shape[0] > 0
    report = json.loads((work / "metrics/f0_report.json").read_text())
    assert 0.5 < report["bonafide"]["share_in_band"] <= 1.0


def test_repro_trains_and_scores_every_protocol_utterance(project):
    work, _ = project
    assert json.loads((work / "metrics/train.json").read_text())["epochs"] == 1
    for part in ("dev", "eval"):
        utts, _ = parse_protocol(protocol_path(work / "data/mini_corpus", part))
        lines = (work / "scores" / f"{part}.txt").read_text().splitlines()
        scored = {line.split()[0]: line.split() for line in lines}
        assert set(scored) == {u.utt_id for u in utts} and len(lines) == len(utts)
        for u in utts:
            assert scored[u.utt_id][1:3] == [u.attack, u.key]
        metrics = json.loads((work / "metrics" / f"{part}.json").read_text())
        assert 0.0 <= metrics["eer"] <= 1.0 and metrics["min_tdcf"] >= 0.0
        assert set(metrics["eer_per_attack"]) == {u.attack for u in utts} - {"-"}
        # the ASVspoof 5 metrics, actDCF and Cllr on the calibrated scores (same lines, LLR as score)
        assert 0.0 <= metrics["min_dcf"] <= metrics["act_dcf"]
        assert 0.0 <= metrics["min_cllr"] <= 1.0 and metrics["min_cllr"] <= metrics["cllr"] < np.inf
        llr_lines = (work / "scores" / f"{part}.llr.txt").read_text().splitlines()
        assert [line.split()[:3] for line in llr_lines] == [line.split()[:3] for line in lines]
    card = (work / "reports/model_card.md").read_text()
    for heading in ("## Trained on", "## Measured", "## Not tested on"):
        assert heading in card
    dev = json.loads((work / "metrics/dev.json").read_text())
    assert f"| dev | {dev['eer']:.2%} |" in card
    channels = json.loads((work / "metrics/channels.json").read_text())
    assert set(channels["eer"]["eval"]) == {"clean", "g711", "noise"}
    assert channels["eer"]["dev"]["clean"] == pytest.approx(dev["eer"])  # the same model, the same shards
    assert f"noise {channels['eer']['eval']['noise']:.1%}" in card
    assert json.loads((work / "metrics/loso.json").read_text()) == {"enabled": False}


def test_noop_repro_runs_nothing_and_feature_change_reruns_extraction_onwards(project):
    work, _ = project
    assert ran_stages(sh(["dvc", "repro"], work)) == []
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["features"]["max_hz"] = 500.0
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = ran_stages(sh(["dvc", "repro"], work))
    # (loao and loso too: off by default, they only write that they are off)
    assert rerun == ["channels", "evaluate@dev", "evaluate@eval", "f0_report", "features@dev", "features@eval",
                     "features@train", "loao", "loso", "model_card", "train"]
    wider = dataclasses.replace(load_settings(work / "params.yaml").features, max_hz=500.0)
    streams = open_partition(work / "data/features/train", wider)[0].read(0)
    assert stream_widths(wider)["subband"] == 55
    assert {name: streams[name].shape[1] for name in stream_widths(wider)} == stream_widths(wider)
    # a training setting reruns training, evaluation and the model card only
    params["train"]["lr"] = 0.001
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(sh(["dvc", "repro"], work)) == ["channels", "evaluate@dev", "evaluate@eval", "loao", "loso",
                                                      "model_card", "train"]
