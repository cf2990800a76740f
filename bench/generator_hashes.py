"""Which generators make the same corpus bytes under other thread counts or CPU code paths.

    python bench/generator_hashes.py [--items 2] [--attacks A03 A11 ...] [--out hashes.json]
    OMP_NUM_THREADS=1 python bench/generator_hashes.py ...      # compare the JSON of two runs

Renders --items utterances of every attack of the corpus plan (and of the bona fide) exactly as the
corpus stage writes them (generator, channel, 16-bit FLAC) into a temporary folder and prints, as
JSON, the SHA-256 of each file by attack and utterance id (compare them with the same files of a
built corpus, data/mini_corpus/ASVspoof2019_LA_*/flac/UTT.flac). Two runs under other environments (thread counts, or
OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 for the AVX2 code paths of
BLAS and torch) that print the same hashes for an attack make the same corpus files for it.
tests/test_generator_determinism.py compares 1 and 2 threads.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from pipeline.mini.builder import PARTITIONS, find_prompts, plan_partition, render
from pipeline.mini.generators import ATTACKS, prepare
from pipeline.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def plan_sample(settings, items: int, attacks) -> dict[str, list]:
    """`items` planned utterances of each attack (and "-", the bona fide), spread over the plan."""
    prompts = find_prompts(settings)
    by_kind: dict[str, list] = defaultdict(list)
    for part in PARTITIONS:
        for item in plan_partition(part, prompts, settings):
            if not attacks or item.attack in attacks:
                by_kind[item.attack].append(item)
    return {kind: plan[::max(1, len(plan) // items)][:items] for kind, plan in sorted(by_kind.items())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--items", type=int, default=2, help="utterances per attack")
    parser.add_argument("--attacks", nargs="*", default=[], help="attack ids (and - for bona fide); default all")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings(args.params).corpus
    sample = plan_sample(settings, args.items, set(args.attacks))
    prepare({ATTACKS[kind].generator for kind in sample if kind != "-"})
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, items in sample.items():
            hashes[kind] = {}
            for item in items:
                render(item, Path(tmp), settings)
                hashes[kind][item.utt_id] = hashlib.sha256((Path(tmp) / f"{item.utt_id}.flac").read_bytes()).hexdigest()
    text = json.dumps(hashes, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
