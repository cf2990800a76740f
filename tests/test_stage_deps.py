"""The pipeline map cannot drift from the code: every module a DVC stage runs (its entry point and
everything that imports, transitively, inside functions too) is among the stage's deps, so editing
any function a stage runs makes that stage stale; and no stage imports another stage or train.py."""
import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGES = ("pipeline", "features", "model")
# What a stage runs besides its imports: loao and loso train each held-out model with train.py, in a
# process of its own (pipeline/studies/runs.py).
ALSO_RUNS = {"loao": ["train.py"], "loso": ["train.py"]}
# The command-line entry points: the DVC stages' and the two commands users run beside them.
COMMANDS = ("corpus", "manifest", "extract", "f0_report", "evaluate", "loao", "loso", "channels", "model_card",
            "detect", "export", "preset")


def module_file(name: str) -> Path | None:
    """The file of a project module (pipeline.data.shards -> pipeline/data/shards.py), or None."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    path = ROOT.joinpath(*parts)
    if path.is_dir():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_names(path: Path) -> set[str]:
    """Every module name an import statement of the file names (anywhere in it), relative ones resolved."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]  # the package the file is in
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x import y: x in the file's package; from ..x: one up
                anchor = package[:len(package) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def project_imports(path: Path) -> set[Path]:
    """The project files a file imports directly, each package's __init__.py on the way included."""
    found = set()
    for name in imported_names(path):
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            file = module_file(".".join(parts[:end]))
            if file is not None:
                found.add(file)
    return found


def runs(entry: Path) -> set[Path]:
    """The entry point and every project file it imports, transitively."""
    seen, todo = set(), [entry]
    while todo:
        file = todo.pop()
        if file not in seen:
            seen.add(file)
            todo += project_imports(file) - seen
    return seen


def stage_entry(command: str) -> Path:
    words = command.split()
    if "-m" in words:
        return module_file(words[words.index("-m") + 1])
    return ROOT / next(w for w in words if w.endswith(".py"))


def stages() -> dict[str, tuple[Path, list[str]]]:
    """{stage: (entry point, deps)} from dvc.yaml (a foreach stage's template)."""
    out = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        stage = stage.get("do", stage)
        out[name] = (stage_entry(stage["cmd"]), stage.get("deps", []))
    return out


def covered(file: Path, deps: list[str]) -> bool:
    relative = file.relative_to(ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps if "$" not in dep)


@pytest.mark.parametrize("stage", sorted(stages()))
def test_every_module_a_stage_runs_is_among_its_deps(stage):
    entry, deps = stages()[stage]
    files = runs(entry)
    for extra in ALSO_RUNS.get(stage, []):
        files |= runs(ROOT / extra)
    missing = sorted(str(f.relative_to(ROOT)) for f in files if not covered(f, deps))
    assert not missing, f"dvc.yaml: stage {stage} runs {missing} but does not depend on them"
    assert len(files) > 5  # the walk found the imports (a broken walk would pass vacuously)


def test_the_walk_finds_imports_inside_functions_and_relative_ones():
    files = {str(f.relative_to(ROOT)) for f in runs(ROOT / "pipeline/settings.py")}
    assert "features/copy_synthesis.py" in files   # imported inside a validate() method
    files = {str(f.relative_to(ROOT)) for f in runs(ROOT / "model/__init__.py")}
    assert {"model/srla_res2net.py", "features/streams.py"} <= files  # relative and absolute


def test_no_stage_imports_another_stage_and_nothing_imports_train():
    commands = {ROOT / "pipeline" / f"{name}.py" for name in COMMANDS}
    assert all(c.is_file() for c in commands)
    library = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")] + [ROOT / "train.py"]
    for file in library:
        imported = project_imports(file) & commands
        assert not imported, f"{file.relative_to(ROOT)} imports the command {sorted(map(str, imported))}"
    everything = library + list((ROOT / "bench").glob("*.py")) + list((ROOT / "tests").glob("*.py"))
    for file in everything:
        assert not {"train"} & {n.split(".")[0] for n in imported_names(file)}, \
            f"{file.relative_to(ROOT)} imports train.py (run it as a process: tests/conftest.run_training)"
