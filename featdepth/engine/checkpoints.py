"""Crash-safe checkpoints.

- Every file is written to a temporary file in the same folder, flushed and fsynced, then renamed over
  the final name (``os.replace`` is atomic on POSIX): a crash or SIGKILL at any moment leaves either
  the old file or the new one, never a half-written one under the final name.
- Each checkpoint's SHA-256 is recorded in a manifest (``checkpoints.json``, itself written atomically).
  Loading verifies the digest; a corrupt or unreadable file gives a clear error, and
  :func:`load_latest_good` falls back to the previous good checkpoint.
- The manager keeps the newest ``keep`` checkpoints plus the best one by a validation metric.

A checkpoint is a plain dict saved with ``torch.save`` (``model``, ``optimizer``, ``scheduler``,
``scaler``, ``step``, ``epoch``, ``rng``, ``config``, ``versions``...), so ``torch.load`` reads it directly.

Test-only: ``FEATDEPTH_TEST_SLOW_CHECKPOINT=SECONDS`` makes every atomic write sleep that long in two halves,
one in the middle of writing the temporary file and one between its fsync and the rename, so that the
crash-safety tests can kill a process while a checkpoint is being written. Never set it otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MANIFEST = "checkpoints.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or fails verification; the message names the file."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    slow = _test_slow_write_seconds()
    try:
        with os.fdopen(fd, "wb") as fh:
            if slow:
                half = len(data) // 2
                fh.write(data[:half])
                fh.flush()
                time.sleep(slow / 2)
                fh.write(data[half:])
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if slow:
            time.sleep(slow / 2)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _test_slow_write_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("FEATDEPTH_TEST_SLOW_CHECKPOINT", "0") or 0))
    except ValueError:
        return 0.0


def atomic_link(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` name the same file as ``src`` atomically (hard link + rename; a copy where the
    file system has no hard links)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    try:
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            atomic_write_bytes(dst, src.read_bytes())
            return
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(dst.parent)


def atomic_save(obj: Any, path: str | Path) -> str:
    """``torch.save`` ``obj`` to ``path`` atomically; returns the SHA-256 hex digest of the file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest_digest(path: Path) -> str | None:
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
        expected_sha256 = _manifest_digest(path)
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


# --------------------------------------------------------------------------------------------------
# reading a training checkpoint back as a model description (shared by featdepth.load and the evaluators)


def model_config_from_checkpoint(state: Any, source: str) -> tuple[Any, str]:
    """The :class:`~featdepth.config.Config` and stage of a training checkpoint with a depth network.

    Pretrained-weight settings are cleared (the checkpoint holds the weights: nothing is downloaded or
    read from disk when the networks are rebuilt), and ``train.stage`` is set to the stored stage.

    Args:
        state: the loaded checkpoint dict.
        source: how to name it in error messages (its path).

    Raises:
        ValueError: no ``model``/``config`` entry, an invalid stored config, or a FeatureNet-only (stage 1)
            checkpoint; the message starts with ``source``.
    """
    from featdepth.config import ConfigError, config_from_dict

    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{source}: not a featdepth training checkpoint (needs 'model' and 'config' entries, has {keys})")
    try:
        cfg = config_from_dict(state["config"])
    except ConfigError as exc:
        raise ValueError(f"{source}: the stored config is invalid ({exc})") from exc
    stage = str(state.get("stage") or cfg.train.stage)
    if stage == "featurenet":
        raise ValueError(
            f"{source}: a stage-1 FeatureNet checkpoint has no depth network; use the stage-2 "
            "(depth/joint/baseline) checkpoint"
        )
    cfg.train.stage = stage
    cfg.model.depth_weights = cfg.model.pose_weights = cfg.model.feature_weights = None
    return cfg, stage
