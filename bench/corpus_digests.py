"""Which attacks of a built mini corpus came out byte-identical to another machine's build.

    python bench/corpus_digests.py [--manifest data/manifest] [--out digests.json]
    python bench/corpus_digests.py --compare bench/corpus_digests_avx2.json

Reads the manifests of a built corpus (each file's SHA-256 is in them) and prints, per attack ("-"
for the bona fide), how many files it has and one SHA-256 over their ids and checksums in id
order, with the CPU's vector extensions. Two machines that print the same digest for an attack
built the same files for it. --compare names the attacks whose digests differ from a saved file.
bench/corpus_digests_avx2.json holds a build on a 2-core AMD EPYC with AVX2 and FMA only (no
AVX-512), default params.yaml, commit 06b8cc7's generators.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from corpus import cpu_description  # bench/corpus.py

from pipeline.data.manifests import read_manifest


def digests(manifest: Path) -> dict[str, dict]:
    """Attack -> {"files": count, "sha256": digest of its (id, checksum) pairs in id order}."""
    pairs = defaultdict(list)
    for tsv in sorted(manifest.glob("*.tsv")):
        if tsv.name == "skipped.tsv":
            continue
        for row in read_manifest(tsv):
            pairs[row.utt.attack].append((row.utt.utt_id, row.audio_sha256))
    return {attack: {"files": len(items),
                     "sha256": hashlib.sha256("".join(f"{u} {s}\n" for u, s in sorted(items)).encode()).hexdigest()}
            for attack, items in sorted(pairs.items())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=ROOT / "data/manifest")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, help="a file written by --out on another machine")
    args = parser.parse_args(argv)
    if not any(args.manifest.glob("*.tsv")):
        raise SystemExit(f"bench/corpus_digests.py: no manifests in {args.manifest}; run `make repro` first")
    result = {"cpu": cpu_description(), "attacks": digests(args.manifest)}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.compare:
        other = json.loads(args.compare.read_text())
        print(f"this CPU: {result['cpu']['model']} ({' '.join(result['cpu']['extensions'])}); "
              f"{args.compare}: {other['cpu']['model']} ({' '.join(other['cpu']['extensions'])})")
        for attack, mine in result["attacks"].items():
            theirs = other["attacks"].get(attack)
            same = theirs is not None and theirs["sha256"] == mine["sha256"]
            print(f"  {attack:4s} {mine['files']:5d} files  {'identical' if same else 'DIFFERENT'}")
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
