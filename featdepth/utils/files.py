"""Crash-safe files: atomic writes (temporary file + fsync + rename), digests and JSON.

A crash or SIGKILL at any moment leaves either the old file or the new one under the final name, never
a half-written one (``os.replace`` is atomic on POSIX).

Test-only: ``FEATDEPTH_TEST_SLOW_CHECKPOINT=SECONDS`` makes every atomic write sleep that long in two halves,
one in the middle of writing the temporary file and one between its fsync and the rename, so that the
crash-safety tests can kill a process while a checkpoint is being written. Never set it otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

#: A file-system path argument.
PathLike = Union[str, os.PathLike]


def fsync_dir(folder: Path) -> None:
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


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename). ``durable`` also fsyncs the file and
    its folder (checkpoints, manifests); outputs that can be written again (predictions) skip it."""
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
            if durable:
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
    if durable:
        fsync_dir(path.parent)


def atomic_write_via(path: PathLike, writer: Any) -> None:
    """Call ``writer(tmp_path)`` (the temporary keeps ``path``'s suffix, for writers that pick a format by
    it), then rename the result onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    fsync_dir(dst.parent)


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




def json_safe(obj: Any) -> Any:
    """``obj`` with NumPy/torch scalars and arrays, paths and tuples turned into plain JSON types;
    non-finite floats become ``None`` (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: PathLike, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` (made JSON-safe) to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(json_safe(data), indent=indent) + "\n").encode())
    return path


def read_json(path: PathLike) -> Any:
    """Read a JSON file; a malformed file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
