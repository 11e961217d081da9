"""A thin training loop: ``train_step``, ``validate``, checkpointing and logging kept apart.

``run_training(cfg)`` is what ``featdepth train`` calls. It runs one stage, or both stages of the
two-stage flow (FeatureNet first, then depth/pose with it frozen) when ``train.stage=depth`` and
``train.run_feature_stage=true`` with no ``train.feature_checkpoint``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import platform
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

import featdepth
from featdepth.config import Config, ConfigError, config_to_dict, dump_config
from featdepth.data.factory import EpochSampler, SeededItems, build_datasets
from featdepth.engine.checkpoints import CheckpointError, CheckpointManager, load_checkpoint
from featdepth.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_mean,
    all_true,
    barrier,
    broadcast_object,
    env_dist_info,
    init_distributed,
    main_process_first,
    restart_count,
)
from featdepth.engine.logging import RunLogger
from featdepth.engine.schedule import WarmupStepSchedule
from featdepth.models.system import FeatDepthSystem


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps); the message says why."""


# ------------------------------------------------------------------------------------------
# devices, precision, batches


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available on this machine")
    return device


def autocast_context(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs CUDA; use bf16 on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(device: torch.device, amp: str, setting: bool | None) -> bool:
    """channels_last where measured to help (``train.channels_last`` unset): CUDA always; CPU in float32;
    CPU in bf16 only on CPUs without AMX. Measured training steps (benchmarks/results/train_cpu.md): on an AMD
    EPYC with AVX512-BF16 channels_last made float32 1.4× and bf16 1.5× faster (paper setting); on an AMX
    Xeon (reference figures) float32 gained 2× but bf16 + channels_last was 20× slower."""
    if setting is not None:
        return bool(setting)
    if device.type == "cuda":
        return True
    return amp == "none" or not _cpu_may_have_amx()


@functools.lru_cache(maxsize=1)
def _cpu_may_have_amx() -> bool:
    """True if the CPU has AMX tiles, or if that cannot be told (no /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return any(flag.startswith("amx") for flag in line.split(":", 1)[1].split())
    except OSError:
        pass
    return True


def move_batch(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, Tensor):
        non_blocking = device.type == "cuda"
        if channels_last and batch.dim() == 4 and batch.shape[1] == 3:
            return batch.to(device, non_blocking=non_blocking).contiguous(memory_format=torch.channels_last)
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: move_batch(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(v, device, channels_last) for v in batch)
    return batch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------
# one step


@dataclass
class StepResult:
    total: float
    terms: dict[str, float]
    weighted: dict[str, float]
    finite: bool
    grad_norm: float
    nonfinite_terms: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


def train_step(
    system: nn.Module,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = 35.0,
    params: list[nn.Parameter] | None = None,
    sync: bool | None = None,
) -> StepResult:
    """Forward, backward, clip, step. A non-finite loss or gradient skips the update.

    Under DistributedDataParallel (``sync=None`` detects it; ``sync=True`` forces it) the ranks first agree
    on whether every rank's loss is finite: all skip the backward together (a rank that skipped alone would
    leave the others waiting in the gradient all-reduce), and the names of the non-finite terms of every
    rank are gathered. Gradients are averaged over ranks by DDP, so the gradient check agrees by itself.
    """
    if sync is None:
        sync = isinstance(system, nn.parallel.DistributedDataParallel)
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(device, amp):
        out, outputs = system(batch)
    total = out.total.float()
    finite = bool(torch.isfinite(total))
    bad_terms = [k for k, v in out.terms.items() if not bool(torch.isfinite(v.detach()))]
    if not finite and not bad_terms:
        bad_terms = ["total"]
    if sync:
        finite = all_true(finite, device)
        if not finite:
            gathered = all_gather_object(bad_terms)
            bad_terms = sorted({t for rank_terms in gathered for t in rank_terms})
    grad_norm = float("nan")
    if finite:
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
        else:
            total.backward()
        params = params if params is not None else [p for p in system.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
        grad_norm = float(norm)
        if not math.isfinite(grad_norm):
            finite = False
            bad_terms = bad_terms or ["gradients"]
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.update()
        elif scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    terms = {k: float(v.detach()) for k, v in out.terms.items()}
    weighted = {k: float(v.detach()) for k, v in out.weighted_terms().items()}
    return StepResult(float(total.detach()), terms, weighted, finite, grad_norm, bad_terms, outputs)


# ------------------------------------------------------------------------------------------
# validation


@torch.no_grad()
def validate(system: FeatDepthSystem, loader: DataLoader, device: torch.device, amp: str = "none",
             max_images: int | None = None) -> dict[str, float]:
    """Depth metrics with per-image median scaling where GT exists (``1e-3 < gt < 80``, no crop: the
    synthetic scenes' far background at exactly 80 m is not counted); the FeatureNet stage reports its
    reconstruction loss instead."""
    from featdepth.evaluation.depth_metrics import evaluate_depth
    from featdepth.models.layers import disp_to_depth

    was_training = system.training
    system.eval()
    # Validation must not perturb the training random streams (resume determinism).
    py_state, np_state = random.getstate(), np.random.get_state()
    rng_guard = torch.random.fork_rng(devices=[])
    rng_guard.__enter__()
    try:
        if system.stage == "featurenet":
            totals: list[float] = []
            for batch in loader:
                batch = move_batch(batch, device)
                with autocast_context(device, amp):
                    out, _ = system(batch)
                totals.append(float(out.terms["reconstruction"]))
                if max_images and len(totals) * batch["color"][0].shape[0] >= max_images:
                    break
            return {"reconstruction": float(np.mean(totals))} if totals else {}
        gts, preds = [], []
        m = system.cfg.model
        for batch in loader:
            if "depth_gt" not in batch:
                return {}
            image = move_batch(batch["color"][0], device)
            with autocast_context(device, amp):
                disp = system.predict_disparities(image)[0]
            _, depth = disp_to_depth(disp.float(), m.min_depth, m.max_depth)
            for i in range(depth.shape[0]):
                gts.append(batch["depth_gt"][i, 0].numpy())
                preds.append(depth[i, 0].cpu().numpy())
            if max_images and len(preds) >= max_images:
                break
        if not preds:
            return {}
        result = evaluate_depth(gts, preds, protocol="uncropped", scaling="median")
        metrics = dict(result.metrics)
        metrics["median_ratio"] = result.ratio_median
        return metrics
    finally:
        rng_guard.__exit__(None, None, None)
        random.setstate(py_state)
        np.random.set_state(np_state)
        system.train(was_training)


# ------------------------------------------------------------------------------------------
# the trainer


def _versions() -> dict[str, str]:
    return {"featdepth": featdepth.__version__, "torch": torch.__version__, "python": platform.python_version()}


def check_output_dir(out_dir: Path, min_free_bytes: int = 200 * 2**20) -> None:
    """Fail before training starts if the output folder is unwritable or the disk is (nearly) full."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"output folder {out_dir} is not writable: {exc}") from exc
    free = shutil.disk_usage(out_dir).free
    if free < min_free_bytes:
        raise TrainingError(f"only {free / 2**20:.0f} MiB free on the disk of {out_dir}; checkpoints need more")


def build_optimizer(params: list[nn.Parameter], cfg: Config) -> torch.optim.Optimizer:
    """Adam (spec §3.1), in its fused implementation where PyTorch has one for the parameters' device: the
    same update to float rounding, several times faster than the default per-parameter loop on CPU (measured
    0.17 s → 0.03 s per step for the 27 M trainable parameters of the ResNet-18 baseline)."""
    kwargs: dict[str, Any] = {"lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay}
    devices = {p.device.type for p in params}
    floating = all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params)
    if params and devices <= {"cpu", "cuda"} and floating:
        try:
            return torch.optim.Adam(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass  # a PyTorch without fused Adam for this device
    return torch.optim.Adam(params, **kwargs)


def checkpoint_bytes_estimate(system: nn.Module) -> int:
    """Approximate size of a training checkpoint of ``system``: its state plus Adam's two moments."""
    state = sum(t.numel() * t.element_size() for t in system.state_dict().values() if isinstance(t, Tensor))
    moments = 2 * sum(p.numel() * 4 for p in system.parameters() if p.requires_grad)
    return state + moments + (1 << 20)


def check_disk_space(out_dir: Path, checkpoint_bytes: int, keep: int) -> None:
    """Fail before training starts if the disk of ``out_dir`` cannot hold the checkpoints of the run:
    ``keep`` checkpoints, ``best.pt`` and the temporary file of the one being written."""
    folder = out_dir / "checkpoints"
    existing = sum(p.stat().st_size for p in folder.glob("*.pt")) if folder.is_dir() else 0
    needed = checkpoint_bytes * (keep + 2) - existing
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise TrainingError(
            f"only {free / 2**20:.0f} MiB free on the disk of {out_dir}; the checkpoints of this run need about "
            f"{needed / 2**20:.0f} MiB ({checkpoint_bytes / 2**20:.0f} MiB each, train.keep_checkpoints={keep}, "
            f"plus best.pt and one being written). Free some space or choose another train.out_dir."
        )


def freeze_unused_heads(system: nn.Module) -> list[str]:
    """Mark parameters no training stage uses as frozen: the ImageNet classifier (``fc``) the ResNet encoders
    keep for strict state-dict loading. DistributedDataParallel with ``find_unused_parameters=False`` needs
    every trainable parameter to receive a gradient; Adam never updated them anyway (their gradient is
    ``None``), so single-process training is unchanged. Returns the names frozen."""
    from featdepth.models.encoders import ResnetEncoder

    frozen = []
    for name, module in system.named_modules():
        if isinstance(module, ResnetEncoder):
            fc = getattr(module.encoder, "fc", None)
            if isinstance(fc, nn.Module):
                for pname, p in fc.named_parameters():
                    if p.requires_grad:
                        p.requires_grad_(False)
                        frozen.append(f"{name}.encoder.fc.{pname}")
    return frozen


def compile_networks(system: nn.Module) -> list[str]:
    """``torch.compile`` the networks of ``system`` in place (``nn.Module.compile``: state-dict keys are
    unchanged). Returns the names compiled; on failure warns and returns ``[]`` (eager mode)."""
    names = [n for n in ("depth_net", "pose_net", "feature_net") if isinstance(getattr(system, n, None), nn.Module)]
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly
        for n in names:
            getattr(system, n).compile()
    except Exception as exc:  # noqa: BLE001 - compile is an optional speed-up
        uncompile_networks(system, names)
        warnings.warn(f"train.compile: torch.compile is unavailable ({type(exc).__name__}: {exc}); "
                      f"training in eager mode", stacklevel=2)
        return []
    return names


def uncompile_networks(system: nn.Module, names: list[str]) -> None:
    for n in names:
        module = getattr(system, n, None)
        if isinstance(module, nn.Module) and hasattr(module, "_compiled_call_impl"):
            module._compiled_call_impl = None


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
            check_output_dir(self.out_dir)
        seed_everything(t.seed + self.dist.rank)

        fs = cfg.feature_stage
        is_feature = self.stage == "featurenet"
        self.batch_size = (fs.batch_size if is_feature and fs.batch_size else cfg.optim.batch_size)
        self.epochs = (fs.epochs if is_feature and fs.epochs else cfg.optim.epochs)
        self.max_steps = (fs.max_steps if is_feature and fs.max_steps is not None else cfg.optim.max_steps)
        milestones = (fs.milestones if is_feature and fs.milestones is not None else cfg.optim.milestones)
        h = (fs.height if is_feature and fs.height else cfg.data.height)
        w = (fs.width if is_feature and fs.width else cfg.data.width)

        with main_process_first():  # rank 0 generates synthetic data (if missing); the others wait
            train_ds, val_ds = build_datasets(cfg, self.stage, height=h, width=w)
        self.train_set = SeededItems(train_ds, t.seed)
        self.sampler = EpochSampler(len(train_ds), self.batch_size, t.seed, rank=self.dist.rank, world_size=self.dist.world_size)
        workers = cfg.data.num_workers
        self.train_loader = DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=self.sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", drop_last=True, persistent_workers=workers > 0,
            # A private generator: creating an iterator (e.g. when resuming mid-epoch) must not draw
            # from the global RNG that dropout and the automask noise use.
            generator=torch.Generator().manual_seed(t.seed),
        )
        self.val_loader = None
        if val_ds is not None and self.dist.is_main:
            self.val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=min(workers, 2),
                                         generator=torch.Generator().manual_seed(t.seed))

        self.system = FeatDepthSystem(cfg, stage=self.stage).to(self.device)
        if self.stage == "depth":
            self._load_feature_checkpoint()
        freeze_unused_heads(self.system)
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
            check_disk_space(self.out_dir, checkpoint_bytes_estimate(self.system), t.keep_checkpoints)
        self.compiled = compile_networks(self.system) if t.compile else []
        self._compile_unchecked = bool(self.compiled)
        self.model: nn.Module = self.system
        if self.dist.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                self.system, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=False,
            )
        self.optimizer = build_optimizer(self.params, cfg)
        o = cfg.optim
        self.schedule = WarmupStepSchedule(self.optimizer, warmup_iters=o.warmup_iters, warmup_ratio=o.warmup_ratio,
                                           milestones=milestones, gamma=o.gamma)
        self.scaler = torch.amp.GradScaler("cuda") if (self.amp == "fp16" and self.device.type == "cuda") else None
        self.ckpt = CheckpointManager(self.out_dir / "checkpoints", keep=t.keep_checkpoints)
        self._saved_step: int | None = None  # step of the last checkpoint this process wrote
        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main)
        self.step = 0
        self.epoch = 0
        self.epoch_step = 0
        self.consecutive_nonfinite = 0
        self.skipped_steps = 0
        self.best_metric: float | None = None
        if self.dist.is_main:
            dump_config(cfg, self.out_dir / "config.yaml")
        if resume:
            self._resume(resume)

    # -- checkpoints ---------------------------------------------------------------------
    def _load_feature_checkpoint(self) -> None:
        path = self.cfg.train.feature_checkpoint
        if not path:
            raise ConfigError(
                "train.stage=depth needs train.feature_checkpoint (a stage-1 checkpoint) "
                "or train.run_feature_stage=true to train FeatureNet first"
            )
        state = load_checkpoint(path)
        model_state = state.get("model", state)
        prefix = "feature_net."
        fn_state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
        if not fn_state:
            raise CheckpointError(f"{path} holds no FeatureNet weights (keys starting with '{prefix}')")
        self.system.load_feature_net(fn_state, source=str(path))

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
            "rng": rng_state(),
            "stage": self.stage,
            "config": config_to_dict(self.cfg),
            "versions": _versions(),
        }

    def save_checkpoint(self, metric: float | None = None) -> Path | None:
        self._saved_step = self.step  # on every rank: the decision to save again must agree across ranks
        if not self.dist.is_main:
            return None
        return self.ckpt.save(self.state_dict(), self.step, self.epoch, metric)

    def _find_resume_state(self, resume: str) -> tuple[dict[str, Any], Path] | None:
        if resume == "auto":
            return self.ckpt.load_latest_good(warn=lambda msg: print(f"[featdepth] {msg}", file=sys.stderr))
        path = Path(resume)
        return load_checkpoint(path), path

    def _resume_state_distributed(self, resume: str) -> tuple[dict[str, Any], Path] | None:
        """Rank 0 chooses (and verifies) the checkpoint; the other ranks load the same file, or receive its
        content from rank 0 where they cannot see it (no shared filesystem)."""
        found, error = None, None
        if self.dist.is_main:
            try:
                found = self._find_resume_state(resume)
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
                error = exc
        message = broadcast_object(
            ("error", f"{type(error).__name__}: {error}") if error is not None
            else ("ok", str(found[1]) if found is not None else None)
        )
        if error is not None:
            raise error
        if message[0] == "error":
            raise CheckpointError(f"rank 0 could not load the checkpoint to resume from: {message[1]}")
        if message[1] is None:
            return None
        path = Path(message[1])
        visible = all(all_gather_object(path.is_file()))
        if visible:
            return found if self.dist.is_main else (load_checkpoint(path), path)
        state = broadcast_object(found[0] if found is not None else None)
        return state, path

    def _resume(self, resume: str) -> None:
        found = self._resume_state_distributed(resume) if self.dist.enabled else self._find_resume_state(resume)
        if found is None:
            return  # nothing to resume from: start fresh
        state, path = found
        if state.get("stage", self.stage) != self.stage:
            raise CheckpointError(f"{path} is a '{state.get('stage')}' checkpoint; this run is stage '{self.stage}'")
        self.system.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.epoch_step = int(state["step"]), int(state["epoch"]), int(state["epoch_step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._saved_step = self.step
        set_rng_state(state["rng"])
        if self.dist.enabled:  # the checkpoint holds rank 0's generators: give every rank its own stream again
            seed_everything(self.cfg.train.seed + self.dist.rank + 1_000_003 * self.step)
        self.logger.text(f"resumed from {path} at step {self.step}")
        if self.dist.is_main:
            print(f"[featdepth] resumed from {path} (step {self.step}, epoch {self.epoch})", file=sys.stderr)

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
                        last_metrics = validate(self.system, self.val_loader, self.device, self.amp, t.val_max_images)
                        self.logger.scalars(self.step, last_metrics, prefix="val/")
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
                    last_metrics = validate(self.system, self.val_loader, self.device, self.amp, t.val_max_images)
                    self.logger.scalars(self.step, last_metrics, prefix="val/")
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

    def _train_step(self, batch: Any) -> StepResult:
        def step() -> StepResult:
            return train_step(self.model, batch, self.optimizer, device=self.device, amp=self.amp,
                              scaler=self.scaler, grad_clip=self.cfg.optim.grad_clip, params=self.params)

        if not self._compile_unchecked:
            return step()
        self._compile_unchecked = False  # the first compiled step shows whether compilation works here
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - fall back to eager mode
            warnings.warn(f"train.compile: the compiled networks failed ({type(exc).__name__}: {exc}); "
                          f"falling back to eager mode", stacklevel=2)
            uncompile_networks(self.system, self.compiled)
            self.compiled = []
            return step()

    def _after_step(self, result: StepResult, lr: float, data_time: float, step_time: float, batch: Any) -> None:
        t = self.cfg.train
        self.step += 1
        self.epoch_step += 1
        if not result.finite:
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
            values = {"loss/total": total, "lr": lr, "grad_norm": result.grad_norm,
                      "time/step_s": step_time, "time/data_s": data_time,
                      "throughput/images_per_s": self.batch_size * self.dist.world_size / max(step_time + data_time, 1e-9),
                      "skipped_steps": self.skipped_steps}
            values.update({f"loss/{k}": v for k, v in result.terms.items()})
            values.update({f"loss_weighted/{k}": v for k, v in result.weighted.items()})
            self.logger.scalars(self.step, values)
        if t.image_every and self.step % t.image_every == 0:
            self.logger.log_training_images(self.step, batch, result.outputs)


# ------------------------------------------------------------------------------------------
# the flows


def run_training(cfg: Config, *, resume: str | None = None, out_dir: str | Path | None = None,
                 on_step: Callable[[int, StepResult], None] | None = None) -> dict[str, Any]:
    """Run the configured stage, or both stages of the two-stage flow. Returns a summary."""
    out = Path(out_dir or cfg.train.out_dir)
    t = cfg.train
    if t.stage == "depth" and not t.feature_checkpoint and t.run_feature_stage:
        stage1 = Trainer(cfg, stage="featurenet", out_dir=out / "featurenet", resume=resume and "auto",
                         on_step=on_step).fit()
        cfg2 = copy.deepcopy(cfg)
        cfg2.train.feature_checkpoint = stage1["checkpoint"]
        stage2 = Trainer(cfg2, stage="depth", out_dir=out / "depth", resume=resume and "auto", on_step=on_step).fit()
        return {"featurenet": stage1, **stage2}
    return Trainer(cfg, out_dir=out, resume=resume, on_step=on_step).fit()
