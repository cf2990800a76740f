"""Where a model runs and how it scores: device, precision, batched scoring and the Scorer.

Shared by training (its dev scoring), evaluate, loao, detect and export, so all of them put the
same input through the same network at the same precision and get the same score.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import nullcontext

import numpy as np
import torch
from torch.utils.data import DataLoader

from features import fusion_statistics
from model import bonafide_score, decision_logit, fold_batchnorm
from model.fusion import fused_scores
from pipeline.data.dataset import ShardDataset, eval_frames, eval_length, length_batches, model_input
from pipeline.settings import SettingsError

# Evaluation inputs longer than this are scored in equal consecutive pieces and the pieces'
# scores averaged, so a long recording given to detect cannot exhaust memory (4096 frames at
# the paper's hop of 130 samples: 33 s).
MAX_SCORED_FRAMES = 4096


# ---------------------------------------------------------------- process set-up

def tune_allocator() -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of returning them to the system.

    By default blocks over a (moving) threshold are mapped and unmapped at every allocation, and
    the heap's free top is trimmed, so each layer's activations and gradients come back as fresh
    pages that the kernel must zero: a training step spent a large share of its CPU time in the
    kernel (measured by bench/train.py; figures in docs/benchmarks.md). The price: the process keeps
    its peak memory until it exits. Returns False (and changes nothing) where the C library is not
    glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


# ---------------------------------------------------------------- device and precision

def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError(f"train.device: {setting} asked for, but no CUDA device is available")
    return device


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _onednn_bf16() -> bool:
    """Whether oneDNN runs bf16 kernels here (False under ONEDNN_MAX_CPU_ISA=AVX2 and on AVX2-only CPUs)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(does this device compute bf16 natively, the reason in words)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} has bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no bf16"
    if device.type != "cpu":
        return False, f"bf16 on {device.type} is not checked"
    flags = _cpu_flags()
    # oneDNN also "supports" bf16 on AVX-512 CPUs without the bf16 instructions, by emulation that is
    # slower than fp32; only AMX and AVX512_BF16 make it fast.
    native = {"amx_bf16", "avx512_bf16"} & flags
    if not native:
        return False, f"this CPU has no AMX or AVX512_BF16 (torch uses {torch.backends.cpu.get_cpu_capability()})"
    if not _onednn_bf16():
        return False, f"oneDNN's bf16 kernels are off here ({os.environ.get('ONEDNN_MAX_CPU_ISA', 'CPU capability')})"
    return True, f"this CPU has {' and '.join(sorted(x.upper() for x in native))}"


def resolve_precision(setting: str, device: torch.device) -> tuple[str, str]:
    """("bf16" | "fp32", why) for train.precision. auto: bf16 where the device runs it natively,
    fp32 otherwise. An explicit bf16 or fp32 is kept (bf16 where it is slow says so)."""
    if setting == "fp32":
        return "fp32", "train.precision: fp32"
    native, reason = native_bf16(device)
    if setting == "bf16":
        return "bf16", "train.precision: bf16" + ("" if native else f" (slow here: {reason})")
    return ("bf16" if native else "fp32"), f"auto: {reason}"


def scoring_precision(hint: str, device: torch.device) -> str:
    """Precision to score in: the model file's (or params') precision is a hint, not an order,
    so a model trained in bf16 scores in fp32 on hardware without native bf16."""
    return "fp32" if hint == "fp32" else resolve_precision("auto", device)[0]


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch [B, C, rows, frames] on the device, channels-last (NHWC): the convolutions' fast
    layout on CPU and on GPU (docs/benchmarks.md)."""
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- scoring

@torch.no_grad()
def score_inputs(model, x: torch.Tensor, device, precision: str, logits: bool = False):
    """Bona fide scores of a batch of inputs [B, C, rows, frames] (the model in eval mode);
    with logits=True also the margin-free decision logits (model.decision_logit)."""
    pieces = -(-x.shape[-1] // MAX_SCORED_FRAMES)
    total, total_logit = torch.zeros(x.shape[0]), torch.zeros(x.shape[0])
    for piece in torch.tensor_split(x, pieces, dim=-1):
        with autocast(device, precision):
            output = model(to_device(piece, device))
        total += bonafide_score(output).cpu()
        if logits:
            total_logit += decision_logit(output).cpu()
    return (total / pieces, total_logit / pieces) if logits else total / pieces


# On a CPU a scoring batch holds at most about this many frames, whatever the batch size says:
# larger activations are allocated and freed by the operating system at every layer (glibc
# maps blocks over 32 MB afresh each time), so the cap is faster with the same scores
# (docs/benchmarks.md). A GPU keeps its large batches.
CPU_BATCH_FRAMES = 2048


def eval_loader(dataset, batch_size: int, num_workers: int, device, persistent: bool = False) -> DataLoader:
    """Batches in dataset order: crops in batches of batch_size, or whole utterances of equal
    input length (an utterance's score does not depend on which others share its batch); on a
    CPU at most about CPU_BATCH_FRAMES frames a batch. persistent keeps the workers between
    passes (training's repeated dev scoring)."""
    options = {"num_workers": num_workers, "pin_memory": device.type == "cuda",
               "persistent_workers": persistent and num_workers > 0}
    max_frames = CPU_BATCH_FRAMES if device.type == "cpu" else 0
    if getattr(dataset, "eval_input", "crop") == "whole":
        batches = length_batches(dataset.eval_lengths(), batch_size, max_frames)
        return DataLoader(dataset, batch_sampler=batches, **options)
    if max_frames and getattr(dataset, "frames", 0):
        batch_size = max(1, min(batch_size, max_frames // dataset.frames))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **options)


@torch.no_grad()
def score_dataset(model, dataset, batch_size: int, device, precision: str, num_workers: int = 0,
                  loader: DataLoader | None = None, logits: bool = False):
    """Bona fide scores and labels in dataset order, on the dataset's evaluation input (and the
    decision logits with logits=True). `loader` (from eval_loader) lets a caller that scores
    repeatedly keep its workers."""
    model.eval()
    scores = np.zeros(len(dataset), np.float64)
    logit = np.zeros(len(dataset), np.float64)
    labels = np.zeros(len(dataset), np.int64)
    for x, y, index in loader or eval_loader(dataset, batch_size, num_workers, device):
        if logits:
            s, l = score_inputs(model, x, device, precision, logits=True)
            logit[index.numpy()] = l.numpy()
        else:
            s = score_inputs(model, x, device, precision)
        scores[index.numpy()], labels[index.numpy()] = s.numpy(), y.numpy()
    return (scores, labels, logit) if logits else (scores, labels)


def decision_loss(logit: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the margin-free decision logits (the dev loss the authors' code
    keeps its best epoch by): softplus(-logit) for bona fide, softplus(logit) for spoof."""
    signed = np.where(labels == 1, logit, -logit)
    return float(np.mean(np.logaddexp(0.0, -signed)))


# ---------------------------------------------------------------- the scorer

class Scorer:
    """Turns features into scores, as a model file says: the network's input (the streams it reads,
    its F0 channel, the evaluation input rule), the precision, long inputs in pieces, and the
    score fusion. Training's dev scoring, evaluate, loao, detect and export's checks all score
    through one of these, so they give the same score for the same features.

    network: a torch module, or a callable from a batch of inputs to a tensor of scores (an ONNX
    session: pipeline.inference.export.OnnxNetwork). fusion: the model file's, or None (the
    network's score; training scores dev so before it fits the fusion on those scores)."""

    def __init__(self, network, streams, frames: int, eval_input: str, f0_channel: bool,
                 precision: str = "fp32", device: torch.device | str = "cpu", fusion: dict | None = None,
                 exact_precision: bool = False):
        self.network = network
        self.streams = tuple(streams)
        self.frames, self.eval_input, self.f0_channel = frames, eval_input, f0_channel
        self.device = torch.device(device)
        # A model file's precision is a hint: bf16 only where this device runs it natively;
        # exact_precision (training's dev scoring) scores in the precision asked for.
        self.precision = precision if exact_precision else scoring_precision(precision, self.device)
        self.fusion = fusion
        if isinstance(network, torch.nn.Module):
            network.to(self.device)

    @classmethod
    def of(cls, model_file, network=None, device: torch.device | str = "cpu") -> "Scorer":
        """The scorer of a model file (pipeline.scoring.modelfile.ModelFile); network: its torch
        network (default: built from the file's weights; scored in fp32, its BatchNorms folded into
        the convolutions by model.fold_batchnorm: about 1.2x faster, scores within 1e-6,
        docs/benchmarks.md) or an ONNX session for an export. bf16 keeps the norms: folded, its
        rounding moved scores by up to 3e-3."""
        if network is None:
            network = model_file.network()
            if scoring_precision(model_file.precision, torch.device(device)) == "fp32":
                network = fold_batchnorm(network).to(memory_format=torch.channels_last)
        return cls(network, model_file.network_streams,
                   model_file.frames, model_file.eval_input, model_file.model_settings.f0_channel,
                   model_file.precision, device, model_file.fusion)

    @property
    def needs_f0(self) -> bool:
        return bool(self.f0_channel or self.fusion)

    # ---- one utterance's features (detect)

    def input_of(self, streams) -> torch.Tensor:
        """The network's evaluation input [channels, rows, frames] of one utterance's Streams."""
        return model_input(*eval_frames(streams.stacked(self.streams), streams.f0, self.frames, self.eval_input),
                           self.f0_channel)

    def input_length(self, streams) -> int:
        return eval_length(streams.frames, self.frames, self.eval_input)

    def statistics_of(self, streams) -> np.ndarray | None:
        """What the score fusion reads of one utterance (None without a fusion)."""
        return fusion_statistics(streams, self.fusion["streams"]) if self.fusion else None

    # ---- batches and datasets

    def network_scores(self, inputs: torch.Tensor) -> np.ndarray:
        """The network's scores of a batch of inputs of equal length."""
        if isinstance(self.network, torch.nn.Module):
            return score_inputs(self.network, inputs, self.device, self.precision).numpy()
        return self.network(inputs).numpy()

    def fuse(self, network_scores: np.ndarray, statistics) -> np.ndarray:
        """The model's score from the network's: fused with the utterance statistics when the model
        has a score fusion (statistics: one row per score), the network's otherwise."""
        if not self.fusion:
            return np.asarray(network_scores, dtype=np.float64)
        if statistics is None or any(row is None for row in statistics):
            raise ValueError("this model fuses its score with the utterance statistics: pass statistics_of() "
                             "of each utterance")
        return fused_scores(self.fusion, network_scores, np.stack(statistics))

    def dataset(self, readers, exclude_attacks=()) -> ShardDataset:
        """Shards as this model is evaluated on them (originals only, its input rule)."""
        return ShardDataset(readers, self.frames, train=False, f0_channel=self.f0_channel, eval_input=self.eval_input,
                            exclude_attacks=exclude_attacks, streams=self.streams)

    def score_dataset(self, dataset, batch_size: int, num_workers: int = 0, loader: DataLoader | None = None,
                      logits: bool = False):
        """The network's scores and the labels in dataset order (and the decision logits with
        logits=True). `loader` (from eval_loader) lets a caller that scores repeatedly keep its workers."""
        return score_dataset(self.network, dataset, batch_size, self.device, self.precision, num_workers,
                             loader, logits)

    def score_readers(self, readers, batch_size: int, exclude_attacks=()):
        """(dataset, the model's scores, labels) of shards: the network's scores, fused as the model says."""
        dataset = self.dataset(readers, exclude_attacks)
        scores, labels = self.score_dataset(dataset, batch_size)
        statistics = dataset.utterance_statistics(self.fusion["streams"]) if self.fusion else None
        return dataset, self.fuse(scores, statistics), labels
