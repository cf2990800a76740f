"""Model inputs from shards: cropping, padding and the augmentations (frequency stretch, masks)."""
import numpy as np
import pytest
import torch

from conftest import make_feature_shards
from pipeline.data.dataset import (EpochSampler, ShardDataset, eval_frames, fit_frames, length_batches, mask_spans,
                                   stretch_bins)
from pipeline.data.shards import open_partition
from pipeline.settings import FeatureSettings


def test_short_utterances_are_mirror_padded_and_long_ones_cropped():
    sub = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 45), np.float32)
    f0 = np.arange(10, dtype=np.float32) + 100
    padded, padded_f0 = fit_frames(sub, f0, 25, None)
    # the utterance, then it reversed in time, then again (the authors' padding): no jump at the joins
    expected = list(range(10)) + list(range(9, -1, -1)) + list(range(5))
    assert padded.shape == (25, 45) and list(padded[:, 0]) == expected
    assert list(padded_f0) == [100 + i for i in expected]
    cropped, _ = fit_frames(sub, None, 4, 3)
    assert list(cropped[:, 0]) == [3, 4, 5, 6]



def test_evaluation_input_is_the_first_crop_or_the_whole_utterance():
    long = np.arange(50, dtype=np.float32)[:, None] * np.ones((1, 45), np.float32)
    short = long[:7]
    assert list(eval_frames(long, None, 20, "crop")[0][:, 0]) == list(range(20))
    # every frame up to the last multiple of 32 frames, never fewer than the crop
    assert list(eval_frames(long, None, 20, "whole")[0][:, 0]) == list(range(32))
    assert list(eval_frames(long, None, 40, "whole")[0][:, 0]) == list(range(40))
    assert len(eval_frames(np.tile(long, (2, 1)), None, 20, "whole")[0]) == 96
    for rule in ("crop", "whole"):  # shorter than the crop: mirror-padded either way (the authors' rule)
        assert list(eval_frames(short, None, 20, rule)[0][:, 0]) == [0, 1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1, 0,
                                                                   0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="eval_input"):
        eval_frames(long, None, 20, "centre")


def test_evaluation_dataset_gives_each_utterance_whole(tmp_path):
    make_feature_shards(tmp_path, FeatureSettings(), n_utts=12, n_shards=1, seed=0)
    readers = open_partition(tmp_path, FeatureSettings())
    whole = ShardDataset(readers, 32, train=False, eval_input="whole")
    crop = ShardDataset(readers, 32, train=False)
    lengths = [len(readers[0].read(i, ["subband"]).subband) for i in range(12)]
    expected = [max(32, n // 32 * 32) for n in lengths]
    assert [whole[i][0].shape[-1] for i in range(12)] == expected == list(whole.eval_lengths())
    assert {crop[i][0].shape[-1] for i in range(12)} == {32} == set(crop.eval_lengths())
    assert max(lengths) > 32  # the fixture has utterances longer than the crop


def test_length_batches_group_equal_lengths_in_order():
    batches = length_batches([64, 32, 64, 96, 64, 32], batch_size=2)
    assert batches == [[1, 5], [0, 2], [4], [3]]
    assert sorted(i for b in length_batches([7] * 5 + [3] * 4, 3) for i in b) == list(range(9))


def test_length_batches_hold_at_most_max_frames_but_at_least_one_input():
    lengths = [480] * 9 + [4096] * 2 + [96] * 40
    batches = length_batches(lengths, batch_size=32, max_frames=2048)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    sizes = {}
    for b in batches:
        sizes[lengths[b[0]]] = max(sizes.get(lengths[b[0]], 0), len(b))
    assert sizes == {96: 21, 480: 4, 4096: 1}  # 2048 // 96 = 21 (under 32); one input longer than the cap
    assert all(len(b) * lengths[b[0]] <= 2048 or len(b) == 1 for b in batches)


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


def test_masks_cover_one_band_and_one_span_with_the_crop_mean():
    rng = np.random.default_rng(0)
    sub = rng.normal(size=(200, 45)).astype(np.float16)
    widths = set()
    for seed in range(20):
        masked = mask_spans(sub, 8, 40, torch.Generator().manual_seed(seed))
        changed = masked != sub.astype(np.float32)
        bins = np.flatnonzero(changed.all(axis=0))     # a masked band changes every frame
        frames = np.flatnonzero(changed.all(axis=1))   # a masked span changes every bin
        assert len(bins) <= 8 and len(frames) <= 40
        for run in (bins, frames):  # each mask is one contiguous block
            assert len(run) == 0 or run[-1] - run[0] == len(run) - 1
        # everything changed lies in the band or the span, and holds the crop's mean
        outside = changed.copy()
        outside[:, bins] = False
        outside[frames, :] = False
        assert not outside.any()
        np.testing.assert_allclose(masked[changed], sub.astype(np.float32).mean(), rtol=1e-5)
        widths.add((len(bins), len(frames)))
    assert len(widths) > 5  # widths are drawn, not fixed
    np.testing.assert_array_equal(mask_spans(sub, 0, 0), sub.astype(np.float32))


def test_only_training_items_are_masked(tmp_path):
    settings = FeatureSettings()
    make_feature_shards(tmp_path, settings, n_utts=8, n_shards=1)
    readers = open_partition(tmp_path, settings)
    plain = ShardDataset(readers, 20, train=False, mask_bins=8, mask_frames=10)
    reference = ShardDataset(readers, 20, train=False)
    for i in range(len(plain)):
        np.testing.assert_array_equal(plain[i][0].numpy(), reference[i][0].numpy())
    torch.manual_seed(0)
    masked = ShardDataset(readers, 1000, train=True, mask_bins=8, mask_frames=10)
    unmasked = ShardDataset(readers, 1000, train=True)
    assert any(not np.array_equal(masked[i][0].numpy(), unmasked[i][0].numpy()) for i in range(len(masked)))


def test_epoch_order_drops_the_short_tail_and_splits_exactly_over_ranks():
    single = list(EpochSampler(70, batch_size=16, seed=3))
    assert len(single) == 64 and len({i for i, _ in single}) == 64  # 4 full batches, no repeats
    for epoch in (0, 1):
        whole = EpochSampler(70, batch_size=16, seed=3)
        whole.set_epoch(epoch)
        order = list(whole)
        ranks = []
        for rank in range(2):
            part = EpochSampler(70, batch_size=16, seed=3, rank=rank, world=2)
            part.set_epoch(epoch)
            ranks.append(list(part))
            assert len(part) == len(ranks[-1]) == 32
        for b in range(4):  # batch b of the two ranks (8 each) together is batch b of one process
            joined = ranks[0][b * 8:(b + 1) * 8] + ranks[1][b * 8:(b + 1) * 8]
            assert sorted(joined) == sorted(order[b * 16:(b + 1) * 16])
    first, second = EpochSampler(70, 16, 3), EpochSampler(70, 16, 3)
    second.set_epoch(1)
    assert list(first) != list(second)


def test_training_draws_depend_on_seed_epoch_and_item_only(tmp_path):
    """Crops and masks come from (seed, epoch, index): the same in any worker, in any order,
    however many items that worker read before (persistent workers, resumed runs)."""
    make_feature_shards(tmp_path, FeatureSettings(), n_utts=12, n_shards=1, seed=0)
    readers = open_partition(tmp_path, FeatureSettings())
    data = ShardDataset(readers, 20, train=True, mask_bins=8, mask_frames=10, seed=5)
    forward = [data[(i, 2)][0] for i in range(12)]
    torch.manual_seed(123)  # the global RNG plays no part
    backward = [data[(i, 2)][0] for i in reversed(range(12))][::-1]
    for a, b in zip(forward, backward):
        assert torch.equal(a, b)
    other_epoch = [data[(i, 3)][0] for i in range(12)]
    assert any(not torch.equal(a, b) for a, b in zip(forward, other_epoch))
    other_seed = ShardDataset(readers, 20, train=True, mask_bins=8, mask_frames=10, seed=6)
    assert any(not torch.equal(a, other_seed[(i, 2)][0]) for i, a in enumerate(forward))


def test_the_input_stacks_the_named_streams_in_order_and_nothing_else(tmp_path):
    settings = FeatureSettings(view2_bands=8, excitation=True, harmonicity=True, harmonic_phase=True)
    make_feature_shards(tmp_path, settings, n_utts=6, n_shards=1)
    readers = open_partition(tmp_path, settings)
    data = ShardDataset(readers, 20, train=False, f0_channel=True, streams=("subband", "view2", "excitation"))
    x, _, _ = data[2]
    stored = readers[0].read(2)
    rows = np.concatenate([stored["subband"], stored["view2"], stored["excitation"]], axis=1)[:20].T
    assert x.shape == (2, 45 + 8 + 4, 20)  # the fusion-only streams never reach the input
    np.testing.assert_array_equal(x[0].numpy(), rows.astype(np.float32))
    np.testing.assert_allclose(x[1, 0].numpy(), np.log(np.maximum(stored.f0[:20], 1.0)), rtol=1e-6)
    assert ShardDataset(readers, 20, train=False)[2][0].shape == (1, 45, 20)  # the subband alone by default
