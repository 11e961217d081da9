"""Resuming a run: which checkpoint (the newest verified one for ``auto``), agreed on by every rank, whether
it fits this run (stage, ``model.*`` settings, tensor shapes: one line naming the file and the setting), and
restoring the trainer's state from it exactly (weights, optimizer, schedule, scaler, counters, RNG).

``--resume auto`` never starts again at step 0 while checkpoint files exist: a missing or corrupt manifest is
rebuilt from the files that verify (:meth:`~featdepth.training.checkpoints.CheckpointManager.reconcile`), and
if none verifies the run stops with a message instead of overwriting them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featdepth.config import Config, config_to_dict
from featdepth.training.checkpoints import CheckpointError, CheckpointManager, load_checkpoint
from featdepth.training.distributed import DistInfo, all_gather_object, broadcast_object
from featdepth.utils.checkpoint_io import check_finite_weights, plain_rng_state, restore_rng_state, state_mismatch_summary
from featdepth.utils.files import json_safe
from featdepth.utils.runtime import rng_state, set_rng_state

#: ``model.*`` settings that only choose the initial weights (a resumed run has its own): not compared.
INIT_ONLY_MODEL_KEYS = ("depth_weights", "pose_weights", "feature_weights")
#: What a checkpoint needs to resume from it (a weights-only export has only ``model`` and ``config``).
RESUME_KEYS = ("model", "optimizer", "schedule", "step", "epoch", "epoch_step", "rng")


def warn(message: str) -> None:
    print(f"[featdepth] {message}", file=sys.stderr)


def checkpoint_rng_state() -> dict[str, Any]:
    """The RNG states (Python, NumPy, torch, CUDA) as tensors and numbers, for a checkpoint."""
    return plain_rng_state(rng_state())


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the RNGs from a checkpoint's ``rng`` (this format, or the tuples of older checkpoints)."""
    set_rng_state(restore_rng_state(state))


def find_resume_state(manager: CheckpointManager, resume: str) -> tuple[dict[str, Any], Path] | None:
    """``resume="auto"``: the newest checkpoint of ``manager`` that verifies, after reconciling its manifest
    with the files (``None`` if the folder holds no checkpoint file at all); otherwise the file ``resume``.

    Raises:
        CheckpointError: ``auto`` with checkpoint files of which none verifies; an unreadable or non-finite
            ``resume`` file (names it).
    """
    if resume == "auto":
        manager.reconcile(warn=warn)
        found = manager.load_latest_good(warn=warn)
        leftovers = sorted(manager.folder.glob("step_*.pt")) if manager.folder.is_dir() else []
        if found is None and leftovers:
            raise CheckpointError(
                f"--resume auto: {manager.folder} holds {len(leftovers)} checkpoint files ({leftovers[-1].name}, ...) "
                "but none verifies (see the messages above); refusing to start again at step 0 over them. Resume "
                "from a file you trust with --resume FILE, or start a new run with --overwrite or another --out"
            )
        return found
    path = Path(resume)
    state = load_checkpoint(path)
    check_finite_weights(state, path)
    return state, path


def model_setting_differences(state: Mapping[str, Any], cfg: Config) -> list[str]:
    """``model.KEY: A in the checkpoint, B in this run`` for every ``model.*`` setting (except the initial-weight
    paths) the checkpoint's stored config has and that differs from ``cfg``'s."""
    stored = state.get("config") if isinstance(state.get("config"), Mapping) else {}
    stored_model = stored.get("model") if isinstance(stored.get("model"), Mapping) else {}
    current = config_to_dict(cfg)["model"]
    return [f"model.{k}: {json_safe(stored_model[k])!r} in the checkpoint, {json_safe(v)!r} in this run"
            for k, v in current.items()
            if k not in INIT_ONLY_MODEL_KEYS and k in stored_model and json_safe(stored_model[k]) != json_safe(v)]


def check_resumable(state: Mapping[str, Any], path: Path, cfg: Config, stage: str) -> None:
    """One-line errors (naming ``path``) before anything is loaded: entries missing, another stage, or other
    ``model.*`` settings (e.g. ``model.depth_layers``) than the run's."""
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"cannot resume from {path}: it is not a training checkpoint (no {', '.join(missing)}); "
                              "resume from a step_*.pt file of a run's checkpoints folder")
    if state.get("stage", stage) != stage:
        raise CheckpointError(f"{path} is a '{state.get('stage')}' checkpoint; this run is stage '{stage}'")
    diffs = model_setting_differences(state, cfg)
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: its networks differ from this run's ({'; '.join(diffs)}). "
                              "Resume with the same model settings, or start a new run (--overwrite or another --out)")


def load_resumed_weights(system: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any],
                         path: Path) -> None:
    """``load_state_dict`` of the weights and the optimizer, with one line naming the file on a mismatch."""
    try:
        system.load_state_dict(state["model"])
    except RuntimeError:
        raise CheckpointError(f"cannot resume from {path}: its weights do not fit this run's networks "
                              f"({state_mismatch_summary(system.state_dict(), state['model'])})") from None
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"cannot resume from {path}: its optimizer state does not fit this run's trainable "
                              f"parameters ({str(exc)[:200]})") from None


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
