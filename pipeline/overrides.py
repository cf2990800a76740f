"""Changing params.yaml: presets and KEY=VALUE overrides, validated before anything is written.

The `preset` command (pipeline/preset.py) runs this; see its docstring.
"""
from __future__ import annotations

import io
from pathlib import Path

import yaml
from ruamel.yaml import YAML

from pipeline.settings import SettingsError, load_settings


def merge(target, preset: dict, path: str = "") -> None:
    for key, value in preset.items():
        where = f"{path}.{key}" if path else key
        if key not in target:
            raise SettingsError(f"{where}: not a key of params.yaml")
        if isinstance(value, dict) and isinstance(target[key], dict) and not _is_leaf_mapping(where):
            merge(target[key], value, where)
        else:
            target[key] = value


def _is_leaf_mapping(where: str) -> bool:
    # Mappings that are values in their own right: replaced whole, not merged key by key.
    return where in {"corpus.speakers"}


def apply_preset(params_path: Path, preset: dict) -> None:
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # keep long flow mappings on one line, as written
    rt.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    document = rt.load(params_path.read_text())
    merge(document, preset)
    buffer = io.StringIO()
    rt.dump(document, buffer)
    candidate = params_path.with_name(params_path.name + ".new")
    candidate.write_text(buffer.getvalue())
    try:
        load_settings(candidate)
    except SettingsError:
        candidate.unlink()
        raise
    candidate.replace(params_path)


def parse_set(items: list[str]) -> dict:
    preset: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"--set {item}: expected KEY=VALUE")
        node = preset
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return preset


def deep_update(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base
