"""train.py under torchrun: 2 CPU ranks (gloo) stay identical and match one process on the same batch."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_feature_shards, repository_features
from model import build_model
from pipeline.scoring.modelfile import ModelFile

# Whole stages or pipelines in processes of their own: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.end_to_end


def write_params(path, **train):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # sr_dropout 0 and frames >= every utterance (no random crop): the ranks' only difference from
    # one process is BatchNorm statistics over their half of the batch.
    params["model"].update(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8, sr_dropout=0.0)
    params["train"].update(frames=80, batch_size=16, epochs=1, warmup_steps=5, num_workers=0,
                           precision="fp32", max_steps_per_epoch=1, **train)
    path.write_text(yaml.safe_dump(params))
    return path


def train_cmd(launcher, params, features, out):
    return [*launcher, "train.py", "--params", str(params), "--features", str(features),
            "--out_fold", str(out), "--metrics", str(out / "train.json"), "--live", str(out / "live")]


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_feature_shards(root / "train", repository_features(), n_utts=64, seed=0)
    make_feature_shards(root / "dev", repository_features(), n_utts=32, n_shards=1, seed=1)
    return root


def test_two_cpu_ranks_agree_and_match_one_process(features, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    two = subprocess.run(train_cmd([torchrun, "--standalone", "--nproc_per_node=2"],
                                   write_params(tmp_path / "p2.yaml", nproc=2), features, tmp_path / "two"),
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    assert "2 ranks agree (max weight difference 0.0e+00)" in two.stdout
    one = subprocess.run(train_cmd([sys.executable], write_params(tmp_path / "p1.yaml"), features, tmp_path / "one"),
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    ddp, single = (json.loads((tmp_path / n / "train.json").read_text()) for n in ("two", "one"))
    assert ddp["ranks"] == 2 and ddp["steps"] == single["steps"] == 1
    assert ddp["final_train_loss"] == pytest.approx(single["final_train_loss"], rel=0.02)
    # a model saved under DDP loads into a single-process network
    state = ModelFile.load(tmp_path / "two" / "model.pt")
    build_model(state.model_settings, state.feature_settings).load_state_dict(state.weights)
