"""The thin training loop: :class:`Trainer` runs one stage; :func:`run_training` runs one stage or the
two-stage flow (FeatureNet first, then depth/pose with it frozen) when ``train.stage=depth`` and
``train.run_feature_stage=true`` with no ``train.feature_checkpoint``.

One step is :func:`featdepth.training.step.train_step`; what is set up before the first step lives in
:mod:`featdepth.training.setup`, resuming in :mod:`featdepth.training.resume`, validation in
:mod:`featdepth.training.validation`.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from featdepth.config import Config, config_to_dict, dump_config
from featdepth.training.checkpoints import CheckpointManager
from featdepth.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    env_dist_info,
    init_distributed,
    restart_count,
)
from featdepth.training.logging import RunLogger
from featdepth.training import resume as resuming
from featdepth.training.schedule import WarmupStepSchedule
from featdepth.training import setup
from featdepth.training.setup import TrainingError
from featdepth.training.step import StepResult, train_step
from featdepth.training.system import FeatDepthSystem
from featdepth.training.validation import validate
from featdepth.utils.runtime import move_batch, resolve_device, seed_everything, use_channels_last

__all__ = ["Trainer", "TrainingError", "run_training"]


class Trainer:
    """Runs one training stage. Construct, then call :meth:`fit`."""

    def __init__(self, cfg: Config, *, stage: str | None = None, out_dir: str | Path | None = None,
                 resume: str | None = None, dist_info: DistInfo | None = None,
                 on_step: Callable[[int, StepResult], None] | None = None) -> None:
        self.cfg = cfg
        self.stage = stage or cfg.train.stage
        self.out_dir = Path(out_dir or cfg.train.out_dir)
        self.device = resolve_device(cfg.train.device)
        if dist_info is None and self.device.type == "cuda" and env_dist_info().enabled:
            torch.cuda.set_device(env_dist_info().local_rank)  # before the NCCL group starts
        self.dist = dist_info or init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if resume is None and restart_count() > 0:
            resume = "auto"  # restarted by torchrun --max-restarts: continue from the newest good checkpoint
        self.on_step = on_step
        t = cfg.train
        self.amp = t.amp
        self.channels_last = use_channels_last(self.device, self.amp, t.channels_last)
        if self.dist.is_main:
            setup.check_output_dir(self.out_dir)
        seed_everything(t.seed + self.dist.rank)

        s = setup.stage_settings(cfg, self.stage)
        self.batch_size, self.epochs, self.max_steps = s["batch_size"], s["epochs"], s["max_steps"]
        milestones = s["milestones"]
        self.sampler, self.train_loader, self.val_loader = setup.build_loaders(cfg, self.stage, self.dist, s, self.device)

        self.system = FeatDepthSystem(cfg, stage=self.stage).to(self.device)
        if self.stage == "depth":
            setup.load_feature_checkpoint(self.system, cfg.train.feature_checkpoint)
        setup.freeze_unused_heads(self.system)
        if self.channels_last:
            self.system = self.system.to(memory_format=torch.channels_last)
        if t.sync_bn and self.dist.enabled:
            if self.device.type == "cuda":
                self.system = nn.SyncBatchNorm.convert_sync_batchnorm(self.system)
            elif self.dist.is_main:
                warnings.warn("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm is GPU-only); "
                              "using per-process BatchNorm statistics", stacklevel=2)
        self.params = self.system.trainable_parameters()
        if self.dist.is_main:
            setup.check_disk_space(self.out_dir, setup.checkpoint_bytes_estimate(self.system), t.keep_checkpoints)
        self.compiled = setup.compile_networks(self.system) if t.compile else []
        self._compile_unchecked = bool(self.compiled)
        self.model: nn.Module = self.system
        if self.dist.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                self.system, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=False,
            )
        self.optimizer = setup.build_optimizer(self.params, cfg)
        o = cfg.optim
        self.schedule = WarmupStepSchedule(self.optimizer, warmup_iters=o.warmup_iters, warmup_ratio=o.warmup_ratio,
                                           milestones=milestones, gamma=o.gamma)
        self.scaler = torch.amp.GradScaler("cuda") if (self.amp == "fp16" and self.device.type == "cuda") else None
        self.ckpt = CheckpointManager(self.out_dir / "checkpoints", keep=t.keep_checkpoints)
        self._saved_step: int | None = None  # step of the last checkpoint this process wrote
        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main)
        self.step = self.epoch = self.epoch_step = 0
        self.consecutive_nonfinite = 0
        self.skipped_steps = 0
        self.best_metric: float | None = None
        if self.dist.is_main:
            dump_config(cfg, self.out_dir / "config.yaml")
        if resume:
            self._resume(resume)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.system.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "skipped_steps": self.skipped_steps,
            "rng": resuming.checkpoint_rng_state(),  # tensors and numbers: loads with weights_only=True
            "stage": self.stage,
            "config": config_to_dict(self.cfg),
            "versions": setup.versions(),
        }

    def save_checkpoint(self, metric: float | None = None) -> Path | None:
        self._saved_step = self.step  # on every rank: the decision to save again must agree across ranks
        setup.check_weights_finite(self.system, self.step, self.cfg, self.ckpt.folder)  # never save NaN weights
        if not self.dist.is_main:
            return None
        return self.ckpt.save(self.state_dict(), self.step, self.epoch, metric)

    def _resume(self, resume: str) -> None:
        found = (resuming.find_resume_state_distributed(self.ckpt, resume, self.dist) if self.dist.enabled
                 else resuming.find_resume_state(self.ckpt, resume))
        if found is None:
            return  # no checkpoint file at all: start fresh
        state, path = found
        resuming.check_resumable(state, path, self.cfg, self.stage)  # one line naming the file and the setting
        resuming.load_resumed_weights(self.system, self.optimizer, state, path)
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.epoch_step = int(state["step"]), int(state["epoch"]), int(state["epoch_step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._saved_step = self.step
        resuming.restore_rng(state["rng"])
        if self.dist.is_main:  # a newer checkpoint (of another branch of the run) is moved aside, never deleted
            self.ckpt.set_aside_newer(self.step, warn=resuming.warn)
            print(f"[featdepth] resumed from {path} (step {self.step}, epoch {self.epoch})", file=sys.stderr)
        if self.dist.enabled:  # the checkpoint holds rank 0's generators: give every rank its own stream again
            seed_everything(self.cfg.train.seed + self.dist.rank + 1_000_003 * self.step)
        self.logger.text(f"resumed from {path} at step {self.step}")

    # -- loop ----------------------------------------------------------------------------
    def _finished(self) -> bool:
        return (self.max_steps is not None and self.step >= self.max_steps) or self.epoch >= self.epochs

    def total_steps(self) -> int:
        per_epoch = self.sampler.batches_per_epoch
        total = per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps is not None else total

    def fit(self) -> dict[str, Any]:
        t = self.cfg.train
        per_epoch = self.sampler.batches_per_epoch
        progress = None
        if self.dist.is_main and t.progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=self.total_steps(), initial=self.step, desc=f"train[{self.stage}]",
                            dynamic_ncols=True, file=sys.stderr)
        last_metrics: dict[str, float] = {}
        start_time = time.perf_counter()
        steps_this_run = 0
        self.system.train()
        try:
            while not self._finished():
                self.sampler.set_epoch(self.epoch, self.epoch_step)
                data_t0 = time.perf_counter()
                for batch in self.train_loader:
                    data_time = time.perf_counter() - data_t0
                    lr = self.schedule.set(self.step, self.epoch)
                    batch = move_batch(batch, self.device, self.channels_last)
                    step_t0 = time.perf_counter()
                    self.system.set_training_step(self.step)  # auto-masking may start later (docs/method.md §2.2)
                    result = self._train_step(batch)
                    step_time = time.perf_counter() - step_t0
                    self._after_step(result, lr, data_time, step_time, batch)
                    steps_this_run += 1
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(loss=f"{result.total:.4f}", lr=f"{lr:.2e}")
                    if self.on_step is not None:
                        self.on_step(self.step, result)
                    if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.max_steps is not None and self.step >= self.max_steps:
                        break
                    data_t0 = time.perf_counter()
                if self.epoch_step >= per_epoch:
                    self.epoch += 1
                    self.epoch_step = 0
                    if self.val_loader is not None and (self.epoch % t.val_every == 0 or self._finished()):
                        last_metrics = self._validate()
                    metric = last_metrics.get(t.best_metric)
                    if t.checkpoint_every_epochs and self.epoch % t.checkpoint_every_epochs == 0 and (
                            self._saved_step != self.step or metric is not None):
                        self.save_checkpoint(metric)
                elif self.max_steps is not None and self.step >= self.max_steps:
                    break
            # A final checkpoint where the last step is not saved yet (or none was saved); not again for a run
            # resumed from a checkpoint that was already finished (e.g. after an elastic restart).
            if (steps_this_run > 0 and self._saved_step != self.step) or not self.ckpt.records():
                if self.val_loader is not None:
                    last_metrics = self._validate()
                self.save_checkpoint(last_metrics.get(t.best_metric))
        finally:
            if progress is not None:
                progress.close()
            self.logger.close()
        barrier()
        elapsed = time.perf_counter() - start_time
        last = self.ckpt.records()[-1]["file"] if self.dist.is_main and self.ckpt.records() else None
        if self.dist.enabled:
            last = broadcast_object(last)  # every rank needs it (e.g. stage 2 loads the stage-1 checkpoint)
        return {
            "stage": self.stage,
            "steps": self.step,
            "steps_this_run": steps_this_run,
            "skipped_steps": self.skipped_steps,
            "seconds": elapsed,
            "val": last_metrics,
            "checkpoint": str(self.ckpt.folder / last) if last else None,
            "out_dir": str(self.out_dir),
        }

    def _validate(self) -> dict[str, float]:
        metrics = validate(self.system, self.val_loader, self.device, self.amp, self.cfg.train.val_max_images)
        self.logger.scalars(self.step, metrics, prefix="val/")
        return metrics

    def _train_step(self, batch: Any) -> StepResult:
        result, self.compiled = setup.checked_compiled_step(
            lambda: train_step(self.model, batch, self.optimizer, device=self.device, amp=self.amp, scaler=self.scaler,
                               grad_clip=self.cfg.optim.grad_clip, params=self.params),
            self.system, self.compiled, first=self._compile_unchecked)
        self._compile_unchecked = False
        return result

    def _after_step(self, result: StepResult, lr: float, data_time: float, step_time: float, batch: Any) -> None:
        t = self.cfg.train
        self.step += 1
        self.epoch_step += 1
        if not result.finite:
            setup.check_weights_finite(self.system, self.step, self.cfg, self.ckpt.folder)  # NaN weights: stop now
            self.consecutive_nonfinite += 1
            self.skipped_steps += 1
            self.logger.text(f"step {self.step}: non-finite {result.nonfinite_terms or ['total']}; update skipped")
            if self.consecutive_nonfinite >= t.max_nonfinite_steps:
                raise TrainingError(
                    f"{self.consecutive_nonfinite} consecutive steps had non-finite values "
                    f"(terms: {', '.join(result.nonfinite_terms) or 'total loss'}); stopping. "
                    f"Lower optim.lr or check the data."
                )
            return
        self.consecutive_nonfinite = 0
        if self.step % t.log_every == 0 or self.step == 1:
            total = all_reduce_mean(torch.tensor(result.total)).item()
            self.logger.log_step(self.step, result, total=total, lr=lr, step_time=step_time, data_time=data_time,
                                 images=self.batch_size * self.dist.world_size, skipped_steps=self.skipped_steps)
        if t.image_every and self.step % t.image_every == 0:
            self.logger.log_training_images(self.step, batch, result.outputs)


def run_training(cfg: Config, *, resume: str | None = None, out_dir: str | Path | None = None,
                 on_step: Callable[[int, StepResult], None] | None = None, overwrite: bool | None = None) -> dict[str, Any]:
    """Run the configured stage, or both stages of the two-stage flow. Returns a summary. ``overwrite``: see
    :func:`~featdepth.training.setup.prepare_output_dir` (``None``, the library default, does not check)."""
    out = Path(out_dir or cfg.train.out_dir)
    if overwrite is not None and env_dist_info().is_main:
        setup.prepare_output_dir(out, resume=resume, overwrite=overwrite, restarted=restart_count() > 0)
    t = cfg.train
    if t.stage == "depth" and not t.feature_checkpoint and t.run_feature_stage:
        stage1 = Trainer(cfg, stage="featurenet", out_dir=out / "featurenet", resume=resume and "auto",
                         on_step=on_step).fit()
        cfg2 = copy.deepcopy(cfg)
        cfg2.train.feature_checkpoint = stage1["checkpoint"]
        stage2 = Trainer(cfg2, stage="depth", out_dir=out / "depth", resume=resume and "auto", on_step=on_step).fit()
        return {"featurenet": stage1, **stage2}
    return Trainer(cfg, out_dir=out, resume=resume, on_step=on_step).fit()
