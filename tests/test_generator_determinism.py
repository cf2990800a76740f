"""The same corpus whatever the thread count: every generator's planned utterances, rendered as the
corpus stage writes them (generator, channel, FLAC), have the same bytes with 1 and with 2 threads
for BLAS, OpenMP and torch (bench/generator_hashes.py in two processes)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def hashes(threads: int) -> dict:
    env = {**os.environ, **{name: str(threads) for name in THREADS}}
    result = subprocess.run([sys.executable, str(ROOT / "bench/generator_hashes.py"), "--items", "1"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_every_generator_writes_the_same_bytes_with_one_or_two_threads():
    one, two = hashes(1), hashes(2)
    assert set(one) == set(two) and len(one) >= 15  # the bona fide and every attack of the plan
    differ = sorted(kind for kind in one if one[kind] != two[kind])
    assert not differ, f"attacks whose corpus files depend on the thread count: {differ}"
