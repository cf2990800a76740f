"""Manifests: a corpus's protocols + audio -> one validated TSV per partition, with audio checksums.

The `manifest` command (pipeline/manifest.py) runs this; see its docstring.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from pipeline.data.layouts import partitions_of, read_layout
from pipeline.data.protocol import ProtocolError, Utterance, parse_conditions
from pipeline.data.shards import file_sha256
from pipeline.settings import PARTITIONS, DataSettings

COLUMNS = ("utt_id", "speaker", "attack", "label", "path", "audio_sha256", "conditions")


class ManifestRow(NamedTuple):
    utt: Utterance
    path: str
    audio_sha256: str


def build_manifest(root: str | Path, partition: str, on_error: str = "stop", layout: str = "asvspoof2019",
                   progress: bool = False, **layout_options) -> tuple[list[ManifestRow], list[str]]:
    """Returns (rows, problems)."""
    found, problems = read_layout(layout, root, partition, on_error, **layout_options)
    rows = [ManifestRow(utt, str(path), file_sha256(path))
            for utt, path in tqdm(found, desc=f"manifest {partition}", unit="file", disable=not progress)]
    return rows, problems


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for utt, audio, checksum in rows:
            writer.writerow((utt.utt_id, utt.speaker, utt.attack, utt.label, str(audio), checksum,
                             utt.conditions_text()))
    tmp.replace(path)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if tuple(header or ()) != COLUMNS:
            raise ProtocolError(f"{path}: not a manifest of this version (header {header}); "
                                f"rerun the manifest stage (`dvc repro manifest`)")
        return [ManifestRow(Utterance(u, s, a, int(label), parse_conditions(c)), p, sha)
                for u, s, a, label, p, sha, c in reader]


def write_partitions(settings: DataSettings, out: Path) -> dict[str, int]:
    """Write out/<partition>.tsv for every partition and out/skipped.tsv; returns the row counts."""
    out.mkdir(parents=True, exist_ok=True)
    counts, skipped = {}, []
    missing = [p for p in PARTITIONS if p not in partitions_of(settings.layout)]
    if missing:
        raise ProtocolError(
            f"data.layout {settings.layout} has no {' or '.join(missing)} partition to train and choose on; "
            f"train on asvspoof2019 or asvspoof5 and score this corpus with "
            f"`python -m pipeline.evaluate --layout {settings.layout} --root {settings.root}`")
    for part in PARTITIONS:
        rows, problems = build_manifest(settings.root, part, settings.on_error, settings.layout, progress=True)
        if not rows:
            raise ProtocolError(f"{settings.root}: {settings.layout} {part} partition: no usable utterances")
        write_manifest(rows, out / f"{part}.tsv")
        skipped += [(part, p) for p in problems]
        counts[part] = len(rows)
    with open(out / "skipped.tsv", "w") as f:
        f.write("partition\tproblem\n")
        f.writelines(f"{part}\t{problem}\n" for part, problem in skipped)
    if skipped:
        print(f"manifest: skipped {len(skipped)} utterances, listed in {out / 'skipped.tsv'}", file=sys.stderr)
    return counts
