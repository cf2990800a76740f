"""Stage `corpus`: build the mini corpus in the ASVspoof 2019 LA layout from installable material.

Bona fide speech is the Asterisk voice prompts shipped by Debian (real human recordings:
16 kHz G.722, 8 kHz WAV or 8 kHz GSM) and KDE's volunteer word voices. Spoofs are made here, one
attack id per generator (pipeline/mini/generators.py: TTS engines, neural TTS and vocoders). Every
utterance, bona fide or spoof, leaves through the same channel (silence trim, telephone band
limit, level normalisation, a G.722 round trip, 16-bit FLAC), so the channel cannot tell the
classes apart.

    python -m pipeline.corpus [--params params.yaml] [--out data/mini_corpus]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.mini.builder import build_corpus
from pipeline.settings import load_settings


def build(params: str, out: Path) -> int:
    settings = load_settings(params)
    if not settings.corpus.build:
        # The real corpus is used (data.root points at it): leave an empty, explained output.
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        (out / "README.md").write_text("corpus.build is false: no mini corpus was built.\n")
        return 0
    counts = build_corpus(settings.corpus, out)
    for part, c in counts.items():
        print(f"{part}: {c['bonafide']} bona fide, {c['spoof']} spoof")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/mini_corpus")
    args = parser.parse_args(argv)
    return run_stage("corpus", lambda: build(args.params, Path(args.out)))


if __name__ == "__main__":
    sys.exit(main())
