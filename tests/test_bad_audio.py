"""What real corpora contain: each odd or broken audio file is used correctly or refused by name."""
import numpy as np
import pytest
import soundfile as sf

import features
from conftest import harmonic
from pipeline.settings import FeatureSettings

SETTINGS = FeatureSettings()


def frames_for(seconds):
    return 1 + int(round(seconds * 16000)) // SETTINGS.hop_length


def extract_file(path):
    return features.extract(features.load_audio(path, 16000), 16000, SETTINGS)


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b""), "not readable as audio"),
    (lambda p: p.write_text("SPEAKER UTT - A01 spoof\n"), "not readable as audio"),
    (lambda p: (sf.write(p.with_suffix(".tmp.flac"), harmonic(150), 16000),
                p.write_bytes(p.with_suffix(".tmp.flac").read_bytes()[:300])), "not readable as audio"),
    (lambda p: sf.write(p, np.zeros(0, np.float32), 16000, format="WAV"), "no audio samples"),
])
def test_broken_files_are_refused_with_the_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "broken.flac"
    make(path)
    with pytest.raises(features.AudioError) as err:
        features.load_audio(path, 16000)
    assert str(path) in str(err.value) and reason in err.value.reason


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(tmp_path, value):
    path = tmp_path / "float.wav"
    x = harmonic(150)
    x[100] = value
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(features.AudioError, match="NaN or infinite"):
        features.load_audio(path, 16000)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_sample_rates_give_the_16k_frame_grid_and_f0(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.flac"
    sf.write(path, harmonic(150, seconds=2.0, sr=rate), rate)
    streams = extract_file(path)
    subband, f0 = streams.subband, streams.f0
    assert abs(len(subband) - frames_for(2.0)) <= 1 and subband.shape[1] == 45
    assert abs(np.median(f0[f0 > 0]) - 150) < 5


def test_silent_clipped_stereo_and_mislabelled_files_are_used(tmp_path):
    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    f0 = extract_file(silent).f0
    assert np.all(f0 == 0)
    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.clip(4 * harmonic(150), -1, 1), 16000)
    assert np.all(np.isfinite(extract_file(clipped).subband))
    stereo = tmp_path / "stereo.flac"
    sf.write(stereo, np.stack([harmonic(150), np.zeros(32000, np.float32)], axis=1), 16000)
    assert len(extract_file(stereo).subband) == frames_for(2.0)
    wav_named_flac = tmp_path / "really_a_wav.flac"
    sf.write(wav_named_flac, harmonic(150), 16000, format="WAV")
    assert len(extract_file(wav_named_flac).subband) == frames_for(2.0)


def test_shorter_than_one_frame_gives_one_frame():
    streams = features.extract(np.full(50, 0.1, np.float32), 16000, SETTINGS)
    subband, f0 = streams.subband, streams.f0
    assert subband.shape == (1, 45) and f0.shape == (1,)


@pytest.mark.slow
def test_ten_minute_recording(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, np.tile(harmonic(150, seconds=2.0), 300), 16000)
    streams = extract_file(path)
    subband, f0 = streams.subband, streams.f0
    assert len(subband) == len(f0) == frames_for(600.0)
    assert abs(np.median(f0[f0 > 0]) - 150) < 5
