"""Stage `train`: SR-LA Res2Net + A-Softmax on the cached F0 subband shards.

    python train.py [--params params.yaml] [--batch-size N] [--epochs N] [--lr LR]
                    [--gpu ID] [--out_fold models] [--resume | --fresh]

The flags are the original recipe's CLI; each overrides its params.yaml key (train.*).
Each epoch trains on `train`; <out_fold>/model.pt is the weight average of the last epochs
(train.average_epochs) or the epoch with the best dev EER; dev is scored as train.dev_every
says. <out_fold>/checkpoint.pt holds everything needed to continue (weights, optimiser,
schedule, A-Softmax step, epoch): a killed run continues from its last finished epoch when
rerun with the same settings. Curves are logged with dvclive.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from model import asoftmax_loss, build_model, count_parameters, floor_gamma, head_loss, margin_lambda
from model.fusion import combine, fit_fusion, fit_statistics_model, statistics_logit
from pipeline.dataset import EpochSampler, ShardDataset
from pipeline.calibration import fit_calibration
from pipeline.metrics import ScoreError, compute_eer
from pipeline.scoring import (CHECKPOINT_FORMAT, MODEL_FORMAT, CheckpointError, autocast, available_cores,
                              decision_loss, eval_loader, load_checkpoint, resolve_device, resolve_precision,
                              score_dataset, to_device, tune_allocator)
from pipeline.settings import Settings, SettingsError, TrainSettings, load_settings
from pipeline.shards import ShardError, open_partition


# ---------------------------------------------------------------- set-up

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


def atomic_save(obj, path: Path) -> None:
    """Write to a temporary name, then rename: a crash or a full disk never leaves a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- one epoch

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


class TrainingDiverged(RuntimeError):
    """The run produced a non-finite loss or unusable dev scores; the message names the epoch."""


def lambda_gamma(ms, total_steps: int) -> float:
    """The A-Softmax annealing's gamma: model.lambda_gamma, or the one that brings lambda to
    lambda_min at model.lambda_floor_at of the run's steps."""
    if ms.lambda_floor_at is None:
        return ms.lambda_gamma
    return floor_gamma(ms.lambda_min, ms.lambda_base, ms.lambda_floor_at, total_steps)


def train_epoch(model, loader, optimizer, scheduler, settings: Settings, device, precision: str,
                step: int, progress: bool, gamma: float):
    """Returns (mean loss, accuracy, optimiser steps done so far, samples/s)."""
    model.train()
    ms, ts = settings.model, settings.train
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    started = time.perf_counter()
    limit = epoch_steps(loader, ts)
    loss_fn = head_loss(ms)
    for batch, (x, y, _) in enumerate(tqdm(loader, total=limit, disable=not progress,
                                           desc="train", unit="batch", leave=False)):
        if batch >= limit:
            break
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        lam = margin_lambda(step, ms.lambda_min, ms.lambda_base, gamma)
        batch_loss, batch_correct = train_step(model, x, y, optimizer, lam, device, precision, ts.micro_batch,
                                                  loss_fn)
        scheduler.step()
        step += 1
        total_loss += batch_loss
        correct += batch_correct
        seen += len(y)
    totals = torch.stack([total_loss.double(), correct.double(), torch.tensor(float(seen), device=device)])
    if dist.is_initialized():  # every rank saw its own part: report the whole
        dist.all_reduce(totals)
    total_loss, correct, seen = totals.tolist()  # the epoch's one wait for the device
    elapsed = time.perf_counter() - started
    return total_loss / max(seen, 1), correct / max(seen, 1), step, seen / max(elapsed, 1e-9)


# ---------------------------------------------------------------- the run

def train(settings: Settings, features_dir: Path, out_dir: Path, metrics_path: Path,
          live_dir: Path | None = Path("dvclive"), resume: bool = True, progress: bool = True) -> dict:
    """Train (one process, or one rank of a torchrun job); returns the summary written to metrics_path.

    Under torchrun every rank trains on its share of each batch and DDP averages the gradients;
    only rank 0 evaluates dev, logs and saves, and its summary is the one returned.
    """
    ts = settings.train
    settings.check_across()
    tune_allocator()
    rank, world, device = setup_distributed(ts.device)
    master = rank == 0
    try:
        if ts.batch_size % world:
            raise SettingsError(f"train.batch_size: {ts.batch_size} does not split over {world} ranks")
        return _train(settings, features_dir, out_dir, metrics_path, live_dir if master else None,
                      resume, progress and master, rank, world, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(settings, features_dir, out_dir, metrics_path, live_dir, resume, progress, rank, world, device):
    ts, ms = settings.train, settings.model
    master = rank == 0
    say = print if master else (lambda *a, **k: None)
    train_readers = open_partition(features_dir / "train", settings.features)
    dev_readers = open_partition(features_dir / "dev", settings.features)
    train_index = json.loads((features_dir / "train" / "index.json").read_text())
    train_set = ShardDataset(train_readers, ts.frames, train=True, f0_channel=ms.f0_channel,
                             freq_stretch=ts.freq_stretch, mask_bins=ts.mask_bins,
                             mask_frames=ts.mask_frames, seed=ts.seed, exclude_attacks=ts.exclude_attacks,
                             mask_rows=settings.features.n_spectral_rows)
    dev_set = ShardDataset(dev_readers, ts.frames, train=False, f0_channel=ms.f0_channel,
                           eval_input=ts.eval_input, exclude_attacks=ts.exclude_attacks)
    precision, precision_reason = resolve_precision(ts.precision, device)
    workers = loader_workers(ts.num_workers, world)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # input shapes repeat: pick the fastest kernels once

    torch.manual_seed(ts.seed)
    model = build_model(ms, settings.features).to(device, memory_format=torch.channels_last)
    # BatchNorm: each rank normalises with its own batch share; DDP copies rank 0's running
    # statistics to every rank at each forward, so all ranks hold the same model.
    wrapped = model
    if world > 1:
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # The compiled module shares its parameters with `model`: checkpoints save `model`.
    runner = wrapped
    if ts.compile:
        use_compile_cache(ts.compile_cache)
        runner = torch.compile(wrapped)
    optimizer = torch.optim.Adam(model.parameters(), lr=ts.lr, betas=(ts.beta1, ts.beta2), eps=ts.eps,
                                 weight_decay=ts.weight_decay, amsgrad=ts.amsgrad)
    loader = make_loader(train_set, ts, device, workers, rank, world)
    total_steps = ts.epochs * epoch_steps(loader, ts)
    gamma = lambda_gamma(ms, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s + 1, ts.warmup_steps, ts.lr_schedule, total_steps))
    digest = run_digest(settings, train_index)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path, model_path = out_dir / "checkpoint.pt", out_dir / "model.pt"

    start_epoch, step, best, history, best_file = 0, 0, {"dev_eer": None}, [], None
    # Running weight average over the epochs from average_from on (train.average_epochs).
    average_from = max(0, ts.epochs - ts.average_epochs) if ts.average_epochs else ts.epochs
    average, averaged = None, 0
    if resume and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        if state.get("run_digest") != digest:
            say(f"train: {checkpoint_path} belongs to other settings; starting a new run")
        elif state["epoch"] >= ts.epochs:
            # A finished run is rerun because something it depends on changed: train anew.
            say(f"train: {checkpoint_path} finished all {ts.epochs} epochs; starting a new run")
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, step, best, history = state["epoch"], state["step"], state["best"], state["history"]
            best_file = state.get("best_model")
            if state.get("average_from") == average_from:
                average, averaged = state.get("average"), state.get("averaged", 0)
            elif state.get("averaged"):  # train.epochs changed: the window moved
                say(f"train: the weight average now starts at epoch {average_from + 1}; "
                    f"the epochs averaged so far are dropped")
            if master and not model_path.is_file():  # DVC removes model.pt before rerunning the stage
                if best_file is not None:
                    atomic_save(best_file, model_path)
                else:
                    best = {"dev_eer": None}  # nothing to restore: the next epoch writes a model
            say(f"train: resuming after epoch {start_epoch} (step {step}) from {checkpoint_path}")

    say(f"train: {count_parameters(model):,} parameters, {ms.arch} + {ms.head}, device {device}"
        f"{f' x {world} ranks' if world > 1 else ''}, {precision} ({precision_reason}), "
        f"{len(train_set)} train / {len(dev_set)} dev utterances, {ts.frames} frames, {workers} loader workers"
        + (f", A-Softmax lambda {margin_lambda(0, ms.lambda_min, ms.lambda_base, gamma):g} -> "
           f"{margin_lambda(total_steps, ms.lambda_min, ms.lambda_base, gamma):.3g} (gamma {gamma:.3g})"
           if ms.head == "asoftmax" else ""))
    live = None
    if live_dir is not None:
        from dvclive import Live
        live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=None)
        for record in history:  # a resumed run replays its earlier epochs, so the curves are whole
            log_epoch(live, record)
    # Best-epoch selection needs every epoch's dev EER; with weight averaging only dev_every's.
    dev_every = ts.dev_every if ts.average_epochs else 1
    dev_loader = eval_loader(dev_set, ts.batch_size, workers, device, persistent=True) if master else None
    fusion_base, dev_logit = None, None  # the score fusion's statistics model, its dev log-odds (model/fusion.py)
    if master and ms.excitation_fusion:
        rows, hnr_rows = settings.features.n_excitation_rows, settings.features.n_harmonicity_rows
        phase_rows = settings.features.n_harmonic_phase_rows
        statistics_model = fit_statistics_model(train_set.utterance_statistics(rows, hnr_rows, phase_rows),
                                                train_set.labels, ms.excitation_fusion_c, ms.excitation_fusion_one_sided)
        fusion_base = {"statistics_model": statistics_model, "excitation_rows": rows}
        # Absent when 0, so the model files of fusions without them stay as they were.
        if hnr_rows:
            fusion_base["harmonicity_rows"] = hnr_rows
        if phase_rows:
            fusion_base["harmonic_phase_rows"] = phase_rows
        dev_logit = statistics_logit(statistics_model, dev_set.utterance_statistics(rows, hnr_rows, phase_rows))
        try:
            alone = f"its dev EER alone {score_eer(dev_logit, dev_set.labels):.2%}"
        except ScoreError as err:
            alone = f"no dev EER ({err})"
        say(f"train: score fusion with an excitation statistics model fitted on {len(train_set)} "
            f"utterances; {alone}")

    def score_dev(net, epoch: int):
        """{dev_eer, threshold, dev_loss, calibration} (calibration: dev scores -> LLRs)."""
        scores, labels, logit = score_dataset(net, dev_set, ts.batch_size, device, precision,
                                              loader=dev_loader, logits=True)
        try:
            fusion = None
            if fusion_base is not None:
                # The score is the fusion's: its weights are fitted on these dev scores.
                score_eer(scores, labels)  # a collapsed network stops here, not in the fit
                fusion = {**fusion_base, "weights": fit_fusion(scores, dev_logit, labels)}
                scores = combine(fusion["weights"], scores, dev_logit)
            bonafide, spoof = scores[labels == 1], scores[labels == 0]
            eer, threshold = compute_eer(bonafide, spoof)
            return {"dev_eer": eer, "threshold": threshold, "dev_loss": decision_loss(logit, labels),
                    "calibration": fit_calibration(bonafide, spoof), "fusion": fusion}
        except ScoreError as err:
            raise TrainingDiverged(
                f"epoch {epoch}: the dev scores are unusable ({err}): the network outputs NaN or the same "
                f"value for every utterance, so it has diverged or collapsed; lower train.lr, or check "
                f"the margin's annealing (model.lambda_*), and rerun with --fresh") from None

    try:
        for epoch in range(start_epoch, ts.epochs):
            torch.manual_seed(ts.seed * 1000 + epoch)  # dropout draws
            loader.sampler.set_epoch(epoch)
            loss, accuracy, step, speed = train_epoch(runner, loader, optimizer, scheduler, settings,
                                                      device, precision, step, progress, gamma)
            if not math.isfinite(loss):
                # Raised before the checkpoint is written: the last one holds the previous epoch.
                raise TrainingDiverged(
                    f"epoch {epoch + 1}: the training loss is {loss} (step {step}): the run diverged; lower "
                    f"train.lr, or use train.precision: fp32, and rerun with --fresh"
                    + (f" (the checkpoint still holds epoch {epoch})" if epoch else ""))
            if master:
                dev = {"dev_eer": None, "dev_loss": None}
                if dev_every and (epoch + 1) % dev_every == 0:
                    dev = score_dev(model, epoch + 1)
                dev_eer = dev["dev_eer"]
                record = {"epoch": epoch + 1, "step": step, "train_loss": loss, "train_accuracy": accuracy,
                          "lr": optimizer.param_groups[0]["lr"], "dev_eer": dev_eer, "dev_loss": dev["dev_loss"],
                          "samples_per_s": speed}
                history.append(record)
                say(f"epoch {epoch + 1}/{ts.epochs}: loss {loss:.4f}  acc {accuracy:.3f}  "
                    + (f"dev EER {dev_eer:.2%}  dev loss {dev['dev_loss']:.4f}  " if dev_eer is not None else "")
                    + f"lr {record['lr']:.2e}  {speed:.1f} samples/s")
                key = ts.select_epoch
                if dev_eer is not None and (best.get(key) is None or record[key] < best[key]):
                    best = {**dev, "epoch": epoch + 1}
                    best_file = model_file(model, settings, best, step, precision)
                    atomic_save(best_file, model_path)
                if epoch >= average_from:
                    average = accumulate_average(average, model, averaged)
                    averaged += 1
                if ts.average_epochs and epoch + 1 == ts.epochs:
                    # The final model is the weight average, whatever the single epochs scored.
                    final = averaged_model(model, average, loader, device, precision)
                    best = {**score_dev(final, epoch + 1), "epoch": epoch + 1, "averaged_epochs": averaged}
                    dev_eer = best["dev_eer"]
                    best_file = model_file(final, settings, best, step, precision)
                    atomic_save(best_file, model_path)
                    say(f"average of the last {averaged} epochs: dev EER {dev_eer:.2%}")
                # The best model travels in the checkpoint too, so a resumed run can restore model.pt.
                atomic_save({"format": CHECKPOINT_FORMAT, "run_digest": digest, "epoch": epoch + 1, "step": step,
                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "best": best, "history": history,
                             "best_model": best_file, "average": average, "averaged": averaged,
                             "average_from": average_from},
                            checkpoint_path)
                if live is not None:
                    log_epoch(live, record)
            if world > 1:
                dist.barrier()  # the other ranks wait for rank 0's evaluation and checkpoint
    finally:
        if live is not None:
            live.end()
        for r in train_readers + dev_readers:
            r.close()
    summary = {"best_dev_eer": best["dev_eer"], "best_dev_loss": best.get("dev_loss"),
               "best_epoch": best.get("epoch"),
               "averaged_epochs": best.get("averaged_epochs", 0), "epochs": len(history),
               "steps": step, "parameters": count_parameters(model),
               "final_train_loss": history[-1]["train_loss"] if history else None,
               "final_train_accuracy": history[-1]["train_accuracy"] if history else None,
               "train_samples_per_s": history[-1]["samples_per_s"] if history else None,
               "precision": precision, "precision_reason": precision_reason,
               "fusion_weights": (best.get("fusion") or {}).get("weights"),
               "lambda_gamma": gamma, "final_lambda": margin_lambda(step, ms.lambda_min, ms.lambda_base, gamma)}
    if world > 1:
        summary["ranks"] = world
        summary["rank_weight_max_difference"] = ranks_disagreement(model)
        say(f"train: {world} ranks agree (max weight difference {summary['rank_weight_max_difference']:.1e})")
    if master:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


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


def model_file(model, settings: Settings, best: dict, step: int, precision: str) -> dict:
    """What detect and evaluate need: weights, settings, feature fingerprint, threshold."""
    return {"format": MODEL_FORMAT, "model": model.state_dict(),
            "model_settings": dataclasses.asdict(settings.model),
            "feature_settings": dataclasses.asdict(settings.features),
            "feature_fingerprint": settings.features.fingerprint(),
            "frames": settings.train.frames, "eval_input": settings.train.eval_input,
            "precision": precision,  # a hint for scoring: bf16 only where it is native there
            "threshold": best["threshold"],
            "calibration": best.get("calibration"),  # dev scores -> LLRs (pipeline/calibration.py)
            "fusion": best.get("fusion"),  # None: the score is the network's (model/fusion.py)
            "dev_eer": best["dev_eer"], "epoch": best["epoch"], "step": step}


def apply_cli(settings: Settings, args) -> Settings:
    overrides = {}
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.lr is not None:
        overrides["lr"] = args.lr
    if args.gpu is not None:
        overrides["device"] = "cpu" if args.gpu in ("cpu", "-1") else f"cuda:{args.gpu}"
    if not overrides:
        return settings
    train = dataclasses.replace(settings.train, **overrides)
    train.validate("train")
    return dataclasses.replace(settings, train=train)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out_fold", "--out-fold", default="models", help="where model.pt and checkpoint.pt go")
    parser.add_argument("--metrics", default="metrics/train.json")
    parser.add_argument("--live", default="dvclive", help="dvclive folder for the training curves")
    parser.add_argument("--batch-size", "--batch_size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--gpu", help="CUDA device index, or cpu")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", default=True,
                       help="continue from <out_fold>/checkpoint.pt if it matches (default)")
    group.add_argument("--fresh", action="store_true", help="ignore any checkpoint and start over")
    args = parser.parse_args(argv)
    try:
        settings = apply_cli(load_settings(args.params), args)
        summary = train(settings, Path(args.features), Path(args.out_fold), Path(args.metrics),
                        live_dir=Path(args.live), resume=not args.fresh)
    except (SettingsError, ShardError, CheckpointError, TrainingDiverged) as err:
        print(f"train: {err}", file=sys.stderr)
        return 1
    if summary["best_dev_eer"] is not None:  # rank 0 (the other ranks do not evaluate)
        print(f"train: best dev EER {summary['best_dev_eer']:.2%} at epoch {summary['best_epoch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
