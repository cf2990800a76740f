"""Excitation statistics: how impulsive each frame's LPC residual is, a feature stream of their own
(the last rows of the network's input, after the spectra), read by a branch of their own."""
import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch

from features import extract
from features.excitation import STATISTICS, excitation_statistics, levinson
from features.streams import SPECTRAL_STREAMS, Streams, network_streams, stream_widths
from model import build_model
from pipeline.data.dataset import ShardDataset
from pipeline.settings import FeatureSettings, ModelSettings, build

EXCITATION = FeatureSettings(view2_bands=24, view2_min_hz=400.0, view2_max_hz=4000.0, excitation=True)
VOWEL = [1.0, -1.3, 0.9, -0.3]  # an all-pole "vocal tract": the same filter for every source


def voiced(source: np.ndarray) -> np.ndarray:
    return scipy.signal.lfilter([1.0], VOWEL, source).astype(np.float32)


def pulse_train(f0: float, seconds: float = 1.0, jitter: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.zeros(int(16000 * seconds))
    t = 0.0
    while t < len(x):
        x[int(t)] = 1.0
        t += 16000 / f0 * (1 + jitter * rng.standard_normal())
    return x


def test_levinson_solves_the_normal_equations():
    rng = np.random.default_rng(1)
    signals = scipy.signal.lfilter([1.0], VOWEL, rng.standard_normal((4, 400)), axis=1)
    r = np.array([[s[:len(s) - k] @ s[k:] for k in range(13)] for s in signals])
    expected = np.array([np.concatenate([[1.0], -scipy.linalg.solve_toeplitz(row[:12], row[1:13])]) for row in r])
    np.testing.assert_allclose(levinson(r, 12), expected, atol=1e-9)


def test_a_pulse_train_is_more_impulsive_than_noise_through_the_same_filter():
    # The cue the statistics exist for: the same envelope, a pulse-train source (a classic
    # vocoder) against a smeared, noise-like one (phase reconstruction).
    pulses = excitation_statistics(voiced(pulse_train(120.0)), 16000, 130)
    noise = excitation_statistics(voiced(np.random.default_rng(2).standard_normal(16000)), 16000, 130)
    middle = slice(5, -5)
    for name in ("kurtosis", "crest", "envelope_peak"):
        column = STATISTICS.index(name)
        assert np.median(pulses[middle, column]) > np.median(noise[middle, column]) + 0.5, name


def test_statistics_are_a_stream_of_their_own_frame_for_frame_and_the_last_rows_of_the_input():
    x = voiced(pulse_train(150.0, 1.3, jitter=0.01)) * 0.1
    plain = extract(x, 16000, FeatureSettings(view2_bands=24, view2_min_hz=400.0, view2_max_hz=4000.0),
                    with_f0=False)
    full = extract(x, 16000, EXCITATION, with_f0=False)
    assert stream_widths(EXCITATION) == {"subband": 45, "view2": 24, "excitation": len(STATISTICS)}
    assert set(full) == {"subband", "view2", "excitation"} and full["excitation"].shape == (plain.frames, 4)
    for name in ("subband", "view2"):  # the spectra are unchanged by the statistics
        np.testing.assert_array_equal(full[name], plain[name])
    # the network reads the spectra (69 rows), then the statistics
    names = list(network_streams(EXCITATION))
    assert names == ["subband", "view2", "excitation"]
    assert sum(stream_widths(EXCITATION)[n] for n in SPECTRAL_STREAMS) == 69
    stacked = full.stacked(names)
    np.testing.assert_array_equal(stacked[:, :69], plain.stacked(["subband", "view2"]))
    np.testing.assert_array_equal(stacked[:, 69:], full["excitation"])
    assert all(np.all(np.isfinite(v)) for v in full.values())
    # silence gives zeros (a neutral value: every statistic is a log ratio), not NaN
    silent = excitation_statistics(np.zeros(8000, np.float32), 16000, 130)
    assert silent.shape == (1 + 8000 // 130, len(STATISTICS)) and not silent.any()


def test_fingerprint_changes_only_with_the_statistics():
    # shards and model files made before the statistics existed stay valid
    assert FeatureSettings(excitation=False).fingerprint() == FeatureSettings().fingerprint()
    assert FeatureSettings(excitation=True).fingerprint() != FeatureSettings().fingerprint()
    # feature settings stored without the key (as a model file or shard holds them) read back without it
    assert build(FeatureSettings, {k: v for k, v in vars(FeatureSettings()).items()
                                   if k != "excitation"}, "feature_settings").excitation is False


def test_the_branch_reads_the_last_rows_and_the_others_the_spectra():
    torch.manual_seed(0)
    model = build_model(ModelSettings(view2_dim=32, excitation_dim=16), EXCITATION).eval()
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, tuple(inputs[0].shape))
        return hook

    for name in ("backbone", "view2", "excitation"):
        getattr(model, name).register_forward_hook(record(name))
    x = torch.randn(3, 1, 73, 64)
    out = model(x)
    assert out.cos_theta.shape == (3, 2)
    assert seen == {"backbone": (3, 1, 45, 64), "view2": (3, 1, 24, 64), "excitation": (3, 1, 4, 64)}
    changed = x.clone()
    changed[:, :, -4:] += 2.0
    assert not torch.allclose(model(changed).cos_theta, out.cos_theta)
    assert torch.isfinite(model(x[..., :3]).cos_theta).all()  # a clip of 3 frames: one frame left in the branch


def test_masks_leave_the_statistics_alone(tmp_path):
    from pipeline.data.protocol import Utterance
    from pipeline.data.shards import file_sha256, open_partition, shard_name, write_index, write_shard
    rng = np.random.default_rng(3)
    features = [rng.normal(-4, 1, (120, 73)).astype(np.float32) for _ in range(4)]
    widths = stream_widths(EXCITATION)  # subband 45, view2 24, excitation 4: 73 rows
    bounds = np.cumsum([0, *widths.values()])

    def streams(x):
        return Streams({name: x[:, a:b] for name, a, b in zip(widths, bounds[:-1], bounds[1:])},
                       f0=np.full(120, 100.0, np.float32))

    records = [(Utterance(f"U{i}", "S", "-" if i % 2 else "A01", i % 2), streams(x)) for i, x in enumerate(features)]
    path = tmp_path / shard_name(0)
    frames = write_shard(path, records, EXCITATION)
    write_index(tmp_path, [{"file": path.name, "utterances": 4, "frames": frames, "sha256": file_sha256(path)}],
                EXCITATION, [])
    spectral_rows = sum(w for name, w in network_streams(EXCITATION).items() if name in SPECTRAL_STREAMS)
    data = ShardDataset(open_partition(tmp_path, EXCITATION), 100, train=True, mask_bins=40, mask_frames=60,
                        seed=1, mask_rows=spectral_rows, streams=tuple(network_streams(EXCITATION)))
    masked = 0
    for index in range(4):
        for epoch in range(3):
            rows = data[(index, epoch)][0][0].numpy()  # [rows, frames] of a 100-frame crop
            stored = features[index].astype(np.float16).astype(np.float32).T  # shards keep float16
            starts = [s for s in range(21) if np.array_equal(rows[-4:], stored[-4:, s:s + 100])]
            assert starts, "the statistics of the crop were changed"
            masked += not np.array_equal(rows[:69], stored[:69, starts[0]:starts[0] + 100])
    assert masked > 0  # while the spectra were masked


@pytest.mark.parametrize("dim", [0, 7])
def test_excitation_dim_is_checked(dim):
    from pipeline.settings import SettingsError
    with pytest.raises(SettingsError, match="excitation_dim"):
        ModelSettings(excitation_dim=dim).validate("model")

