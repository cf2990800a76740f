from pathlib import Path

import pytest
import yaml

from features.streams import stream_widths
from pipeline.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path, change):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in change.items():
        section, key = dotted.split(".")
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repository_params_load_with_paper_defaults():
    settings = load_settings(ROOT / "params.yaml")
    assert settings.features.n_fft == 1728 and settings.features.hop_length == 130
    assert settings.features.n_subband_bins == 45
    # the mini corpus default adds the second view (and the streams it turns on); the paper preset
    # turns them off
    fs = settings.features
    expected = {"subband": 45, "view2": fs.view2_bands, "excitation": 4 if fs.excitation else 0,
                "harmonicity": 1 if fs.harmonicity else 0, "harmonic_phase": 16 if fs.harmonic_phase else 0}
    assert stream_widths(fs) == {name: width for name, width in expected.items() if width}


@pytest.mark.parametrize("change, message", [
    ({"features.nfft": 512}, "features.nfft: unknown key"),
    ({"features.n_fft": "big"}, "features.n_fft: must be an integer"),
    ({"features.n_fft": -5}, "features.n_fft: must be > 0"),
    ({"features.max_hz": 9000.0}, "features.max_hz: must be in"),
    ({"features.f0_method": "crepe"}, "features.f0_method: must be one of"),
    ({"extract.shard_size": 0}, "extract.shard_size: must be > 0"),
    ({"train.frames": 0}, "train.frames: must be > 0"),
    ({"train.mask_frames": -1}, "train.mask_frames: must be >= 0"),
    ({"train.lr_schedule": "step"}, "train.lr_schedule: must be one of"),
    ({"train.precision": "fp16"}, r"train.precision: must be one of \['auto', 'bf16', 'fp32'\]"),
    ({"train.num_workers": "many"}, r"train.num_workers: must be an integer or must be one of \['auto'\]"),
    ({"train.num_workers": -2}, "train.num_workers: must be auto or >= 0"),
    ({"train.dev_every": -1}, "train.dev_every: must be >= 0"),
    ({"train.batch_size": 30, "train.nproc": 4}, "train.batch_size: 30 does not split evenly"),
    ({"model.planes": [16, 32]}, "model: layers and planes need the same"),
    ({"model.head": "ocsoftmax", "model.oc_margins": [0.2, 0.9]}, r"model.oc_margins: expected \[bona fide, spoof\]"),
    ({"model.oc_alpha": 0}, "model.oc_alpha: must be > 0"),
    ({"evaluate.asv_operating_point": {"Pfa_asv": 2.0, "Pmiss_asv": 0.1, "Pmiss_spoof_asv": 0.1}},
     "evaluate.asv_operating_point.Pfa_asv: must be a rate"),
    ({"data.on_error": "ignore"}, "data.on_error: must be one of"),
    ({"corpus.build": "yes"}, "corpus.build: must be true or false"),
    ({"corpus.channel_rate": 44100}, "corpus.channel_rate: must be an integer from 1000 to 16000"),
])
def test_bad_values_are_rejected_with_their_path(tmp_path, change, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(write_params(tmp_path, change))


def test_unknown_section_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("featurez: {}\n")
    with pytest.raises(SettingsError, match="featurez: unknown key"):
        load_settings(path)
