"""Devices, precision, batches and random streams: what training, inference and evaluation share."""

from __future__ import annotations

import contextlib
import functools
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from featdepth.config import ConfigError


def resolve_device(name: str | torch.device, key: str = "train.device") -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` -> a device.

    Raises:
        ConfigError: an unknown device name, or CUDA requested where it is not available (names ``key``).
    """
    if isinstance(name, torch.device):
        return name
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}={name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key}={name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name!r} but CUDA is not available on this machine (use cpu or auto)")
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
