"""The second view: mel-spaced bands, a feature stream of their own (after the subband in the
network's input), read by a branch of their own and fused with the subband's embedding before the head."""
import dataclasses

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, harmonic, train_tiny_model
from features import extract
from features.streams import network_streams
from model import build_model, count_parameters
from pipeline import detect
from pipeline.scoring.modelfile import ModelFile
from pipeline.settings import FeatureSettings, ModelSettings, SettingsError, build, load_settings

VIEW2 = FeatureSettings(view2_bands=24, view2_min_hz=400.0, view2_max_hz=4000.0)
VIEW2_EXCITATION = dataclasses.replace(VIEW2, excitation=True)


def test_second_view_follows_the_unchanged_subband():
    x = harmonic(170.0, seconds=1.0) + 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    plain = extract(x, 16000, FeatureSettings(), with_f0=False)
    fused = extract(x, 16000, VIEW2, with_f0=False)
    assert set(plain) == {"subband"} and set(fused) == {"subband", "view2"}
    assert fused["subband"].shape == (plain.frames, 45) and fused["view2"].shape == (plain.frames, 24)
    np.testing.assert_array_equal(fused["subband"], plain["subband"])
    # in the network's input the bands follow the subband
    assert network_streams(VIEW2) == {"subband": 45, "view2": 24}
    np.testing.assert_array_equal(fused.stacked(list(network_streams(VIEW2)))[:, 45:], fused["view2"])
    # a tone at 1 kHz lights the band around 1 kHz, not the subband
    t = np.arange(16000) / 16000
    tone = extract((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 16000, VIEW2, with_f0=False)
    bands = tone["view2"][5:-5].mean(axis=0)
    assert 2 <= int(np.argmax(bands)) <= 12 and bands.max() > tone["subband"][5:-5, :40].mean() + 3


def test_fingerprint_changes_only_with_a_second_view():
    # shards and model files made before the second view existed stay valid
    assert FeatureSettings().fingerprint() == FeatureSettings(view2_min_hz=100.0).fingerprint()
    assert VIEW2.fingerprint() != FeatureSettings().fingerprint()
    # feature settings stored without the keys (as a model file or shard holds them) read back without a view
    assert build(FeatureSettings, {k: v for k, v in vars(FeatureSettings()).items()
                                   if not k.startswith("view2")}, "feature_settings").view2_bands == 0


def test_branch_reads_the_second_view_and_the_backbone_the_subband():
    torch.manual_seed(0)
    model = build_model(ModelSettings(view2_dim=32), VIEW2).eval()
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, tuple(inputs[0].shape))
        return hook

    model.backbone.register_forward_hook(record("backbone"))
    model.view2.register_forward_hook(record("view2"))
    x = torch.randn(3, 1, 69, 64)
    out = model(x)
    assert out.cos_theta.shape == (3, 2)
    assert seen == {"backbone": (3, 1, 45, 64), "view2": (3, 1, 24, 64)}
    changed = x.clone()
    changed[:, :, 45:] += 3.0
    assert not torch.allclose(model(changed).cos_theta, out.cos_theta)
    plain = build_model(ModelSettings(view2_dim=32))
    assert plain.view2 is None and count_parameters(model) > count_parameters(plain)


@pytest.mark.slow
@pytest.mark.parametrize("features", [VIEW2, VIEW2_EXCITATION], ids=["view2", "view2+excitation"])
def test_a_fused_model_trains_saves_and_scores_audio(tmp_path, features):
    model_path = train_tiny_model(tmp_path, features)
    model_file = ModelFile.load(model_path)
    model = model_file.network()
    assert model.view2_split == 45 and model_file.feature_settings == features
    assert model.excitation_rows == (4 if features.excitation else 0)
    assert model.streams == network_streams(features)
    audio = tmp_path / "a.wav"
    import soundfile as sf
    sf.write(audio, harmonic(150.0, seconds=1.5), 16000)
    out = tmp_path / "scores.tsv"
    assert detect.main(["--model", str(model_path), str(audio), "--out", str(out)]) == 0
    assert len(out.read_text().strip().splitlines()) == 2  # header + one file


def test_second_view_settings_are_checked(tmp_path):
    params = yaml.safe_load(open(ROOT / "params.yaml"))
    params["features"].update(view2_bands=40, view2_min_hz=5000.0, view2_max_hz=4000.0)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match="view2_min_hz < view2_max_hz"):
        load_settings(tmp_path / "p.yaml")
    params["features"].update(view2_min_hz=400.0)
    params["train"]["freq_stretch"] = 0.2
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match="freq_stretch"):
        load_settings(tmp_path / "p.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("features", [VIEW2, VIEW2_EXCITATION], ids=["view2", "view2+excitation"])
def test_a_fused_model_exports_to_onnx_and_scores_the_same(tmp_path, features):
    import soundfile as sf

    from pipeline.inference import export
    from pipeline.inference.detector import Detector
    model_path = train_tiny_model(tmp_path, features, precision="fp32")  # the export runs in fp32
    onnx_path = export.export(model_path, "onnx", tmp_path / "m.onnx")
    files = []
    for i, (f0, seconds) in enumerate(((150, 1.3), (210, 2.2))):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], harmonic(f0, seconds=seconds), 16000)
    reference = np.array([Detector(model_path).score(f) for f in files])
    exported = Detector(onnx_path)
    assert np.max(np.abs(np.array([exported.score(f) for f in files]) - reference)) <= 1e-4
