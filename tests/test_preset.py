from pathlib import Path

import pytest

from features.streams import stream_widths
from pipeline.preset import main
from pipeline.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_paper_preset_sets_the_full_recipe_and_keeps_comments(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert main([str(ROOT / "presets/asvspoof2019_la.yaml"), "--set", "data.root=/data/LA",
                 "--params", str(params)]) == 0
    settings = load_settings(params)
    assert settings.data.root == "/data/LA" and settings.corpus.build is False
    assert (settings.train.frames, settings.train.batch_size, settings.train.epochs) == (600, 64, 32)
    assert settings.train.warmup_steps == 1000 and settings.train.lr_schedule == "noam"
    assert settings.train.eval_input == "crop"  # the paper's fixed-length input
    # The paper's model selection (best dev epoch), not the mini corpus's weight average.
    assert settings.train.average_epochs == 0 and settings.model.input_norm == "none"
    # The paper's input: the F0 subband alone, whatever the mini corpus default adds.
    assert settings.features.view2_bands == 0 and settings.features.excitation is False
    assert stream_widths(settings.features) == {"subband": 45}
    # ... and none of the mini corpus's augmentation.
    assert (settings.train.mask_bins, settings.train.mask_frames, settings.train.freq_stretch) == (0, 0, 0.0)
    assert settings.augment.copies == 0 and settings.copy_synthesis.methods == []
    assert "# Every tunable setting of the pipeline" in params.read_text()
    assert settings.extract.scheduler is None


def test_a_wrong_key_leaves_params_untouched(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    params.write_text(original)
    assert main(["--set", "train.frmes=3", "--params", str(params)]) == 1
    assert "train.frmes: not a key of params.yaml" in capsys.readouterr().err
    assert main(["--set", "train.frames=0", "--params", str(params)]) == 1
    assert params.read_text() == original


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "presets").glob("*.yaml")))
def test_every_preset_applies_to_the_default_params(tmp_path, preset):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert main([str(ROOT / "presets" / preset), "--params", str(params)]) == 0
    load_settings(params)


def test_the_long_mini_preset_is_the_slower_recipe(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    default = load_settings(params).train
    assert main([str(ROOT / "presets/mini_long.yaml"), "--params", str(params)]) == 0
    long = load_settings(params).train
    assert long.frames * long.epochs > 2 * default.frames * default.epochs
