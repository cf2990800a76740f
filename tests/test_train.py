import dataclasses
import re

import numpy as np
import pytest
import torch

from conftest import make_feature_shards, run_training, training_summary
from model import bonafide_score, build_model
from pipeline.data.dataset import ShardDataset
from pipeline.data.shards import open_partition
from pipeline.scoring import scorer as scoring
from pipeline.scoring.modelfile import CheckpointError, ModelFile, load_checkpoint
from pipeline.settings import FeatureSettings, ModelSettings, Settings, TrainSettings
from pipeline.training import accumulate_average, lr_factor, train_step, warmup_factor

SMALL_MODEL = ModelSettings(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8)
QUICK = TrainSettings(frames=32, batch_size=16, epochs=3, lr=0.004, warmup_steps=5, num_workers=0,
                      precision="fp32")


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    settings = FeatureSettings()
    make_feature_shards(root / "train", settings, n_utts=96, seed=0)
    make_feature_shards(root / "dev", settings, n_utts=48, n_shards=1, seed=1)
    return root


def same_run(a: dict, b: dict) -> bool:
    """Equal in everything but the measured speed."""
    strip = lambda d: {k: v for k, v in d.items() if k != "train_samples_per_s"}  # noqa: E731
    return strip(a) == strip(b)


def train_run(features_dir, out, train_settings=QUICK, *extra, model=SMALL_MODEL, live=True, check=True):
    """train.py (a process of its own) on these settings; the CompletedProcess."""
    settings = Settings(model=model, train=train_settings)
    return run_training(settings, features_dir, out, *extra, check=check, live=live)


def run(features_dir, out, train_settings=QUICK, *extra, **kw):
    """A training run's summary (its metrics/train.json)."""
    train_run(features_dir, out, train_settings, *extra, **kw)
    return training_summary(out)


@pytest.fixture(scope="module")
def reference(features_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    result = train_run(features_dir, out)
    return out, training_summary(out), result.stdout


@pytest.mark.slow
def test_training_learns_to_separate_the_classes(reference):
    out, summary, stdout = reference
    assert summary["best_dev_eer"] < 0.2
    # what the run says is what its metrics file holds
    assert f"train: best dev EER {summary['best_dev_eer']:.2%} at epoch {summary['best_epoch']}" in stdout
    assert summary["steps"] == 3 * 6


def test_model_file_loads_with_weights_only_and_carries_what_detect_needs(reference):
    out, summary, _ = reference
    torch.load(out / "model.pt", weights_only=True)  # a plain file: no pickled code to trust
    state = ModelFile.load(out / "model.pt")
    assert state.feature_fingerprint == FeatureSettings().fingerprint()
    assert state.dev_eer == summary["best_dev_eer"] and np.isfinite(state.threshold)
    assert state.eval_input == QUICK.eval_input  # the rule the threshold was measured under
    # the affine calibration fitted on the kept model's dev scores: positive slope, finite
    calibration = state.calibration
    assert calibration["scale"] > 0 and np.isfinite(calibration["offset"]) and calibration["prior"] == 0.5
    model = build_model(state.model_settings, state.feature_settings)
    model.load_state_dict(state.weights)


@pytest.mark.slow
def test_same_seed_same_metrics(features_dir, reference, tmp_path):
    _, summary, _ = reference
    assert same_run(run(features_dir, tmp_path), summary)


@pytest.mark.slow
def test_loader_workers_change_nothing_but_speed(features_dir, reference, tmp_path):
    """Two persistent workers give the run that no worker gives: every draw comes from
    (seed, epoch, item), not from a worker's history."""
    _, summary, _ = reference
    assert same_run(run(features_dir, tmp_path, dataclasses.replace(QUICK, num_workers=2)), summary)


def test_the_run_records_its_precision_and_why(reference):
    _, summary, _ = reference
    assert summary["precision"] == "fp32" and summary["precision_reason"] == "train.precision: fp32"


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(features_dir, reference, tmp_path):
    _, summary, _ = reference
    first = run(features_dir, tmp_path, dataclasses.replace(QUICK, epochs=1))
    assert first["epochs"] == 1
    (tmp_path / "model.pt").unlink()  # as `dvc repro` does with the stage's outputs before rerunning
    resumed = run(features_dir, tmp_path)
    assert same_run(resumed, summary)
    history = load_checkpoint(tmp_path / "checkpoint.pt")["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


@pytest.mark.slow
def test_changed_settings_start_over_instead_of_resuming(features_dir, reference, tmp_path):
    run(features_dir, tmp_path, dataclasses.replace(QUICK, epochs=1))
    other = run(features_dir, tmp_path, dataclasses.replace(QUICK, epochs=1, lr=0.001))
    assert other["epochs"] == 1 and other["steps"] == 6


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    values = [lr_factor(s, 10, "cosine", 110) for s in range(1, 111)]
    assert values[:10] == pytest.approx([s / 10 for s in range(1, 11)])
    assert values[59] == pytest.approx(0.5)  # halfway between the warm-up's end and the last step
    assert values[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert lr_factor(400, 100, "noam", 110) == warmup_factor(400, 100)


@pytest.mark.slow
def test_cosine_run_ends_at_zero_and_a_longer_one_starts_over(features_dir, tmp_path):
    cosine = dataclasses.replace(QUICK, epochs=2, lr_schedule="cosine")
    run(features_dir, tmp_path, cosine)
    history = load_checkpoint(tmp_path / "checkpoint.pt")["history"]
    assert history[0]["lr"] > 0.0 and history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    # More epochs stretch the whole cosine, so the finished run cannot simply be extended.
    longer = train_run(features_dir, tmp_path, dataclasses.replace(cosine, epochs=3))
    assert "belongs to other settings" in longer.stdout
    assert training_summary(tmp_path)["steps"] == 3 * 6


def test_whole_utterance_scoring_sees_every_frame_of_each_utterance(features_dir, reference):
    out, _, _ = reference
    model_file = ModelFile.load(out / "model.pt")
    model = model_file.network()
    readers = open_partition(features_dir / "dev", FeatureSettings())
    streams = model_file.network_streams
    whole = ShardDataset(readers, QUICK.frames, train=False, eval_input="whole", streams=streams)
    crop = ShardDataset(readers, QUICK.frames, train=False, streams=streams)
    cpu = torch.device("cpu")
    scores, labels = scoring.score_dataset(model, whole, QUICK.batch_size, cpu, "fp32")
    assert list(labels) == list(whole.labels)
    for i in range(0, len(whole), 7):  # each utterance alone, at its own length
        with torch.no_grad():
            alone = float(bonafide_score(model(whole[i][0][None]))[0])
        assert scores[i] == pytest.approx(alone, abs=1e-5)
    crop_scores, _ = scoring.score_dataset(model, crop, QUICK.batch_size, cpu, "fp32")
    longer = np.array([whole[i][0].shape[-1] > QUICK.frames for i in range(len(whole))])
    assert longer.any() and not np.allclose(scores[longer], crop_scores[longer], atol=1e-4)
    assert np.allclose(scores[~longer], crop_scores[~longer], atol=1e-5)


def test_an_input_longer_than_the_limit_is_scored_as_the_mean_of_its_pieces(reference, monkeypatch):
    out, _, _ = reference
    model = ModelFile.load(out / "model.pt").network()
    x = torch.randn(1, 1, 45, 100)
    with torch.no_grad():
        pieces = [float(bonafide_score(model(p))[0]) for p in (x[..., :34], x[..., 34:67], x[..., 67:])]
        monkeypatch.setattr(scoring, "MAX_SCORED_FRAMES", 40)
        score = float(scoring.score_inputs(model, x, torch.device("cpu"), "fp32")[0])
    assert score == pytest.approx(np.mean(pieces), abs=1e-5)


def test_shards_of_other_feature_settings_are_refused(features_dir, tmp_path):
    settings = Settings(features=FeatureSettings(hop_length=160), model=SMALL_MODEL, train=QUICK)
    result = run_training(settings, features_dir, tmp_path, check=False)
    assert result.returncode == 1
    assert "other settings" in result.stderr


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(bad)


def test_warmup_schedule_peaks_at_the_end_of_warmup():
    values = [warmup_factor(s, 100) for s in range(1, 400)]
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 99
    assert warmup_factor(400, 100) == pytest.approx((400 / 100) ** -0.5)


def test_micro_batches_give_the_whole_batch_gradient():
    torch.manual_seed(0)
    model = build_model(SMALL_MODEL)
    model.eval()  # fixed BatchNorm statistics and no dropout: chunking must not change the gradient
    x, y = torch.randn(8, 1, 45, 24), torch.tensor([0, 1] * 4)
    grads = []
    for micro in (0, 3):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        loss, correct = train_step(model, x, y, optimizer, 10.0, torch.device("cpu"), "fp32", micro)
        grads.append([p.grad.clone() for p in model.parameters()])
    for whole, chunked in zip(*grads):
        torch.testing.assert_close(whole, chunked, rtol=1e-4, atol=1e-6)


def test_evaluate_refuses_a_model_trained_on_other_feature_settings(reference, tmp_path, capsys):
    import yaml

    from conftest import ROOT
    from pipeline import evaluate
    out, _, _ = reference
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"]["hop_length"] = 160
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert evaluate.main(["dev", "--params", str(path), "--model", str(out / "model.pt")]) == 1
    assert "trained on other feature settings" in capsys.readouterr().err


@pytest.mark.slow
def test_a_finished_run_rerun_trains_anew_and_writes_the_model(features_dir, reference, tmp_path):
    _, summary, _ = reference
    run(features_dir, tmp_path)
    (tmp_path / "model.pt").unlink()
    again = run(features_dir, tmp_path)
    assert same_run(again, summary) and (tmp_path / "model.pt").is_file()


def test_weight_average_is_the_mean_of_the_snapshots():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    snapshots, average = [], None
    for count in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        average = accumulate_average(average, model, count)
    for name in average:
        torch.testing.assert_close(average[name], torch.stack([s[name] for s in snapshots]).mean(0))


@pytest.mark.slow
def test_averaged_run_saves_the_average_and_resumes_to_the_same_result(features_dir, tmp_path):
    averaging = dataclasses.replace(QUICK, average_epochs=2)
    whole = run(features_dir, tmp_path / "whole", averaging)
    assert whole["averaged_epochs"] == 2 and whole["best_epoch"] == 3
    state = ModelFile.load(tmp_path / "whole" / "model.pt")
    last = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert state.dev_eer == whole["best_dev_eer"]
    # The saved weights are the average, not the last epoch's.
    for name, value in last["average"].items():
        torch.testing.assert_close(state.weights[name], value)
    assert any(not torch.equal(state.weights[n], last["model"][n]) for n in last["average"])
    # Stopped after epoch 1 (outside the window) and resumed: the same run and the same average.
    first = run(features_dir, tmp_path / "resumed", dataclasses.replace(averaging, epochs=1))
    assert first["averaged_epochs"] == 1
    (tmp_path / "resumed" / "model.pt").unlink()
    resumed = run(features_dir, tmp_path / "resumed", averaging)
    assert same_run(resumed, whole)
    again = ModelFile.load(tmp_path / "resumed" / "model.pt")
    for name in state.weights:
        torch.testing.assert_close(again.weights[name], state.weights[name])


@pytest.mark.slow
@pytest.mark.parametrize("lr, message", [
    (1e30, r"epoch 1: the training loss is nan .*diverged.*lower train.lr"),
    (1e8, r"epoch 3: the dev scores are unusable \(fewer than 3 distinct scores.*diverged or collapsed"),
])
def test_a_diverged_run_stops_with_a_message_naming_the_epoch(features_dir, tmp_path, lr, message):
    settings = dataclasses.replace(QUICK, lr=lr, average_epochs=0)
    result = train_run(features_dir, tmp_path, settings, "--fresh", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(message, result.stderr), result.stderr


@pytest.mark.slow
def test_the_margin_reaches_its_floor_at_the_end_of_a_run_of_any_length(features_dir, reference, tmp_path):
    for epochs in (2, 3):
        summary = run(features_dir, tmp_path / str(epochs), dataclasses.replace(QUICK, epochs=epochs),
                      model=dataclasses.replace(SMALL_MODEL, lambda_floor_at=1.0), live=False)
        assert summary["final_lambda"] == pytest.approx(5.0)
    # the paper's form (lambda_gamma 0.1) ignores the run's length: 18 steps leave lambda at 536
    assert reference[1]["final_lambda"] == pytest.approx(1500 / (1 + 0.1 * 18))


@pytest.mark.slow
def test_the_authors_epoch_rule_keeps_the_lowest_dev_loss(features_dir, tmp_path):
    settings = dataclasses.replace(QUICK, epochs=4, select_epoch="dev_loss")
    summary = run(features_dir, tmp_path, settings)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    losses = {r["epoch"]: r["dev_loss"] for r in state["history"]}
    assert summary["best_epoch"] == min(losses, key=losses.get)
    eers = {r["epoch"]: r["dev_eer"] for r in state["history"]}
    assert min(eers, key=eers.get) != summary["best_epoch"]  # the EER rule would keep another epoch
    assert summary["best_dev_loss"] == min(losses.values())
    model = ModelFile.load(tmp_path / "model.pt")
    assert model.epoch == summary["best_epoch"]
