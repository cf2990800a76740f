"""Model inputs from shards: cropping, padding and the frequency-stretch augmentation."""
import numpy as np
import torch

from conftest import make_feature_shards
from pipeline.dataset import ShardDataset, fit_frames, stretch_bins
from pipeline.settings import FeatureSettings
from pipeline.shards import open_partition


def test_short_utterances_are_repeat_padded_and_long_ones_cropped():
    sub = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 45), np.float32)
    padded, _ = fit_frames(sub, None, 25, None)
    assert padded.shape == (25, 45) and padded[10, 0] == 0 and padded[24, 0] == 4
    cropped, _ = fit_frames(sub, None, 4, 3)
    assert list(cropped[:, 0]) == [3, 4, 5, 6]


def test_stretch_moves_a_harmonic_like_a_pitch_shift():
    sub = np.full((5, 45), -5.0, np.float32)
    sub[:, 10] = 0.0  # a ridge at bin 10
    f0 = np.full(5, 100.0, np.float32)
    same, same_f0 = stretch_bins(sub, f0, 1.0)
    np.testing.assert_array_equal(same, sub)
    up, up_f0 = stretch_bins(sub, f0, 1.2)
    assert int(np.argmax(up[0])) == 12 and np.allclose(up_f0, 120.0)
    down, _ = stretch_bins(sub, None, 1 / 1.25)
    assert int(np.argmax(down[0])) == 8
    assert down.shape == sub.shape and np.all(np.isfinite(down))


def test_only_training_items_are_stretched(tmp_path):
    settings = FeatureSettings()
    make_feature_shards(tmp_path, settings, n_utts=8, n_shards=1)
    readers = open_partition(tmp_path, settings)
    plain = ShardDataset(readers, 20, train=False, freq_stretch=0.3)
    reference = ShardDataset(readers, 20, train=False)
    for i in range(len(plain)):
        np.testing.assert_array_equal(plain[i][0].numpy(), reference[i][0].numpy())
    torch.manual_seed(0)
    augmented = ShardDataset(readers, 1000, train=True, freq_stretch=0.3)  # no crop: padding only
    unaugmented = ShardDataset(readers, 1000, train=True)
    assert any(not np.array_equal(augmented[i][0].numpy(), unaugmented[i][0].numpy())
               for i in range(len(augmented)))
