"""ONNX export of the depth and pose networks, verified with onnxruntime.

Graphs (dynamic batch axis ``batch``; height and width fixed to the training size):

- **depth**: ``image`` ``(B,3,H,W)`` float32 in ``[0,1]`` -> ``disparity`` ``(B,1,h,w)`` (sigmoid
  disparity at the finest decoder scale: ``h,w = H/2,W/2`` for the FeatDepth decoder, ``H,W`` for the
  monodepth2 decoder) and ``depth`` ``(B,1,h,w)`` = ``disp_to_depth(disparity, min, max)`` times the
  model's default factor (36 for FeatDepth's 0.015 stereo convention; 1 otherwise; see
  ``featdepth.inference.model``). The input normalisation is inside the graph. The decoder's dropout is inactive
  (the networks are exported in eval mode).
- **pose**: ``frame_a``, ``frame_b`` ``(B,3,H,W)`` in ``[0,1]`` (earlier, later) -> ``axis_angle``
  ``(B,3)`` (radians), ``translation`` ``(B,3)`` and ``T`` ``(B,4,4)`` = ``T_{b<-a}`` (maps points of
  camera a into camera b; translation times the same factor as the depth).

Metadata (``onnx`` ``metadata_props``): ``featdepth_version``, ``input_height``, ``input_width``,
``depth_kind``, ``depth_factor``, ``min_depth``, ``max_depth``, ``outputs``.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (the torch.export-based exporter, needs
``onnxscript``) is tried first; if it fails the legacy TorchScript exporter (``dynamo=False``) is
used. Both were checked with torch 2.14 on ResNet-18/50 networks and give identical outputs to
~1e-7. ``exporter="dynamo"``/``"legacy"`` forces one.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from featdepth import __version__
from featdepth.geometry import pose_from_axis_angle_translation
from featdepth.inference.loading import load
from featdepth.inference.model import Model
from featdepth.models.layers import disp_to_depth

__all__ = [
    "DepthExportWrapper",
    "PoseExportWrapper",
    "ExportError",
    "ExportResult",
    "export_depth_onnx",
    "export_pose_onnx",
    "export_onnx",
    "onnx_export_module",
    "verify_onnx",
]

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


def _metadata(model: Any, outputs: list[str]) -> dict[str, str]:
    return {
        "featdepth_version": __version__,
        "input_height": str(model.height),
        "input_width": str(model.width),
        "depth_kind": model.depth_kind,
        "depth_factor": f"{model.metric_factor:.9g}",
        "min_depth": f"{model.network_min_depth * model.metric_factor:.9g}",
        "max_depth": f"{model.network_max_depth * model.metric_factor:.9g}",
        "outputs": ",".join(outputs),
        "source_checkpoint": str(model.source),
    }


def export_depth_onnx(model: Any, out: str | os.PathLike, *, opset: int = DEFAULT_OPSET, exporter: str = "auto",
                      verify: bool = True, atol: float = 1e-4, batches: tuple[int, ...] = (1, 3)) -> ExportResult:
    """Export ``model.depth_net`` (a :class:`featdepth.inference.model.Model`) to ``out`` and verify it."""
    path = Path(out)
    wrapper = DepthExportWrapper(model.depth_net, model.network_min_depth, model.network_max_depth,
                                 model.metric_factor).cpu().eval()
    h, w = model.height, model.width
    gen = torch.Generator().manual_seed(0)

    def make_inputs(b: int) -> tuple[Tensor]:
        return (torch.rand(b, 3, h, w, generator=gen),)

    inputs, outputs = ["image"], ["disparity", "depth"]
    tmp = _tmp_path(path)
    kind = onnx_export_module(wrapper, make_inputs(1), tmp, inputs, outputs, opset, exporter)
    result = ExportResult(path=path, exporter=kind, opset=opset, batches=tuple(batches))
    try:
        if verify:
            result.max_abs_diff, result.max_rel_diff = verify_onnx(
                tmp, wrapper, make_inputs, inputs, outputs, batches=batches, atol=atol, rtol_names=("depth",))
        _finalise(tmp, path, _metadata(model, outputs))
    finally:
        tmp.unlink(missing_ok=True)
    return result


def export_pose_onnx(model: Any, out: str | os.PathLike, *, opset: int = DEFAULT_OPSET, exporter: str = "auto",
                     verify: bool = True, atol: float = 1e-4, batches: tuple[int, ...] = (1, 3)) -> ExportResult:
    """Export ``model.pose_net`` to ``out`` (two frames -> axis-angle, translation, T) and verify it."""
    if model.pose_net is None:
        raise ExportError(f"{model.source} has no PoseNet to export (stereo-only training)")
    path = Path(out)
    wrapper = PoseExportWrapper(model.pose_net, model.metric_factor).cpu().eval()
    h, w = model.height, model.width
    gen = torch.Generator().manual_seed(1)

    def make_inputs(b: int) -> tuple[Tensor, Tensor]:
        return torch.rand(b, 3, h, w, generator=gen), torch.rand(b, 3, h, w, generator=gen)

    inputs, outputs = ["frame_a", "frame_b"], ["axis_angle", "translation", "T"]
    tmp = _tmp_path(path)
    kind = onnx_export_module(wrapper, make_inputs(1), tmp, inputs, outputs, opset, exporter)
    result = ExportResult(path=path, exporter=kind, opset=opset, batches=tuple(batches))
    try:
        if verify:
            result.max_abs_diff, result.max_rel_diff = verify_onnx(
                tmp, wrapper, make_inputs, inputs, outputs, batches=batches, atol=atol)
        _finalise(tmp, path, _metadata(model, outputs))
    finally:
        tmp.unlink(missing_ok=True)
    return result


def export_onnx(checkpoint: Any, out: str | os.PathLike, *, pose_out: str | os.PathLike | None = None,
                opset: int = DEFAULT_OPSET, exporter: str = "auto", verify: bool = True, atol: float = 1e-4,
                batches: tuple[int, ...] = (1, 3), official: dict[str, Any] | None = None) -> list[ExportResult]:
    """Export a checkpoint's depth network (and pose network with ``pose_out``) to ONNX, verified.

    Args:
        checkpoint: a path (featdepth, official FeatDepth or monodepth2) or a loaded ``Model``.
        out: the depth ``.onnx`` file. pose_out: the pose ``.onnx`` file (optional).
        opset: ONNX opset (default 18). exporter: ``auto`` | ``dynamo`` | ``legacy``.
        verify: compare onnxruntime with PyTorch at ``batches`` (dynamic batch), tolerance ``atol``
            (absolute; relative for depth).

    Returns:
        one :class:`ExportResult` per file. Files are renamed into place only after verification.
    """
    model = checkpoint if isinstance(checkpoint, Model) else load(checkpoint, device="cpu", official=official)
    if str(model.device) != "cpu":
        model.to("cpu")
    results = [export_depth_onnx(model, out, opset=opset, exporter=exporter, verify=verify, atol=atol, batches=batches)]
    if pose_out is not None:
        results.append(export_pose_onnx(model, pose_out, opset=opset, exporter=exporter, verify=verify, atol=atol,
                                        batches=batches))
    return results
