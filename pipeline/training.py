"""What training is made of: distributed set-up, the learning-rate schedule, loaders, one
optimiser step, weight averaging, the model file of an epoch and the run's digest (which decides
whether a checkpoint resumes; train.py saves and resumes).

train.py's loop puts these together; the benchmarks (bench/train.py, bench/gpu.py,
bench/scale.py) time the same pieces.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from model import asoftmax_loss, floor_gamma
from pipeline.data.dataset import EpochSampler
from pipeline.errors import PipelineError
from pipeline.scoring.metrics import compute_eer
from pipeline.scoring.modelfile import ModelFile
from pipeline.scoring.scorer import autocast, available_cores, resolve_device, to_device
from pipeline.settings import Settings, TrainSettings


def setup_distributed(device_setting: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1) joins the process group:
    NCCL with one GPU per rank, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_setting)
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def loader_workers(setting, world: int) -> int:
    """train.num_workers: a number, or auto = the cores this process may use, shared by the ranks."""
    return setting if setting != "auto" else max(1, available_cores() // world)


def use_compile_cache(folder: str) -> Path:
    """Keep torch.compile's kernels in `folder` (train.compile_cache) across runs: a later run with
    the same shapes loads them instead of compiling for minutes. An outside
    TORCHINDUCTOR_CACHE_DIR wins."""
    path = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(folder).resolve())))
    path.mkdir(parents=True, exist_ok=True)
    return path


def warmup_factor(step: int, warmup: int) -> float:
    """The paper's d^-0.5 * min(step^-0.5, step * warmup^-1.5), divided by its peak (at step = warmup)."""
    step = max(step, 1)
    return min(step ** -0.5, step * warmup ** -1.5) / warmup ** -0.5


def lr_factor(step: int, warmup: int, schedule: str = "noam", total: int = 0) -> float:
    """Learning rate at optimiser step `step` (1-based) as a fraction of train.lr.

    noam: the paper's schedule (warmup_factor). cosine: the same linear warm-up, then half a
    cosine from 1 down to 0 at step `total`, the run's last step.
    """
    if schedule == "noam":
        return warmup_factor(step, warmup)
    step = max(step, 1)
    if step <= warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def run_digest(settings: Settings, train_index: dict) -> str:
    """Identifies a training run: a checkpoint only resumes a run with the same digest.

    Device, worker count, dev scoring and the compile cache are left out, so a run can move
    between machines; so is the epoch count under the noam schedule, so a finished run can be
    extended (and the schedule's name, so checkpoints from before train.lr_schedule existed
    still resume). The cosine schedule's shape depends on the epoch count, so there it is part
    of the run.
    """
    noam = settings.train.lr_schedule == "noam"
    left_out = ("device", "num_workers", "dev_every", "compile_cache") + (("epochs", "lr_schedule") if noam else ())
    train = {k: v for k, v in dataclasses.asdict(settings.train).items() if k not in left_out}
    payload = {"model": dataclasses.asdict(settings.model), "train": train,
               "features": settings.features.fingerprint(),
               "shards": [s["sha256"] for s in train_index["shards"]]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def make_loader(dataset, settings: TrainSettings, device, workers: int,
                rank: int = 0, world: int = 1) -> DataLoader:
    """The training loader for the whole run: its sampler's set_epoch picks the epoch, and its
    workers persist across epochs (the draws depend on (seed, epoch, item) only)."""
    sampler = EpochSampler(len(dataset), settings.batch_size, settings.seed, rank, world)
    return DataLoader(dataset, batch_size=settings.batch_size // world, sampler=sampler,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                      # its own generator for the workers' base seed, so the global RNG (dropout)
                      # sees the same draws whether the workers were started this epoch or before
                      generator=torch.Generator().manual_seed(settings.seed))


def accumulate_average(average: dict | None, model, count: int) -> dict:
    """Running mean of the model's parameters over `count` + 1 snapshots (count = those already in)."""
    with torch.no_grad():
        if average is None:
            return {name: p.detach().float().clone() for name, p in model.named_parameters()}
        for name, p in model.named_parameters():
            average[name].mul_(count / (count + 1)).add_(p.detach().float(), alpha=1 / (count + 1))
    return average


def averaged_model(model, average: dict, loader, device, precision: str):
    """A copy of model holding the averaged weights, with BatchNorm statistics recomputed over
    one pass of the training loader (the last epoch's crops; only the statistics change)."""
    final = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in final.named_parameters():
            p.copy_(average[name])
    norms = {m: m.momentum for m in final.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over every batch
    final.train()
    with torch.no_grad():
        for x, _, _ in loader:
            with autocast(device, precision):
                final(to_device(x, device))
    for m, momentum in norms.items():
        m.momentum = momentum
    return final.eval()


def train_step(model, x, y, optimizer, lam: float, device, precision: str, micro_batch: int = 0,
               loss_fn=asoftmax_loss):
    """One optimiser step on a batch; returns (summed loss, correct predictions) over the batch as
    tensors on the device: nothing here waits for the device, the epoch reads them once at its end.

    With micro_batch > 0 the batch goes through in chunks of that size whose gradients add up
    to the whole batch's (activation memory of one chunk; BatchNorm statistics per chunk).
    loss_fn(output, target, lam) is the head's loss (model.head_loss).
    """
    optimizer.zero_grad(set_to_none=True)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    size = micro_batch or len(y)
    for xc, yc in zip(torch.split(x, size), torch.split(y, size)):
        with autocast(device, precision):
            out = model(xc)
        loss = loss_fn(out, yc, lam)
        (loss * (len(yc) / len(y))).backward()
        total_loss += loss.detach() * len(yc)
        correct += (out.cos_theta.detach().argmax(dim=1) == yc).sum()
    optimizer.step()
    return total_loss, correct


def epoch_steps(loader: DataLoader, settings: TrainSettings) -> int:
    """Optimiser steps in one epoch: every batch, or train.max_steps_per_epoch of them."""
    return min(settings.max_steps_per_epoch or len(loader), len(loader))


class TrainingDiverged(PipelineError, RuntimeError):
    """The run produced a non-finite loss or unusable dev scores; the message names the epoch."""


def lambda_gamma(ms, total_steps: int) -> float:
    """The A-Softmax annealing's gamma: model.lambda_gamma, or the one that brings lambda to
    lambda_min at model.lambda_floor_at of the run's steps."""
    if ms.lambda_floor_at is None:
        return ms.lambda_gamma
    return floor_gamma(ms.lambda_min, ms.lambda_base, ms.lambda_floor_at, total_steps)


def ranks_disagreement(model) -> float:
    """Largest difference between any rank's weights and rank 0's (0.0 when DDP works)."""
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, 0)
    difference = (flat - reference).abs().max()
    dist.all_reduce(difference, op=dist.ReduceOp.MAX)
    return float(difference)


def log_epoch(live, record: dict) -> None:
    for key in ("train_loss", "train_accuracy", "lr", "dev_eer", "dev_loss"):
        if record.get(key) is not None:
            live.log_metric(key, record[key])
    live.next_step()


def score_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER of scores (higher = bona fide); raises ScoreError for unusable ones."""
    return compute_eer(scores[labels == 1], scores[labels == 0])[0]


def model_file(model, settings: Settings, best: dict, step: int, precision: str) -> ModelFile:
    """The model file of a network at the end of `best`'s epoch: its weights and what scoring needs."""
    return ModelFile(model_settings=settings.model, feature_settings=settings.features, frames=settings.train.frames,
                     eval_input=settings.train.eval_input, precision=precision, threshold=best["threshold"],
                     calibration=best.get("calibration"), fusion=best.get("fusion"), dev_eer=best["dev_eer"],
                     epoch=best["epoch"], step=step, weights=model.state_dict())
