"""train.compile_cache: torch.compile's kernels are kept in one folder across runs."""
import os
import subprocess
import sys

import pytest

from pipeline.training import use_compile_cache


def test_the_cache_folder_is_the_setting_unless_the_environment_names_one(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert use_compile_cache(str(tmp_path / "cache")) == tmp_path / "cache"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "outside"))
    assert use_compile_cache(str(tmp_path / "cache")) == tmp_path / "outside"


COMPILE = """
import torch
from pipeline.training import use_compile_cache
use_compile_cache({cache!r})
step = torch.compile(lambda x: torch.relu(x) * 2 + 1)
assert torch.equal(step(torch.arange(-3.0, 4.0)), torch.relu(torch.arange(-3.0, 4.0)) * 2 + 1)
from torch._dynamo.utils import counters
print(counters["inductor"]["fxgraph_cache_hit"])
"""


@pytest.mark.slow
def test_a_second_process_finds_the_first_ones_compiled_kernels(tmp_path):
    cache = tmp_path / "inductor"
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    script = COMPILE.format(cache=str(cache))
    hits = [int(subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True,
                               text=True, timeout=600).stdout.split()[-1]) for _ in range(2)]
    assert any(p.is_file() for p in cache.rglob("*"))  # the kernels went to the named folder
    assert hits == [0, 1]  # the first process compiled, the second loaded its graph from the cache
