"""The checkpoints of a training run: kept, rotated and verified.

- Every file is written atomically (:mod:`featdepth.utils.files`): a crash or SIGKILL at any moment leaves
  either the old file or the new one, never a half-written one under the final name.
- Each checkpoint's SHA-256 is recorded in a manifest (``checkpoints.json``, itself written atomically).
  Loading verifies the digest; a corrupt or unreadable file gives a clear error, and
  :meth:`CheckpointManager.load_latest_good` falls back to the previous good checkpoint.
- The manager keeps the newest ``keep`` checkpoints plus the best one by a validation metric. Rotation
  never deletes a checkpoint newer than the newest one it keeps (:meth:`CheckpointManager.save`).
- A missing or corrupt manifest, or a checkpoint written just before a kill and never entered in it, is
  reconciled from the ``step_*.pt`` files that verify (readable, finite weights):
  :meth:`CheckpointManager.reconcile`. Resuming from an older checkpoint than the newest moves the newer
  ones to ``superseded/`` instead of deleting them (:meth:`CheckpointManager.set_aside_newer`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featdepth.utils.checkpoint_io import MANIFEST, CheckpointError, check_finite_weights, load_checkpoint
from featdepth.utils.files import atomic_link, atomic_save, atomic_write_bytes, file_sha256

_STEP_FILE = re.compile(r"step_(\d+)\.pt")
SUPERSEDED = "superseded"

__all__ = ["MANIFEST", "CheckpointError", "CheckpointManager", "CheckpointRecord", "load_checkpoint"]


@dataclass
class CheckpointRecord:
    file: str
    sha256: str
    step: int
    epoch: int
    metric: float | None = None


class CheckpointManager:
    """Keeps the newest ``keep`` checkpoints plus the best by a metric (lower is better), in ``folder``."""

    def __init__(self, folder: str | Path, keep: int = 3, best_mode: str = "min") -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        self.folder = Path(folder)
        self.keep = keep
        self.best_mode = best_mode

    # -- manifest ------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"checkpoints": [], "best": None}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            # The manifest is written atomically, so this only happens if edited by hand; rebuild.
            return self._rebuild_manifest()
        data.setdefault("checkpoints", [])
        data.setdefault("best", None)
        return data

    def _rebuild_manifest(self) -> dict[str, Any]:
        records = [r for p in sorted(self.folder.glob("step_*.pt")) if (r := self.verify_file(p)) is not None]
        return {"checkpoints": records, "best": None}

    def verify_file(self, path: Path, warn=None) -> dict[str, Any] | None:
        """The manifest record of a checkpoint file not named in the manifest, if it verifies: it loads (safe
        unpickling), holds ``model`` and ``step``, and its weights are finite. ``None`` (after ``warn``) if not."""
        try:
            obj = load_checkpoint(path, expected_sha256=None)
            if not isinstance(obj.get("model"), dict) or not isinstance(obj.get("step"), int):
                raise CheckpointError(f"checkpoint {path} holds no 'model' state or 'step'")
            check_finite_weights(obj, path)
        except CheckpointError as exc:
            if warn is not None:
                warn(f"{exc}; not used")
            return None
        return {"file": path.name, "sha256": file_sha256(path), "step": int(obj["step"]),
                "epoch": int(obj.get("epoch", 0) or 0), "metric": None}

    def reconcile(self, warn=None) -> dict[str, Any]:
        """Bring the manifest in line with the checkpoint files (before resuming): a missing or corrupt manifest
        is rebuilt from the ``step_*.pt`` files that verify; a verified file the manifest does not name (a kill
        between a checkpoint's rename and the manifest update) is added; records of vanished files are dropped.
        Files that do not verify are left where they are (named through ``warn``). Returns the manifest."""
        if not self.folder.is_dir():
            return {"checkpoints": [], "best": None}
        missing = not self.manifest_path.is_file()
        try:
            data = json.loads(self.manifest_path.read_text()) if not missing else {}
            records = [dict(r) for r in data.get("checkpoints") or []]
            best = data.get("best")
        except (OSError, ValueError, TypeError, AttributeError):
            if warn is not None:
                warn(f"{self.manifest_path} is unreadable; rebuilding it from the checkpoint files that verify")
            records, best, missing = [], None, True
        kept = [r for r in records if (self.folder / str(r.get("file"))).is_file()]
        changed = missing or len(kept) != len(records)
        named = {r["file"] for r in kept}
        unnamed = sorted(p for p in self.folder.glob("step_*.pt") if p.name not in named)
        if unnamed and missing and warn is not None:
            warn(f"{self.manifest_path} is missing; rebuilding it from the {len(unnamed)} checkpoint files that verify")
        for p in unnamed:
            record = self.verify_file(p, warn)
            if record is not None:
                kept.append(record)
                changed = True
                if not missing and warn is not None:
                    warn(f"{p} was not in the manifest (written just before the run stopped); verified and kept")
        if best is not None and not (self.folder / str(best.get("file"))).is_file():
            best, changed = None, True
        kept.sort(key=lambda r: r["step"])
        data = {"checkpoints": kept, "best": best}
        if changed and (kept or best or not missing):
            self._write_manifest(data)
        return data

    def set_aside_newer(self, step: int, warn=None) -> list[Path]:
        """Move the checkpoints newer than ``step`` (and ``best.pt`` if it is newer) to ``superseded/`` and drop
        them from the manifest: a run resumed from an older checkpoint must neither delete them nor mix them
        with its own. Returns their new paths."""
        data = self.read_manifest()
        newer = [r for r in data["checkpoints"] if r["step"] > step]
        newer_files = {r["file"] for r in newer} | {p.name for p in self.folder.glob("step_*.pt")
                                                    if _file_step(p.name) is not None and _file_step(p.name) > step}
        best = data.get("best")
        if best is not None and best.get("step", 0) > step:
            newer_files.add(str(best["file"]))
            best = None
        moved = []
        if newer_files:
            target = self.folder / SUPERSEDED
            target.mkdir(exist_ok=True)
            for name in sorted(newer_files):
                src = self.folder / name
                if src.is_file():
                    dst = target / (f"step{step:08d}-" + name if name == "best.pt" else name)
                    src.replace(dst)
                    moved.append(dst)
            self._write_manifest({"checkpoints": [r for r in data["checkpoints"] if r["step"] <= step], "best": best})
            if warn is not None and moved:
                warn(f"resuming from step {step}: moved the {len(moved)} newer checkpoint files to {target} "
                     "(not deleted)")
        return moved

    def _write_manifest(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.manifest_path, json.dumps(data, indent=2).encode())

    # -- save ----------------------------------------------------------------------------
    def save(self, state: dict[str, Any], step: int, epoch: int, metric: float | None = None) -> Path:
        """Save ``state`` as ``step_XXXXXXXX.pt``; update the manifest; prune old files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:08d}.pt"
        digest = atomic_save(state, self.folder / name)
        data = self.read_manifest()
        records = [r for r in data["checkpoints"] if r["file"] != name]
        records.append({"file": name, "sha256": digest, "step": step, "epoch": epoch, "metric": metric})
        records.sort(key=lambda r: r["step"])
        best = data.get("best")
        if metric is not None and _is_finite(metric):
            better = best is None or (metric < best["metric"] if self.best_mode == "min" else metric > best["metric"])
            if better:
                # best.pt is a hard link to the step file (no second full copy; it survives pruning).
                atomic_link(self.folder / name, self.folder / "best.pt")
                best = {"file": "best.pt", "sha256": digest, "step": step, "epoch": epoch, "metric": metric}
        keep = records[-self.keep :]
        removed = records[: -self.keep]
        data = {"checkpoints": keep, "best": best}
        self._write_manifest(data)  # the manifest never names a file that is about to be deleted
        named = {r["file"] for r in keep}
        for r in removed:
            try:
                (self.folder / r["file"]).unlink()
            except OSError:
                pass
        # Checkpoints a killed process dropped from the manifest but did not delete yet: only those older than
        # every kept one (never a newer one: it may be the newest state of a run, see reconcile()).
        oldest_kept = keep[0]["step"] if keep else step
        for p in self.folder.glob("step_*.pt"):
            file_step = _file_step(p.name)
            if p.name not in named and file_step is not None and file_step < oldest_kept:
                try:
                    p.unlink()
                except OSError:
                    pass
        self._remove_stale_temporaries()
        return self.folder / name

    def _remove_stale_temporaries(self) -> None:
        for p in self.folder.glob(".*.tmp"):
            try:
                p.unlink()
            except OSError:
                pass

    # -- load ----------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        return list(self.read_manifest()["checkpoints"])

    def load_latest_good(self, map_location: Any = "cpu", warn=None) -> tuple[dict[str, Any], Path] | None:
        """Newest checkpoint that passes verification, falling back to older ones; ``None`` if none."""
        for r in reversed(self.records()):
            path = self.folder / r["file"]
            try:
                state = load_checkpoint(path, r.get("sha256"), map_location=map_location)
                check_finite_weights(state, path)
                return state, path
            except CheckpointError as exc:
                if warn is not None:
                    warn(f"{exc}; trying the previous checkpoint")
        return None


def _file_step(name: str) -> int | None:
    m = _STEP_FILE.fullmatch(name)
    return int(m.group(1)) if m else None


def _is_finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


