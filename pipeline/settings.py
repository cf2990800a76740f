"""Typed, validated settings loaded once from params.yaml.

Each params.yaml section maps onto one dataclass below. Unknown keys, missing keys, wrong types
and out-of-range values are reported at start-up with their path (``features.n_fft``), never
as a KeyError half-way through a run. Library code receives these objects; it never
reads params.yaml itself.

params.yaml is the one source of a run's settings: it must set every key (load_settings refuses
one that leaves a key out), so nothing falls back to a value written here. The defaults below are
the paper's recipe (what presets/asvspoof2019_la.yaml sets, less its speed-only choices; a test
checks it), for settings built in code: tests and benchmarks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import yaml

from pipeline.errors import PipelineError

PARTITIONS = ("train", "dev", "eval")

# Bump when the meaning of stored features changes without a settings change
# (a bug fix in the extraction code), so old shards are refused.
FEATURE_VERSION = 1


class SettingsError(PipelineError, ValueError):
    """A params.yaml problem, reported with the key's path."""


@dataclass(frozen=True)
class DataSettings:
    # Corpus folder: the mini corpus, or a real corpus in the layout below.
    root: str = "data/mini_corpus"
    # How the corpus lays out its protocols and audio (pipeline/data/layouts.py). Training needs
    # train, dev and eval partitions: asvspoof2019 or asvspoof5.
    layout: Literal["asvspoof2019", "asvspoof5"] = "asvspoof2019"
    # What to do with a malformed protocol line or a missing audio file.
    on_error: Literal["stop", "skip"] = "stop"


@dataclass(frozen=True)
class CorpusSettings:
    build: bool = True
    seed: int = 1
    sources: str = "/usr/share/asterisk/sounds"
    # Asterisk voice folder -> speaker; a speaker may record several languages.
    speakers: dict = field(default_factory=lambda: {
        "en_US_f_Allison": "ALLISON", "es_MX_f_Allison": "ALLISON",
        "fr_CA_f_June": "JUNE", "it_IT_m_Carlo": "CARLO", "ru_RU_f_IvrvoiceRU": "IVRRU",
        "it_IT_f_Menardi": "MENARDI", "es": "ESCO", "fr": "ARMELLE"})
    # Folders of short recordings (words, letters) -> speaker; joined words_per_utterance at a time.
    word_voices: dict = field(default_factory=dict)
    words_per_utterance: int = 4
    # Voice acting in game data: speaker -> {files: glob (pipeline.mini.recordings), language}.
    game_voices: dict = field(default_factory=dict)
    partition_speakers: dict = field(default_factory=lambda: {
        "train": ["ALLISON", "CARLO", "MENARDI", "ESCO", "ARMELLE"], "dev": ["JUNE"], "eval": ["IVRRU"]})
    bonafide: dict = field(default_factory=lambda: {"train": 500, "dev": 100, "eval": 120})
    spoofs_per_attack: dict = field(default_factory=lambda: {"train": 300, "dev": 100, "eval": 120})
    attacks: dict = field(default_factory=lambda: {
        "train": ["A01", "A02", "A03", "A04"], "dev": ["A01", "A02", "A03", "A04"],
        "eval": ["A01", "A03", "A05", "A06", "A07"]})
    min_seconds: float = 1.0
    max_seconds: float = 8.0
    target_rms_db: float = -26.0
    channel_rate: int = 8000
    n_jobs: int = 2

    def validate(self, path: str) -> None:
        for name in ("partition_speakers", "bonafide", "spoofs_per_attack", "attacks"):
            got = set(getattr(self, name))
            if got != set(PARTITIONS):
                raise SettingsError(f"{path}.{name}: needs exactly the keys {list(PARTITIONS)}, got {sorted(got)}")
        for part in PARTITIONS:
            for name in ("bonafide", "spoofs_per_attack"):
                value = getattr(self, name)[part]
                if not isinstance(value, int) or value < 0:
                    raise SettingsError(f"{path}.{name}.{part}: must be an integer >= 0, got {value!r}")
        for speaker, voice in self.game_voices.items():
            if not isinstance(voice, dict) or set(voice) != {"files", "language"} or \
                    not all(isinstance(v, str) and v for v in voice.values()):
                raise SettingsError(f"{path}.game_voices.{speaker}: needs exactly `files` (a glob pattern) and "
                                    f"`language` (a code such as en), got {voice!r}")
        known = set(self.speakers.values()) | set(self.word_voices.values()) | set(self.game_voices)
        seen = {}
        for part, spk in self.partition_speakers.items():
            unknown = set(spk) - known
            if unknown:
                raise SettingsError(f"{path}.partition_speakers.{part}: unknown speakers {sorted(unknown)}; "
                                    f"known: {sorted(known)}")
            for speaker in spk:
                if seen.setdefault(speaker, part) != part:
                    raise SettingsError(f"{path}.partition_speakers: {speaker} is in both {seen[speaker]} and "
                                        f"{part}; a speaker belongs to one partition")
        _positive(self.words_per_utterance, f"{path}.words_per_utterance")
        if not 0 < self.min_seconds < self.max_seconds:
            raise SettingsError(f"{path}: need 0 < min_seconds < max_seconds")
        if not isinstance(self.channel_rate, int) or not 1000 <= self.channel_rate <= 16000:
            raise SettingsError(f"{path}.channel_rate: must be an integer from 1000 to 16000 (Hz), "
                                f"got {self.channel_rate!r}")
        _positive(self.n_jobs, f"{path}.n_jobs")


@dataclass(frozen=True)
class FeatureSettings:
    sample_rate: int = 16000
    preemphasis: float = 0.97
    n_fft: int = 1728
    win_length: int = 1728
    hop_length: int = 130
    window: Literal["blackman", "hann", "hamming"] = "blackman"
    # Symmetric window (scipy.signal.windows.blackman's default, as the authors' code uses);
    # false = the periodic window of FFT convention.
    window_symmetric: bool = True
    # Keep the STFT bins from 0 Hz up to the first bin at or above max_hz (400 Hz -> 45 bins).
    max_hz: float = 400.0
    # log(|X| + exp(log_floor)): the floor keeps silent bins finite.
    log_floor: float = -80.0
    f0_method: Literal["dio", "harvest"] = "dio"
    f0_floor: float = 71.0
    f0_ceil: float = 800.0
    # The second view: the `view2` stream, view2_bands mel-spaced bands of the same STFT from
    # view2_min_hz to view2_max_hz, read by a branch of its own in the network; 0 = none (the paper).
    view2_bands: int = 0
    view2_min_hz: float = 400.0
    view2_max_hz: float = 8000.0
    # The `excitation` stream (features/excitation.py): 4 numbers per frame, how impulsive the
    # frame's LPC residual is; read by a branch of its own and by the score fusion. false = none.
    excitation: bool = False
    # The `harmonicity` stream (features/harmonicity.py): each frame's harmonics-to-noise ratio in
    # dB; read by the score fusion's statistics model only, never by the network. false = none.
    harmonicity: bool = False
    # The `harmonic_phase` stream (features/harmonic_phase.py): the phases (radians) and levels
    # (dB) of harmonics 1-8 at the pyworld F0; read by the score fusion only. false = none.
    harmonic_phase: bool = False

    def validate(self, path: str) -> None:
        if self.view2_bands < 0:
            raise SettingsError(f"{path}.view2_bands: must be >= 0, got {self.view2_bands}")
        if self.view2_bands and not 0 <= self.view2_min_hz < self.view2_max_hz <= self.sample_rate / 2:
            raise SettingsError(f"{path}: need 0 <= view2_min_hz < view2_max_hz <= Nyquist "
                                f"({self.sample_rate / 2:g}), got {self.view2_min_hz}, {self.view2_max_hz}")
        for name in ("sample_rate", "n_fft", "win_length", "hop_length"):
            _positive(getattr(self, name), f"{path}.{name}")
        if self.win_length > self.n_fft:
            raise SettingsError(f"{path}.win_length: {self.win_length} exceeds n_fft {self.n_fft}")
        if not 0.0 <= self.preemphasis < 1.0:
            raise SettingsError(f"{path}.preemphasis: must be in [0, 1), got {self.preemphasis}")
        nyquist = self.sample_rate / 2
        if not 0 < self.max_hz <= nyquist:
            raise SettingsError(f"{path}.max_hz: must be in (0, {nyquist:g}] (Nyquist), got {self.max_hz}")
        if not 0 < self.f0_floor < self.f0_ceil <= nyquist:
            raise SettingsError(f"{path}: need 0 < f0_floor < f0_ceil <= Nyquist")

    @property
    def n_subband_bins(self) -> int:
        """STFT bins of the F0 subband (45 for the paper's settings)."""
        return min(math.ceil(self.max_hz * self.n_fft / self.sample_rate) + 1, self.n_fft // 2 + 1)

    @property
    def frame_period_ms(self) -> float:
        return 1000.0 * self.hop_length / self.sample_rate

    def fingerprint(self) -> str:
        """Identifies everything that decides the stored feature values."""
        fields = dataclasses.asdict(self)
        # Keys added after version 1 are left out at the value that reproduces the earlier
        # features, so shards (and model files) made before them stay valid.
        if not fields["window_symmetric"]:
            del fields["window_symmetric"]
        if not fields["view2_bands"]:
            for key in ("view2_bands", "view2_min_hz", "view2_max_hz"):
                del fields[key]
        for key in ("excitation", "harmonicity", "harmonic_phase"):
            if not fields[key]:
                del fields[key]
        payload = json.dumps({"version": FEATURE_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _digest(settings, added_later=()) -> str:
    """A short hash of a settings dataclass: what the train shards' extra records were made with.
    added_later: keys left out while they hold a false value (their no-op), so records made before
    the key existed keep their digest."""
    fields = {key: value for key, value in dataclasses.asdict(settings).items()
              if value or key not in added_later}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CopySynthesisSettings:
    """params.yaml features.copy_synthesis: spoofs made from each training bona fide utterance by
    this project's own vocoders (features/copy_synthesis.py), stored in the train shards as spoofs
    of their own attack ids. Not part of FeatureSettings, like AugmentSettings."""
    # Methods (keys of features.copy_synthesis.METHODS); [] = none.
    methods: list = field(default_factory=list)
    # Each copy's seed comes from this seed, its bona fide's id and the method.
    seed: int = 1

    def validate(self, path: str) -> None:
        from features.copy_synthesis import METHODS
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise SettingsError(f"{path}.methods: unknown {unknown}; known: {sorted(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise SettingsError(f"{path}.methods: a method is listed twice: {self.methods}")

    def digest(self) -> str:
        """What the train shards' copies were made with ("" when there are none)."""
        return _digest(self) if self.methods else ""


@dataclass(frozen=True)
class AugmentSettings:
    """params.yaml features.augment: augmented copies of the training utterances, made by the
    extraction stage (features/augment.py) and stored in the train shards beside the originals.
    Not part of FeatureSettings: it changes what the train shards hold, not how features are
    computed, so dev/eval shards and model files do not depend on it."""
    # Augmented copies per training utterance; 0 = none (training sees the originals only).
    copies: int = 0
    # Each copy's seed comes from this seed, its utterance id and its copy number.
    seed: int = 1
    # Codec round trips and band limits to draw from (names in features.augment.CODECS).
    codecs: list = field(default_factory=lambda: ["ulaw", "alaw", "gsm", "adpcm", "mp3", "opus", "vorbis",
                                                  "bandlimit"])
    p_codec: float = 0.7
    p_noise: float = 0.5
    snr_db: list = field(default_factory=lambda: [5.0, 30.0])
    p_rawboost: float = 0.5
    # Probability of a random room (features.augment.room) before the other steps.
    p_reverb: float = 0.0

    def validate(self, path: str) -> None:
        from features.augment import CODECS
        if self.copies < 0:
            raise SettingsError(f"{path}.copies: must be >= 0, got {self.copies}")
        unknown = sorted(set(self.codecs) - set(CODECS))
        if unknown:
            raise SettingsError(f"{path}.codecs: unknown {unknown}; known: {sorted(CODECS)}")
        for name in ("p_codec", "p_noise", "p_rawboost", "p_reverb"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SettingsError(f"{path}.{name}: must be a probability in [0, 1], got {getattr(self, name)}")
        if (self.p_codec if self.codecs else 0.0) + self.p_noise + self.p_rawboost + self.p_reverb == 0:
            raise SettingsError(f"{path}: p_noise, p_rawboost and p_reverb are 0 and p_codec is 0 or codecs empty: "
                                f"nothing to augment with")
        if (len(self.snr_db) != 2 or not all(isinstance(v, (int, float)) for v in self.snr_db)
                or self.snr_db[0] > self.snr_db[1]):
            raise SettingsError(f"{path}.snr_db: must be [low, high] in dB, got {self.snr_db}")

    def digest(self) -> str:
        """What the train shards' copies were made with ("" when there are none)."""
        return _digest(self, added_later=("p_reverb",)) if self.copies else ""


@dataclass(frozen=True)
class ExtractSettings:
    n_jobs: int = 2
    backend: Literal["loky", "dask"] = "loky"
    # dask.distributed scheduler address (tcp://HOST:PORT); null starts a local cluster.
    scheduler: Optional[str] = None
    # Utterances per shard: one shard is one parallel task and the unit of resume.
    shard_size: int = 500
    on_error: Literal["stop", "skip"] = "stop"

    def validate(self, path: str) -> None:
        _positive(self.n_jobs, f"{path}.n_jobs")
        _positive(self.shard_size, f"{path}.shard_size")


@dataclass(frozen=True)
class F0ReportSettings:
    partition: Literal["train", "dev", "eval"] = "train"
    histogram_max_hz: float = 600.0
    histogram_bins: int = 60


@dataclass(frozen=True)
class ModelSettings:
    arch: Literal["srla_res2net", "res2net"] = "srla_res2net"
    head: Literal["asoftmax", "softmax", "ocsoftmax"] = "asoftmax"
    # ocsoftmax: cosine bounds [bona fide, spoof] and scale alpha (model/one_class.py).
    oc_margins: list = field(default_factory=lambda: [0.9, 0.2])
    oc_alpha: float = 20.0
    layers: list = field(default_factory=lambda: [2, 2, 2, 2])
    planes: list = field(default_factory=lambda: [16, 32, 64, 128])
    stem_channels: int = 16
    expansion: int = 2
    base_width: int = 26
    scale: int = 8
    # split_input: the authors' placement of the SR gate (one per block, on each incoming split,
    # not in a stage's first block); split_output: one per split on its output, every block.
    sr_placement: Literal["split_input", "split_output"] = "split_input"
    sr_kernel: int = 7
    sr_dilation: int = 2
    sr_dropout: float = 0.5
    la_kernel: int = 3
    margin: int = 4
    lambda_min: float = 5.0
    lambda_base: float = 1500.0
    lambda_gamma: float = 0.1
    # Fraction of the run's optimiser steps after which lambda reaches lambda_min (gamma is then
    # derived from the run's length and lambda_gamma is ignored); None = lambda_gamma as given.
    lambda_floor_at: Optional[float] = None
    # Feed the aligned pyworld F0 track as a second input channel.
    f0_channel: bool = False
    # none, or utterance: subtract each bin's mean over the input's frames (removes any
    # stationary channel / recording colouring before the network sees the spectrogram).
    input_norm: Literal["none", "utterance"] = "none"
    # Embedding size of the second view's branch (used only when features.view2_bands > 0).
    view2_dim: int = 64
    # Embedding size of the excitation statistics' branch (features.excitation; a multiple of 2).
    excitation_dim: int = 32
    # Fuse the network's score with a quadratic logistic regression on 17 utterance statistics of
    # the excitation rows (model/fusion.py; needs features.excitation); its inverse L2 strength.
    excitation_fusion: bool = False
    excitation_fusion_c: float = 1.0
    # One-sided: the statistics' log-odds capped at 0, so they can lower a score, never raise it.
    excitation_fusion_one_sided: bool = False
    # Fit the statistics model on the training utterances' augmented copies too (features.augment),
    # so that a codec, noise or a room does not move its log-odds out of what it was fitted on.
    excitation_fusion_copies: bool = False

    def validate(self, path: str) -> None:
        _positive(self.view2_dim, f"{path}.view2_dim")
        _positive(self.excitation_fusion_c, f"{path}.excitation_fusion_c")
        _positive(self.excitation_dim, f"{path}.excitation_dim")
        if self.excitation_dim % 2:
            raise SettingsError(f"{path}.excitation_dim: must be a multiple of 2, got {self.excitation_dim}")
        _positive(self.oc_alpha, f"{path}.oc_alpha")
        margins = self.oc_margins
        if (len(margins) != 2 or not all(isinstance(m, (int, float)) for m in margins)
                or not -1.0 < margins[1] < margins[0] <= 1.0):
            raise SettingsError(f"{path}.oc_margins: expected [bona fide, spoof] cosines with "
                                f"-1 < spoof < bona fide <= 1, got {margins}")
        if self.view2_dim % 4:
            raise SettingsError(f"{path}.view2_dim: must be a multiple of 4, got {self.view2_dim}")
        if len(self.layers) != len(self.planes) or not self.layers:
            raise SettingsError(f"{path}: layers and planes need the same, non-zero length")
        for name in ("layers", "planes"):
            for i, v in enumerate(getattr(self, name)):
                if not isinstance(v, int) or v <= 0:
                    raise SettingsError(f"{path}.{name}[{i}]: must be a positive integer, got {v!r}")
        for name in ("stem_channels", "expansion", "base_width", "scale", "sr_kernel", "sr_dilation",
                     "la_kernel"):
            _positive(getattr(self, name), f"{path}.{name}")
        if self.planes[0] * self.base_width < 64:
            raise SettingsError(f"{path}: planes[0] * base_width must be >= 64 (split width >= 1)")
        if self.sr_kernel % 2 == 0 or self.la_kernel % 2 == 0:
            raise SettingsError(f"{path}: sr_kernel and la_kernel must be odd")
        if not 0 <= self.sr_dropout < 1:
            raise SettingsError(f"{path}.sr_dropout: must be in [0, 1)")
        if self.lambda_floor_at is not None and not 0 < self.lambda_floor_at <= 1:
            raise SettingsError(f"{path}.lambda_floor_at: must be in (0, 1] or null, got {self.lambda_floor_at}")
        if not 0 < self.lambda_min <= self.lambda_base:
            raise SettingsError(f"{path}: need 0 < lambda_min <= lambda_base")
        if not 1 <= self.margin <= 5:
            raise SettingsError(f"{path}.margin: must be an integer in 1..5, got {self.margin}")


@dataclass(frozen=True)
class TrainSettings:
    # Frames the model sees per utterance (mirror-padded or cropped; 600 in the paper).
    frames: int = 600
    # What evaluation scores (dev during training, the evaluate stage, detect): "crop" = the
    # first `frames` frames, like the paper's fixed-length input; "whole" = every frame of the
    # utterance (pipeline/data/dataset.py: eval_length). Stored in the model file.
    eval_input: Literal["crop", "whole"] = "crop"
    batch_size: int = 64
    epochs: int = 32
    # Peak learning rate, reached at the end of warm-up; the schedule is the paper's
    # d^-0.5 * min(step^-0.5, step * warmup^-1.5), rescaled so its peak equals lr.
    lr: float = 0.003953
    warmup_steps: int = 1000
    # noam: the paper's schedule above. cosine: the same linear warm-up, then a half cosine
    # from lr down to 0 at the last step of the last epoch.
    lr_schedule: Literal["noam", "cosine"] = "noam"
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1.0e-9
    weight_decay: float = 1.0e-4
    amsgrad: bool = True
    seed: int = 1
    # auto: bf16 autocast where the hardware has it natively (CUDA with bf16; a CPU with AMX or
    # AVX512_BF16), fp32 otherwise (AVX2 CPUs, where a bf16 step is much slower than fp32).
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # "auto": CUDA when present, else CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    # Processes (ranks) of the torchrun launch in dvc.yaml: 1 = a single process; N > 1 trains
    # with DistributedDataParallel on N GPUs (NCCL) or N CPU processes (gloo).
    nproc: int = 1
    # DataLoader worker processes, kept for the whole run; auto = the cores available to this rank.
    num_workers: Union[int, Literal["auto"]] = "auto"
    # Split each batch into chunks of this many utterances (0 = whole batch): the same gradient
    # with one chunk's activation memory; BatchNorm statistics are per chunk.
    micro_batch: int = 0
    # torch.compile the training step: faster per step, but the first step compiles for
    # minutes, so it pays off only on long runs. Compiled kernels are kept in compile_cache
    # (TORCHINDUCTOR_CACHE_DIR), so later runs of the same shapes skip most of that.
    compile: bool = False
    compile_cache: str = ".cache/torch-inductor"
    # Stop an epoch after this many batches (0 = the whole partition); for quick checks.
    max_steps_per_epoch: int = 0
    # Frequency-axis stretch augmentation: each training crop's bins are rescaled by a factor
    # drawn log-uniformly from [1/(1+s), 1+s] (harmonics move as under a pitch shift); 0 = off.
    freq_stretch: float = 0.0
    # SpecAugment-style masking of each training crop: one band of up to mask_bins bins and one
    # span of up to mask_frames frames are set to the crop's mean (0 = off).
    mask_bins: int = 0
    mask_frames: int = 0
    # Average the weights of the last N epochs (all, if N >= epochs) into the final model
    # (BatchNorm statistics are then recomputed on the training data); 0 = off: the model is
    # the best epoch on dev by select_epoch.
    average_epochs: int = 0
    # With average_epochs 0, the epoch kept: dev_eer = lowest dev EER; dev_loss = lowest dev
    # cross-entropy of the margin-free logits (the authors' code).
    select_epoch: Literal["dev_eer", "dev_loss"] = "dev_eer"
    # Score dev after every dev_every-th epoch (0 = only the final model). The final model is
    # always scored (its EER threshold goes into the model file); with average_epochs 0 the
    # model is the best epoch on dev, so dev is then scored after every epoch.
    dev_every: int = 1
    # Attack ids left out of training and of dev scoring during training (leave-one-attack-out;
    # the loao stage sets it per run). Empty: every attack.
    exclude_attacks: list = field(default_factory=list)
    # Speakers left out of training and of dev scoring during training, bona fide and spoofs
    # (leave one recording source out; the loso stage sets it per run). Empty: every speaker.
    exclude_speakers: list = field(default_factory=list)

    def validate(self, path: str) -> None:
        if self.average_epochs < 0:
            raise SettingsError(f"{path}.average_epochs: must be >= 0, got {self.average_epochs}")
        for name in ("frames", "batch_size", "epochs", "warmup_steps", "nproc"):
            _positive(getattr(self, name), f"{path}.{name}")
        if self.batch_size % self.nproc:
            raise SettingsError(f"{path}.batch_size: {self.batch_size} does not split evenly over nproc={self.nproc}")
        _positive(self.lr, f"{path}.lr")
        if self.num_workers != "auto" and self.num_workers < 0:
            raise SettingsError(f"{path}.num_workers: must be auto or >= 0, got {self.num_workers}")
        for name in ("max_steps_per_epoch", "micro_batch", "mask_bins", "mask_frames", "dev_every"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{path}.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.freq_stretch <= 1:
            raise SettingsError(f"{path}.freq_stretch: must be in [0, 1], got {self.freq_stretch}")


@dataclass(frozen=True)
class EvaluateSettings:
    # Official ASV score files (ASVspoof2019.LA.asv.{dev,eval}.gi.trl.scores.txt) per partition;
    # null uses asv_operating_point instead.
    asv_scores: dict = field(default_factory=lambda: {"dev": None, "eval": None})
    # ASV error rates for the t-DCF when no ASV score file is given: the official ASV system
    # on ASVspoof 2019 LA eval.
    asv_operating_point: dict = field(default_factory=lambda: {
        "Pfa_asv": 0.0246047, "Pmiss_asv": 0.0245810, "Pmiss_spoof_asv": 0.2393475})
    batch_size: int = 64

    def validate(self, path: str) -> None:
        unknown = set(self.asv_scores) - {"dev", "eval"}
        if unknown:
            raise SettingsError(f"{path}.asv_scores: unknown partitions {sorted(unknown)}")
        for part, value in self.asv_scores.items():
            if value is not None and not isinstance(value, str):
                raise SettingsError(f"{path}.asv_scores.{part}: must be a file path or null")
        if set(self.asv_operating_point) != {"Pfa_asv", "Pmiss_asv", "Pmiss_spoof_asv"}:
            raise SettingsError(f"{path}.asv_operating_point: needs exactly Pfa_asv, Pmiss_asv, Pmiss_spoof_asv")
        for key, value in self.asv_operating_point.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise SettingsError(f"{path}.asv_operating_point.{key}: must be a rate in [0, 1], got {value!r}")
        _positive(self.batch_size, f"{path}.batch_size")


@dataclass(frozen=True)
class LoaoSettings:
    # Leave one attack out: train once per attack of the training partition without it and score
    # it on dev and eval (pipeline/loao.py). Off by default: one training run per attack.
    enabled: bool = False
    # The attacks to hold out, one run each; empty = every attack of the training partition.
    attacks: list = field(default_factory=list)
    # Dev speakers set aside: left out of every run's dev (no checkpoint choice, fusion weight or
    # threshold is fitted on them); their bona fide are what the held-out spoofs are scored against.
    set_aside: list = field(default_factory=list)

    def validate(self, path: str) -> None:
        if not all(isinstance(s, str) and s for s in self.set_aside):
            raise SettingsError(f"{path}.set_aside: needs a list of speaker ids, got {self.set_aside!r}")
        if self.enabled and not self.set_aside:
            raise SettingsError(f"{path}.set_aside: leaving one attack out needs dev speakers set aside to score "
                                f"the held-out spoofs against (bona fide that fitted nothing)")


@dataclass(frozen=True)
class LosoSettings:
    # Leave one recording source out: train once per source without its speakers and score its bona
    # fide against the eval spoofs (pipeline/loso.py). Off by default: up to one run per source.
    enabled: bool = False
    # Source name -> speaker-id patterns (fnmatch: TUB_* is every speaker whose id starts TUB_).
    sources: dict = field(default_factory=dict)

    def validate(self, path: str) -> None:
        for source, patterns in self.sources.items():
            if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
                raise SettingsError(f"{path}.sources.{source}: needs a list of speaker-id patterns, got {patterns!r}")
        if self.enabled and len(self.sources) < 2:
            raise SettingsError(f"{path}.sources: leaving one source out needs at least two sources")


@dataclass(frozen=True)
class ChannelSettings:
    # Score dev and eval again under each channel condition (pipeline/channels.py, features/channels.py).
    enabled: bool = False
    # Conditions (names in features.channels.CONDITIONS), one scoring of each partition each.
    conditions: list = field(default_factory=list)
    # Each utterance's draw of a condition comes from this seed, its id and the condition.
    seed: int = 1
    # Spoofs of each attack and partition scored (every bona fide is); 0 = every spoof.
    spoofs_per_attack: int = 0

    def validate(self, path: str) -> None:
        from features.channels import CONDITIONS
        unknown = sorted(set(self.conditions) - set(CONDITIONS))
        if unknown:
            raise SettingsError(f"{path}.conditions: unknown {unknown}; known: {sorted(CONDITIONS)}")
        if self.spoofs_per_attack < 0:
            raise SettingsError(f"{path}.spoofs_per_attack: {self.spoofs_per_attack}; must be 0 (every spoof) "
                                f"or more")


@dataclass(frozen=True)
class Settings:
    data: DataSettings = field(default_factory=DataSettings)
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    f0_report: F0ReportSettings = field(default_factory=F0ReportSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    loao: LoaoSettings = field(default_factory=LoaoSettings)
    loso: LosoSettings = field(default_factory=LosoSettings)
    channels: ChannelSettings = field(default_factory=ChannelSettings)
    # params.yaml keeps these under features (features.augment, features.copy_synthesis);
    # load_settings moves them here.
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    copy_synthesis: CopySynthesisSettings = field(default_factory=CopySynthesisSettings)

    def check_across(self) -> None:
        """The rules that span sections. load_settings applies them; train() applies them again,
        for settings built in code."""
        if self.train.freq_stretch > 0 and (self.features.view2_bands or self.features.excitation
                                            or self.features.harmonicity or self.features.harmonic_phase):
            raise SettingsError("train.freq_stretch: stretches the subband's frequency axis, but with "
                                "features.view2_bands > 0, features.excitation, features.harmonicity or "
                                "features.harmonic_phase the rows of those follow it in the same input; "
                                "turn one of them off")
        if self.model.excitation_fusion and not self.features.excitation:
            raise SettingsError("model.excitation_fusion: fuses a model of the excitation statistics, but "
                                "features.excitation is false; turn both on or model.excitation_fusion off")
        if self.features.harmonicity and not self.model.excitation_fusion:
            raise SettingsError("features.harmonicity: only the score fusion's statistics model reads it, but "
                                "model.excitation_fusion is false; turn both on or features.harmonicity off")
        if self.features.harmonic_phase and not self.model.excitation_fusion:
            raise SettingsError("features.harmonic_phase: only the score fusion's statistics model reads it, but "
                                "model.excitation_fusion is false; turn both on or features.harmonic_phase off")


def _positive(value, path: str) -> None:
    if value <= 0:
        raise SettingsError(f"{path}: must be > 0, got {value}")


def _check_type(value, hint, path: str):
    """Return value converted to hint (only int -> float is converted), or raise."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise SettingsError(f"{path}: must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for hint_option in inner:  # the first alternative that takes the value
            try:
                return _check_type(value, hint_option, path)
            except SettingsError as err:
                errors.append(str(err).split(": ", 1)[1].rsplit(", got", 1)[0])
        raise SettingsError(f"{path}: {' or '.join(errors)}, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{path}: must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{path}: must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{path}: must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{path}: must be a string, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{path}: must be a mapping, got {value!r}")
        return value
    if hint is list:
        if not isinstance(value, list):
            raise SettingsError(f"{path}: must be a list, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    raise TypeError(f"unsupported settings type {hint} at {path}")


def build(cls, data, path: str):
    """Build dataclass cls from a mapping, checking keys, types and ranges."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path or 'top level'}: must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    key_path = (lambda k: f"{path}.{k}") if path else (lambda k: k)
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsError(f"{key_path(unknown[0])}: unknown key (known keys: {', '.join(sorted(names))})")
    values = {k: _check_type(v, hints[k], key_path(k)) for k, v in data.items()}
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate(path)
    return obj


def require_every_key(cls, data, path: str) -> None:
    """Raise SettingsError naming the first key of dataclass cls (nested ones too) that `data` leaves out."""
    data = data if isinstance(data, dict) else {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        where = f"{path}.{f.name}" if path else f.name
        if f.name in ("augment", "copy_synthesis") and cls is Settings:
            continue  # under features in params.yaml; checked on their own
        if f.name not in data:
            raise SettingsError(f"{where}: missing; params.yaml sets every key (the code's defaults are the "
                                f"paper's recipe, not this one's): add it (docs: the key's comment in the "
                                f"repository's params.yaml)")
        if dataclasses.is_dataclass(hints[f.name]):
            require_every_key(hints[f.name], data[f.name], where)


def load_settings(path: str | Path = "params.yaml") -> Settings:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found") from None
    except yaml.YAMLError as err:
        raise SettingsError(f"{path}: not valid YAML: {err}") from None
    try:
        for key in ("augment", "copy_synthesis"):
            if isinstance(raw, dict) and key in raw:
                raise SettingsError(f"{key}: unknown key (its settings go under features: {key}:)")
        moved = {"augment": None, "copy_synthesis": None}
        if isinstance(raw, dict) and isinstance(raw.get("features"), dict):
            raw["features"] = dict(raw["features"])
            for key in moved:
                if key in raw["features"]:
                    moved[key] = raw["features"].pop(key)
        settings = build(Settings, raw, "")
        require_every_key(Settings, raw, "")
        require_every_key(AugmentSettings, moved["augment"], "features.augment")
        require_every_key(CopySynthesisSettings, moved["copy_synthesis"], "features.copy_synthesis")
        settings.check_across()
        return dataclasses.replace(settings, augment=build(AugmentSettings, moved["augment"], "features.augment"),
                                   copy_synthesis=build(CopySynthesisSettings, moved["copy_synthesis"],
                                                        "features.copy_synthesis"))
    except SettingsError as err:
        raise SettingsError(f"{path}: {err}") from None


def settings_as_params(settings: Settings) -> dict:
    """The params.yaml mapping that load_settings turns into `settings` (features.augment and
    features.copy_synthesis back under features), e.g. to run train.py on settings built in code."""
    params = dataclasses.asdict(settings)
    params["features"]["augment"] = params.pop("augment")
    params["features"]["copy_synthesis"] = params.pop("copy_synthesis")
    return params
