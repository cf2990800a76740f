"""Corpus adapters: each corpus's own protocol and folders -> the same utterance records.

    rows, problems = read_layout("asvspoof5", root, "dev", on_error="stop")

`rows` are (Utterance, audio path); an Utterance carries the protocol's conditions (codec,
transmission, ...) where the protocol has them. Nothing after the manifest knows which corpus
it reads. The formats, as the organisers' README files and evaluation packages give them:

| layout | partitions | protocol (under root) | audio |
| --- | --- | --- | --- |
| asvspoof2019 | train dev eval | `ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt` (the seed repository's `train.trl`, `eval_test.trl` too): `SPEAKER UTT - ATTACK KEY` | `ASVspoof2019_LA_<part>/flac/UTT.flac` |
| asvspoof2021 | eval (LA or DF) | the keys' `CM/trial_metadata.txt`; LA: `SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET`; DF: `SPK UTT CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER LANGUAGE` | `ASVspoof2021_<track>_eval[_partNN/ASVspoof2021_<track>_eval]/flac/UTT.flac` |
| asvspoof5 | train dev eval | `ASVspoof5.{train,dev.track_1,eval.track_1}.tsv` (whitespace-separated: `SPK FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP`) | `flac_T`, `flac_D`, `flac_E_eval` (or `flac_E`) |
| in_the_wild | eval | `meta.csv` (`file,speaker,label`, label `bona-fide` or `spoof`) | `FILE` beside meta.csv |

ASVspoof 2021 keeps the challenge's evaluation phase (`SUBSET == eval`) unless asked for
another subset (`progress`, `hidden`, or `all`).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Callable

from pipeline.data.protocol import (KEYS, ProtocolError, Utterance, audio_dir, parse_line, parse_lines, protocol_path,
                                    read_numbered)

LAYOUTS = ("asvspoof2019", "asvspoof2021", "asvspoof5", "in_the_wild")
TRACKS_2021 = ("LA", "DF")
SUBSETS_2021 = ("eval", "progress", "hidden", "all")


def partitions_of(layout: str) -> tuple[str, ...]:
    return {"asvspoof2019": ("train", "dev", "eval"), "asvspoof5": ("train", "dev", "eval")}.get(
        layout, ("eval",))


def read_layout(layout: str, root: str | Path, partition: str, on_error: str = "stop", *,
                track: str = "LA", subset: str = "eval") -> tuple[list[tuple[Utterance, Path]], list[str]]:
    """The partition's utterances with their audio paths, and the problems left out (on_error
    skip). A malformed line, a duplicate utterance or a missing audio file raises ProtocolError
    naming the file and line (on_error stop)."""
    if layout not in LAYOUTS:
        raise ProtocolError(f"unknown corpus layout {layout!r} (one of {', '.join(LAYOUTS)})")
    if partition not in partitions_of(layout):
        raise ProtocolError(
            f"layout {layout} has no {partition} partition (it has: {', '.join(partitions_of(layout))}); "
            f"train on asvspoof2019 or asvspoof5 and score this corpus with "
            f"`python -m pipeline.evaluate --layout {layout} --root DIR`")
    root = Path(root)
    if not root.is_dir():
        raise ProtocolError(f"{root}: corpus folder not found")
    if layout == "asvspoof2019":
        return _asvspoof2019(root, partition, on_error)
    if layout == "asvspoof2021":
        return _asvspoof2021(root, track, subset, on_error)
    if layout == "asvspoof5":
        return _asvspoof5(root, partition, on_error)
    return _in_the_wild(root, on_error)


def _collect(protocol: Path, lines: list[tuple[int, str]], parse: Callable, find_audio: Callable,
             on_error: str) -> tuple[list[tuple[Utterance, Path]], list[str]]:
    """The protocol checks (pipeline.data.protocol.parse_lines), then each audio file must exist."""
    parsed, problems = parse_lines(protocol, lines, parse, on_error)
    rows = []
    for number, utt in parsed:
        path = find_audio(utt)
        if not path.is_file():
            problem = f"{protocol}:{number}: {utt.utt_id}: audio file {path} not found"
            if on_error == "stop":
                raise ProtocolError(problem)
            problems.append(problem)
            continue
        rows.append((utt, path))
    return rows, problems


def _key(value: str) -> int:
    if value not in KEYS:
        raise ValueError(f"unknown key {value!r} (expected 'bonafide' or 'spoof')")
    return KEYS[value]


def _attack(value: str, label: int) -> str:
    """Bona fide lines say '-' or 'bonafide' in the attack column; the records say '-'."""
    if label == 1:
        if value not in ("-", "bonafide"):
            raise ValueError(f"bona fide line with attack {value!r}")
        return "-"
    if value in ("-", "bonafide"):
        raise ValueError(f"spoof line without an attack ({value!r})")
    return value


def _asvspoof2019(root: Path, partition: str, on_error: str):
    protocol = protocol_path(root, partition)
    folder = audio_dir(root, partition)
    lines = read_numbered(protocol)
    if not folder.is_dir():
        raise ProtocolError(f"{folder}: audio folder of {protocol.name} not found")
    return _collect(protocol, lines, parse_line, lambda u: folder / f"{u.utt_id}.flac", on_error)


def _find_first(root: Path, candidates: list[str], what: str) -> Path:
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    raise ProtocolError(f"{root}: no {what} found (looked for {', '.join(candidates)})")


def _asvspoof2021(root: Path, track: str, subset: str, on_error: str):
    if track not in TRACKS_2021:
        raise ProtocolError(f"ASVspoof 2021 track {track!r}: expected one of {', '.join(TRACKS_2021)}")
    if subset not in SUBSETS_2021:
        raise ProtocolError(f"ASVspoof 2021 subset {subset!r}: expected one of {', '.join(SUBSETS_2021)}")
    protocol = _find_first(root, [f"keys/{track}/CM/trial_metadata.txt", "keys/CM/trial_metadata.txt",
                                  f"{track}-keys-full/keys/{track}/CM/trial_metadata.txt",
                                  f"{track}-keys-stage-1/keys/CM/trial_metadata.txt", "CM/trial_metadata.txt",
                                  "trial_metadata.txt"], f"ASVspoof 2021 {track} key (CM/trial_metadata.txt)")
    # The DF evaluation data come in parts, each unpacking its own ASVspoof2021_DF_eval/flac.
    folders = [root / f"ASVspoof2021_{track}_eval" / "flac",
               *sorted(root.glob(f"ASVspoof2021_{track}_eval_part*/ASVspoof2021_{track}_eval/flac"))]
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        raise ProtocolError(f"{root}: no audio folder ASVspoof2021_{track}_eval/flac "
                            f"(or ASVspoof2021_{track}_eval_partNN/ASVspoof2021_{track}_eval/flac)")
    # LA: SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET
    # DF: SPK UTT CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER-PAIR LANGUAGE
    fields_needed = 8 if track == "LA" else 13

    def parse(text: str) -> Utterance | None:
        f = text.split()
        if len(f) < fields_needed:
            raise ValueError(f"expected {fields_needed} fields of an ASVspoof 2021 {track} key line, got {len(f)}")
        if subset != "all" and f[7] != subset:
            return None
        label = _key(f[5])
        conditions = (("codec", f[2]), ("transmission", f[3])) if track == "LA" else \
            (("codec", f[2]), ("source", f[3]), ("vocoder", f[8]))
        return Utterance(f[1], f[0], _attack(f[4], label), label, conditions)

    def find(utt: Utterance) -> Path:
        for folder in folders:
            if (folder / f"{utt.utt_id}.flac").is_file():
                return folder / f"{utt.utt_id}.flac"
        return folders[0] / f"{utt.utt_id}.flac"

    return _collect(protocol, read_numbered(protocol), parse, find, on_error)


ASVSPOOF5_PROTOCOLS = {"train": "ASVspoof5.train.tsv", "dev": "ASVspoof5.dev.track_1.tsv",
                       "eval": "ASVspoof5.eval.track_1.tsv"}
ASVSPOOF5_AUDIO = {"train": ["flac_T"], "dev": ["flac_D"], "eval": ["flac_E_eval", "flac_E"]}


def _asvspoof5(root: Path, partition: str, on_error: str):
    name = ASVSPOOF5_PROTOCOLS[partition]
    protocol = _find_first(root, [name, f"ASVspoof5_protocols/{name}"], f"ASVspoof 5 protocol {name}")
    folders = [root / f for f in ASVSPOOF5_AUDIO[partition] if (root / f).is_dir()]
    if not folders:
        raise ProtocolError(f"{root}: audio folder {' or '.join(ASVSPOOF5_AUDIO[partition])} of {name} not found")
    folder = folders[0]

    def parse(text: str) -> Utterance:
        # SPK FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP
        f = text.split()
        if len(f) != 10:
            raise ValueError(f"expected 10 fields 'SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG "
                             f"ATTACK_LABEL KEY TMP', got {len(f)}")
        label = _key(f[8])
        return Utterance(f[1], f[0], _attack(f[7], label), label, (("codec", f[3]), ("codec_q", f[4])))

    return _collect(protocol, read_numbered(protocol), parse, lambda u: folder / f"{u.utt_id}.flac", on_error)


ITW_KEYS = {"bona-fide": 1, "bonafide": 1, "spoof": 0}


def _in_the_wild(root: Path, on_error: str):
    protocol = _find_first(root, ["meta.csv", "release_in_the_wild/meta.csv"], "In-the-Wild meta.csv")
    folder = protocol.parent
    with open(protocol, newline="") as f:
        table = list(csv.reader(f))
    if not table or [c.strip() for c in table[0]] != ["file", "speaker", "label"]:
        raise ProtocolError(f"{protocol}:1: expected the header 'file,speaker,label', got {table[0] if table else 'nothing'}")
    names = {}

    def parse(text: str) -> Utterance:
        fields = next(csv.reader([text]))
        if len(fields) != 3:
            raise ValueError(f"expected 3 fields 'file,speaker,label', got {len(fields)}")
        file, speaker, key = (x.strip() for x in fields)
        if key not in ITW_KEYS:
            raise ValueError(f"unknown label {key!r} (expected 'bona-fide' or 'spoof')")
        if "/" in file or "\\" in file:
            raise ValueError(f"file {file!r} is not a plain file name")
        utt_id = Path(file).stem
        names[utt_id] = file
        label = ITW_KEYS[key]
        # One attack class: the corpus does not say which generator made a spoof. Speakers
        # (public figures) are a condition: each has bona fide and spoofed recordings.
        # Speaker names have spaces and punctuation; the records write them with `_`.
        speaker_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", speaker).strip("_") or "unknown"
        return Utterance(utt_id, speaker_id, "-" if label else "spoof", label, (("speaker", speaker_id),))

    lines = [(n, line) for n, line in read_numbered(protocol)[1:]]
    return _collect(protocol, lines, parse, lambda u: folder / names[u.utt_id], on_error)
