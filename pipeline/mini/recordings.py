"""Voice acting shipped inside game data: where the recordings are, how long each is, and its audio.

A recorded voice (corpus.game_voices) names its recordings by a glob pattern. Most are plain
files that soundfile reads; two formats are read here:
- `*.ALS` (Drascula: The Vampire Strikes Back, Debian's drascula): headerless unsigned 8-bit
  mono PCM at 11025 Hz, one spoken line per file.
- `ARCHIVE#PATTERN` (Flight of the Amazon Queen, Debian's flight-of-the-amazon-queen): the entries
  of the game's resource archive `queen.1c` whose names match PATTERN. The archive opens with a
  table: 'QTBL', a 7-byte version field, a features byte, a compression byte (1 = MP3, 2 = Ogg
  Vorbis, 3 = FLAC), a big-endian 16-bit entry count, then per entry a 12-byte NUL-padded name, a
  bundle byte and big-endian 32-bit offset and size. Its speech entries (*.SB) are MP3.
No library reads either (ScummVM, which plays them, is a program, not a library): hence this module.
"""
from __future__ import annotations

import fnmatch
import glob
import io
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from features import resample
from features.audio import load_audio
from pipeline.errors import PipelineError

ARCHIVE_SEPARATOR = "#"
RAW_U8_SUFFIX = ".ALS"
RAW_U8_RATE = 11025
QUEEN_MAGIC = b"QTBL"
QUEEN_HEADER = struct.Struct(">4s7sBBH")
QUEEN_ENTRY = struct.Struct(">12sBII")
QUEEN_CODECS = {1: "MP3", 2: "OGG", 3: "FLAC"}


class RecordingError(PipelineError, ValueError):
    pass


@lru_cache(maxsize=4)
def archive_entries(archive: str) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of every entry of a queen.1c resource archive; a RecordingError
    naming the file for anything else."""
    try:
        with open(archive, "rb") as f:
            head = f.read(QUEEN_HEADER.size)
            if len(head) < QUEEN_HEADER.size or head[:4] != QUEEN_MAGIC:
                raise RecordingError(f"{archive}: not a resource archive with a table (no 'QTBL' header)")
            _, _, _, codec, count = QUEEN_HEADER.unpack(head)
            if codec not in QUEEN_CODECS:
                raise RecordingError(f"{archive}: its sounds are not compressed (codec byte {codec}); "
                                     f"only MP3, Ogg Vorbis and FLAC archives are read")
            table = f.read(QUEEN_ENTRY.size * count)
    except OSError as err:
        raise RecordingError(f"{archive}: cannot read ({err.strerror})") from err
    if len(table) < QUEEN_ENTRY.size * count:
        raise RecordingError(f"{archive}: truncated table ({count} entries announced)")
    entries = {}
    for i in range(count):
        name, _, offset, size = QUEEN_ENTRY.unpack_from(table, i * QUEEN_ENTRY.size)
        entries[name.split(b"\0")[0].decode("ascii", "replace")] = (offset, size)
    return entries


def find_recordings(pattern: str) -> list[str]:
    """Every recording a pattern names, sorted: files (a glob) or `archive#entry-glob`."""
    if ARCHIVE_SEPARATOR in pattern:
        archive, inner = pattern.split(ARCHIVE_SEPARATOR, 1)
        if not Path(archive).is_file():
            return []
        return [f"{archive}{ARCHIVE_SEPARATOR}{name}" for name in sorted(archive_entries(archive))
                if fnmatch.fnmatchcase(name, inner)]
    return sorted(glob.glob(pattern))


def _archive_bytes(path: str) -> bytes:
    archive, name = path.split(ARCHIVE_SEPARATOR, 1)
    offset, size = archive_entries(archive)[name]
    with open(archive, "rb") as f:
        f.seek(offset)
        blob = f.read(size)
    if len(blob) != size:
        raise RecordingError(f"{path}: entry runs past the end of the archive")
    return blob


def recording_seconds(path: str) -> float:
    if path.endswith(RAW_U8_SUFFIX):
        return Path(path).stat().st_size / RAW_U8_RATE
    try:
        source = io.BytesIO(_archive_bytes(path)) if ARCHIVE_SEPARATOR in path else path
        return sf.info(source).duration
    except (sf.LibsndfileError, RuntimeError) as err:
        raise RecordingError(f"{path}: unreadable recording ({err})") from err


def read_recording(path: str, rate: int) -> np.ndarray:
    """A recording as float32 mono at `rate`."""
    if path.endswith(RAW_U8_SUFFIX):
        x = (np.fromfile(path, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        return resample(x, RAW_U8_RATE, rate).astype(np.float32)
    if ARCHIVE_SEPARATOR not in path:
        return load_audio(path, rate)
    try:
        x, source_rate = sf.read(io.BytesIO(_archive_bytes(path)), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise RecordingError(f"{path}: unreadable recording ({err})") from err
    return resample(x.mean(axis=1), source_rate, rate).astype(np.float32)
