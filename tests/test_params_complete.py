"""params.yaml is the one source of a run's settings: it sets every key, a params.yaml that leaves
one out is refused naming it, and the code's defaults are the paper's recipe (the preset's)."""
import pytest
import yaml

from conftest import ROOT
from pipeline.overrides import deep_update
from pipeline.settings import Settings, SettingsError, load_settings, settings_as_params

# Keys where the paper preset departs from the code's defaults on purpose: speed only (micro-batches,
# compiling, larger shards), the authors' code's epoch rule, and two keys that do nothing with the
# paper's settings (the second view and the fusion are off there).
PRESET_ONLY = {("train", "micro_batch"), ("train", "compile"), ("extract", "shard_size"),
               ("train", "select_epoch"), ("features", "view2_max_hz"), ("model", "excitation_fusion_copies")}


def test_the_repository_params_set_every_key():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert settings_as_params(load_settings(ROOT / "params.yaml")).keys() == params.keys()
    for section, values in settings_as_params(Settings()).items():
        assert set(values) == set(params[section]), section


@pytest.mark.parametrize("section, key", [("train", "lr"), ("features", "harmonic_phase"), ("loao", "enabled"),
                                          ("features.augment", "p_noise")])
def test_a_params_file_that_leaves_a_key_out_is_refused_naming_it(tmp_path, section, key):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    node = params
    for part in section.split("."):
        node = node[part]
    del node[key]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(SettingsError, match=rf"{section}\.{key}: missing; params.yaml sets every key"):
        load_settings(path)


def test_the_code_defaults_are_the_paper_preset(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    deep_update(params, yaml.safe_load((ROOT / "presets/asvspoof2019_la.yaml").read_text()))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    paper, defaults = settings_as_params(load_settings(path)), settings_as_params(Settings())
    for section in ("features", "extract", "model", "train", "evaluate"):
        for key, value in defaults[section].items():
            if (section, key) not in PRESET_ONLY:
                assert paper[section][key] == value, f"{section}.{key}"
