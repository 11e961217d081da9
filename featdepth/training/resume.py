"""Resuming a run: which checkpoint (the newest verified one for ``auto``), agreed on by every rank, and
restoring the trainer's state from it exactly (weights, optimizer, schedule, scaler, counters, RNG)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from featdepth.training.checkpoints import CheckpointError, CheckpointManager, load_checkpoint
from featdepth.training.distributed import DistInfo, all_gather_object, broadcast_object


def find_resume_state(manager: CheckpointManager, resume: str) -> tuple[dict[str, Any], Path] | None:
    """``resume="auto"``: the newest checkpoint of ``manager`` that verifies (``None`` if there is none);
    otherwise the file ``resume``."""
    if resume == "auto":
        return manager.load_latest_good(warn=lambda msg: print(f"[featdepth] {msg}", file=sys.stderr))
    path = Path(resume)
    return load_checkpoint(path), path


def find_resume_state_distributed(manager: CheckpointManager, resume: str,
                                  dist: DistInfo) -> tuple[dict[str, Any], Path] | None:
    """Rank 0 chooses (and verifies) the checkpoint; the other ranks load the same file, or receive its
    content from rank 0 where they cannot see it (no shared filesystem)."""
    found, error = None, None
    if dist.is_main:
        try:
            found = find_resume_state(manager, resume)
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
        return found if dist.is_main else (load_checkpoint(path), path)
    state = broadcast_object(found[0] if found is not None else None)
    return state, path
