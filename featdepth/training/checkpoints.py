"""The checkpoints of a training run: kept, rotated and verified.

- Every file is written atomically (:mod:`featdepth.utils.files`): a crash or SIGKILL at any moment leaves
  either the old file or the new one, never a half-written one under the final name.
- Each checkpoint's SHA-256 is recorded in a manifest (``checkpoints.json``, itself written atomically).
  Loading verifies the digest; a corrupt or unreadable file gives a clear error, and
  :meth:`CheckpointManager.load_latest_good` falls back to the previous good checkpoint.
- The manager keeps the newest ``keep`` checkpoints plus the best one by a validation metric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featdepth.utils.checkpoint_io import MANIFEST, CheckpointError, load_checkpoint
from featdepth.utils.files import atomic_link, atomic_save, atomic_write_bytes, file_sha256

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
        records = []
        for p in sorted(self.folder.glob("step_*.pt")):
            try:
                obj = load_checkpoint(p)
            except CheckpointError:
                continue
            records.append(
                {"file": p.name, "sha256": file_sha256(p), "step": int(obj.get("step", 0)), "epoch": int(obj.get("epoch", 0)), "metric": None}
            )
        return {"checkpoints": records, "best": None}

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
        # Checkpoints a killed process wrote but never entered in (or already dropped from) the manifest.
        for p in self.folder.glob("step_*.pt"):
            if p.name not in named:
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
                return load_checkpoint(path, r.get("sha256"), map_location=map_location), path
            except CheckpointError as exc:
                if warn is not None:
                    warn(f"{exc}; trying the previous checkpoint")
        return None


def _is_finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


