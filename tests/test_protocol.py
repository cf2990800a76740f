import numpy as np
import pytest
import soundfile as sf

from pipeline.data.manifests import build_manifest
from pipeline.data.protocol import ProtocolError, audio_dir, parse_protocol, protocol_path

GOOD = "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n"


def write(tmp_path, text):
    path = tmp_path / "protocol.txt"
    path.write_text(text)
    return path


def test_good_lines_blank_lines_and_trailing_space(tmp_path):
    utts, problems = parse_protocol(write(tmp_path, "\n" + GOOD.replace("\n", "  \n") + "\n\n"))
    assert [(u.utt_id, u.attack, u.label) for u in utts] == [("LA_T_1138215", "-", 1), ("LA_T_1271820", "A01", 0)]
    assert problems == []


@pytest.mark.parametrize("line, message", [
    ("LA_0079 LA_T_1 - bonafide", "expected 5 fields"),
    ("LA_0079 LA_T_1 - - bonafide extra", "expected 5 fields"),
    ("LA_0079 LA_T_1 - A01 fake", "unknown key 'fake'"),
    ("LA_0079 ../etc/passwd - - bonafide", "not a plain file name"),
    ("LA_0079 a/b - - bonafide", "not a plain file name"),
    ("LA_0079 LA..T - - bonafide", "not a plain file name"),
    ("LA_0079 LA_T_2 - A01 bonafide", "does not fit key"),
])
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path, GOOD + line + "\n")
    with pytest.raises(ProtocolError, match=rf"protocol.txt:3: .*{message}"):
        parse_protocol(path)


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(ProtocolError, match="protocol.txt:3: duplicate utterance id LA_T_1138215"):
        parse_protocol(write(tmp_path, GOOD + "LA_0080 LA_T_1138215 - - bonafide\n"))


def test_skip_mode_reports_every_bad_line(tmp_path):
    utts, problems = parse_protocol(write(tmp_path, GOOD + "bad line\nLA_1 X - A01 maybe\n"), on_error="skip")
    assert len(utts) == 2
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in problems] == ["3", "4"]


def test_manifest_refuses_missing_audio_and_missing_folder(tmp_path):
    root = tmp_path / "corpus"
    protocol = protocol_path(root, "train")
    protocol.parent.mkdir(parents=True)
    protocol.write_text(GOOD)
    with pytest.raises(ProtocolError, match="audio folder .* not found"):
        build_manifest(root, "train")
    folder = audio_dir(root, "train")
    folder.mkdir(parents=True)
    sf.write(folder / "LA_T_1138215.flac", np.zeros(1600, np.float32), 16000)
    with pytest.raises(ProtocolError, match="LA_T_1271820: audio file .* not found"):
        build_manifest(root, "train")
    rows, problems = build_manifest(root, "train", on_error="skip")
    assert [u.utt_id for u, *_ in rows] == ["LA_T_1138215"] and len(problems) == 1


@pytest.mark.parametrize("partition, name", [("train", "ASVspoof2019.LA.cm.train.trl.txt"),
                                             ("eval", "ASVspoof2019.LA.cm.eval_test.trl.txt")])
def test_the_seed_repositorys_protocol_names_are_read_too(tmp_path, partition, name):
    folder = tmp_path / "ASVspoof2019_LA_cm_protocols"
    folder.mkdir()
    (folder / name).write_text(GOOD)
    assert protocol_path(tmp_path, partition) == folder / name
    assert [u.utt_id for u in parse_protocol(protocol_path(tmp_path, partition))[0]][:1] == ["LA_T_1138215"]
    # the official name wins where both exist; with neither, the official name is reported missing
    official = protocol_path(tmp_path / "nothing", partition)
    (folder / official.name).write_text(GOOD)
    assert protocol_path(tmp_path, partition) == folder / official.name
    assert official.name in ("ASVspoof2019.LA.cm.train.trn.txt", "ASVspoof2019.LA.cm.eval.trl.txt")
    with pytest.raises(ProtocolError, match="protocol file not found"):
        parse_protocol(official)
