"""Corpus adapters: each layout's fixture corpus (written here, a few utterances) reads into the
same records; bad lines are named; a trained model scores another corpus with per-condition EERs."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, make_tone_corpus, train_tiny_model
from pipeline.data.extraction import extract_partition
from pipeline.data.layouts import read_layout
from pipeline.data.manifests import build_manifest, read_manifest, write_manifest
from pipeline.data.manifests import write_partitions as run_manifest
from pipeline.data.protocol import ProtocolError
from pipeline.reports.evaluation import condition_metrics
from pipeline.settings import DataSettings, ExtractSettings, FeatureSettings


def tone(path, bonafide: bool, seed: int, seconds: float = 1.0):
    """Bona fide: a tone with vibrato; spoof: a flat one (learnable by the tiny model below)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = rng.uniform(110, 220) * (1 + (0.05 * np.sin(2 * np.pi * 5 * t) if bonafide else 0))
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) + 0.01 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), 16000)


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


LA_2021 = ["LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval",
           "LA_0009 LA_E_5013670 alaw ita_tx bonafide bonafide notrim eval",
           "LA_0012 LA_E_2000001 none sin_tx A16 spoof notrim eval",
           "LA_0012 LA_E_2000002 none sin_tx bonafide bonafide notrim eval",
           "LA_0012 LA_E_2000003 none sin_tx A10 spoof notrim progress"]


def test_asvspoof2021_la_keeps_the_eval_phase_with_codec_and_transmission(tmp_path):
    write_lines(tmp_path / "LA-keys-full/keys/LA/CM/trial_metadata.txt", LA_2021)
    for i, line in enumerate(LA_2021):
        tone(tmp_path / f"ASVspoof2021_LA_eval/flac/{line.split()[1]}.flac", "bonafide" in line, i)
    rows, problems = read_layout("asvspoof2021", tmp_path, "eval")
    assert problems == [] and [u.utt_id for u, _ in rows] == [line.split()[1] for line in LA_2021[:4]]
    first, bona = rows[0][0], rows[1][0]
    assert (first.speaker, first.attack, first.label) == ("LA_0009", "A07", 0)
    assert (bona.attack, bona.label) == ("-", 1)
    assert first.conditions == (("codec", "alaw"), ("transmission", "ita_tx"))
    rows, _ = read_layout("asvspoof2021", tmp_path, "eval", subset="all")
    assert len(rows) == 5
    with pytest.raises(ProtocolError, match="no train partition"):
        read_layout("asvspoof2021", tmp_path, "train")


def test_asvspoof2021_df_finds_audio_in_every_part_and_keeps_the_vocoder(tmp_path):
    lines = ["LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim eval traditional_vocoder - - - -",
             "TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 spoof notrim eval "
             "neural_vocoder_nonautoregressive Task1 team20 FF E",
             "LA_0031 DF_E_2000020 low_m4a asvspoof bonafide bonafide notrim eval bonafide - - - -"]
    write_lines(tmp_path / "keys/DF/CM/trial_metadata.txt", lines)
    for i, line in enumerate(lines):
        part = f"ASVspoof2021_DF_eval_part0{i}/ASVspoof2021_DF_eval/flac"
        tone(tmp_path / part / f"{line.split()[1]}.flac", "bonafide" in line, i)
    rows, _ = read_layout("asvspoof2021", tmp_path, "eval", track="DF")
    assert [u.attack for u, _ in rows] == ["A14", "Task1-team20", "-"]
    assert dict(rows[1][0].conditions) == {"codec": "low_m4a", "source": "vcc2020",
                                           "vocoder": "neural_vocoder_nonautoregressive"}
    assert "part01" in str(rows[1][1])
    write_lines(tmp_path / "keys/DF/CM/trial_metadata.txt", lines + ["LA_0031 DF_E_1 nocodec asvspoof A14 spoof"])
    with pytest.raises(ProtocolError, match=r"trial_metadata.txt:4: expected 13 fields"):
        read_layout("asvspoof2021", tmp_path, "eval", track="DF")


ASVSPOOF5 = {"train": ["T_4850 T_0000000000 F - - - AC3 A05 spoof -",
                       "T_4850 T_0000000001 F - - - bonafide bonafide bonafide -"],
             "dev": ["D_0062 D_0000000001 M - - - AC1 A11 spoof -",
                     "D_0062 D_0000000002 M - - - bonafide bonafide bonafide -"],
             "eval": ["E_0755 E_0000000001 M C05 3 E_0000000101 AC2 A20 spoof -",
                      "E_0755 E_0000000002 M C05 3 E_0000000102 bonafide bonafide bonafide -",
                      "E_0800 E_0000000003 F - 0 E_0000000103 bonafide bonafide bonafide -",
                      "E_0800 E_0000000004 F - 0 E_0000000104 AC2 A20 spoof -",
                      "E_0800 E_0000000005 F C05 3 E_0000000104 AC3 A21 spoof -",
                      "E_0755 E_0000000006 M C08 1 E_0000000103 AC3 A21 spoof -",
                      "E_0800 E_0000000007 F - 0 E_0000000107 bonafide bonafide bonafide -",
                      "E_0755 E_0000000008 M C05 3 E_0000000108 bonafide bonafide bonafide -"]}
ASVSPOOF5_FILES = {"train": "ASVspoof5.train.tsv", "dev": "ASVspoof5.dev.track_1.tsv",
                   "eval": "ASVspoof5.eval.track_1.tsv"}


def make_asvspoof5(root):
    folders = {"train": "flac_T", "dev": "flac_D", "eval": "flac_E_eval"}
    for part, lines in ASVSPOOF5.items():
        write_lines(root / "ASVspoof5_protocols" / ASVSPOOF5_FILES[part], lines)
        for i, line in enumerate(lines):
            tone(root / folders[part] / f"{line.split()[1]}.flac", "bonafide" in line, i)
    return root


def test_asvspoof5_reads_every_partition_with_codec_conditions(tmp_path):
    root = make_asvspoof5(tmp_path)
    rows, _ = read_layout("asvspoof5", root, "eval")
    assert [(u.utt_id, u.attack, u.label) for u, _ in rows][:3] == [
        ("E_0000000001", "A20", 0), ("E_0000000002", "-", 1), ("E_0000000003", "-", 1)]
    assert rows[0][0].conditions == (("codec", "C05"), ("codec_q", "3"))
    # the training pipeline's manifest stage takes the layout from data.layout
    counts = run_manifest(DataSettings(root=str(root), layout="asvspoof5"), tmp_path / "manifest")
    assert counts == {"train": 2, "dev": 2, "eval": 8}
    assert read_manifest(tmp_path / "manifest/eval.tsv")[0].utt.conditions == (("codec", "C05"), ("codec_q", "3"))
    write_lines(root / "ASVspoof5_protocols/ASVspoof5.dev.track_1.tsv",
                ASVSPOOF5["dev"] + ["D_0062 D_0000000003 M - - - AC1 A11 maybe -"])
    with pytest.raises(ProtocolError, match=r"ASVspoof5.dev.track_1.tsv:3: unknown key 'maybe'"):
        read_layout("asvspoof5", root, "dev")
    rows, problems = read_layout("asvspoof5", root, "dev", on_error="skip")
    assert len(rows) == 2 and len(problems) == 1


def test_in_the_wild_reads_meta_csv_and_names_a_bad_label(tmp_path):
    root = tmp_path / "release_in_the_wild"
    write_lines(root / "meta.csv", ["file,speaker,label", "0.wav,Alec Guinness,spoof",
                                    "1.wav,\"King, Jr.\",bona-fide", "2.wav,Barack Obama,bona-fide"])
    for i in range(3):
        tone(root / f"{i}.wav", i > 0, i)
    rows, _ = read_layout("in_the_wild", tmp_path, "eval")
    assert [(u.utt_id, u.speaker, u.attack, u.label) for u, _ in rows] == [
        ("0", "Alec_Guinness", "spoof", 0), ("1", "King_Jr.", "-", 1), ("2", "Barack_Obama", "-", 1)]
    write_lines(root / "meta.csv", ["file,speaker,label", "0.wav,A,fake"])
    with pytest.raises(ProtocolError, match=r"meta.csv:2: unknown label 'fake'"):
        read_layout("in_the_wild", root, "eval")
    (root / "meta.csv").write_text("name,who\n")
    with pytest.raises(ProtocolError, match=r"meta.csv:1: expected the header"):
        read_layout("in_the_wild", root, "eval")


def test_an_eval_only_layout_cannot_train_and_says_how_to_score_it(tmp_path):
    with pytest.raises(ProtocolError, match="pipeline.evaluate --layout in_the_wild"):
        run_manifest(DataSettings(root=str(tmp_path), layout="in_the_wild"), tmp_path / "manifest")


def test_condition_eer_pairs_bonafide_of_the_same_condition_or_all_of_them():
    scores = np.array([3.0, 2.0, 1.0, 0.0, 2.5, 1.5, -1.0, -0.5])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    conditions = [(("codec", "a"),), (("codec", "a"),), (("codec", "b"),), (("codec", "b"),),
                  (("codec", "a"), ("vocoder", "v1")), (("codec", "b"), ("vocoder", "v1")),
                  (("codec", "b"), ("vocoder", "v2")), (("codec", "a"), ("vocoder", "v2"))]
    result = condition_metrics(scores, labels, conditions)
    # codec a: bona fide {3, 2} against spoofs {2.5, -0.5}: one of two spoofs above one bona fide
    assert result["codec"]["a"] == {"eer": 0.5, "bonafide": 2, "spoof": 2}
    # codec b: bona fide {1, 0} against spoofs {1.5, -1}
    assert result["codec"]["b"] == {"eer": 0.5, "bonafide": 2, "spoof": 2}
    # a vocoder no bona fide has: against all four bona fide
    assert result["vocoder"]["v2"] == {"eer": 0.0, "bonafide": 4, "spoof": 2}


def test_changed_audio_changes_the_manifest_and_recomputes_its_shard(tmp_path):
    root = make_tone_corpus(tmp_path / "corpus", partitions=("train",), per_partition=4)
    settings, extract = FeatureSettings(), ExtractSettings(n_jobs=1, shard_size=2)
    rows, _ = build_manifest(root, "train")
    write_manifest(rows, tmp_path / "train.tsv")
    assert extract_partition(tmp_path / "train.tsv", tmp_path / "f", settings, extract, progress=False)["computed"] == 2
    tone(Path(rows[3].path), False, 99)
    changed, _ = build_manifest(root, "train")
    assert [r.audio_sha256 != c.audio_sha256 for r, c in zip(rows, changed)] == [False, False, False, True]
    write_manifest(changed, tmp_path / "train.tsv")
    summary = extract_partition(tmp_path / "train.tsv", tmp_path / "f", settings, extract, progress=False)
    assert (summary["computed"], summary["kept"]) == (1, 1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.mark.slow
def test_a_trained_model_scores_another_corpus_with_per_condition_eers(tiny_model, tmp_path):
    root = make_asvspoof5(tmp_path / "asvspoof5")
    out = {k: tmp_path / k for k in ("scores", "metrics", "plots", "reports", "work")}
    command = [sys.executable, "-m", "pipeline.evaluate", "--layout", "asvspoof5", "--root", root,
               "--model", tiny_model, *[f"--{k}={v}" for k, v in out.items()]]
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("evaluate asvspoof5_eval: EER")
    metrics = json.loads((out["metrics"] / "asvspoof5_eval.json").read_text())
    assert (metrics["bonafide"], metrics["spoof"]) == (4, 4)
    assert set(metrics["eer_per_attack"]) == {"A20", "A21"}
    assert set(metrics["eer_per_condition"]["speaker"]) == {"E_0755", "E_0800"}
    codec = metrics["eer_per_condition"]["codec"]
    # C05 and uncoded spoofs against the bona fide of their own codec; C08 has none: all of them
    assert {v: (m["bonafide"], m["spoof"]) for v, m in codec.items()} == {"-": (2, 1), "C05": (2, 2), "C08": (4, 1)}
    lines = (out["scores"] / "asvspoof5_eval.txt").read_text().splitlines()
    assert [line.split()[:3] for line in lines][:3] == [["E_0000000001", "A20", "spoof"],
                                                        ["E_0000000002", "-", "bonafide"],
                                                        ["E_0000000003", "-", "bonafide"]]
    assert "## Per codec" in (out["reports"] / "asvspoof5_eval.md").read_text()
    # features are kept: a second run extracts nothing
    assert (out["work"] / "asvspoof5_eval/features/index.json").is_file()
    again = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and (out["scores"] / "asvspoof5_eval.txt").read_text().splitlines() == lines


def test_a_condition_with_too_few_utterances_has_no_eer_instead_of_failing():
    scores, labels = np.array([2.0, 1.0, 0.5, -1.0, 0.1]), np.array([1, 1, 1, 0, 0])
    conditions = [(("speaker", "A"),), (("speaker", "B"),), (("speaker", "A"),), (("speaker", "A"),),
                  (("speaker", "B"),)]
    result = condition_metrics(scores, labels, conditions)["speaker"]
    assert result["A"] == {"eer": 0.0, "bonafide": 2, "spoof": 1}
    assert result["B"] == {"eer": None, "bonafide": 1, "spoof": 1}
