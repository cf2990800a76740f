"""Stage `train`: SR-LA Res2Net + A-Softmax on the cached feature shards.

    python train.py [--params params.yaml] [--batch-size N] [--epochs N] [--lr LR]
                    [--gpu ID] [--out_fold models] [--resume | --fresh]

The flags are the original recipe's CLI; each overrides its params.yaml key (train.*).
Each epoch trains on `train`; <out_fold>/model.pt is the weight average of the last epochs
(train.average_epochs) or the epoch with the best dev EER; dev is scored as train.dev_every
says. <out_fold>/checkpoint.pt holds everything needed to continue (weights, optimiser,
schedule, A-Softmax step, epoch): a killed run continues from its last finished epoch when
rerun with the same settings. Curves are logged with dvclive. Under torchrun every rank trains
on its share of each batch and DDP averages the gradients; only rank 0 scores dev, logs and saves.

This is the training loop; its pieces (the schedule, one step, averaging, the model file, the
scorer) live in pipeline/training.py and pipeline/scoring/. Nothing imports train.py: other
stages and the tests run it as a process.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from features.streams import SPECTRAL_STREAMS, fusion_streams, network_streams
from model import build_model, count_parameters, head_loss, margin_lambda
from model.fusion import combine, fit_fusion, fit_statistics_model, statistics_logit
from pipeline.cli import run_stage
from pipeline.data.dataset import ShardDataset
from pipeline.data.shards import open_partition
from pipeline.scoring.calibration import fit_calibration
from pipeline.scoring.metrics import ScoreError, compute_eer
from pipeline.scoring.modelfile import CHECKPOINT_FORMAT, ModelFile, OlderVersionError, atomic_save, load_checkpoint
from pipeline.scoring.scorer import Scorer, decision_loss, eval_loader, resolve_precision, to_device, tune_allocator
from pipeline.settings import Settings, SettingsError, load_settings
from pipeline.training import (TrainingDiverged, accumulate_average, averaged_model, epoch_steps, lambda_gamma,
                               loader_workers, log_epoch, lr_factor, make_loader, model_file, ranks_disagreement,
                               run_digest, score_eer, setup_distributed, train_step, use_compile_cache)


@dataclass
class Data:
    """The partitions a run reads: train (its own items, augmented and copy-synthesis ones
    included) and dev (originals, evaluated as the model will be)."""
    train_set: ShardDataset
    dev_set: ShardDataset
    readers: list
    train_index: dict


@dataclass
class Run:
    """What one training run holds from epoch to epoch (and its checkpoint saves)."""
    model: torch.nn.Module
    runner: torch.nn.Module  # the model, wrapped by DDP and torch.compile where they are on
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: torch.utils.data.DataLoader
    total_steps: int
    gamma: float
    digest: str
    average_from: int  # the first epoch (0-based) in the weight average
    start_epoch: int = 0
    step: int = 0
    best: dict = field(default_factory=lambda: {"dev_eer": None})
    history: list = field(default_factory=list)
    best_file: ModelFile | None = None
    average: dict | None = None
    averaged: int = 0


# ---------------------------------------------------------------- set-up

def open_data(settings: Settings, features_dir: Path) -> Data:
    ts, ms = settings.train, settings.model
    train_readers = open_partition(features_dir / "train", settings.features)
    dev_readers = open_partition(features_dir / "dev", settings.features)
    streams = tuple(network_streams(settings.features))
    spectral_rows = sum(w for name, w in network_streams(settings.features).items() if name in SPECTRAL_STREAMS)
    train_set = ShardDataset(train_readers, ts.frames, train=True, f0_channel=ms.f0_channel,
                             freq_stretch=ts.freq_stretch, mask_bins=ts.mask_bins, mask_frames=ts.mask_frames,
                             seed=ts.seed, exclude_attacks=ts.exclude_attacks, mask_rows=spectral_rows, streams=streams,
                             exclude_speakers=ts.exclude_speakers)
    dev_set = ShardDataset(dev_readers, ts.frames, train=False, f0_channel=ms.f0_channel, eval_input=ts.eval_input,
                           exclude_attacks=ts.exclude_attacks, streams=streams, exclude_speakers=ts.exclude_speakers)
    index = json.loads((features_dir / "train" / "index.json").read_text())
    return Data(train_set, dev_set, train_readers + dev_readers, index)


def build_run(settings: Settings, data: Data, device, workers: int, rank: int, world: int) -> Run:
    """The network, its optimiser and schedule, and the training loader, from the settings' seed."""
    ts, ms = settings.train, settings.model
    torch.manual_seed(ts.seed)
    model = build_model(ms, settings.features).to(device, memory_format=torch.channels_last)
    # BatchNorm: each rank normalises with its own batch share; DDP copies rank 0's running
    # statistics to every rank at each forward, so all ranks hold the same model.
    runner = model
    if world > 1:
        runner = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if ts.compile:  # the compiled module shares its parameters with `model`: checkpoints save `model`
        use_compile_cache(ts.compile_cache)
        runner = torch.compile(runner)
    optimizer = torch.optim.Adam(model.parameters(), lr=ts.lr, betas=(ts.beta1, ts.beta2), eps=ts.eps,
                                 weight_decay=ts.weight_decay, amsgrad=ts.amsgrad)
    loader = make_loader(data.train_set, ts, device, workers, rank, world)
    total_steps = ts.epochs * epoch_steps(loader, ts)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s + 1, ts.warmup_steps, ts.lr_schedule, total_steps))
    average_from = max(0, ts.epochs - ts.average_epochs) if ts.average_epochs else ts.epochs
    return Run(model, runner, optimizer, scheduler, loader, total_steps, lambda_gamma(ms, total_steps),
               run_digest(settings, data.train_index), average_from)


def resume(run: Run, settings: Settings, checkpoint_path: Path, model_path: Path, master: bool, say) -> None:
    """Continue from checkpoint_path where it belongs to this run and has epochs left."""
    if not checkpoint_path.is_file():
        return
    try:
        state = load_checkpoint(checkpoint_path)
    except OlderVersionError as err:
        say(f"train: {err.args[0].split(';')[0]}; starting a new run")
        return
    if state.get("format") != CHECKPOINT_FORMAT or state.get("run_digest") != run.digest:
        say(f"train: {checkpoint_path} belongs to other settings; starting a new run")
        return
    if state["epoch"] >= settings.train.epochs:
        # A finished run is rerun because something it depends on changed: train anew.
        say(f"train: {checkpoint_path} finished all {settings.train.epochs} epochs; starting a new run")
        return
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.start_epoch, run.step, run.best, run.history = state["epoch"], state["step"], state["best"], state["history"]
    if state.get("best_model") is not None:
        run.best_file = ModelFile.from_dict(state["best_model"], checkpoint_path)
    if state.get("average_from") == run.average_from:
        run.average, run.averaged = state.get("average"), state.get("averaged", 0)
    elif state.get("averaged"):  # train.epochs changed: the window moved
        say(f"train: the weight average now starts at epoch {run.average_from + 1}; "
            f"the epochs averaged so far are dropped")
    if master and not model_path.is_file():  # DVC removes model.pt before rerunning the stage
        if run.best_file is not None:
            run.best_file.save(model_path)
        else:
            run.best = {"dev_eer": None}  # nothing to restore: the next epoch writes a model
    say(f"train: resuming after epoch {run.start_epoch} (step {run.step}) from {checkpoint_path}")


def save_checkpoint(run: Run, path: Path, epochs_done: int) -> None:
    """Everything a killed run needs to continue; the best model travels in it too, so a resumed
    run can restore model.pt."""
    atomic_save({"format": CHECKPOINT_FORMAT, "run_digest": run.digest, "step": run.step, "epoch": epochs_done,
                 "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                 "scheduler": run.scheduler.state_dict(), "best": run.best, "history": run.history,
                 "best_model": run.best_file.to_dict() if run.best_file is not None else None,
                 "average": run.average, "averaged": run.averaged, "average_from": run.average_from}, path)


# ---------------------------------------------------------------- dev scoring

class DevScoring:
    """Scores dev after an epoch: the network's scores (through the Scorer every other stage uses),
    and with a score fusion its statistics model (fitted once, on the training utterances) and
    the fusion weights (fitted on these dev scores). Rank 0 only."""

    def __init__(self, settings: Settings, data: Data, device, precision: str, workers: int, say):
        ts, ms = settings.train, settings.model
        self.labels = data.dev_set.labels
        # dev is scored as training runs: bf16 where training was asked to run in it
        self.scorer = Scorer(None, data.dev_set.streams, ts.frames, ts.eval_input, ms.f0_channel, precision, device,
                             exact_precision=True)
        self.dataset, self.batch_size = data.dev_set, ts.batch_size
        self.loader = eval_loader(data.dev_set, ts.batch_size, workers, device, persistent=True)
        self.fusion_base, self.dev_logit = None, None
        if ms.excitation_fusion:
            streams = list(fusion_streams(settings.features))
            train_set = data.train_set
            statistics = train_set.utterance_statistics(streams, with_copies=ms.excitation_fusion_copies)
            labels = train_set.copy_labels() if ms.excitation_fusion_copies else train_set.labels
            statistics_model = fit_statistics_model(statistics, labels, ms.excitation_fusion_c,
                                                    ms.excitation_fusion_one_sided)
            self.fusion_base = {"statistics_model": statistics_model, "streams": streams}
            self.dev_logit = statistics_logit(statistics_model, data.dev_set.utterance_statistics(streams))
            try:
                alone = f"its dev EER alone {score_eer(self.dev_logit, self.labels):.2%}"
            except ScoreError as err:
                alone = f"no dev EER ({err})"
            copies = len(labels) - len(train_set)
            made_of = f" and {copies} augmented copies" if copies else ""
            say(f"train: score fusion with an excitation statistics model fitted on {len(train_set)} "
                f"utterances{made_of}; {alone}")

    def __call__(self, network, epoch: int) -> dict:
        """{dev_eer, threshold, dev_loss, calibration, fusion} (calibration: dev scores -> LLRs)."""
        self.scorer.network = network
        scores, labels, logit = self.scorer.score_dataset(self.dataset, self.batch_size, loader=self.loader,
                                                          logits=True)
        try:
            fusion = None
            if self.fusion_base is not None:
                # The score is the fusion's: its weights are fitted on these dev scores.
                score_eer(scores, labels)  # a collapsed network stops here, not in the fit
                fusion = {**self.fusion_base, "weights": fit_fusion(scores, self.dev_logit, labels)}
                scores = combine(fusion["weights"], scores, self.dev_logit)
            bonafide, spoof = scores[labels == 1], scores[labels == 0]
            eer, threshold = compute_eer(bonafide, spoof)
            return {"dev_eer": eer, "threshold": threshold, "dev_loss": decision_loss(logit, labels),
                    "calibration": fit_calibration(bonafide, spoof), "fusion": fusion}
        except ScoreError as err:
            raise TrainingDiverged(
                f"epoch {epoch}: the dev scores are unusable ({err}): the network outputs NaN or the same "
                f"value for every utterance, so it has diverged or collapsed; lower train.lr, or check "
                f"the margin's annealing (model.lambda_*), and rerun with --fresh") from None


# ---------------------------------------------------------------- epochs

def train_epoch(run: Run, settings: Settings, device, precision: str, progress: bool):
    """One epoch; returns (mean loss, accuracy, samples/s) and advances run.step."""
    run.runner.train()
    ms, ts = settings.model, settings.train
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, started, limit, loss_fn = 0, time.perf_counter(), epoch_steps(run.loader, ts), head_loss(ms)
    for batch, (x, y, _) in enumerate(tqdm(run.loader, total=limit, disable=not progress,
                                           desc="train", unit="batch", leave=False)):
        if batch >= limit:
            break
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        lam = margin_lambda(run.step, ms.lambda_min, ms.lambda_base, run.gamma)
        batch_loss, batch_correct = train_step(run.runner, x, y, run.optimizer, lam, device, precision,
                                               ts.micro_batch, loss_fn)
        run.scheduler.step()
        run.step += 1
        total_loss += batch_loss
        correct += batch_correct
        seen += len(y)
    totals = torch.stack([total_loss.double(), correct.double(), torch.tensor(float(seen), device=device)])
    if dist.is_initialized():  # every rank saw its own part: report the whole
        dist.all_reduce(totals)
    total_loss, correct, seen = totals.tolist()  # the epoch's one wait for the device
    return total_loss / max(seen, 1), correct / max(seen, 1), seen / max(time.perf_counter() - started, 1e-9)


def check_loss(loss: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        # Raised before the checkpoint is written: the last one holds the previous epoch.
        raise TrainingDiverged(
            f"epoch {epoch + 1}: the training loss is {loss} (step {step}): the run diverged; lower "
            f"train.lr, or use train.precision: fp32, and rerun with --fresh"
            + (f" (the checkpoint still holds epoch {epoch})" if epoch else ""))


def after_epoch(run: Run, settings: Settings, epoch: int, record: dict, dev: dict, score_dev: DevScoring,
                model_path: Path, device, precision: str, say) -> None:
    """Rank 0 after an epoch: keep the best epoch's model, add the epoch to the weight average,
    and after the last epoch make the averaged model the final one."""
    ts = settings.train
    key = ts.select_epoch
    if dev["dev_eer"] is not None and (run.best.get(key) is None or record[key] < run.best[key]):
        run.best = {**dev, "epoch": epoch + 1}
        run.best_file = model_file(run.model, settings, run.best, run.step, precision)
        run.best_file.save(model_path)
    if epoch >= run.average_from:
        run.average = accumulate_average(run.average, run.model, run.averaged)
        run.averaged += 1
    if ts.average_epochs and epoch + 1 == ts.epochs:
        # The final model is the weight average, whatever the single epochs scored.
        final = averaged_model(run.model, run.average, run.loader, device, precision)
        run.best = {**score_dev(final, epoch + 1), "epoch": epoch + 1, "averaged_epochs": run.averaged}
        run.best_file = model_file(final, settings, run.best, run.step, precision)
        run.best_file.save(model_path)
        say(f"average of the last {run.averaged} epochs: dev EER {run.best['dev_eer']:.2%}")


def run_epochs(run: Run, settings: Settings, score_dev: DevScoring | None, out_dir: Path, live, device,
               precision: str, progress: bool, world: int, say) -> None:
    ts = settings.train
    # Best-epoch selection needs every epoch's dev EER; with weight averaging only dev_every's.
    dev_every = ts.dev_every if ts.average_epochs else 1
    for epoch in range(run.start_epoch, ts.epochs):
        torch.manual_seed(ts.seed * 1000 + epoch)  # dropout draws
        run.loader.sampler.set_epoch(epoch)
        loss, accuracy, speed = train_epoch(run, settings, device, precision, progress)
        check_loss(loss, epoch, run.step)
        if score_dev is not None:  # rank 0
            dev = {"dev_eer": None, "dev_loss": None}
            if dev_every and (epoch + 1) % dev_every == 0:
                dev = score_dev(run.model, epoch + 1)
            record = {"epoch": epoch + 1, "step": run.step, "train_loss": loss, "train_accuracy": accuracy,
                      "lr": run.optimizer.param_groups[0]["lr"], "dev_eer": dev["dev_eer"],
                      "dev_loss": dev["dev_loss"], "samples_per_s": speed}
            run.history.append(record)
            say(f"epoch {epoch + 1}/{ts.epochs}: loss {loss:.4f}  acc {accuracy:.3f}  "
                + (f"dev EER {dev['dev_eer']:.2%}  dev loss {dev['dev_loss']:.4f}  " if dev["dev_eer"] is not None
                   else "") + f"lr {record['lr']:.2e}  {speed:.1f} samples/s")
            after_epoch(run, settings, epoch, record, dev, score_dev, out_dir / "model.pt", device, precision, say)
            save_checkpoint(run, out_dir / "checkpoint.pt", epoch + 1)
            if live is not None:
                log_epoch(live, record)
        if world > 1:
            dist.barrier()  # the other ranks wait for rank 0's evaluation and checkpoint


# ---------------------------------------------------------------- the run

def summarise(run: Run, settings: Settings, precision: str, precision_reason: str, world: int) -> dict:
    ms, best, history = settings.model, run.best, run.history
    last = history[-1] if history else {}
    summary = {"best_dev_eer": best["dev_eer"], "best_dev_loss": best.get("dev_loss"),
               "best_epoch": best.get("epoch"), "averaged_epochs": best.get("averaged_epochs", 0),
               "epochs": len(history), "steps": run.step, "parameters": count_parameters(run.model),
               "final_train_loss": last.get("train_loss"), "final_train_accuracy": last.get("train_accuracy"),
               "train_samples_per_s": last.get("samples_per_s"),
               "precision": precision, "precision_reason": precision_reason,
               "fusion_weights": (best.get("fusion") or {}).get("weights"),
               "lambda_gamma": run.gamma, "final_lambda": margin_lambda(run.step, ms.lambda_min, ms.lambda_base, run.gamma)}
    if world > 1:
        summary["ranks"] = world
        summary["rank_weight_max_difference"] = ranks_disagreement(run.model)
    return summary


def announce(run: Run, settings: Settings, data: Data, device, world: int, precision: str, reason: str,
             workers: int, say) -> None:
    ms, ts = settings.model, settings.train
    say(f"train: {count_parameters(run.model):,} parameters, {ms.arch} + {ms.head}, device {device}"
        f"{f' x {world} ranks' if world > 1 else ''}, {precision} ({reason}), "
        f"{len(data.train_set)} train / {len(data.dev_set)} dev utterances, {ts.frames} frames, {workers} loader workers"
        + (f", A-Softmax lambda {margin_lambda(0, ms.lambda_min, ms.lambda_base, run.gamma):g} -> "
           f"{margin_lambda(run.total_steps, ms.lambda_min, ms.lambda_base, run.gamma):.3g} (gamma {run.gamma:.3g})"
           if ms.head == "asoftmax" else ""))


def train(settings: Settings, features_dir: Path, out_dir: Path, metrics_path: Path, live_dir: Path | None,
          resume_run: bool = True, progress: bool = True) -> dict:
    """Train (one process, or one rank of a torchrun job); returns the summary written to metrics_path
    (rank 0's: the other ranks do not score dev)."""
    ts = settings.train
    settings.check_across()
    tune_allocator()
    rank, world, device = setup_distributed(ts.device)
    master = rank == 0
    say = print if master else (lambda *a, **k: None)
    try:
        if ts.batch_size % world:
            raise SettingsError(f"train.batch_size: {ts.batch_size} does not split over {world} ranks")
        data = open_data(settings, features_dir)
        precision, reason = resolve_precision(ts.precision, device)
        workers = loader_workers(ts.num_workers, world)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # input shapes repeat: pick the fastest kernels once
        run = build_run(settings, data, device, workers, rank, world)
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_run:
            resume(run, settings, out_dir / "checkpoint.pt", out_dir / "model.pt", master, say)
        announce(run, settings, data, device, world, precision, reason, workers, say)
        live = open_live(live_dir, run.history) if master else None
        try:
            score_dev = DevScoring(settings, data, device, precision, workers, say) if master else None
            run_epochs(run, settings, score_dev, out_dir, live, device, precision, progress and master, world, say)
        finally:
            if live is not None:
                live.end()
            for reader in data.readers:
                reader.close()
        summary = summarise(run, settings, precision, reason, world)
        if world > 1:
            say(f"train: {world} ranks agree (max weight difference {summary['rank_weight_max_difference']:.1e})")
        if master:
            metrics_path.parent.mkdir(parents=True, exist_ok=True)
            metrics_path.write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def open_live(live_dir: Path | None, history: list):
    """dvclive's logger (None without live_dir); a resumed run replays its earlier epochs, so the
    curves are whole."""
    if live_dir is None:
        return None
    from dvclive import Live
    live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=None)
    for record in history:
        log_epoch(live, record)
    return live


# ---------------------------------------------------------------- command line

def apply_cli(settings: Settings, args) -> Settings:
    overrides = {key: value for key, value in (("batch_size", args.batch_size), ("epochs", args.epochs),
                                               ("lr", args.lr)) if value is not None}
    if args.gpu is not None:
        overrides["device"] = "cpu" if args.gpu in ("cpu", "-1") else f"cuda:{args.gpu}"
    if not overrides:
        return settings
    train_settings = dataclasses.replace(settings.train, **overrides)
    train_settings.validate("train")
    return dataclasses.replace(settings, train=train_settings)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out_fold", "--out-fold", default="models", help="where model.pt and checkpoint.pt go")
    parser.add_argument("--metrics", default="metrics/train.json")
    parser.add_argument("--live", default="dvclive", help="dvclive folder for the training curves ('' = none)")
    parser.add_argument("--batch-size", "--batch_size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--gpu", help="CUDA device index, or cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", default=True,
                       help="continue from <out_fold>/checkpoint.pt if it matches (default)")
    group.add_argument("--fresh", action="store_true", help="ignore any checkpoint and start over")
    args = parser.parse_args(argv)

    def body() -> None:
        settings = apply_cli(load_settings(args.params), args)
        summary = train(settings, Path(args.features), Path(args.out_fold), Path(args.metrics),
                        Path(args.live) if args.live else None, resume_run=not args.fresh,
                        progress=not args.no_progress)
        if summary["best_dev_eer"] is not None:  # rank 0 (the other ranks do not evaluate)
            print(f"train: best dev EER {summary['best_dev_eer']:.2%} at epoch {summary['best_epoch']}")
    return run_stage("train", body)


if __name__ == "__main__":
    sys.exit(main())
