"""pipeline.export: the exported network scores as the PyTorch model does, at any input length."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, harmonic
from model import build_model
from pipeline.inference import export
from pipeline.inference.detector import Detector
from pipeline.scoring.modelfile import ModelFile, OlderVersionError
from pipeline.scoring.scorer import score_inputs
from pipeline.settings import ModelSettings, Settings, TrainSettings
from pipeline.training import model_file


@pytest.fixture(scope="module", params=["asoftmax", "ocsoftmax"])
def model_path(tmp_path_factory, request):
    """A model file as training writes it (random weights, a calibration), from a small network,
    with the paper's head and with the one-class head."""
    settings = Settings(model=ModelSettings(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8,
                                            head=request.param),
                        train=TrainSettings(frames=32, eval_input="whole"))
    torch.manual_seed(0)
    network = build_model(settings.model, settings.features).eval()
    best = {"dev_eer": 0.2, "epoch": 1, "threshold": 0.01, "calibration": {"scale": 3.0, "offset": -0.2, "prior": 0.5}}
    path = tmp_path_factory.mktemp("export") / "model.pt"
    model_file(network, settings, best, 1, "fp32").save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_matches_pytorch_for_several_lengths(model_path, tmp_path, fmt):
    out = export.export(model_path, fmt, tmp_path / f"m.{fmt}")
    saved = ModelFile.load(model_path)
    network = saved.network()
    info = export.load_export(out)  # the model file, without its weights
    assert info.calibration == saved.calibration and info.frames == 32 and info.weights is None
    assert info.feature_settings == saved.feature_settings
    if fmt == "onnx":
        run = export.export_scorer(out).network  # onnxruntime, long inputs in pieces
    else:
        loaded = torch.jit.load(str(out))
        run = lambda x: loaded(x).detach()  # noqa: E731
    rng = torch.Generator().manual_seed(1)
    for batch, frames in ((1, 32), (3, 77), (2, 160), (4, 413)):
        x = torch.randn(batch, 1, 45, frames, generator=rng) - 4.0
        reference = score_inputs(network, x, torch.device("cpu"), "fp32")
        assert torch.max(torch.abs(run(x) - reference)).item() <= 1e-4, (fmt, batch, frames)


@pytest.mark.slow
def test_detect_scores_audio_with_the_onnx_export_as_with_the_model_file(model_path, tmp_path):
    out = export.export(model_path, "onnx", tmp_path / "m.onnx")
    files = []
    for i, (f0, seconds) in enumerate(((150, 1.3), (210, 2.2), (120, 0.4))):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], harmonic(f0, seconds=seconds), 16000)
    torch_scores = [Detector(model_path).score(f) for f in files]
    onnx_detector = Detector(out)
    onnx_scores = [onnx_detector.score(f) for f in files]
    assert np.max(np.abs(np.array(onnx_scores) - np.array(torch_scores))) <= 1e-4
    assert onnx_detector.calibration == {"scale": 3.0, "offset": -0.2, "prior": 0.5}
    llr, p, _ = onnx_detector.judge(onnx_scores[0])
    assert llr == pytest.approx(3.0 * torch_scores[0] - 0.2, abs=1e-3) and 0.0 <= p <= 1.0


@pytest.mark.slow
def test_an_export_without_its_settings_file_is_refused(model_path, tmp_path):
    out = export.export(model_path, "onnx", tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").unlink()
    with pytest.raises(export.CheckpointError, match="needs its settings"):
        Detector(out)
    # a sidecar beside another network (an interrupted or mixed export) is refused too
    other = export.export(model_path, "torchscript", tmp_path / "m.ts")
    (tmp_path / "m.onnx.json").write_text(Path(str(other) + ".json").read_text())
    with pytest.raises(export.CheckpointError, match="made for another network than"):
        Detector(out)


def test_a_model_file_of_an_older_version_is_refused_with_one_line(tmp_path):
    old = tmp_path / "model.pt"
    torch.save({"format": "srla-model/1", "model": {"w": torch.zeros(2)}, "model_settings": {},
                "feature_settings": {}, "frames": 100}, old)
    with pytest.raises(OlderVersionError, match="older version"):
        ModelFile.load(old)
    audio = tmp_path / "a.wav"
    sf.write(audio, harmonic(150, seconds=0.5), 16000)
    result = subprocess.run([sys.executable, "-m", "pipeline.detect", "--model", str(old), str(audio)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = result.stderr.strip().splitlines()  # one line: the file, and that it is of an older version
    assert len(said) == 1 and said[0].startswith(f"detect: {old}: ") and "older version" in said[0], result.stderr
