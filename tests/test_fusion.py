"""The score fusion: utterance statistics of the excitation rows, their quadratic model, the
fusion weights fitted on dev, and every scorer (evaluate, detect, ONNX) applying them alike."""
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import ROOT, harmonic, run_training, train_tiny_model
from features.excitation import N_UTTERANCE_STATISTICS, utterance_statistics
from model.fusion import combine, fit_fusion, fit_statistics_model, fused_scores, statistics_logit
from pipeline.data.shards import open_partition
from pipeline.scoring.metrics import compute_eer
from pipeline.scoring.modelfile import ModelFile
from pipeline.scoring.scorer import Scorer
from pipeline.settings import FeatureSettings, SettingsError, load_settings

EXCITATION = dataclasses.replace(FeatureSettings(), view2_bands=24, excitation=True)


def test_utterance_statistics_summarise_voiced_and_unvoiced_speech_apart():
    frames = np.zeros((20, 4))
    frames[:8] = [1.0, 2.0, 3.0, 4.0]      # voiced
    frames[8:15] = [5.0, 6.0, 7.0, 8.0]    # unvoiced
    frames[3] = [1.5, 2.0, 3.0, 4.0]       # one voiced frame off the others: not in the median
    f0 = np.r_[np.full(8, 120.0), np.zeros(12)]  # frames 15-19: silent (all 0), left out
    stats = utterance_statistics(frames, f0)
    assert stats.shape == (N_UTTERANCE_STATISTICS,)
    np.testing.assert_allclose(stats[0:4], [1, 2, 3, 4])       # voiced medians
    np.testing.assert_allclose(stats[4:8], 0.0)                # voiced quartile ranges
    np.testing.assert_allclose(stats[8:12], [5, 6, 7, 8])      # unvoiced medians
    assert stats[-1] == pytest.approx(8 / 15)                  # voiced share of the speech frames


def test_utterance_statistics_with_too_few_voiced_frames_use_all_speech():
    frames = np.tile([[1.0, 1.0, 1.0, 1.0]], (10, 1))
    frames[0] = 9.0
    stats = utterance_statistics(frames, np.r_[150.0, np.zeros(9)])
    np.testing.assert_allclose(stats[0:4], stats[8:12])
    with pytest.raises(ValueError, match="expected"):
        utterance_statistics(frames[:, :3], np.zeros(10))


def test_statistics_model_learns_a_quadratic_boundary_and_stores_plain_numbers():
    # Bona fide inside a ring of spoofs: no straight line separates them, a quadratic does.
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 400)
    radius = np.r_[rng.uniform(0, 1, 200), rng.uniform(2, 3, 200)]
    x = np.c_[radius * np.cos(angle), radius * np.sin(angle), rng.normal(size=(400, 2))]
    labels = np.r_[np.ones(200, int), np.zeros(200, int)]
    model = fit_statistics_model(x, labels)
    json.dumps(model)  # what the model file and the ONNX sidecar hold
    logit = statistics_logit(model, x)
    assert compute_eer(logit[labels == 1], logit[labels == 0])[0] < 0.05
    with pytest.raises(ValueError, match="bona fide and spoofed"):
        fit_statistics_model(x, np.ones(400, int))


def test_a_linear_statistics_model_cannot_learn_the_ring_and_its_scorer_knows_its_degree():
    # the studies' linear model (bench/statistics_groups.py): stored with its degree, scored as fitted
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 400)
    radius = np.r_[rng.uniform(0, 1, 200), rng.uniform(2, 3, 200)]
    x = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    labels = np.r_[np.ones(200, int), np.zeros(200, int)]
    quadratic, linear = fit_statistics_model(x, labels), fit_statistics_model(x, labels, degree=1)
    assert "degree" not in quadratic and linear["degree"] == 1  # the recipe's model files stay as they were
    assert len(linear["coef"]) == 2 and len(quadratic["coef"]) == 5
    eer = {name: compute_eer(s[labels == 1], s[labels == 0])[0]
           for name, s in (("linear", statistics_logit(linear, x)), ("quadratic", statistics_logit(quadratic, x)))}
    assert eer["quadratic"] < 0.05 < 0.3 < eer["linear"]


def test_row_weights_move_the_statistics_model_towards_the_rows_that_weigh_more():
    # two kinds of bona fide: weighting the rare kind up makes the model accept more of it
    rng = np.random.default_rng(1)
    common, rare, spoof = rng.normal(0, 1, (300, 2)), rng.normal([3, 0], 1, (30, 2)), rng.normal([1.5, 2], 1, (300, 2))
    x, labels = np.r_[common, rare, spoof], np.r_[np.ones(330, int), np.zeros(300, int)]
    weight = np.r_[np.ones(300), np.full(30, 10.0), np.ones(300)]
    plain, weighted = fit_statistics_model(x, labels), fit_statistics_model(x, labels, sample_weight=weight)
    assert np.mean(statistics_logit(weighted, rare)) > np.mean(statistics_logit(plain, rare))


def test_a_one_sided_statistics_model_can_lower_a_score_but_never_raise_it():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    labels = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
    two_sided, one_sided = fit_statistics_model(x, labels), fit_statistics_model(x, labels, one_sided=True)
    json.dumps(one_sided)
    assert "one_sided" not in two_sided  # model files of two-sided fusions stay as they were
    logit, capped = statistics_logit(two_sided, x), statistics_logit(one_sided, x)
    assert (logit > 0).any() and (logit < 0).any()
    np.testing.assert_allclose(capped, np.minimum(logit, 0.0))
    # the fused score: a spoof-like excitation pulls a score down, a voice-like one adds nothing
    fusion = {"statistics_model": one_sided, "weights": {"w_network": 1.0, "w_statistics": 1.0, "bias": 0.0}}
    np.testing.assert_allclose(fused_scores(fusion, np.zeros(300), x), np.minimum(logit, 0.0))


def test_fusion_weights_follow_the_informative_input():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    informative = labels * 2.0 + rng.normal(size=200)
    noise = rng.normal(size=200)
    weights = fit_fusion(informative, noise, labels)
    assert weights["w_network"] > 1.0 and abs(weights["w_statistics"]) < 0.5
    np.testing.assert_allclose(combine(weights, [1.0], [2.0]),
                               weights["w_network"] + 2 * weights["w_statistics"] + weights["bias"])


def test_fusion_needs_the_excitation_statistics(tmp_path):
    params = yaml.safe_load(open(ROOT / "params.yaml"))
    assert params["model"]["excitation_fusion"] and params["features"]["excitation"]
    params["features"]["excitation"] = False
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match="excitation_fusion"):
        load_settings(tmp_path / "p.yaml")
    # Settings built in code meet the same rule when training starts (train.py, as the train stage runs
    # it): the rule named on stderr, exit status 1, and nothing written.
    from pipeline.settings import ModelSettings, Settings
    settings = Settings(features=FeatureSettings(excitation=False), model=ModelSettings(excitation_fusion=True))
    result = run_training(settings, tmp_path / "features", tmp_path / "models", check=False)
    assert result.returncode == 1 and "excitation_fusion" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["params.yaml"]  # what run_training wrote


def network_scores(model_file: ModelFile, readers, exclude_attacks=()):
    """(dataset, the network's scores (unfused), labels) of shards, as the model file evaluates them."""
    scorer = Scorer.of(model_file)
    dataset = scorer.dataset(readers, exclude_attacks)
    scores, labels = scorer.score_dataset(dataset, 16)
    return dataset, scores, labels


@pytest.mark.slow
def test_statistics_fit_on_training_utterances_and_weights_on_dev_only(tmp_path):
    model_path = train_tiny_model(tmp_path, EXCITATION, precision="fp32", fusion=True, exclude_attacks=["A02"])
    model_file = ModelFile.load(model_path)
    fusion = model_file.fusion
    assert fusion["streams"] == ["excitation"]
    # The statistics model: the training utterances without the excluded attack.
    train_set, _, train_labels = network_scores(model_file, open_partition(tmp_path / "features/train", EXCITATION),
                                                exclude_attacks=["A02"])
    expected = fit_statistics_model(train_set.utterance_statistics(fusion["streams"]), train_labels)
    np.testing.assert_allclose(fusion["statistics_model"]["coef"], expected["coef"], rtol=1e-6, atol=1e-9)
    # The weights: the network's dev scores (dev without the excluded attack) with the statistics' log-odds.
    dev_set, dev_scores, dev_labels = network_scores(model_file, open_partition(tmp_path / "features/dev", EXCITATION),
                                                     exclude_attacks=["A02"])
    dev_statistics = dev_set.utterance_statistics(fusion["streams"])
    refit = fit_fusion(dev_scores, statistics_logit(fusion["statistics_model"], dev_statistics), dev_labels)
    for key in ("w_network", "w_statistics", "bias"):
        assert fusion["weights"][key] == pytest.approx(refit[key], rel=1e-3, abs=1e-4)
    # The stored dev EER is the fused score's.
    fused = fused_scores(fusion, dev_scores, dev_statistics)
    assert model_file.dev_eer == pytest.approx(compute_eer(fused[dev_labels == 1], fused[dev_labels == 0])[0])


@pytest.mark.slow
@pytest.mark.parametrize("with_copies", [True, False])
def test_the_statistics_model_is_fitted_on_the_augmented_copies_when_asked(tmp_path, with_copies):
    from conftest import TINY_MODEL, make_feature_shards
    from pipeline.data.dataset import ShardDataset
    from pipeline.settings import ModelSettings, Settings, TrainSettings

    make_feature_shards(tmp_path / "features/train", EXCITATION, n_utts=32, seed=0, copies=2)
    make_feature_shards(tmp_path / "features/dev", EXCITATION, n_utts=16, n_shards=1, seed=1)
    settings = Settings(features=EXCITATION,
                        model=ModelSettings(**TINY_MODEL, excitation_fusion=True, excitation_fusion_copies=with_copies),
                        train=TrainSettings(frames=32, batch_size=16, epochs=1, warmup_steps=2, num_workers=0,
                                            precision="fp32"))
    run_training(settings, tmp_path / "features", tmp_path / "models")
    fusion = ModelFile.load(tmp_path / "models/model.pt").fusion
    train_set = ShardDataset(open_partition(tmp_path / "features/train", EXCITATION), frames=32, train=True)
    assert list(train_set.copies) == [2] * 32
    statistics = train_set.utterance_statistics(fusion["streams"], with_copies=with_copies)
    assert len(statistics) == (96 if with_copies else 32)
    expected = fit_statistics_model(statistics, train_set.copy_labels() if with_copies else train_set.labels)
    np.testing.assert_allclose(fusion["statistics_model"]["coef"], expected["coef"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fusion["statistics_model"]["mean"], expected["mean"], rtol=1e-6)


@pytest.mark.slow
def test_evaluate_detect_and_onnx_score_the_fused_score(tmp_path):
    from pipeline.inference import export
    from pipeline.inference.detector import Detector
    model_path = train_tiny_model(tmp_path, EXCITATION, precision="fp32", fusion=True)
    model_file = ModelFile.load(model_path)
    settings = load_settings(ROOT / "params.yaml")
    dev = open_partition(tmp_path / "features/dev", EXCITATION)
    # what the evaluate stage scores: the model file's Scorer, at evaluate's batch size
    dataset, scores, _ = Scorer.of(model_file).score_readers(dev, settings.evaluate.batch_size)
    _, network, _ = network_scores(model_file, dev)
    np.testing.assert_allclose(scores, fused_scores(model_file.fusion, network,
                                                    dataset.utterance_statistics(model_file.fusion["streams"])))
    assert not np.allclose(scores, network)

    files = []
    for i, (f0, seconds) in enumerate(((150, 1.3), (210, 2.2), (180, 1.3))):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], harmonic(f0, seconds=seconds), 16000)
    detector = Detector(model_path)
    one_by_one = np.array([detector.score(f) for f in files])
    streamed = {str(p): s for p, s, _ in detector.stream(files, workers=0, progress=False)}
    np.testing.assert_allclose([streamed[str(f)] for f in files], one_by_one, atol=1e-6)
    onnx = Detector(export.export(model_path, "onnx", tmp_path / "m.onnx"))
    onnx_one_by_one = np.array([onnx.score(f) for f in files])
    assert np.max(np.abs(onnx_one_by_one - one_by_one)) <= 1e-3
    # Worker processes, each with an onnxruntime session of its own.
    onnx_streamed = {str(p): s for p, s, _ in onnx.stream(files, workers=2, progress=False)}
    np.testing.assert_allclose([onnx_streamed[str(f)] for f in files], onnx_one_by_one, atol=1e-6)
