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

import os
from typing import Any

# The export machinery lives in the lower module featdepth.inference.backends (the model's onnxruntime backend
# uses it); this module keeps its public names and adds the checkpoint-level export_onnx.
from featdepth.inference.backends import (
    DEFAULT_OPSET,
    DepthExportWrapper,
    ExportError,
    ExportResult,
    PoseExportWrapper,
    export_depth_onnx,
    export_pose_onnx,
    onnx_export_module,
    verify_onnx,
)
from featdepth.inference.loading import load
from featdepth.inference.model import Model

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
    "DEFAULT_OPSET",
]


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
    model = checkpoint if isinstance(checkpoint, Model) else load(checkpoint, device="cpu", official=official,
                                                                           backend="eager")
    if str(model.device) != "cpu":
        model.to("cpu")
    results = [export_depth_onnx(model, out, opset=opset, exporter=exporter, verify=verify, atol=atol, batches=batches)]
    if pose_out is not None:
        results.append(export_pose_onnx(model, pose_out, opset=opset, exporter=exporter, verify=verify, atol=atol,
                                        batches=batches))
    return results
