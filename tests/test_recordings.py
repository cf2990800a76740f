"""Game voice acting as bona fide: the formats read here, the voices found, and clear errors."""
import struct

import numpy as np
import pytest
import soundfile as sf

from pipeline.mini.builder import find_prompts, plan_partition, prompt_audio
from pipeline.mini.recordings import RecordingError, archive_entries, find_recordings, read_recording, recording_seconds
from pipeline.settings import CorpusSettings, SettingsError


def tone(seconds: float, rate: int, f0: float = 140.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.4 * np.sin(2 * np.pi * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))


def write_als(path, seconds: float, f0: float = 140.0):
    """A Drascula line: unsigned 8-bit PCM at 11025 Hz, no header."""
    path.write_bytes(np.round(128 + 127 * tone(seconds, 11025, f0)).astype(np.uint8).tobytes())


def write_queen_archive(path, lines: dict, codec: int = 3):
    """A resource archive as flight-of-the-amazon-queen's queen.1c: 'QTBL', version, features,
    codec byte, entry count, then name / bundle / offset / size per entry; FLAC lines here."""
    blobs = {}
    for name, seconds in lines.items():
        buffer = __import__("io").BytesIO()
        sf.write(buffer, tone(seconds, 11025), 11025, format="FLAC")
        blobs[name] = buffer.getvalue()
    head = struct.pack(">4s7sBBH", b"QTBL", b"CEM10\0\0", 0, codec, len(blobs))
    offset = len(head) + 21 * len(blobs)
    table, data = b"", b""
    for name, blob in blobs.items():
        table += struct.pack(">12sBII", name.encode(), 1, offset + len(data), len(blob))
        data += blob
    path.write_bytes(head + table + data)


def test_a_raw_8_bit_line_reads_as_audio_of_its_length(tmp_path):
    write_als(tmp_path / "VB1.ALS", 1.5)
    assert recording_seconds(str(tmp_path / "VB1.ALS")) == pytest.approx(1.5, abs=1e-3)
    x = read_recording(str(tmp_path / "VB1.ALS"), 16000)
    assert x.dtype == np.float32 and abs(len(x) - 24000) <= 2 and 0.48 < np.abs(x).max() < 0.56  # the tone peaks at 0.52


def test_archive_entries_are_found_by_pattern_and_decoded(tmp_path):
    archive = tmp_path / "queen.1c"
    write_queen_archive(archive, {"020006J1.SB": 1.2, "020006P1.SB": 2.0, "120001P2.SB": 3.0, "C100A032.SB": 1.0})
    assert set(archive_entries(str(archive))) == {"020006J1.SB", "020006P1.SB", "120001P2.SB", "C100A032.SB"}
    found = find_recordings(f"{archive}#[0-9][0-9][0-9][0-9][0-9][0-9]P*.SB")
    assert found == [f"{archive}#020006P1.SB", f"{archive}#120001P2.SB"]
    assert recording_seconds(found[1]) == pytest.approx(3.0, abs=1e-3)
    x = read_recording(found[1], 16000)
    assert abs(len(x) - 48000) <= 2 and np.isfinite(x).all()


def test_a_file_that_is_not_an_archive_is_refused_by_name(tmp_path):
    bogus = tmp_path / "bogus.1c"
    bogus.write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(RecordingError, match=r"bogus\.1c: not a resource archive"):
        find_recordings(f"{bogus}#*.SB")
    raw = tmp_path / "raw.1c"
    write_queen_archive(raw, {"A.SB": 1.0}, codec=0)
    with pytest.raises(RecordingError, match=r"raw\.1c: its sounds are not compressed"):
        archive_entries(str(raw))


def game_settings(tmp_path) -> CorpusSettings:
    for name, seconds in (("VB1", 1.5), ("VB2", 2.5), ("VB3", 0.5), ("VB4", 9.0), ("D1", 2.0), ("D2", 3.0)):
        write_als(tmp_path / f"{name}.ALS", seconds)
    write_queen_archive(tmp_path / "queen.1c", {"010001J1.SB": 1.5, "010002J1.SB": 2.5, "010001P1.SB": 2.0})
    voices = {"G_VB": {"files": f"{tmp_path}/VB[0-9]*.ALS", "language": "en"},
              "G_D": {"files": f"{tmp_path}/D[0-9]*.ALS", "language": "en"},
              "Q_JOE": {"files": f"{tmp_path}/queen.1c#??????J*.SB", "language": "en"},
              "Q_P01": {"files": f"{tmp_path}/queen.1c#01????P*.SB", "language": "en"}}
    return CorpusSettings(speakers={}, game_voices=voices,
                          partition_speakers={"train": ["G_VB", "Q_JOE"], "dev": ["G_D"], "eval": ["Q_P01"]},
                          bonafide={"train": 4, "dev": 2, "eval": 1}, spoofs_per_attack={"train": 2, "dev": 1, "eval": 1},
                          attacks={"train": ["A01"], "dev": ["A01"], "eval": ["A01"]})


def test_game_voices_give_one_utterance_per_line_within_the_length_limits(tmp_path):
    settings = game_settings(tmp_path)
    prompts = find_prompts(settings)
    # VB3 (0.5 s) and VB4 (9 s) fall outside min_seconds .. max_seconds
    assert [p.path.rsplit("/", 1)[1] for p in prompts["G_VB"]] == ["VB1.ALS", "VB2.ALS"]
    assert [p.path.rsplit("#", 1)[1] for p in prompts["Q_JOE"]] == ["010001J1.SB", "010002J1.SB"]
    assert all(p.language == "en" for voice in prompts.values() for p in voice)
    train = plan_partition("train", prompts, settings)
    assert sorted(i.speaker for i in train if i.key == "bonafide") == ["G_VB", "G_VB", "Q_JOE", "Q_JOE"]
    x = prompt_audio(prompts["Q_P01"][0])
    assert x.dtype == np.float32 and abs(len(x) - 32000) <= 2


def test_a_game_voice_whose_files_are_missing_names_its_pattern(tmp_path):
    settings = game_settings(tmp_path)
    voices = dict(settings.game_voices, G_X={"files": f"{tmp_path}/nothing/*.ALS", "language": "en"})
    from pipeline.mini.builder import CorpusError
    with pytest.raises(CorpusError, match=r"corpus\.game_voices\.G_X: no recordings match .*nothing/\*\.ALS"):
        find_prompts(CorpusSettings(speakers={}, game_voices=voices, partition_speakers=settings.partition_speakers))


def test_a_game_voice_needs_files_and_language():
    with pytest.raises(SettingsError, match=r"corpus\.game_voices\.G_X: needs exactly `files`"):
        CorpusSettings(speakers={}, game_voices={"G_X": {"files": "/x/*.ALS"}},
                       partition_speakers={"train": [], "dev": [], "eval": []}).validate("corpus")


def test_every_game_voice_of_the_repository_has_lines_that_read_as_speech():
    from conftest import ROOT
    from pipeline.settings import load_settings
    settings = load_settings(ROOT / "params.yaml").corpus
    prompts = find_prompts(CorpusSettings(speakers={}, game_voices=settings.game_voices,
                                          partition_speakers={"train": list(settings.game_voices), "dev": [],
                                                              "eval": []}))
    assert set(prompts) == set(settings.game_voices)
    for speaker, lines in prompts.items():
        assert len(lines) >= 10, speaker
        x = prompt_audio(lines[0])
        assert np.isfinite(x).all() and settings.min_seconds - 0.01 <= len(x) / 16000 <= settings.max_seconds + 0.01
        assert np.sqrt(np.mean(x ** 2)) > 0.005, speaker  # not silence
