"""Reading and writing single checkpoint files, safely: verified by the SHA-256 digests of the manifest,
unpickled with ``weights_only=True`` (tensors and plain data only, no code can run), refused when their
weights are not finite; and the weights-only ``.safetensors`` format.

A training checkpoint is a dict (``model``, ``optimizer``, ``schedule``, ``scaler``, ``step``, ``epoch``,
``rng``, ``config``, ``stage``, ``versions``...) of tensors and plain Python data only (the RNG states are
stored as tensors and numbers, :func:`plain_rng_state`). Each checkpoint's digest is recorded in
``checkpoints.json`` beside it (see :class:`featdepth.training.checkpoints.CheckpointManager`); loading
verifies it when present.

Files that need more than tensors and plain data to unpickle are refused unless the caller trusts them
(``trust=True``, the ``--trust-checkpoint`` flag, or inside :func:`trusted_checkpoints`), because unpickling
them can run arbitrary code. The one exception is NumPy arrays (the RNG state of checkpoints written by
earlier featdepth versions holds one): their reconstruction functions are allow-listed by name
(:data:`NUMPY_SAFE_GLOBALS`), nothing else.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import pickle
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featdepth.utils.files import atomic_write_via, file_sha256, json_safe

try:  # a dependency; guarded so that a broken install names the package instead of failing every import
    import safetensors.torch as _safetensors
    from safetensors import safe_open as _safe_open
except ImportError:  # pragma: no cover - safetensors is in the dependencies
    _safetensors = None
    _safe_open = None

MANIFEST = "checkpoints.json"
SAFETENSORS_FORMAT = "featdepth-weights/1"

_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("featdepth_trust_checkpoints", default=False)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or fails verification; the message names the file."""


def _numpy_safe_globals() -> list[Any]:
    """NumPy's array/dtype reconstruction (data only, no code), under the names NumPy 1 and 2 pickle them as."""
    multiarray = getattr(np, "_core", None)
    multiarray = getattr(multiarray, "multiarray", None) or np.core.multiarray
    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    # torch.__version__ (a ``str`` subclass) in the ``versions`` entry of checkpoints written before
    out: list[Any] = [torch.torch_version.TorchVersion, np.ndarray, np.dtype, reconstruct, scalar]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(reconstruct, f"{mod}._reconstruct"), (scalar, f"{mod}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25 pickles a dtype by its class
    if dtypes is not None:
        for name in ("UInt32DType", "Int64DType", "Float64DType", "Float32DType", "Int32DType", "BoolDType"):
            if hasattr(dtypes, name):
                out.append(getattr(dtypes, name))
    return out


#: The only globals outside torch's own allowlist that a featdepth checkpoint may name: NumPy arrays (old RNG
#: states) and torch's version string type. They rebuild data; none can call anything else.
NUMPY_SAFE_GLOBALS = _numpy_safe_globals()


@contextlib.contextmanager
def trusted_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Inside this block, checkpoints that need full unpickling are loaded (with a warning) instead of
    refused. Only for files from a trusted source: unpickling can run arbitrary code."""
    token = _TRUST.set(bool(enabled) or _TRUST.get())
    try:
        yield
    finally:
        _TRUST.reset(token)


def _is_weights_only_refusal(exc: BaseException) -> bool:
    return isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower()


def _unsafe_globals(path: Path) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - only for the message (old, non-zip files cannot be listed)
        return ""
    names = [n for n in names if n not in {f"{g.__module__}.{g.__qualname__}" for g in NUMPY_SAFE_GLOBALS if not isinstance(g, tuple)}]
    return f" ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})" if names else ""


def torch_load_safe(path: str | Path, map_location: Any = "cpu", *, trust: bool | None = None) -> Any:
    """``torch.load`` a file with ``weights_only=True`` (NumPy arrays allowed, :data:`NUMPY_SAFE_GLOBALS`).

    A file that needs anything else is refused with a message naming it and ``--trust-checkpoint``, unless
    ``trust`` (default: inside :func:`trusted_checkpoints`), where it is fully unpickled with a warning.

    Raises:
        CheckpointError: unreadable or refused (names the file).
    """
    path = Path(path)
    trust = _TRUST.get() if trust is None else bool(trust)
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - sorted into "refused" and "unreadable" below
        if not _is_weights_only_refusal(exc):
            raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:300]})") from exc
        if not trust:
            raise CheckpointError(
                f"checkpoint {path} holds Python objects other than tensors and plain data{_unsafe_globals(path)}; "
                "loading it could run code, so it is refused. If the file comes from a trusted source, pass "
                "--trust-checkpoint (trust_checkpoint=True in Python)"
            ) from exc
    warnings.warn(f"loading {path} with full unpickling (--trust-checkpoint): this can run code; do it only for "
                  "files from a trusted source", stacklevel=2)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means unreadable
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:300]})") from exc


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


def load_checkpoint(path: str | Path, expected_sha256: str | None = None, map_location: Any = "cpu", *,
                    trust: bool | None = None) -> dict[str, Any]:
    """Load a checkpoint dict, verifying its digest when one is known: ``expected_sha256``, or else the
    digest the manifest (``checkpoints.json``) in the same folder records for the file. A ``.safetensors``
    file is read with :func:`read_safetensors_checkpoint`. Unpickling is weights-only
    (:func:`torch_load_safe`; ``trust`` allows a full unpickle of a trusted file).

    Raises:
        CheckpointError: missing file, digest mismatch, unreadable or refused content (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors_checkpoint(path)
    if expected_sha256 is None:
        expected_sha256 = manifest_digest(path)
    if expected_sha256 is not None:
        digest = file_sha256(path)
        if digest != expected_sha256:
            raise CheckpointError(f"checkpoint {path} is corrupt: SHA-256 {digest[:12]}… does not match the manifest's {expected_sha256[:12]}…")
    obj = torch_load_safe(path, map_location, trust=trust)
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict (got {type(obj).__name__})")
    return obj


# -- contents ------------------------------------------------------------------------------------


def first_nonfinite(tensors: Any) -> str | None:
    """Name of the first floating-point tensor of ``tensors`` (a state dict, or anything ``named_parameters``
    / ``state_dict`` like) holding NaN or ±inf; ``None`` when all are finite."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    for name, t in items:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            return str(name)
    return None


def check_finite_weights(state: Mapping[str, Any], source: str | Path) -> None:
    """Raise :class:`CheckpointError` naming ``source`` and the first tensor of ``state["model"]`` (or of
    ``state`` itself, a bare state dict) with NaN or ±inf values."""
    model = state.get("model", state) if isinstance(state, Mapping) else state
    if not isinstance(model, Mapping):
        return
    bad = first_nonfinite(model)
    if bad is not None:
        raise CheckpointError(f"checkpoint {source} has non-finite weights (NaN or inf; first: {bad}); "
                              "it cannot be used. Take an earlier checkpoint of the run")


def state_mismatch_summary(expected: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """One line on how the state dict ``given`` (from a file) differs from ``expected`` (a module's): counts of
    missing, unexpected and differently shaped tensors, each with its first name (instead of PyTorch's list of
    every key)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [k for k in expected if k in given and isinstance(given[k], torch.Tensor)
              and isinstance(expected[k], torch.Tensor) and given[k].shape != expected[k].shape]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensors of another shape (first: {k}: {list(given[k].shape)} in the file, "
                     f"{list(expected[k].shape)} expected)")
    if missing:
        parts.append(f"{len(missing)} missing (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
    return "; ".join(parts) or "the tensors do not fit"


def plain_rng_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The RNG states of :func:`featdepth.utils.runtime.rng_state` as tensors and plain numbers only (so that the
    checkpoint loads with ``weights_only=True``); :func:`restore_rng_state` inverts it."""
    out: dict[str, Any] = {}
    py = state.get("python")
    if py is not None:
        version, internal, gauss = py
        out["python"] = {"version": int(version), "internal": torch.tensor(list(internal), dtype=torch.int64),
                         "gauss_next": gauss}
    npy = state.get("numpy")
    if npy is not None:
        kind, keys, pos, has_gauss, cached = npy[:5]
        out["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
                        "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    for key in ("torch", "cuda"):
        if key in state:
            out[key] = state[key]
    return out


def restore_rng_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`plain_rng_state`, in the form :func:`featdepth.utils.runtime.set_rng_state` takes;
    a state already in that form (older checkpoints: tuples and a NumPy array) is returned as it is."""
    out = dict(state)
    py = state.get("python")
    if isinstance(py, Mapping):
        out["python"] = (int(py["version"]), tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"])
    npy = state.get("numpy")
    if isinstance(npy, Mapping):
        out["numpy"] = (npy["kind"], np.asarray(npy["keys"].numpy(), dtype=np.uint32), int(npy["pos"]),
                        int(npy["has_gauss"]), float(npy["cached_gaussian"]))
    return out


# -- safetensors ---------------------------------------------------------------------------------


def _need_safetensors() -> None:
    if _safetensors is None:
        raise CheckpointError("reading or writing .safetensors files needs the 'safetensors' package "
                              "(pip install safetensors)")


def inference_weights(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's ``model`` an inference model needs: the depth and pose networks
    (the FeatureNet for a stage-1 ``featurenet`` checkpoint)."""
    model = state["model"]
    prefixes = ("feature_net.",) if state.get("stage") == "featurenet" else ("depth_net.", "pose_net.")
    return {k: v for k, v in model.items() if k.startswith(prefixes) and isinstance(v, torch.Tensor)}


def write_safetensors_checkpoint(state: Mapping[str, Any], path: str | Path,
                                 tensors: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write the weights of a featdepth checkpoint dict (``model``, ``config``, ``stage``...) as ``.safetensors``.

    The tensors are :func:`inference_weights` (or ``tensors``); the config, stage, step, normalised
    intrinsics and versions go into the file's metadata as JSON. Written atomically. Returns the path.

    Raises:
        CheckpointError: non-finite weights (names the tensor), or safetensors missing.
    """
    _need_safetensors()
    path = Path(path)
    tensors = dict(inference_weights(state) if tensors is None else tensors)
    bad = first_nonfinite(tensors)
    if bad is not None:
        raise CheckpointError(f"refusing to write {path}: the weights are not finite (first: {bad})")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    intrinsics = state.get("intrinsics_normalized")
    meta = {
        "format": SAFETENSORS_FORMAT,
        "config": json.dumps(json_safe(state.get("config"))),
        "stage": str(state.get("stage") or ""),
        "step": json.dumps(json_safe(state.get("step"))),
        "intrinsics_normalized": json.dumps(json_safe(np.asarray(intrinsics).tolist() if intrinsics is not None else None)),
        "versions": json.dumps(json_safe(state.get("versions") or {})),
    }
    atomic_write_via(path, lambda tmp: _safetensors.save_file(tensors, str(tmp), metadata=meta))
    return path


def read_safetensors_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`write_safetensors_checkpoint` back as a checkpoint dict (``model``,
    ``config``, ``stage``, ``step``, ``intrinsics_normalized``, ``versions``). No code runs: safetensors
    holds raw tensors and JSON text.

    Raises:
        CheckpointError: unreadable file, or one without featdepth metadata (names the file).
    """
    _need_safetensors()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with _safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - any failure to parse means unreadable
        raise CheckpointError(f"checkpoint {path} is not a readable .safetensors file ({str(exc)[:200]})") from exc
    if meta.get("format") != SAFETENSORS_FORMAT:
        raise CheckpointError(f"{path} is a .safetensors file without featdepth metadata (format "
                              f"{meta.get('format')!r}, expected {SAFETENSORS_FORMAT!r}); write it with "
                              "`featdepth export weights`")
    try:
        state = {
            "model": tensors,
            "config": json.loads(meta["config"]),
            "stage": meta.get("stage") or None,
            "step": json.loads(meta.get("step", "null")),
            "intrinsics_normalized": json.loads(meta.get("intrinsics_normalized", "null")),
            "versions": json.loads(meta.get("versions", "{}")),
        }
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed featdepth metadata ({exc})") from exc
    return state

