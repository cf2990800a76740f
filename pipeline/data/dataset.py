"""Streams utterances from feature shards into fixed-size model inputs.

Only the shard offsets live in memory; each item is read from its HDF5 file when asked for,
inside the DataLoader worker (files are opened lazily, never before a fork), so a partition
far larger than memory trains the same way as the mini corpus.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from features import fusion_statistics, n_fusion_statistics


def mirror_pad(x: np.ndarray, frames: int) -> np.ndarray:
    """x, x reversed in time, x, ... up to `frames` along axis 0 (as the authors' code pads): no
    jump where the copies meet, unlike repeating x, which splices its start onto its end."""
    cycle = np.concatenate([x, x[::-1]])
    reps = -(-frames // len(cycle))
    return np.tile(cycle, (reps,) + (1,) * (x.ndim - 1))[:frames]


def fit_frames(subband: np.ndarray, f0: np.ndarray | None, frames: int, start: int | None):
    """Mirror-pad to `frames` when shorter; crop at `start` (None = 0) when longer. f0 may be None."""
    n = len(subband)
    if n < frames:
        return mirror_pad(subband, frames), None if f0 is None else mirror_pad(f0, frames)
    start = start or 0
    return subband[start:start + frames], None if f0 is None else f0[start:start + frames]


# How evaluation (training's dev scoring, the evaluate stage, detect) feeds an utterance to the
# network: "crop" = its first train.frames frames (training's crop length; the paper's
# fixed-length input); "whole" = all of its frames, so a long utterance is judged on all it holds.
# Both mirror-pad an utterance shorter than train.frames to train.frames. A longer whole
# utterance is cut to a multiple of WHOLE_STEP frames (its last frames, at most 0.25 s at hop
# 130, mostly trailing silence, are left out), so utterances of similar length share an input
# length and are scored in one batch. Cutting, not padding: repeat-padding appends the
# utterance's start after its end, a splice the network may read as a spoofing artefact.
EVAL_INPUTS = ("crop", "whole")
WHOLE_STEP = 32


def eval_length(n: int, frames: int, eval_input: str) -> int:
    """Input length in frames that evaluation gives an utterance of n frames."""
    if eval_input not in EVAL_INPUTS:
        raise ValueError(f"eval_input must be one of {EVAL_INPUTS}, got {eval_input!r}")
    if eval_input == "crop" or n <= frames:
        return frames
    return max(frames, n // WHOLE_STEP * WHOLE_STEP)


def eval_frames(subband: np.ndarray, f0: np.ndarray | None, frames: int, eval_input: str):
    """The evaluation input of one utterance under `eval_input` (see EVAL_INPUTS)."""
    return fit_frames(subband, f0, eval_length(len(subband), frames, eval_input), None)


def length_batches(lengths, batch_size: int, max_frames: int = 0) -> list[list[int]]:
    """Indices grouped into batches of at most batch_size whose lengths are equal (ascending
    length, then index), so inputs of one batch stack without padding; with max_frames > 0 a
    batch also holds at most that many frames in all (at least one input)."""
    lengths = np.asarray(lengths)
    order = np.lexsort((np.arange(len(lengths)), lengths))
    batches = []
    for length in np.unique(lengths):
        same = order[lengths[order] == length]
        size = max(1, min(batch_size, max_frames // int(length))) if max_frames else batch_size
        batches += [same[i:i + size].tolist() for i in range(0, len(same), size)]
    return batches


def stretch_bins(subband: np.ndarray, f0: np.ndarray | None, factor: float):
    """Rescale the frequency axis: bin b takes the value at b / factor (linear interpolation;
    bins past the top repeat the top bin). F0 is scaled by the same factor."""
    bins = np.arange(subband.shape[1], dtype=np.float64)
    source = np.minimum(bins / factor, bins[-1])
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, len(bins) - 1)
    weight = (source - low).astype(np.float32)
    x = subband.astype(np.float32)
    stretched = x[:, low] * (1 - weight) + x[:, high] * weight
    return stretched, None if f0 is None else f0 * factor


def mask_spans(subband: np.ndarray, bins: int, frames: int, generator: torch.Generator | None = None):
    """SpecAugment-style masking: one band of up to `bins` bins and one span of up to `frames`
    frames (widths and positions drawn uniformly; 0 = no mask on that axis) are set to the
    crop's mean, so a masked crop keeps its level. Returns a masked copy."""
    x = subband.astype(np.float32, copy=True)
    fill = float(x.mean())
    for axis, limit in ((1, bins), (0, frames)):
        size = x.shape[axis]
        if limit <= 0 or size < 2:
            continue
        width = int(torch.randint(0, min(limit, size - 1) + 1, (), generator=generator))
        if width:
            start = int(torch.randint(0, size - width + 1, (), generator=generator))
            np.moveaxis(x, axis, 0)[start:start + width] = fill  # a view: writes into x
    return x


def model_input(subband: np.ndarray, f0: np.ndarray | None, f0_channel: bool) -> torch.Tensor:
    """[frames, rows] (the network's streams stacked, Streams.stacked) + f0 -> the network's input
    [channels, rows, frames] float32.

    With f0_channel, log F0 (0 where unvoiced) is broadcast over the rows as a second channel,
    so it lines up with each frame.
    """
    x = torch.from_numpy(np.ascontiguousarray(subband.T, dtype=np.float32))[None]
    if f0_channel:
        logf0 = torch.from_numpy(np.log(np.maximum(f0, 1.0)).astype(np.float32))
        x = torch.cat([x, logf0[None, None].expand(1, x.shape[1], -1)], dim=0)
    return x


class ShardDataset(Dataset):
    """Items: (input [channels, rows, frames] float32, label int64, global index).

    train=True reads the original or one of its stored augmented copies (and the copy-synthesis
    spoofs as items of their own), crops at a random start
    (drawn as __getitem__ says: per (seed, epoch, item)) and applies the augmentations (frequency
    stretch, then the masks); train=False reads originals only, never augments
    and gives the evaluation input (`eval_frames`): the first `frames` frames ("crop") or the
    whole utterance ("whole": items differ in length; `length_batches(eval_lengths())` groups
    equal ones). exclude_attacks: attack ids whose spoofs are left out (leave-one-attack-out);
    exclude_speakers: speakers whose utterances, bona fide and spoof, are left out (leave one
    recording source out).
    streams: the streams the network reads, stacked in this order into its input rows.
    mask_rows: the masks cover rows 0 .. mask_rows - 1 only (the spectra; the excitation
    statistics after them are not masked); None = every row.
    """

    def __init__(self, readers, frames: int, train: bool, f0_channel: bool = False,
                 freq_stretch: float = 0.0, mask_bins: int = 0, mask_frames: int = 0,
                 eval_input: str = "crop", seed: int = 0, exclude_attacks=(), mask_rows: int | None = None,
                 streams=("subband",), exclude_speakers=()):
        if eval_input not in EVAL_INPUTS:
            raise ValueError(f"eval_input must be one of {EVAL_INPUTS}, got {eval_input!r}")
        self.streams = tuple(streams)
        self.read_names = self.streams + (("f0",) if f0_channel else ())
        self.eval_input = eval_input
        self.seed = seed
        self.readers = readers
        self.freq_stretch = freq_stretch if train else 0.0
        self.mask_bins, self.mask_frames = (mask_bins, mask_frames) if train else (0, 0)
        self.mask_rows = mask_rows
        self.frames = frames
        self.train = train
        self.f0_channel = f0_channel
        sizes = [len(r) for r in readers]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # Items: positions of the original utterances in the shards' concatenation, without the
        # excluded attacks' spoofs; in training also the copy-synthesis spoofs (copy -1, train
        # shards with features.copy_synthesis). Augmented copies (copy k > 0, features.augment)
        # sit right after their item: training draws one of the K + 1 versions each time it
        # reads an item; evaluation reads the originals only.
        attacks = np.concatenate([np.asarray(r.attack) for r in readers]) if readers else np.zeros(0, str)
        copy = np.concatenate([r.copy for r in readers]) if readers else np.zeros(0, np.int16)
        heads = np.flatnonzero(copy <= 0)  # records that augmented copies follow
        item = (copy == 0) | ((copy < 0) & train)
        if exclude_speakers:
            speakers = np.concatenate([np.asarray(r.speaker) for r in readers])
            item &= ~np.isin(speakers, list(exclude_speakers))
        self.items = np.flatnonzero(item & ~np.isin(attacks, list(exclude_attacks))).astype(np.int64)
        labels = np.concatenate([r.label for r in readers]).astype(np.int64) if readers else np.zeros(0, np.int64)
        self.labels = labels[self.items]
        copies_after = np.diff(np.append(heads, len(copy))) - 1  # per head, in order
        self.copies = (copies_after[np.searchsorted(heads, self.items)] if train
                       else np.zeros(len(self.items), np.int64))

    def __len__(self) -> int:
        return len(self.items)

    def locate(self, index: int, version: int = 0) -> tuple[int, int]:
        """(shard, record) of item index; version k > 0: its k-th augmented copy."""
        position = int(self.items[index]) + version
        shard = int(np.searchsorted(self.starts, position, side="right") - 1)
        return shard, position - int(self.starts[shard])

    def eval_lengths(self) -> np.ndarray:
        """Every item's evaluation input length in frames (from the shard offsets, no reads)."""
        frames = np.concatenate([np.diff(r.offsets) for r in self.readers]) if self.readers else np.zeros(0)
        return np.array([eval_length(int(n), self.frames, self.eval_input) for n in frames[self.items]], np.int64)

    def utterance_statistics(self, names, with_copies: bool = False) -> np.ndarray:
        """[items, statistics]: what the score fusion reads of each item (features.fusion_statistics
        of its original's streams `names` and f0, the whole utterance, never a crop).
        with_copies (train=True): each item's row is followed by one row per augmented copy of it,
        [items + copies, statistics]; their labels are copy_labels()."""
        rows = []
        for index in range(len(self)):
            for version in range(1 + (int(self.copies[index]) if with_copies else 0)):
                shard, i = self.locate(index, version)
                rows.append(fusion_statistics(self.readers[shard].read(i, (*names, "f0")), names))
        return np.array(rows).reshape(len(rows), n_fusion_statistics(names))

    def copy_labels(self) -> np.ndarray:
        """The labels of utterance_statistics(names, with_copies=True)'s rows."""
        return np.repeat(self.labels, 1 + self.copies)

    def utterance(self, index: int) -> tuple[str, str, int]:
        shard, i = self.locate(index)
        r = self.readers[shard]
        return r.utt_id[i], r.attack[i], int(r.label[i])

    def __getitem__(self, key):
        """key: an index, or (index, epoch) from EpochSampler. With (index, epoch) a training
        item's crop and augmentations are drawn from a generator seeded by (seed, epoch, index),
        so they do not depend on the worker that reads it, nor on what that worker read before
        (persistent workers, any num_workers, a resumed run: the same draws)."""
        index, generator = key, None
        if isinstance(key, (tuple, list)):
            index, epoch = int(key[0]), int(key[1])
            state = np.random.SeedSequence([self.seed, epoch, index]).generate_state(2, np.uint32)
            generator = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        version = 0
        if self.copies[index]:
            version = int(torch.randint(0, int(self.copies[index]) + 1, (), generator=generator))
        shard, i = self.locate(index, version)
        streams = self.readers[shard].read(i, self.read_names)
        subband, f0 = streams.stacked(self.streams), streams.f0
        if self.train:
            start = None
            if len(subband) > self.frames:
                start = int(torch.randint(0, len(subband) - self.frames + 1, (), generator=generator))
            subband, f0 = fit_frames(subband, f0, self.frames, start)
        else:
            subband, f0 = eval_frames(subband, f0, self.frames, self.eval_input)
        if self.freq_stretch > 0:
            limit = np.log1p(self.freq_stretch)
            factor = float(np.exp((float(torch.rand((), generator=generator)) * 2 - 1) * limit))
            subband, f0 = stretch_bins(subband, f0, factor)
        if self.mask_bins or self.mask_frames:
            rows = subband.shape[1] if self.mask_rows is None else self.mask_rows
            subband = np.concatenate([mask_spans(subband[:, :rows], self.mask_bins, self.mask_frames, generator),
                                      subband[:, rows:]], axis=1)
        return model_input(subband, f0, self.f0_channel), int(self.labels[index]), index


class EpochSampler(Sampler):
    """One epoch's shuffled order as (index, epoch) keys for ShardDataset, for rank `rank` of `world`.

    The permutation depends only on (seed, epoch) (set_epoch), so a resumed run replays an
    uninterrupted one and the loader's workers can persist across epochs. The tail that does not
    fill a global batch is dropped (a short last batch would be a different shape, a second
    compilation under torch.compile, and noisier BatchNorm statistics). Rank r takes every
    world-th item of the kept order, so the ranks' batches of batch_size // world together are
    exactly the single-process batch.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def kept(self) -> int:
        """Items of an epoch: the whole global batches."""
        return self.size // self.batch_size * self.batch_size

    def __len__(self) -> int:
        return self.kept // self.world

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        return iter([(int(i), self.epoch) for i in order[:self.kept][self.rank::self.world]])
