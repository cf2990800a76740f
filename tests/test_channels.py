"""Channel conditions: each one changes the audio as it says, the same way for the same seed."""
import numpy as np
import pytest
import scipy.signal

from features.channels import CONDITIONS, apply_condition, condition_seed
from pipeline.settings import ChannelSettings, SettingsError


@pytest.fixture(scope="module")
def speech_like():
    rng = np.random.default_rng(0)
    rate = 16000
    t = np.arange(2 * rate) / rate
    f0 = 120 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    x += 0.01 * rng.standard_normal(len(t))
    return (0.1 * x / np.abs(x).max()).astype(np.float32), rate


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_each_condition_changes_the_audio_the_same_way_for_the_same_seed(speech_like, condition):
    x, rate = speech_like
    y = apply_condition(x, rate, condition, seed=5)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    assert np.array_equal(y, apply_condition(x, rate, condition, seed=5))
    assert not np.allclose(y, x, atol=1e-4)
    if condition not in ("g711", "gsm", "mp3", "opus"):  # codecs at a fixed rate: nothing drawn
        assert not np.array_equal(y, apply_condition(x, rate, condition, seed=6))


def test_noise_is_added_at_5_to_20_db_snr(speech_like):
    x, rate = speech_like
    for seed in range(8):
        y = apply_condition(x, rate, "noise", seed)
        snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
        assert 4.9 < snr < 20.1


def test_level_clips_at_full_scale_or_lowers_the_level(speech_like):
    x, rate = speech_like
    x = 5 * x  # peak 0.5: raised by 6 dB or more, it clips
    outcomes = set()
    for seed in range(10):
        y = apply_condition(x, rate, "level", seed)
        if np.abs(y).max() >= 1.0:
            outcomes.add("clipped")
            assert np.mean(np.abs(y) >= 1.0) > 0.001
        else:
            gain = np.abs(y).max() / np.abs(x).max()
            assert 10 ** (-30 / 20) - 1e-6 <= gain <= 10 ** (-10 / 20) + 1e-6
            outcomes.add("lowered")
    assert outcomes == {"clipped", "lowered"}


def test_telephone_codecs_remove_the_band_above_4_khz(speech_like):
    x, rate = speech_like
    noise = np.random.default_rng(1).standard_normal(len(x)).astype(np.float32) * 0.05
    for condition in ("g711", "gsm"):
        f, p = scipy.signal.welch(apply_condition(noise, rate, condition, 1), rate, nperseg=1024)
        assert p[f > 4500].mean() < 1e-3 * p[(f > 300) & (f < 3000)].mean(), condition


def test_reverb_spreads_an_impulse_over_a_tail():
    x = np.zeros(16000, np.float32)
    x[100] = 0.5
    y = apply_condition(x, 16000, "reverb", 3)
    energy = np.cumsum(y[100:].astype(np.float64) ** 2)
    assert energy[int(0.05 * 16000)] < 0.9 * energy[-1]  # more than a tenth of the energy after 50 ms


def test_seeds_depend_on_utterance_and_condition_only():
    assert condition_seed(1, "U1", "mp3") == condition_seed(1, "U1", "mp3")
    assert len({condition_seed(1, "U1", "mp3"), condition_seed(1, "U2", "mp3"), condition_seed(1, "U1", "opus"),
                condition_seed(2, "U1", "mp3")}) == 4


def test_an_unknown_condition_is_refused():
    with pytest.raises(ValueError, match="unknown channel condition 'radio'"):
        apply_condition(np.zeros(100, np.float32), 16000, "radio", 1)
    with pytest.raises(SettingsError, match=r"channels\.conditions: unknown \['radio'\]"):
        ChannelSettings(conditions=["mp3", "radio"]).validate("channels")


def test_sample_keeps_every_bona_fide_and_a_seeded_few_spoofs_of_each_attack():
    from pipeline.data.manifests import ManifestRow
    from pipeline.data.protocol import Utterance
    from pipeline.studies.channels import sample

    rows = [ManifestRow(Utterance(f"U{i:03d}", "S", "-" if i % 4 == 0 else f"A0{i % 3}", int(i % 4 == 0)), "x", "")
            for i in range(120)]
    kept = sample(rows, 5, seed=1)
    assert [r for r in kept if r.utt.label == 1] == [r for r in rows if r.utt.label == 1]
    per_attack = {a: sum(r.utt.attack == a for r in kept) for a in ("A00", "A01", "A02")}
    assert per_attack == {"A00": 5, "A01": 5, "A02": 5}
    assert kept == [r for r in rows if r in kept]  # manifest order
    # the draw depends on the seed and the ids only: not on the rows' order, not on other rows
    assert sample(rows[::-1], 5, seed=1) == kept[::-1]
    assert sample(rows, 5, seed=2) != kept
    assert sample(rows, 0, seed=1) == rows and sample(rows, 1000, seed=1) == rows


def test_a_negative_spoof_count_is_refused():
    with pytest.raises(SettingsError, match=r"channels\.spoofs_per_attack: -1"):
        ChannelSettings(spoofs_per_attack=-1).validate("channels")


@pytest.mark.slow
def test_channels_stage_scores_dev_and_eval_under_each_condition(tmp_path):
    import json
    import subprocess
    import sys

    import yaml

    from conftest import ROOT, make_tone_corpus, repository_features, train_tiny_model
    from pipeline.data.extraction import extract_partition
    from pipeline.data.manifests import build_manifest, write_manifest
    from pipeline.settings import load_settings

    root = make_tone_corpus(tmp_path / "corpus", partitions=("dev", "eval"), per_partition=8)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # one spoof of each of the eval partition's three attacks (A02 has two), every bona fide
    params["channels"] = {"enabled": True, "conditions": ["g711", "noise"], "seed": 3, "spoofs_per_attack": 1}
    params["extract"]["n_jobs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    settings = load_settings(tmp_path / "params.yaml")
    (tmp_path / "manifest").mkdir()
    for part in ("dev", "eval"):
        rows, _ = build_manifest(root, part)
        write_manifest(rows, tmp_path / "manifest" / f"{part}.tsv")
        extract_partition(tmp_path / "manifest" / f"{part}.tsv", tmp_path / "features" / part, settings.features,
                          settings.extract, progress=False)
    model = train_tiny_model(tmp_path / "tiny", repository_features(), fusion=True)
    command = [sys.executable, "-m", "pipeline.channels", "--params", tmp_path / "params.yaml", "--model", model,
               "--manifest", tmp_path / "manifest", "--features", tmp_path / "features", "--out", tmp_path / "out",
               "--metrics", tmp_path / "channels.json"]
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "channels.json").read_text())
    assert set(metrics["eer"]) == {"dev", "eval"} and set(metrics["eer"]["dev"]) == {"clean", "g711", "noise"}
    assert metrics["counts"]["eval"] == {"bonafide": 4, "spoof": 3}
    assert metrics["eer_ratio_to_clean"]["dev"]["noise"] == pytest.approx(
        metrics["eer"]["dev"]["noise"] / max(metrics["eer"]["dev"]["clean"], 1e-9))
    for alone in ("eer_network", "eer_statistics"):  # the fused model's two inputs, each scored alone
        assert set(metrics[alone]["eval"]) == {"clean", "g711", "noise"}
        assert all(0.0 <= eer <= 1.0 for eer in metrics[alone]["eval"].values())
    # the sample's manifests and each condition's figures; its shards removed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dev.tsv", "eval.tsv", "g711.json", "noise.json"]
    # a rerun keeps the finished conditions; from scratch, the same draws give the same figures
    again = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((tmp_path / "channels.json").read_text()) == metrics
    (tmp_path / "out" / "noise.json").unlink()
    third = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and json.loads((tmp_path / "channels.json").read_text()) == metrics
