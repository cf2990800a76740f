"""Stage `manifest`: protocols + audio folders -> one validated TSV per partition.

    python -m pipeline.manifest [--params params.yaml] [--out data/manifest]

Each row is `utt_id speaker attack label path`. Every protocol line must be well formed and
its audio file must exist; otherwise the stage stops naming the file and line, or (with
data.on_error: skip) leaves the utterance out and lists it in `skipped.tsv`.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from pipeline.protocol import ProtocolError, Utterance, audio_dir, parse_protocol, protocol_path
from pipeline.settings import PARTITIONS, DataSettings, SettingsError, load_settings

COLUMNS = ("utt_id", "speaker", "attack", "label", "path")


def build_manifest(root: str | Path, partition: str, on_error: str = "stop"):
    """Returns (rows, problems); rows are (Utterance, audio path)."""
    protocol = protocol_path(root, partition)
    utterances, problems = parse_protocol(protocol, on_error)
    folder = audio_dir(root, partition)
    if not folder.is_dir():
        raise ProtocolError(f"{folder}: audio folder of {protocol.name} not found")
    rows = []
    for utt in utterances:
        path = folder / f"{utt.utt_id}.flac"
        if not path.is_file():
            problem = f"{protocol}: {utt.utt_id}: audio file {path} not found"
            if on_error == "stop":
                raise ProtocolError(problem)
            problems.append(problem)
            continue
        rows.append((utt, path))
    return rows, problems


def write_manifest(rows, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for utt, audio in rows:
            writer.writerow((utt.utt_id, utt.speaker, utt.attack, utt.label, str(audio)))
    tmp.replace(path)


def read_manifest(path: str | Path) -> list[tuple[Utterance, str]]:
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if tuple(header or ()) != COLUMNS:
            raise ProtocolError(f"{path}: not a manifest (header {header})")
        return [(Utterance(u, s, a, int(label)), p) for u, s, a, label, p in reader]


def run(settings: DataSettings, out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    counts, skipped = {}, []
    for part in PARTITIONS:
        rows, problems = build_manifest(settings.root, part, settings.on_error)
        if not rows:
            raise ProtocolError(f"{protocol_path(settings.root, part)}: no usable utterances")
        write_manifest(rows, out / f"{part}.tsv")
        skipped += [(part, p) for p in problems]
        counts[part] = len(rows)
    with open(out / "skipped.tsv", "w") as f:
        f.write("partition\tproblem\n")
        f.writelines(f"{part}\t{problem}\n" for part, problem in skipped)
    if skipped:
        print(f"manifest: skipped {len(skipped)} utterances, listed in {out / 'skipped.tsv'}", file=sys.stderr)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/manifest")
    args = parser.parse_args(argv)
    try:
        counts = run(load_settings(args.params).data, Path(args.out))
    except (ProtocolError, SettingsError) as err:
        print(f"manifest: {err}", file=sys.stderr)
        return 1
    print("manifest: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
