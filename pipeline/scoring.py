"""Where a model runs and how it scores: device, precision, model files, batched scoring.

Shared by training (its dev scoring), the evaluate stage and `detect`, so all three put the
same input through the same network at the same precision and get the same score.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from model import bonafide_score, build_model, decision_logit
from model.fusion import fused_scores, statistics_rows
from pipeline.dataset import length_batches
from pipeline.settings import FeatureSettings, ModelSettings, SettingsError

CHECKPOINT_FORMAT = "srla-checkpoint/1"
MODEL_FORMAT = "srla-model/1"

# Evaluation inputs longer than this are scored in equal consecutive pieces and the pieces'
# scores averaged, so a long recording given to detect cannot exhaust memory (4096 frames at
# the paper's hop of 130 samples: 33 s).
MAX_SCORED_FRAMES = 4096


class CheckpointError(ValueError):
    pass


# ---------------------------------------------------------------- process set-up

def tune_allocator() -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of returning them to the system.

    By default blocks over a (moving) threshold are mapped and unmapped at every allocation, and
    the heap's free top is trimmed, so each layer's activations and gradients come back as fresh
    pages that the kernel must zero. A training step on 2 cores (batch 32, 100 frames) spent 14 %
    of its CPU time in the kernel on the AVX2 paths; with this an fp32 step is 1.24x faster there
    and 1.15x natively (AVX512_BF16), bf16 the same (bench/train.py). The price: the process keeps
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
    """A batch [B, C, bins, frames] on the device, channels-last (NHWC): the convolutions' fast
    layout on CPU (1.3x a step at 45 x 100, fp32 AVX-512) and on GPU."""
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- model files

def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint or model file safely (weights_only); a clear error if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT, MODEL_FORMAT):
        raise CheckpointError(f"{path}: not a checkpoint of this project")
    return state


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """(network in eval mode, model file contents) from a model.pt written by training."""
    state = load_checkpoint(path)
    if state.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path}: a training checkpoint, not a model file; use models/model.pt")
    # Model files written before model.sr_placement existed have the split_output network.
    model = build_model(ModelSettings(**{"sr_placement": "split_output", **state["model_settings"]}),
                        FeatureSettings.from_stored(state["feature_settings"]))
    model.load_state_dict(state["model"])
    model.to(memory_format=torch.channels_last)
    model.eval()
    return model, state


# ---------------------------------------------------------------- scoring

@torch.no_grad()
def score_inputs(model, x: torch.Tensor, device, precision: str, logits: bool = False):
    """Bona fide scores of a batch of inputs [B, C, bins, frames] (the model in eval mode);
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
# maps blocks over 32 MB afresh each time). The evaluate stage's dev pass (500 whole
# utterances, batch 64, 2 cores) took 20.5 s with 11.4 s of system time, 15.5 s with 1.6 s
# capped at 2,048 frames, with the same scores; detect scored 4-second files at 41 files/s in
# batches of 4 (bf16) against 30 in batches of 32. A GPU keeps its large batches.
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


def model_scores(state: dict, dataset, network_scores: np.ndarray) -> np.ndarray:
    """The model file's score of each dataset item: the network's, or, for a model with a score
    fusion (model.excitation_fusion), the fusion of it with the excitation statistics' model."""
    fusion = state.get("fusion")
    if not fusion:
        return network_scores
    statistics = dataset.utterance_statistics(*statistics_rows(fusion))
    return fused_scores(fusion, network_scores, statistics)


def decision_loss(logit: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the margin-free decision logits (the dev loss the authors' code
    keeps its best epoch by): softplus(-logit) for bona fide, softplus(logit) for spoof."""
    signed = np.where(labels == 1, logit, -logit)
    return float(np.mean(np.logaddexp(0.0, -signed)))
