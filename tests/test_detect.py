"""`python -m pipeline.detect`: scores good and odd files, names each broken one, exits non-zero."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, harmonic, train_tiny_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("detect"))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    tone = harmonic(150, seconds=2.0)
    sf.write(folder / "good.flac", tone, 16000)
    sf.write(folder / "stereo.wav", np.stack([tone, tone[::-1]], axis=1), 16000)
    sf.write(folder / "narrowband_8k.wav", harmonic(150, seconds=2.0, sr=8000), 8000)
    sf.write(folder / "cd_44k.flac", harmonic(150, seconds=2.0, sr=44100), 44100)
    sf.write(folder / "long_2min.flac", np.tile(tone, 60), 16000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.flac").write_text("this is a text file, not audio")
    (folder / "corrupt.flac").write_bytes((folder / "good.flac").read_bytes()[:200])
    sf.write(folder / "nan.wav", np.array([0.1, np.nan] * 800, np.float32), 16000, subtype="FLOAT")
    (folder / "notes.txt").write_text("not an audio suffix: not picked up from a folder")
    return folder


def run_detect(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.detect", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_detect_scores_good_and_odd_files_and_names_broken_ones(model_path, mixed_folder, tmp_path):
    out = tmp_path / "scores.tsv"
    result = run_detect("--model", model_path, mixed_folder, "--out", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["path", "score", "llr", "p_bonafide", "decision"]
    scored = {r[0].rsplit("/", 1)[1]: r for r in rows[1:]}
    assert set(scored) == {"good.flac", "stereo.wav", "narrowband_8k.wav", "cd_44k.flac", "long_2min.flac"}
    assert all(r[4] in ("bonafide", "spoof") and np.isfinite(float(r[1])) for r in scored.values())
    assert all(0.0 <= float(r[3]) <= 1.0 and np.isfinite(float(r[2])) for r in scored.values())
    for name, reason in [("empty.wav", "not readable as audio"), ("text.flac", "not readable as audio"),
                         ("corrupt.flac", "not readable as audio"), ("nan.wav", "NaN")]:
        assert any(name in line and reason in line for line in result.stderr.splitlines()), name
    assert "notes.txt" not in result.stdout + result.stderr


def test_detect_on_good_files_exits_zero_and_prints_a_table(model_path, mixed_folder):
    result = run_detect("--model", model_path, mixed_folder / "good.flac", mixed_folder / "stereo.wav")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["path", "score", "llr", "p_bonafide", "decision"] and len(lines) == 3
    assert "minimum cost at P(spoof) 0.05" in result.stderr  # the decision rule is stated


def test_detect_judges_what_the_model_was_evaluated_on(model_path, tmp_path):
    """Two files alike for their first second: the same score on the first crop, different ones
    when the model scores whole utterances (train.eval_input, stored in the model file)."""
    from pipeline.inference.detector import Detector
    tone = harmonic(150, seconds=2.0)
    sf.write(tmp_path / "a.flac", tone, 16000)
    sf.write(tmp_path / "b.flac", np.concatenate([tone[:16000], harmonic(240, seconds=1.0)]), 16000)
    detector = Detector(model_path)
    assert detector.model_file.eval_input == "crop"  # TrainSettings' default, as the fixture trained
    assert detector.scorer.eval_input == "crop"
    assert detector.score(tmp_path / "a.flac") == pytest.approx(detector.score(tmp_path / "b.flac"), abs=1e-6)
    detector.scorer.eval_input = "whole"
    assert abs(detector.score(tmp_path / "a.flac") - detector.score(tmp_path / "b.flac")) > 1e-4


def test_detect_refuses_a_file_that_is_not_a_model(tmp_path, mixed_folder):
    bad = tmp_path / "model.pt"
    bad.write_text("nope")
    result = run_detect("--model", bad, mixed_folder / "good.flac")
    assert result.returncode == 2 and "not a loadable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_detect_evaluates_a_protocol_folder(model_path, tmp_path):
    from conftest import make_tone_corpus
    from pipeline.data.protocol import audio_dir, protocol_path
    root = make_tone_corpus(tmp_path / "corpus", partitions=("eval",), per_partition=8)
    result = run_detect("--model", model_path, "--protocol", protocol_path(root, "eval"),
                        "--root", audio_dir(root, "eval"))
    assert result.returncode == 0, result.stderr
    assert "8 utterances scored: EER" in result.stdout


def test_batched_streaming_scores_equal_one_file_at_a_time(model_path, mixed_folder):
    from pipeline.detect import Detector, expand
    detector = Detector(model_path, batch_size=3)
    detector.scorer.eval_input = "whole"  # inputs of several lengths: several groups
    paths = expand([str(mixed_folder)])
    streamed = {p: (s, r) for p, s, r in detector.stream(paths, workers=2, progress=False)}
    assert set(streamed) == set(paths)
    for path, (score, reason) in streamed.items():
        if reason is None:
            assert score == pytest.approx(detector.score(path), abs=1e-5), path
        else:
            assert path.name in ("empty.wav", "text.flac", "corrupt.flac", "nan.wav")


def test_no_f0_is_computed_for_a_model_without_an_f0_channel(model_path, mixed_folder, monkeypatch):
    import features
    from pipeline.inference.detector import Detector
    detector = Detector(model_path)
    assert not detector.model_file.model_settings.f0_channel and not detector.scorer.needs_f0
    monkeypatch.setattr(features, "compute_f0", lambda *a, **k: pytest.fail("F0 computed and thrown away"))
    assert list(detector.stream([mixed_folder / "good.flac"], workers=0, progress=False))[0][2] is None


def test_rows_are_kept_as_scored_and_resume_skips_them(model_path, mixed_folder, tmp_path, monkeypatch, capsys):
    from pipeline import detect
    out = tmp_path / "scores.tsv"
    files = [mixed_folder / n for n in ("good.flac", "stereo.wav", "cd_44k.flac")]
    real = detect.Detector.score_batch
    calls = []

    def fail_on_the_second_batch(self, inputs, statistics=None):
        calls.append(len(inputs))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(self, inputs, statistics)

    monkeypatch.setattr(detect.Detector, "score_batch", fail_on_the_second_batch)
    with pytest.raises(RuntimeError):
        detect.main(["--model", str(model_path), *map(str, files), "--out", str(out),
                     "--batch-size", "1", "--workers", "0", "--no-progress"])
    kept = out.read_text().splitlines()
    assert kept[0] == "path\tscore\tllr\tp_bonafide\tdecision" and len(kept) == 2  # the first row survived
    monkeypatch.setattr(detect.Detector, "score_batch", real)
    capsys.readouterr()
    assert detect.main(["--model", str(model_path), *map(str, files), "--out", str(out), "--resume",
                        "--workers", "0", "--no-progress"]) == 0
    assert "1 of 3 files already" in capsys.readouterr().err
    rows = out.read_text().splitlines()
    assert rows[:2] == kept and len(rows) == 4
    assert sorted(r.split("\t")[0] for r in rows[1:]) == sorted(map(str, files))


def test_detect_decides_at_the_bayes_threshold_of_the_calibrated_score(model_path):
    from pipeline.inference.detector import Detector
    from pipeline.scoring.calibration import to_llr
    detector = Detector(model_path)
    assert set(detector.calibration) == {"scale", "offset", "prior"}  # training stored one
    # a known calibration, so the rule is tested whatever the tiny model learnt
    calibration = detector.calibration = {"scale": 2.0, "offset": 0.1, "prior": 0.5}
    detector.set_rule()
    # the raw score where the LLR crosses the ASVspoof 5 threshold log(0.5 / 0.95)
    cut = (np.log(0.5 / 0.95) - calibration["offset"]) / calibration["scale"]
    for score in (cut - 1e-3, cut + 1e-3):
        llr, p, decision = detector.judge(score)
        assert llr == pytest.approx(float(to_llr(calibration, score)))
        assert decision == ("bonafide" if score > cut else "spoof")
        assert p == pytest.approx(1 / (1 + np.exp(-(llr + np.log(0.95 / 0.05)))))
    # a stated prior moves the threshold; --threshold replaces the rule
    detector.set_rule(prior_spoof=0.5)  # equal priors and costs 1 / 10: accept at LLR >= log(10)
    even = (np.log(10) - calibration["offset"]) / calibration["scale"]
    assert detector.judge(even + 1e-3)[2] == "bonafide" and detector.judge(even - 1e-3)[2] == "spoof"
    detector.set_rule(threshold=0.25)
    assert detector.judge(0.26)[2] == "bonafide" and detector.judge(0.25)[2] == "spoof"
