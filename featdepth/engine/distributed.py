"""Process-group helpers. One code path for one process and for ``torchrun``.

Under ``torchrun`` the environment has ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed`
then starts the default process group (NCCL on CUDA, gloo on CPU). Without them everything is a no-op and
the process is rank 0 of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
        return DistInfo(
            rank=int(os.environ.get("RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
        )
    except ValueError as exc:
        raise RuntimeError(f"malformed torchrun environment (RANK/LOCAL_RANK/WORLD_SIZE): {exc}") from exc


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group if launched by ``torchrun`` and not started yet."""
    info = env_dist_info()
    if info.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return info


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over processes (a copy); identity with one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
