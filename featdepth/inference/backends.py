"""How a :class:`~featdepth.inference.model.Model` runs its networks: the inference backends and the ONNX
export they share with ``featdepth export onnx``.

Backends (``featdepth.load(..., backend=...)``, ``featdepth predict --backend``):

- ``eager``: the PyTorch networks, float32, NCHW tensors (the reference).
- ``channels_last``: the same networks with weights and inputs in ``torch.channels_last`` memory format
  (float32; the same depth as ``eager`` to ~1e-6 relative: only the order of the convolutions' sums changes).
- ``onnxruntime``: the depth network (and the pose network, if any) exported to ONNX once per model, verified
  against PyTorch (:func:`export_depth_onnx`, :func:`export_pose_onnx`; 1e-4 relative on depth), cached on
  disk (:func:`onnx_cache_dir`) and run by an onnxruntime CPU session. CPU only; float32 only (no ``amp``).
- ``auto`` (the default): ``onnxruntime`` on the CPU when the ``onnxruntime`` and ``onnx`` packages are
  installed (the ``export`` extra), else ``channels_last``; ``channels_last`` on CUDA; ``eager`` for networks
  shared with a trainer (:meth:`~featdepth.inference.model.Model.from_networks`) and with ``amp`` on the CPU
  (``channels_last`` with ``amp`` on CUDA).

The ONNX graphs are described in :mod:`featdepth.inference.onnx` (which re-exports the export functions
defined here: they live in this lower module so that the model type can use them without an import cycle).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from featdepth import __version__
from featdepth.geometry import pose_from_axis_angle_translation
from featdepth.models.layers import disp_to_depth

__all__ = [
    "BACKENDS",
    "DEFAULT_OPSET",
    "DepthExportWrapper",
    "ExportError",
    "ExportResult",
    "OnnxRuntimeEngine",
    "PoseExportWrapper",
    "export_depth_onnx",
    "export_pose_onnx",
    "onnx_cache_dir",
    "cache_limit_bytes",
    "prune_cache",
    "onnx_export_module",
    "onnxruntime_missing",
    "resolve_backend",
    "state_sha256",
    "verify_onnx",
]

#: The names ``backend=`` takes.
BACKENDS = ("auto", "eager", "channels_last", "onnxruntime")

DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """Export failed, or onnxruntime disagrees with PyTorch beyond the tolerance."""


class DepthExportWrapper(nn.Module):
    """``image (B,3,H,W) -> (disparity, depth)`` at the finest scale (see the module docstring)."""

    def __init__(self, depth_net: nn.Module, min_depth: float, max_depth: float, factor: float = 1.0) -> None:
        super().__init__()
        self.depth_net = depth_net
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.factor = float(factor)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        disp = self.depth_net(image)[0]
        _, depth = disp_to_depth(disp, self.min_depth, self.max_depth)
        return disp, depth * self.factor


class PoseExportWrapper(nn.Module):
    """``(frame_a, frame_b) -> (axis_angle (B,3), translation (B,3), T_{b<-a} (B,4,4))``."""

    def __init__(self, pose_net: nn.Module, factor: float = 1.0) -> None:
        super().__init__()
        self.pose_net = pose_net
        self.factor = float(factor)

    def forward(self, frame_a: Tensor, frame_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        axis_angle, translation = self.pose_net(frame_a, frame_b)
        translation = translation * self.factor
        return axis_angle, translation, pose_from_axis_angle_translation(axis_angle, translation)


@dataclass
class ExportResult:
    """One exported graph and its verification."""

    path: Path
    exporter: str
    opset: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # output name -> max |ort - torch|
    max_rel_diff: dict[str, float] = field(default_factory=dict)
    batches: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        diffs = ", ".join(
            f"{k}: max abs {v:.2e}" + (f" (rel {self.max_rel_diff[k]:.2e})" if k in self.max_rel_diff else "")
            for k, v in self.max_abs_diff.items()
        )
        return f"{self.path} [{self.exporter} exporter, opset {self.opset}] onnxruntime vs PyTorch at batch {list(self.batches)}: {diffs}"


def onnx_export_module(module: nn.Module, args: tuple[Tensor, ...], path: str | os.PathLike, input_names: list[str],
                       output_names: list[str], opset: int = DEFAULT_OPSET, exporter: str = "auto") -> str:
    """Export ``module`` to exactly ``path`` with a dynamic batch axis on every input and output.

    ``exporter``: ``"auto"`` tries the dynamo (torch.export) exporter, then the legacy TorchScript one;
    ``"dynamo"`` / ``"legacy"`` force one. Returns the exporter used.

    Raises:
        ExportError: every tried exporter failed (the message lists why).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    order = {"auto": ("dynamo", "legacy"), "dynamo": ("dynamo",), "legacy": ("legacy",)}.get(exporter)
    if order is None:
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'legacy', got {exporter!r}")
    for kind in order:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                if kind == "dynamo":
                    batch = torch.export.Dim("batch", min=1, max=1024)
                    torch.onnx.export(
                        module, args, str(path), input_names=input_names, output_names=output_names,
                        dynamic_shapes=tuple({0: batch} for _ in args), dynamo=True, opset_version=opset,
                        external_data=False, verbose=False,
                    )
                else:
                    torch.onnx.export(
                        module, args, str(path), input_names=input_names, output_names=output_names,
                        dynamic_axes={n: {0: "batch"} for n in input_names + output_names},
                        dynamo=False, opset_version=min(opset, 20),
                    )
            return kind
        except Exception as exc:  # noqa: BLE001 - report every exporter's failure
            path.unlink(missing_ok=True)
            text = str(exc).strip()
            errors.append(f"{kind}: {type(exc).__name__}: {text.splitlines()[-1] if text else ''}")
    raise ExportError(f"ONNX export to {path} failed: " + " | ".join(errors))


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _finalise(tmp_name: Path, path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(tmp_name))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_name))
    os.replace(tmp_name, path)


def verify_onnx(
    path: str | os.PathLike,
    module: nn.Module,
    make_inputs,
    input_names: list[str],
    output_names: list[str],
    *,
    batches: tuple[int, ...] = (1, 3),
    atol: float = 1e-4,
    rtol_names: tuple[str, ...] = (),
) -> tuple[dict[str, float], dict[str, float]]:
    """Run the ONNX file with onnxruntime (CPU) and PyTorch on the same random inputs.

    ``make_inputs(batch)`` returns the input tensors. Outputs in ``rtol_names`` (large-valued, like
    depth) are compared by relative error ``|a-b| / |b|``, the others by absolute error; every
    difference must be at most ``atol``. Returns ``(max_abs, max_rel)`` per output name.

    Raises:
        ExportError: a difference above ``atol`` (the message gives the numbers).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = torch.get_num_threads()  # follow PyTorch's setting
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a one-off check: no busy-waiting
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    max_abs = {n: 0.0 for n in output_names}
    max_rel = {n: 0.0 for n in rtol_names}
    module = module.eval()
    for b in batches:
        inputs = make_inputs(b)
        with torch.inference_mode():
            ref = module(*inputs)
        got = session.run(output_names, {n: t.numpy() for n, t in zip(input_names, inputs)})
        for name, r, g in zip(output_names, ref, got):
            r = r.float().numpy()
            if g.shape != r.shape:
                raise ExportError(f"{path}: output '{name}' has shape {g.shape} in onnxruntime, {r.shape} in PyTorch (batch {b})")
            diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
            max_abs[name] = max(max_abs[name], float(diff.max()))
            if name in max_rel:
                max_rel[name] = max(max_rel[name], float((diff / np.maximum(np.abs(r), 1e-12)).max()))
    for name in output_names:
        value = max_rel[name] if name in max_rel else max_abs[name]
        if not value <= atol:
            kind = "relative" if name in max_rel else "absolute"
            raise ExportError(
                f"{path}: onnxruntime and PyTorch disagree on '{name}': max {kind} difference {value:.3e} > {atol:g}"
            )
    return max_abs, max_rel


def _metadata(model: Any, outputs: list[str], factor: float) -> dict[str, str]:
    return {
        "featdepth_version": __version__,
        "input_height": str(model.height),
        "input_width": str(model.width),
        "depth_kind": model.depth_kind,
        "depth_factor": f"{factor:.9g}",
        "min_depth": f"{model.network_min_depth * factor:.9g}",
        "max_depth": f"{model.network_max_depth * factor:.9g}",
        "outputs": ",".join(outputs),
        "source_checkpoint": str(model.source),
    }


def _export_verified(model: Any, wrapper: nn.Module, make_inputs: Any, inputs: list[str], outputs: list[str],
                     path: Path, *, factor: float, opset: int, exporter: str, verify: bool, atol: float,
                     batches: tuple[int, ...], rtol_names: tuple[str, ...] = ()) -> ExportResult:
    """Export ``wrapper`` to a temporary file beside ``path``, verify it, then move it into place with metadata."""
    tmp = _tmp_path(path)
    kind = onnx_export_module(wrapper, make_inputs(1), tmp, inputs, outputs, opset, exporter)
    result = ExportResult(path=path, exporter=kind, opset=opset, batches=tuple(batches))
    try:
        if verify:
            result.max_abs_diff, result.max_rel_diff = verify_onnx(
                tmp, wrapper, make_inputs, inputs, outputs, batches=batches, atol=atol, rtol_names=rtol_names)
        _finalise(tmp, path, _metadata(model, outputs, factor))
    finally:
        tmp.unlink(missing_ok=True)
    return result


def export_depth_onnx(model: Any, out: str | os.PathLike, *, opset: int = DEFAULT_OPSET, exporter: str = "auto",
                      verify: bool = True, atol: float = 1e-4, batches: tuple[int, ...] = (1, 3),
                      factor: float | None = None) -> ExportResult:
    """Export ``model.depth_net`` (a :class:`featdepth.inference.model.Model`) to ``out`` and verify it.

    ``factor`` multiplies the ``depth`` output (default: the model's ``metric_factor``)."""
    path = Path(out)
    factor = model.metric_factor if factor is None else float(factor)
    wrapper = DepthExportWrapper(model.depth_net, model.network_min_depth, model.network_max_depth,
                                 factor).cpu().eval()
    h, w = model.height, model.width
    gen = torch.Generator().manual_seed(0)

    def make_inputs(b: int) -> tuple[Tensor]:
        return (torch.rand(b, 3, h, w, generator=gen),)

    return _export_verified(model, wrapper, make_inputs, ["image"], ["disparity", "depth"], path, factor=factor,
                            opset=opset, exporter=exporter, verify=verify, atol=atol, batches=batches,
                            rtol_names=("depth",))


def export_pose_onnx(model: Any, out: str | os.PathLike, *, opset: int = DEFAULT_OPSET, exporter: str = "auto",
                     verify: bool = True, atol: float = 1e-4, batches: tuple[int, ...] = (1, 3),
                     factor: float | None = None) -> ExportResult:
    """Export ``model.pose_net`` to ``out`` (two frames -> axis-angle, translation, T) and verify it.

    ``factor`` multiplies the translation (default: the model's ``metric_factor``)."""
    if model.pose_net is None:
        raise ExportError(f"{model.source} has no PoseNet to export (stereo-only training)")
    path = Path(out)
    factor = model.metric_factor if factor is None else float(factor)
    wrapper = PoseExportWrapper(model.pose_net, factor).cpu().eval()
    h, w = model.height, model.width
    gen = torch.Generator().manual_seed(1)

    def make_inputs(b: int) -> tuple[Tensor, Tensor]:
        return torch.rand(b, 3, h, w, generator=gen), torch.rand(b, 3, h, w, generator=gen)

    return _export_verified(model, wrapper, make_inputs, ["frame_a", "frame_b"], ["axis_angle", "translation", "T"],
                            path, factor=factor, opset=opset, exporter=exporter, verify=verify, atol=atol,
                            batches=batches)




# ------------------------------------------------------------------------------------------------
# choosing a backend


def onnxruntime_missing() -> str | None:
    """``None`` when the ``onnxruntime`` backend can run here, else why not (names the extra to install)."""
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed (pip install 'featdepth[export]')"


def resolve_backend(requested: str, device: torch.device, *, amp: str | None = None,
                    shared: bool = False) -> tuple[str, str]:
    """The backend a model runs with: ``(name, note)``, ``note`` saying why in one sentence.

    Args:
        requested: one of :data:`BACKENDS`.
        device: the model's device.
        amp: the model's autocast precision (``None`` for float32); onnxruntime runs float32 only.
        shared: networks shared with a trainer (:meth:`Model.from_networks`): never exported, ``auto`` is ``eager``.

    Raises:
        ValueError: an unknown name, or an explicit ``onnxruntime`` that cannot run here (not installed, a CUDA
            device, ``amp``, shared networks); the message names the backend and the reason.
    """
    name = str(requested).strip().lower().replace("-", "_")
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if name == "onnxruntime":
        reason = None
        if shared:
            reason = "networks shared with a trainer are never exported (use eager or channels_last)"
        elif device.type != "cpu":
            reason = f"it runs on the CPU only and the model is on {device} (load it with device='cpu')"
        elif amp is not None:
            reason = f"it runs float32 only and amp={amp!r} was asked (use amp=None, or a PyTorch backend)"
        else:
            reason = onnxruntime_missing()
        if reason is not None:
            raise ValueError(f"backend 'onnxruntime' is not available: {reason}")
        return name, "chosen explicitly (backend='onnxruntime'): the networks exported to ONNX, run on the CPU"
    if name != "auto":
        return name, f"chosen explicitly (backend={name!r})"
    if shared:
        return "eager", "auto: networks shared with a trainer run as they are"
    if device.type != "cpu":
        return "channels_last", f"auto: channels_last memory format on {device.type}"
    if amp is not None:
        return "eager", f"auto: amp={amp!r} on the CPU runs the PyTorch networks as they are"
    missing = onnxruntime_missing()
    if missing is not None:
        return "channels_last", f"auto: onnxruntime would be faster on the CPU but {missing}"
    return "onnxruntime", "auto: onnxruntime is installed, the fastest CPU backend"


# ------------------------------------------------------------------------------------------------
# the onnxruntime backend


def onnx_cache_dir() -> Path:
    """Where exported graphs are kept: ``$FEATDEPTH_CACHE`` if set, else ``~/.cache/featdepth/onnx``."""
    env = os.environ.get("FEATDEPTH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "featdepth" / "onnx"


#: Default size limit of the graph cache (``$FEATDEPTH_CACHE_MAX_MB`` changes it; 0 = no limit).
DEFAULT_CACHE_MAX_MB = 2048


def cache_limit_bytes() -> int | None:
    """The cache's size limit in bytes from ``$FEATDEPTH_CACHE_MAX_MB`` (default :data:`DEFAULT_CACHE_MAX_MB`);
    ``None`` for no limit (the variable set to 0).

    Raises:
        ValueError: the variable is not a whole number >= 0 (the message names it).
    """
    raw = os.environ.get("FEATDEPTH_CACHE_MAX_MB", "").strip()
    try:
        mb = int(raw) if raw else DEFAULT_CACHE_MAX_MB
    except ValueError:
        mb = -1
    if mb < 0:
        raise ValueError(f"FEATDEPTH_CACHE_MAX_MB must be a whole number of megabytes >= 0 (0: no limit), got {raw!r}")
    return mb * 1024 * 1024 if mb else None


def prune_cache(folder: str | os.PathLike, limit_bytes: int | None, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Delete the least recently used ``*.onnx`` graphs in ``folder`` until the rest fit in ``limit_bytes``.

    "Used" is the file's modification time (a graph read from the cache is touched). Files in ``keep`` (the
    graphs this process runs) are never deleted, even if they alone exceed the limit. Returns the deleted
    paths; files that vanish or cannot be deleted meanwhile (another process) are skipped.
    """
    if limit_bytes is None:
        return []
    keep_set = {Path(k).resolve() for k in keep}
    entries = []
    for path in Path(folder).glob("*.onnx"):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, path))
    entries.sort(key=lambda e: e[0], reverse=True)  # newest first
    total, deleted = 0, []
    for _, size, path in entries:
        total += size
        if total <= limit_bytes or path.resolve() in keep_set:
            continue
        try:
            path.unlink()
            deleted.append(path)
            total -= size
        except OSError:
            pass
    return deleted


def state_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes; independent of the memory format)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class _Graph:
    session: Any
    path: Path | None
    exported: bool  # False: read from the cache


class OnnxRuntimeEngine:
    """The depth (and pose) graphs of one model in onnxruntime CPU sessions, exported on first use.

    Each graph is exported with factor 1 (the model applies its own factors) and verified against PyTorch
    (1e-4), then kept for the engine's lifetime and on disk under :func:`onnx_cache_dir` as
    ``{depth,pose}-<key>.onnx``; the key is the SHA-256 of the network's weights, the input size, the opset,
    the torch/onnx/featdepth versions and the network's depth range, so a second load of the same weights
    reads the file instead of exporting again. Files are renamed into place after verification (atomic).

    Args:
        model: the :class:`~featdepth.inference.model.Model` (CPU) whose ``depth_net`` / ``pose_net`` to export.
        cache_dir: default :func:`onnx_cache_dir` (read when the first graph is needed).

    After each export the least recently used graphs are deleted while the folder holds more than
    ``$FEATDEPTH_CACHE_MAX_MB`` (default :data:`DEFAULT_CACHE_MAX_MB`; 0: no limit); see :func:`prune_cache`.

    Raises:
        ValueError: ``$FEATDEPTH_CACHE_MAX_MB`` is not a whole number >= 0.
    """

    def __init__(self, model: Any, cache_dir: str | os.PathLike | None = None) -> None:
        self.model = model
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache_limit = cache_limit_bytes()
        self.opset = DEFAULT_OPSET
        self._graphs: dict[str, _Graph] = {}
        self._lock = threading.Lock()

    def _key(self, kind: str, net: nn.Module) -> str:
        import onnx

        m = self.model
        material = {
            "graph": kind, "weights_sha256": state_sha256(net), "input_size": [m.height, m.width],
            "opset": self.opset, "torch": str(torch.__version__), "onnx": onnx.__version__, "featdepth": __version__,
            "depth_range": [m.network_min_depth, m.network_max_depth],
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def _session(self, source: str | bytes) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = max(1, torch.get_num_threads())  # follow PyTorch's setting
        opts.inter_op_num_threads = 1
        # PyTorch runs between the calls (resizing, colour maps): busy-waiting threads would compete with it
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])

    def graph(self, kind: str) -> _Graph:
        """The ``"depth"`` or ``"pose"`` graph: from memory, else the disk cache, else exported now.

        Raises:
            ExportError: the export or its verification failed, or the model has no such network.
            OSError, RuntimeError: onnxruntime could not read the graph.
        """
        with self._lock:
            if kind in self._graphs:
                return self._graphs[kind]
            net = self.model.depth_net if kind == "depth" else self.model.pose_net
            if net is None:
                raise ExportError(f"{self.model.source} has no PoseNet (stereo-only training)")
            export = export_depth_onnx if kind == "depth" else export_pose_onnx
            folder = self.cache_dir or onnx_cache_dir()
            path = folder / f"{kind}-{self._key(kind, net)}.onnx"
            graph = None
            if path.is_file():
                try:
                    graph = _Graph(self._session(str(path)), path, exported=False)
                except Exception:  # noqa: BLE001 - a damaged cache file: export again
                    path.unlink(missing_ok=True)
                else:
                    with contextlib.suppress(OSError):  # recently used: the last to be pruned
                        os.utime(path)
            if graph is None:
                with torch.inference_mode(False), torch.enable_grad():
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                        export(self.model, path, opset=self.opset, factor=1.0, batches=(1, 2))
                        graph = _Graph(self._session(str(path)), path, exported=True)
                        prune_cache(folder, self.cache_limit, keep=(path, *(g.path for g in self._graphs.values() if g.path)))
                    except OSError:  # the cache folder is not writable: keep the graph in memory only
                        with tempfile.TemporaryDirectory() as tmp:
                            tmp_path = Path(tmp) / path.name
                            export(self.model, tmp_path, opset=self.opset, factor=1.0, batches=(1, 2))
                            graph = _Graph(self._session(tmp_path.read_bytes()), None, exported=True)
            self._graphs[kind] = graph
            return graph

    def disparity(self, images: Tensor) -> Tensor:
        """Finest-scale disparity ``(B,1,h,w)`` float32 (CPU) of ``(B,3,H,W)`` images at the network size."""
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (disp,) = self.graph("depth").session.run(["disparity"], {"image": x})
        return torch.from_numpy(disp)

    def pose(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:
        """``T_{b<-a}`` ``(B,4,4)`` float32 (CPU), translation unscaled (as the PoseNet's)."""
        feed = {name: t.detach().to("cpu", torch.float32).contiguous().numpy()
                for name, t in (("frame_a", frame_a), ("frame_b", frame_b))}
        (T,) = self.graph("pose").session.run(["T"], feed)
        return torch.from_numpy(T)
