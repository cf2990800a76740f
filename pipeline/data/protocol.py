"""Protocols: the utterance record, the checks every corpus's protocol gets, and ASVspoof 2019 LA's
file locations and line parser (other corpora: pipeline/data/layouts.py).

A protocol line is `SPEAKER UTT - ATTACK KEY`; ATTACK is `-` for bona fide, KEY is
`bonafide` or `spoof`. Problems are reported with the file and line number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

PROTOCOL_NAMES = {
    "train": "ASVspoof2019.LA.cm.train.trn.txt",
    "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
    "eval": "ASVspoof2019.LA.cm.eval.trl.txt",
}
# Other names the same files go by (the seed repository's, and the authors' code's).
PROTOCOL_ALIASES = {
    "train": ["ASVspoof2019.LA.cm.train.trl.txt"],
    "dev": [],
    "eval": ["ASVspoof2019.LA.cm.eval_test.trl.txt"],
}
KEYS = {"bonafide": 1, "spoof": 0}
# A plain file name: no path separators, no "..", nothing that could leave the corpus root.
_UTT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class ProtocolError(PipelineError, ValueError):
    pass


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    attack: str  # "-" for bona fide
    label: int   # 1 bona fide, 0 spoof
    # What else the protocol says of the recording, as (name, value) pairs: codec,
    # transmission, ... (ASVspoof 2021 and 5); empty for ASVspoof 2019.
    conditions: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return "bonafide" if self.label == 1 else "spoof"

    def conditions_text(self) -> str:
        """`codec=alaw,transmission=ita_tx`, or `-` without conditions (the manifest's column)."""
        return ",".join(f"{k}={v}" for k, v in self.conditions) or "-"


def parse_conditions(text: str) -> tuple[tuple[str, str], ...]:
    if text in ("", "-"):
        return ()
    return tuple(tuple(item.split("=", 1)) for item in text.split(","))


def protocol_path(root: str | Path, partition: str) -> Path:
    """The partition's protocol: the official name, or an alias when only that exists (the
    official name when neither does, so writers create it and readers name it when missing)."""
    folder = Path(root) / "ASVspoof2019_LA_cm_protocols"
    official = folder / PROTOCOL_NAMES[partition]
    if not official.is_file():
        for alias in PROTOCOL_ALIASES[partition]:
            if (folder / alias).is_file():
                return folder / alias
    return official


def audio_dir(root: str | Path, partition: str) -> Path:
    return Path(root) / f"ASVspoof2019_LA_{partition}" / "flac"


def parse_line(line: str) -> Utterance:
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields 'SPEAKER UTT - ATTACK KEY', got {len(fields)}")
    speaker, utt_id, _, attack, key = fields
    if key not in KEYS:
        raise ValueError(f"unknown key {key!r} (expected 'bonafide' or 'spoof')")
    if (attack == "-") != (key == "bonafide"):
        raise ValueError(f"attack {attack!r} does not fit key {key!r} ('-' is for bona fide only)")
    return Utterance(utt_id, speaker, attack, KEYS[key])


def read_numbered(path: str | Path) -> list[tuple[int, str]]:
    """(line number, text) of a protocol file; a missing file is a ProtocolError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"{path}: protocol file not found")
    return list(enumerate(path.read_text().splitlines(), start=1))


def parse_lines(path: str | Path, lines, parse, on_error: str = "stop") -> tuple[list[tuple[int, Utterance]], list[str]]:
    """Every corpus's protocol checks: parse each (number, text) into an Utterance (parse may
    return None to leave a line out, raise ValueError for a bad one), require a plain-file-name
    id, reject duplicates. Returns ([(line number, utterance)], problems); with on_error="stop"
    the first problem raises ProtocolError naming the file and line. Blank lines are ignored."""
    parsed, problems, seen = [], [], {}
    for number, line in lines:
        if not line.strip():
            continue
        try:
            utt = parse(line)
            if utt is None:
                continue
            if not _UTT_ID.match(utt.utt_id) or ".." in utt.utt_id:
                raise ValueError(f"utterance id {utt.utt_id!r} is not a plain file name")
            if utt.utt_id in seen:
                raise ValueError(f"duplicate utterance id {utt.utt_id} (first on line {seen[utt.utt_id]})")
        except ValueError as err:
            problem = f"{path}:{number}: {err}"
            if on_error == "stop":
                raise ProtocolError(problem) from None
            problems.append(problem)
            continue
        seen[utt.utt_id] = number
        parsed.append((number, utt))
    return parsed, problems


def parse_protocol(path: str | Path, on_error: str = "stop") -> tuple[list[Utterance], list[str]]:
    """Parse an ASVspoof 2019 protocol file. Returns (utterances, problems).

    With on_error="stop" the first problem raises ProtocolError; with "skip" the bad line is
    left out and its problem returned, so the caller can report it.
    """
    parsed, problems = parse_lines(path, read_numbered(path), parse_line, on_error)
    return [utt for _, utt in parsed], problems
