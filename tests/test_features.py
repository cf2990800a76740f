import numpy as np
import pytest
import soundfile as sf

import features
from conftest import harmonic
from pipeline.settings import FeatureSettings


@pytest.mark.parametrize("method", ["dio", "harvest"])
@pytest.mark.parametrize("f0_hz", [110.0, 220.0])
def test_pyworld_recovers_known_f0(f0_hz, method):
    settings = FeatureSettings(f0_method=method)
    f0 = features.extract(harmonic(f0_hz), 16000, settings).f0
    voiced = f0[f0 > 0]
    assert len(voiced) > 0.9 * len(f0)
    assert abs(np.median(voiced) - f0_hz) / f0_hz < 0.03


def test_frames_and_bins_for_known_length(feature_settings):
    n_samples = 16000 * 3 + 17
    streams = features.extract(harmonic(150, seconds=n_samples / 16000), 16000, feature_settings)
    subband, f0 = streams.subband, streams.f0
    assert set(streams) == {"subband", "f0"}  # the paper's settings make the subband alone, and f0
    assert subband.shape == (1 + n_samples // 130, 45)
    assert f0.shape == (subband.shape[0],)
    assert subband.dtype == np.float32 and f0.dtype == np.float32


def test_subband_peak_sits_at_the_tone_frequency(feature_settings):
    t = np.arange(16000) / 16000
    subband = features.subband_spectrogram(np.sin(2 * np.pi * 200 * t).astype(np.float32), feature_settings)
    peak_bin = np.argmax(subband[len(subband) // 2])
    assert abs(peak_bin - 200 * 1728 / 16000) <= 1


def test_max_hz_sets_the_bin_count():
    assert FeatureSettings(max_hz=400).n_subband_bins == 45
    assert FeatureSettings(max_hz=8000).n_subband_bins == 865
    assert features.stream_widths(FeatureSettings(max_hz=8000)) == {"subband": 865}


def test_preemphasis():
    x = np.array([1.0, 2.0, 3.0, -1.0], dtype=np.float32)
    y = features.preemphasis(x, 0.97)
    np.testing.assert_allclose(y, [1.0, 2.0 - 0.97, 3.0 - 1.94, -1.0 - 2.91], rtol=1e-6)


def test_silent_audio_gives_unvoiced_f0_and_floor_spectrum(feature_settings):
    streams = features.extract(np.zeros(16000, np.float32), 16000, feature_settings)
    subband, f0 = streams.subband, streams.f0
    assert np.all(f0 == 0)
    assert np.allclose(subband, feature_settings.log_floor, atol=1e-3)


def test_other_sample_rates_are_resampled(feature_settings):
    x16 = harmonic(150, seconds=2.0, sr=16000)
    x8 = harmonic(150, seconds=2.0, sr=8000)
    sub16 = features.extract(x16, 16000, feature_settings).subband
    streams8 = features.extract(x8, 8000, feature_settings)
    sub8, f08 = streams8.subband, streams8.f0
    assert abs(len(sub8) - len(sub16)) <= 1
    assert abs(np.median(f08[f08 > 0]) - 150) < 5


def test_stereo_is_mixed_to_mono(feature_settings):
    x = harmonic(150)
    sub_mono = features.extract(x, 16000, feature_settings).subband
    sub_stereo = features.extract(np.stack([x, x], axis=1), 16000, feature_settings).subband
    np.testing.assert_allclose(sub_mono, sub_stereo, atol=1e-4)


def test_load_audio_names_the_file_on_errors(tmp_path):
    with pytest.raises(features.AudioError, match="missing.flac: file not found"):
        features.load_audio(tmp_path / "missing.flac", 16000)
    text = tmp_path / "notes.flac"
    text.write_text("this is not audio")
    with pytest.raises(features.AudioError, match="notes.flac: not readable as audio"):
        features.load_audio(text, 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(features.AudioError, match="nan.wav: contains NaN"):
        features.load_audio(nan, 16000)


def test_load_audio_resamples_and_mixes(tmp_path):
    path = tmp_path / "stereo44k.flac"
    sf.write(path, np.stack([harmonic(150, sr=44100)] * 2, axis=1), 44100)
    x = features.load_audio(path, 16000)
    assert x.ndim == 1 and abs(len(x) - 32000) <= 2


def test_symmetric_window_is_numpys_blackman_and_periodic_keeps_old_shards_valid():
    from features.subband import subband_spectrogram
    x = harmonic(150.0, seconds=1.0)
    symmetric = subband_spectrogram(x, FeatureSettings())
    periodic = subband_spectrogram(x, FeatureSettings(window_symmetric=False))
    # by hand: the centre frame with np.blackman (symmetric, as the authors' scipy window)
    s = FeatureSettings()
    pre = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    padded = np.pad(pre, (s.n_fft // 2, s.n_fft // 2 + s.hop_length))
    t = 40
    frame = padded[t * s.hop_length:t * s.hop_length + s.n_fft] * np.blackman(s.n_fft)
    expected = np.log(np.abs(np.fft.rfft(frame))[:s.n_subband_bins] + np.exp(s.log_floor))
    assert np.allclose(symmetric[t], expected, atol=1e-4)
    assert not np.allclose(symmetric, periodic, atol=1e-4)
    # the periodic window is what shards made before the setting hold: same fingerprint as then
    assert FeatureSettings(window_symmetric=False).fingerprint() == "706d8846ee0d1f97"
    assert FeatureSettings().fingerprint() != "706d8846ee0d1f97"
