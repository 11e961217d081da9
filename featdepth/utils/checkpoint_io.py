"""Reading and writing single training-checkpoint files, verified by the SHA-256 digests of the manifest.

A checkpoint is a dict (``model``, ``optimizer``, ``schedule``, ``scaler``, ``step``, ``epoch``, ``rng``,
``config``, ``stage``, ``versions``...). Each checkpoint's digest is recorded in ``checkpoints.json``
beside it (see :class:`featdepth.training.checkpoints.CheckpointManager`); loading verifies it when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from featdepth.utils.files import file_sha256

MANIFEST = "checkpoints.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or fails verification; the message names the file."""


def manifest_digest(path: Path) -> str | None:
    """The SHA-256 the manifest beside ``path`` records for it, if there is one (errors ignored)."""
    try:
        data = json.loads((path.parent / MANIFEST).read_text())
        records = list(data.get("checkpoints") or []) + ([data["best"]] if data.get("best") else [])
        for r in records:
            if r.get("file") == path.name and r.get("sha256"):
                return str(r["sha256"])
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        pass
    return None


def load_checkpoint(path: str | Path, expected_sha256: str | None = None, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict, verifying its digest when one is known: ``expected_sha256``, or else the
    digest the manifest (``checkpoints.json``) in the same folder records for the file.

    Raises:
        CheckpointError: missing file, digest mismatch, or unreadable content (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if expected_sha256 is None:
        expected_sha256 = manifest_digest(path)
    if expected_sha256 is not None:
        digest = file_sha256(path)
        if digest != expected_sha256:
            raise CheckpointError(f"checkpoint {path} is corrupt: SHA-256 {digest[:12]}… does not match the manifest's {expected_sha256[:12]}…")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means unreadable
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict (got {type(obj).__name__})")
    return obj


