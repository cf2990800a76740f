"""Apply a preset (a partial params.yaml) to params.yaml, keeping its comments.

    python -m pipeline.preset presets/asvspoof2019_la.yaml [--set data.root=/data/LA] [--params params.yaml]

Every key of the preset must already exist in params.yaml; the result is validated like any
params.yaml before it is written, so a typo leaves params.yaml untouched.
"""
from __future__ import annotations

import argparse
import io
import sys
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", help="a YAML file of params to set")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        preset = yaml.safe_load(Path(args.preset).read_text()) if args.preset else {}
        preset = deep_update(preset or {}, parse_set(args.set))
        apply_preset(Path(args.params), preset)
    except (SettingsError, OSError, yaml.YAMLError) as err:
        print(f"preset: {err}", file=sys.stderr)
        return 1
    print(f"preset: {args.params} updated; run `dvc repro`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
