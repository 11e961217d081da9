"""Process-group helpers. One code path for one process and for ``torchrun``.

Under ``torchrun`` the environment has ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` (and ``MASTER_ADDR`` /
``MASTER_PORT``); :func:`init_distributed` then starts the default process group (NCCL on CUDA, gloo on
CPU). Without them everything here is a no-op and the process is rank 0 of 1.

Conventions of the trainer built on these helpers:

- ``optim.batch_size`` is the batch *per process*; the global batch is ``batch_size × world_size``.
- Rank 0 alone writes checkpoints, logs and the progress bar, and generates synthetic data (the other ranks
  wait for it in :func:`main_process_first`).
- Under ``torchrun --max-restarts N`` a restarted worker sees ``TORCHELASTIC_RESTART_COUNT > 0``
  (:func:`restart_count`) and the trainer resumes from the newest good checkpoint automatically.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """Rank information from the ``torchrun`` environment variables (rank 0 of 1 if absent)."""
    try:
        info = DistInfo(
            rank=int(os.environ.get("RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
        )
    except ValueError as exc:
        raise RuntimeError(f"malformed torchrun environment (RANK/LOCAL_RANK/WORLD_SIZE): {exc}") from exc
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise RuntimeError(f"malformed torchrun environment: RANK={info.rank}, WORLD_SIZE={info.world_size}")
    return info


def restart_count() -> int:
    """How many times ``torchrun`` (torchelastic) has restarted this job's workers; 0 outside torchrun."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def init_distributed(device: torch.device, timeout_s: float | None = None) -> DistInfo:
    """Start the default process group if launched by ``torchrun`` (``WORLD_SIZE > 1``) and not started yet.

    The backend is NCCL for CUDA devices and gloo otherwise. ``timeout_s`` bounds collective operations
    (default: PyTorch's, 10 min for NCCL / 30 min for gloo); set ``FEATDEPTH_DIST_TIMEOUT_S`` to change it.
    """
    info = env_dist_info()
    if info.world_size > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if timeout_s is None and os.environ.get("FEATDEPTH_DIST_TIMEOUT_S"):
            timeout_s = float(os.environ["FEATDEPTH_DIST_TIMEOUT_S"])
        kwargs: dict[str, Any] = {"backend": backend}
        if timeout_s is not None:
            kwargs["timeout"] = datetime.timedelta(seconds=timeout_s)
        if device.type == "cuda":
            kwargs["device_id"] = torch.device("cuda", info.local_rank)
        if restart_count() > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and info.rank == 0:
            warnings.warn(
                "restarted by torchrun with the rendezvous store shared between rounds; if connecting the "
                "processes fails or hangs, launch torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
                "(a fresh store per restart)", stacklevel=2)
        dist.init_process_group(**kwargs)
    return info


def barrier() -> None:
    if is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the body on rank 0 first, then on the other ranks (e.g. download or generate data once).

    With one process this is a plain block. If rank 0 fails inside the body it leaves without reaching the
    barrier; ``torchrun`` then tears the whole job down.
    """
    rank = dist.get_rank() if is_initialized() else 0
    if rank != 0:
        barrier()
    yield
    if rank == 0:
        barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over processes (a copy); identity with one process."""
    if is_initialized() and dist.get_world_size() > 1:
        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def all_true(flag: bool, device: torch.device | None = None) -> bool:
    """``True`` if ``flag`` is true on every process (a collective: every rank must call it)."""
    if not (is_initialized() and dist.get_world_size() > 1):
        return bool(flag)
    if device is None or dist.get_backend() != "nccl":
        device = torch.device("cpu")
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` with one process."""
    if not (is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every process; ``obj`` itself with one process."""
    if not (is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
