"""The one trained-model type, :class:`Model`: what ``featdepth.load(checkpoint)`` returns.

Example::

    import featdepth
    model = featdepth.load("runs/kitti_featdepth_ms/best.pt")     # or an official FeatDepth .pth
    depth = model.predict_depth(PIL.Image.open("frame.png"))     # (H, W) float32, input resolution
    T_b_a = model.predict_pose(frame_a, frame_b)                   # (4, 4): points of a -> camera b
    print(model.depth_kind)                                        # "relative", "metric" or "metric (×36)"

Checkpoints are self-describing (config and stage inside), so the path alone is enough. Official
FeatDepth checkpoints and monodepth2 model folders are converted on the fly (:mod:`featdepth.inference.official`).

**Scale.** A monocular model's depth is known only up to scale: ``depth_kind == "relative"``. A model
trained with stereo pairs and the real baseline predicts metres (``"metric"``). A model trained with
FeatDepth's 0.015 baseline convention (``data.stereo_baseline: 0.015``) predicts metres divided by
``real_baseline / 0.015`` (36 for KITTI's 0.54 m), and :meth:`DepthModel.predict_depth` multiplies by
that factor by default: ``depth_kind == "metric (×36)"``. A user factor (``scale=``) replaces the
default factor. For any model, ``predict_depth(image, camera_height=1.65)`` returns metres whose scale comes
from the camera's known height above the ground (:mod:`featdepth.geometry.scale_recovery`; needs
intrinsics), and :meth:`Model.predict_depth_sequence` uses one median scale for a whole video.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Union

if TYPE_CHECKING:  # only for the ImageLike annotation
    import PIL.Image

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featdepth.config import Config
from featdepth.geometry import (
    ScaleRecoveryResult,
    SequenceScale,
    pose_from_axis_angle_translation,
    check_height_from,
    recover_scale_from_camera_height_batch,
    sequence_scale,
)
from featdepth.models.depth_net import DepthNet
from featdepth.models.layers import disp_to_depth
from featdepth.models.pose_net import PoseNet
from featdepth.utils.constants import KITTI_BASELINE, KITTI_NORMALIZED_K, REAL_BASELINES
from featdepth.utils.runtime import resolve_device
from featdepth.data.io import as_pixel_intrinsics, load_image
from featdepth.inference.backends import BACKENDS, OnnxRuntimeEngine, resolve_backend
from featdepth.inference.pointcloud import depth_to_points

__all__ = [
    "BACKENDS",
    "KITTI_BASELINE",
    "KITTI_NORMALIZED_K",
    "ASPECT_TOLERANCE",
    "AspectRatioWarning",
    "DepthModel",
    "MetricDepthSequence",
    "Model",
    "ModelLoadError",
    "depth_kind_from_config",
    "to_image_list",
]


ImageLike = Union["PIL.Image.Image", np.ndarray, Tensor, str, os.PathLike]  # noqa: F821


class ModelLoadError(ValueError):
    """A checkpoint that cannot be used for inference; the message names the file."""


# ------------------------------------------------------------------------------------------------
# scale conventions


def depth_kind_from_config(cfg: Config, real_baseline: float | None = None) -> tuple[str, float, str]:
    """What the depth of a model trained with ``cfg`` means.

    Args:
        cfg: the training config.
        real_baseline: the real stereo baseline (metres) of the data; default: KITTI's 0.54 for
            ``kitti_raw``/``kitti_odom``/``synthetic`` data, unknown for ``folder`` data.

    Returns:
        ``(kind, factor, note)``: ``kind`` is ``"relative"`` (monocular training, or a stereo
        convention whose real baseline is unknown), ``"metric"`` (stereo with the real baseline) or
        ``"metric (×F)"``; ``factor`` multiplies the network's depth to give that kind (1 or
        ``real_baseline / stereo_baseline``); ``note`` explains it in one sentence.
    """
    if not cfg.use_stereo:
        return "relative", 1.0, "monocular training: depth is known only up to an unknown scale"
    b = cfg.data.stereo_baseline
    if b is None:
        return "metric", 1.0, "stereo training with the calibrated baseline: depth in metres"
    real = real_baseline if real_baseline is not None else REAL_BASELINES.get(cfg.data.dataset)
    if real is None:
        return (
            "relative",
            1.0,
            f"stereo training with a {b:g} m baseline convention on data whose real baseline is unknown; "
            "pass real_baseline= (metres) to get metric depth",
        )
    factor = float(real) / float(b)
    if abs(factor - 1.0) < 1e-9:
        return "metric", 1.0, "stereo training with the real baseline: depth in metres"
    return (
        f"metric (×{factor:g})",
        factor,
        f"stereo training with a {b:g} m baseline convention; depth multiplied by {real:g}/{b:g} = {factor:g} "
        "to give metres",
    )


# ------------------------------------------------------------------------------------------------
# input conversion


def _array_to_chw(arr: np.ndarray, what: str) -> Tensor:
    """One HWC (or HW, or CHW) array -> (3,H,W) float32 tensor in [0,1]."""
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3:
        raise ValueError(f"{what}: expected an (H, W, 3) image array, got shape {arr.shape}")
    if arr.shape[-1] not in (3, 4) and arr.shape[0] in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.shape[-1] != 3:
        raise ValueError(f"{what}: expected an (H, W, 3) image array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        data = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        data = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        data = arr.astype(np.float32)
        _check_unit_range(data, what)
    else:
        raise ValueError(f"{what}: unsupported dtype {arr.dtype} (use uint8, or float in [0, 1])")
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(data, -1, 0)))


def _check_unit_range(x: np.ndarray | Tensor, what: str) -> None:
    n = x.size if isinstance(x, np.ndarray) else x.numel()
    if n == 0:
        raise ValueError(f"{what}: empty image")
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{what}: the image holds non-finite values")
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(
            f"{what}: float images must be in [0, 1], got values in [{lo:g}, {hi:g}] (divide 8-bit data by 255)"
        )


def _tensor_to_list(t: Tensor, what: str) -> list[Tensor]:
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"{what}: expected a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        t = t.float()
        _check_unit_range(t, what)
    else:
        raise ValueError(f"{what}: unsupported tensor dtype {t.dtype} (use float in [0, 1] or uint8)")
    return list(t.unbind(0))


def to_image_list(image: Any, what: str = "image") -> tuple[list[Tensor], bool]:
    """Normalise any supported image input to a list of ``(3,H,W)`` float32 CPU tensors in ``[0,1]``.

    Accepted: a PIL image; a NumPy array ``(H,W,3)`` (uint8, or float in ``[0,1]``; ``(H,W)`` grey and
    ``(H,W,4)`` RGBA are converted) or a batch ``(B,H,W,3)``; a tensor ``(3,H,W)`` or ``(B,3,H,W)``
    (float in ``[0,1]`` or uint8); a file path; or a list/tuple of any of these.

    Returns:
        ``(images, single)``: ``single`` is True for one non-batched image.
    """
    from PIL import Image

    if isinstance(image, (list, tuple)):
        if not image:
            raise ValueError(f"{what}: empty list of images")
        out: list[Tensor] = []
        for i, item in enumerate(image):
            items, _ = to_image_list(item, f"{what}[{i}]")
            out.extend(items)
        return out, False
    if isinstance(image, (str, os.PathLike)):

        return [_array_to_chw(np.asarray(load_image(image)), str(image))], True
    if isinstance(image, Image.Image):
        return [_array_to_chw(np.asarray(image.convert("RGB")), what)], True
    if isinstance(image, np.ndarray):
        if image.ndim == 4:
            return [_array_to_chw(a, f"{what}[{i}]") for i, a in enumerate(image)], False
        return [_array_to_chw(image, what)], True
    if isinstance(image, Tensor):
        return _tensor_to_list(image, what), image.dim() == 3
    raise TypeError(f"{what}: unsupported input type {type(image).__name__} (PIL image, NumPy array, tensor or path)")


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(B,C,H,W)`` (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


# ------------------------------------------------------------------------------------------------
# the model


def _normalise_intrinsics_arg(intrinsics: Any) -> np.ndarray | None:
    """``None`` | ``"kitti"`` | 4 normalised numbers | a normalised (3,3) -> normalised (3,3) float64."""
    if intrinsics is None:
        return None
    if isinstance(intrinsics, str):
        if intrinsics.strip().lower() != "kitti":
            raise ValueError(f"intrinsics: unknown name {intrinsics!r} (only 'kitti' is known)")
        intrinsics = KITTI_NORMALIZED_K
    arr = np.asarray(intrinsics, dtype=np.float64)
    if arr.shape == (4,):
        fx, fy, cx, cy = arr
        arr = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    if arr.shape != (3, 3) or arr[0, 0] <= 0 or arr[1, 1] <= 0:
        raise ValueError(
            "intrinsics must be 'kitti', four normalised numbers (fx/W, fy/H, cx/W, cy/H) or a normalised "
            f"3x3 K, got {intrinsics!r}"
        )
    return arr


def check_camera_height(value: Any, what: str = "camera_height") -> float:
    """``value`` as a positive finite number of metres, else a ValueError naming ``what`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be the camera's height above the ground in metres (a number > 0), got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{what} must be the camera's height above the ground in metres (> 0), got {value!r}")
    return x


class MetricDepthSequence(NamedTuple):
    """Result of :meth:`Model.predict_depth_sequence`.

    Attributes:
        depth: ``(N, H, W)`` float32 metres (a list of ``(H_i, W_i)`` arrays for differently sized frames), every
            frame multiplied by the one sequence scale.
        scale: the :class:`~featdepth.geometry.scale_recovery.SequenceScale` (``scale.scale`` metres per network
            depth unit: the median over the accepted frames, counts, spread, rejected frames' reasons).
        frames: one :class:`~featdepth.geometry.scale_recovery.ScaleRecoveryResult` per frame.
    """

    depth: Any
    scale: SequenceScale
    frames: list[ScaleRecoveryResult]


#: Relative difference of aspect ratios, ``|(w/h) / (W/H) - 1|``, above which :meth:`Model.predict_depth` warns.
ASPECT_TOLERANCE = 0.15


class AspectRatioWarning(UserWarning):
    """An input's aspect ratio is far from the training size's (see :meth:`Model.aspect_mismatch`)."""


class _Networks(nn.Module):
    def __init__(self, depth_net: DepthNet, pose_net: PoseNet | None) -> None:
        super().__init__()
        self.depth_net = depth_net
        self.pose_net = pose_net


class Model:
    """A trained depth (and ego-motion) model: the one type every command and the Python API use.

    Build it with :func:`featdepth.load` (any checkpoint kind) or, around networks in memory (the
    trainer's validation), with :meth:`from_networks`, which shares the modules without copying them.

    Attributes:
        height, width: the training size; inputs are resized to it (bilinear) and outputs back.
        depth_kind: ``"relative"``, ``"metric"`` or ``"metric (×F)"`` (see the module docstring).
        metric_factor: the default factor applied to the network's depth (``F``, else 1).
        min_depth, max_depth: the range of the depth :meth:`predict_depth` returns by default
            (the network's range times ``metric_factor``).
        K: normalised intrinsics ``(3,3)`` (``fx/W, fy/H, cx/W, cy/H``) if known (given to
            :func:`load` or stored in the checkpoint), else ``None``.
        has_pose: whether the model has a PoseNet (stereo-only models have none).
        config, stage, source: the training config, its stage and where the weights came from.
        conversion_report: the :class:`~featdepth.inference.official.MappingReport` for official checkpoints.
        backend: how the networks run: ``"eager"``, ``"channels_last"`` or ``"onnxruntime"`` (what ``backend=``,
            default ``"auto"``, resolved to; see :mod:`featdepth.inference.backends` and :meth:`set_backend`);
            ``backend_note`` says why.
    """

    def __init__(
        self,
        networks: _Networks,
        cfg: Config,
        *,
        stage: str,
        source: str,
        device: torch.device,
        amp: str | None = None,
        intrinsics: Any = None,
        real_baseline: float | None = None,
        batch_size: int = 8,
        backend: str = "auto",
    ) -> None:
        self._init(networks, cfg, stage=stage, source=source, device=device, amp=amp, intrinsics=intrinsics,
                   real_baseline=real_baseline, batch_size=batch_size, move=True, backend=backend)

    def _init(self, networks: _Networks, cfg: Config, *, stage: str, source: str, device: torch.device,
              amp: str | None, intrinsics: Any, real_baseline: float | None, batch_size: int, move: bool,
              backend: str) -> None:
        self.networks = networks.to(device).eval() if move else networks
        self.config = cfg
        self.stage = stage
        self.source = source
        self.device = device
        amp = None if amp in (None, "none", "") else str(amp).lower()
        if amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp must be None, 'none', 'bf16' or 'fp16', got {amp!r}")
        self.amp = amp
        self.batch_size = int(batch_size)
        self.height = int(cfg.data.height)
        self.width = int(cfg.data.width)
        self.depth_kind, self.metric_factor, self.scale_note = depth_kind_from_config(cfg, real_baseline)
        self.network_min_depth = float(cfg.model.min_depth)
        self.network_max_depth = float(cfg.model.max_depth)
        self.min_depth = self.network_min_depth * self.metric_factor
        self.max_depth = self.network_max_depth * self.metric_factor
        self.K = _normalise_intrinsics_arg(intrinsics)
        self.conversion_report = None
        self.step: int | None = None
        self._owns_networks = move  # False: shared with a trainer (from_networks), never exported nor converted
        self._engine: OnnxRuntimeEngine | None = None
        self.set_backend(backend)

    @classmethod
    def from_networks(cls, depth_net: nn.Module, pose_net: nn.Module | None, cfg: Config, *, stage: str,
                      source: str = "<networks in memory>", device: str | torch.device | None = None,
                      amp: str | None = None, intrinsics: Any = None, batch_size: int = 8,
                      backend: str = "eager") -> "Model":
        """A model around existing networks, sharing them (no copy, modes and devices untouched unless
        ``device`` is given). The trainer's validation and the experiments evaluate this way.

        ``backend``: ``"eager"`` (default; ``"auto"`` means it too) or ``"channels_last"`` (the inputs only: the
        shared modules keep their memory format); never ``"onnxruntime"`` (the trainer changes the weights)."""
        networks = _Networks.__new__(_Networks)
        nn.Module.__init__(networks)
        networks.depth_net = depth_net
        networks.pose_net = pose_net
        if device is None:
            device = next(depth_net.parameters()).device
        model = cls.__new__(cls)
        model._init(networks, cfg, stage=stage, source=source, device=resolve_device(device, key="device"), amp=amp,
                    intrinsics=intrinsics, real_baseline=None, batch_size=batch_size, move=False, backend=backend)
        return model

    # -- info ----------------------------------------------------------------------------
    @property
    def depth_net(self) -> DepthNet:
        """The depth network (encoder + decoder); :meth:`disparity` runs it on network-size batches."""
        return self.networks.depth_net

    @property
    def pose_net(self) -> PoseNet | None:
        """The pose network, or ``None`` for a stereo-only model (see :attr:`has_pose`)."""
        return self.networks.pose_net

    @property
    def has_pose(self) -> bool:
        """Whether the model has a PoseNet (needed by :meth:`predict_pose` and trajectories)."""
        return self.networks.pose_net is not None

    def describe(self) -> dict[str, Any]:
        """Plain-data summary (for logs and JSON)."""
        m = self.config.model
        return {
            "source": self.source,
            "step": self.step,
            "stage": self.stage,
            "input_size": [self.height, self.width],
            "depth_network": f"resnet{m.depth_layers} + {m.depth_decoder} decoder",
            "pose_network": f"resnet{m.pose_layers}" if self.has_pose else None,
            "frame_ids": list(self.config.data.frame_ids),
            "depth_kind": self.depth_kind,
            "metric_factor": self.metric_factor,
            "scale_note": self.scale_note,
            "depth_range": [self.min_depth, self.max_depth],
            "device": str(self.device),
            "amp": self.amp,
            "backend": self.backend,
            "backend_note": self.backend_note,
        }

    def __repr__(self) -> str:
        d = self.describe()
        return (f"Model({d['depth_network']}, {self.height}x{self.width}, depth_kind={self.depth_kind!r}, "
                f"device={d['device']}, backend={self.backend!r})")

    def to(self, device: str | torch.device) -> "Model":
        """Move the networks to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``); returns ``self``.

        The backend asked for is resolved again for the new device (``auto`` on CUDA is ``channels_last``).

        Raises:
            ValueError: an explicit ``onnxruntime`` backend and a non-CPU device.
        """
        device = resolve_device(device, key="device")
        name, note = resolve_backend(self.backend_requested, device, amp=self.amp, shared=not self._owns_networks)
        self.device = device
        self.networks.to(self.device)
        self._use_backend(name, note)
        return self

    def set_backend(self, backend: str) -> "Model":
        """Run the networks with ``backend``: ``"auto"``, ``"eager"``, ``"channels_last"`` or ``"onnxruntime"``
        (see :mod:`featdepth.inference.backends`); returns ``self``.

        ``onnxruntime`` exports the networks on first use (or reads them from the disk cache); if that fails, an
        ``auto`` model warns and continues with ``channels_last``, an explicit one raises a RuntimeError naming
        the backend and the reason.

        Raises:
            ValueError: an unknown backend, or one that cannot run here (the message names it and says why).
        """
        name, note = resolve_backend(backend, self.device, amp=self.amp, shared=not self._owns_networks)
        self.backend_requested = str(backend).strip().lower().replace("-", "_")
        self._use_backend(name, note)
        return self

    def _use_backend(self, name: str, note: str) -> None:
        self.backend, self.backend_note = name, note
        if self._owns_networks:
            fmt = torch.channels_last if name == "channels_last" else torch.contiguous_format
            with torch.inference_mode(False):  # a fallback inside predict_depth: keep the weights normal tensors
                self.networks.to(memory_format=fmt)
        if name != "onnxruntime":
            self._engine = None
        elif self._engine is None:
            self._engine = OnnxRuntimeEngine(self)

    def _onnx_ready(self, kind: str, images: Tensor) -> bool:
        """Whether the onnxruntime graph ``kind`` runs ``images`` (training size; exported on first use). On a
        failed export: ``auto`` warns and switches to ``channels_last``; an explicit backend raises."""
        if self.backend != "onnxruntime" or self._engine is None:
            return False
        if tuple(images.shape[-2:]) != (self.height, self.width):
            return False  # the graphs have the training size; other sizes run in PyTorch
        try:
            self._engine.graph(kind)
            return True
        except Exception as exc:  # noqa: BLE001 - export, verification or onnxruntime: report and fall back
            text = str(exc).strip()
            reason = (text.splitlines()[0][:300] if text else type(exc).__name__)
            what = f"backend 'onnxruntime' could not run the {kind} network of {self.source}: {reason}"
            if self.backend_requested != "auto":
                raise RuntimeError(what) from exc
            warnings.warn(f"{what}; using channels_last instead", RuntimeWarning, stacklevel=4)
            self._use_backend("channels_last", f"auto: onnxruntime failed ({reason}); channels_last instead")
            return False

    def _torch_input(self, images: Tensor) -> Tensor:
        x = images.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.backend == "channels_last" else x

    # -- intrinsics ----------------------------------------------------------------------
    def set_intrinsics(self, K: Any, image_size: tuple[int, int] | None = None) -> None:
        """Store intrinsics: normalised (``"kitti"``, 4 numbers, 3×3), or pixel ones with ``image_size=(H, W)``."""
        if image_size is None:
            self.K = _normalise_intrinsics_arg(K)
            return
        arr = np.asarray(K, dtype=np.float64)
        if arr.shape == (4,):
            arr = np.array([[arr[0], 0, arr[2]], [0, arr[1], arr[3]], [0, 0, 1.0]])
        if arr.shape != (3, 3):
            raise ValueError(f"pixel intrinsics must be 3x3 or (fx, fy, cx, cy), got shape {arr.shape}")
        h, w = image_size
        norm = arr.copy()
        norm[0] /= w
        norm[1] /= h
        self.K = norm

    def intrinsics(self, height: int, width: int) -> np.ndarray | None:
        """Pixel intrinsics ``(3,3)`` for an image of ``height × width`` from the normalised ``K`` (or None)."""
        if self.K is None:
            return None
        K = self.K.copy()
        K[0] *= width
        K[1] *= height
        return K

    def _normalised_K_for(self, images: list[Tensor], K: Any) -> list[np.ndarray]:
        """Normalised ``(3,3)`` intrinsics of every image: from ``K`` (pixel intrinsics of the input
        resolution, ``(3,3)`` or ``(fx, fy, cx, cy)``, one for all images) or else from the model's ``K``."""
        if K is None:
            if self.K is None:
                raise ValueError(
                    "camera_height needs intrinsics and none are known: pass K= (pixel 3x3 or fx, fy, cx, cy of the "
                    "input resolution), call set_intrinsics(...), or load the model with intrinsics= (e.g. 'kitti')"
                )
            return [self.K.copy() for _ in images]
        arr = np.asarray(K, dtype=np.float64)
        if arr.shape == (4,):
            arr = np.array([[arr[0], 0, arr[2]], [0, arr[1], arr[3]], [0, 0, 1.0]])
        if arr.shape != (3, 3) or not np.all(np.isfinite(arr)) or arr[0, 0] <= 0 or arr[1, 1] <= 0:
            raise ValueError(f"K must be pixel intrinsics of the input, 3x3 or (fx, fy, cx, cy) with fx, fy > 0, got {K!r}")
        out = []
        for im in images:
            h, w = im.shape[-2:]
            norm = arr.copy()
            norm[0] /= w
            norm[1] /= h
            out.append(norm)
        return out

    def _recover_scales(self, disp_small: Tensor, K_norm: Sequence[np.ndarray], camera_height: float,
                        sizes: Sequence[tuple[int, int]] = (), keep_aspect: bool = False,
                        height_from: str = "plane") -> list[ScaleRecoveryResult]:
        """Scale recovery on the network-unit depth of ``disp_small`` ``(B,1,h,w)`` (network resolution).

        ``K_norm``: normalised intrinsics of the inputs; with ``keep_aspect`` the inputs of ``sizes`` ``(H, W)``
        were padded (:meth:`_aspect_padding`) before the resize, which shifts and renormalises them."""
        if keep_aspect:
            padded = []
            for k, (ih, iw) in zip(K_norm, sizes):
                left, right, top, bottom = self._aspect_padding(ih, iw)
                px = k * np.array([[iw], [ih], [1.0]])
                px[0, 2] += left
                px[1, 2] += top
                padded.append(px / np.array([[iw + left + right], [ih + top + bottom], [1.0]]))
            K_norm = padded
        _, depth = disp_to_depth(disp_small.float(), self.network_min_depth, self.network_max_depth)
        h, w = depth.shape[-2:]
        K = np.stack([k * np.array([[w], [h], [1.0]]) for k in K_norm])
        return recover_scale_from_camera_height_batch(depth.cpu(), torch.from_numpy(K).float(), camera_height,
                                                      height_from=height_from)

    # -- running -------------------------------------------------------------------------
    def _autocast(self):
        if self.amp is None:
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _batches(self, images: list[Tensor], batch_size: int):
        for start in range(0, len(images), batch_size):
            yield start, images[start : start + batch_size]

    @contextlib.contextmanager
    def evaluating(self) -> Iterator["Model"]:
        """Put the networks in ``eval()`` for the block and restore each module's mode afterwards (for
        networks shared with a trainer)."""
        modes = [(m, m.training) for m in self.networks.modules()]
        self.networks.eval()
        try:
            yield self
        finally:
            for m, mode in modes:
                m.training = mode

    @torch.no_grad()
    def disparity(self, images: Tensor) -> Tensor:
        """Finest-scale sigmoid disparity of a batch already at the network size.

        Args:
            images: ``(B,3,H,W)`` float in ``[0,1]`` on any device (moved to the model's).

        Returns:
            ``(B,1,H',W')`` float32 on the model's device (``H' = H`` for the FeatDepth and monodepth2
            decoders). The networks' modes are not changed: use :meth:`evaluating`. Runs with the model's
            :attr:`backend`: the onnxruntime graph for batches at the training size, else the PyTorch network
            (always for :meth:`from_networks` models).
        """
        if self._onnx_ready("depth", images):
            return self._engine.disparity(images).to(self.device)
        with self._autocast():
            disp = self.networks.depth_net(self._torch_input(images))[0]
        return disp.float().contiguous()

    @torch.no_grad()
    def relative_pose(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:
        """``T_{b<-a}`` ``(B,4,4)`` float32 for batches ``(B,3,H,W)`` at the network size (PoseNet sees
        ``(earlier=a, later=b)``); see :meth:`predict_pose` for the convention. Runs with the model's
        :attr:`backend`, like :meth:`disparity`."""
        if self.networks.pose_net is None:
            raise ValueError(
                f"this model ({self.source}) has no PoseNet: the checkpoint holds no pose weights "
                f"(training frames {self.config.data.frame_ids})"
            )
        if self._onnx_ready("pose", frame_a):
            return self._engine.pose(frame_a, frame_b).to(self.device)
        with self._autocast():
            axis_angle, translation = self.networks.pose_net(self._torch_input(frame_a), self._torch_input(frame_b))
        return pose_from_axis_angle_translation(axis_angle.float(), translation.float())

    @torch.inference_mode()
    def _disparity_at_training_size(self, batch: list[Tensor], keep_aspect: bool = False) -> Tensor:
        if keep_aspect:
            batch = [F.pad(im.unsqueeze(0), self._aspect_padding(*im.shape[-2:]), mode="replicate")[0] for im in batch]
        x = torch.stack([_resize(im.unsqueeze(0), (self.height, self.width))[0] for im in batch])
        with self.evaluating():
            return self.disparity(x)

    def aspect_mismatch(self, height: int, width: int) -> float:
        """Relative difference between an input's aspect ratio and the training size's: ``|(w/h) / (W/H) - 1|``.

        Above :data:`ASPECT_TOLERANCE` (0.15) the resize to the training size distorts the image enough
        to bias the depth; :meth:`predict_depth` then warns, and ``keep_aspect=True`` avoids the distortion.
        """
        return abs((width / height) / (self.width / self.height) - 1.0)

    def _aspect_padding(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` padding that brings ``h x w`` to the training aspect ratio."""
        target = self.width / self.height
        if w / h < target:
            extra = max(0, round(h * target) - w)
            return extra // 2, extra - extra // 2, 0, 0
        extra = max(0, round(w / target) - h)
        return 0, 0, extra // 2, extra - extra // 2

    def _to_input_size(self, d: Tensor, size: tuple[int, int], keep_aspect: bool) -> Tensor:
        """Network-size disparity ``(1,h,w)`` -> ``(1,1,H,W)`` of the input (cropping the padding of ``keep_aspect``)."""
        if not keep_aspect:
            return F.interpolate(d.unsqueeze(0), size=size, mode="bilinear", align_corners=False)
        left, right, top, bottom = self._aspect_padding(*size)
        full = F.interpolate(d.unsqueeze(0), size=(size[0] + top + bottom, size[1] + left + right), mode="bilinear",
                             align_corners=False)
        return full[..., top : top + size[0], left : left + size[1]]

    def _warn_aspect(self, images: list[Tensor]) -> None:
        for i, im in enumerate(images):
            h, w = im.shape[-2:]
            off = self.aspect_mismatch(h, w)
            if off > ASPECT_TOLERANCE:
                warnings.warn(
                    f"{'an input' if len(images) == 1 else f'input {i}'} is {w}x{h} (aspect {w / h:.2f}), {off:.0%} away from "
                    f"the training size {self.width}x{self.height} (aspect {self.width / self.height:.2f}): resizing "
                    "distorts it and biases the depth; pass keep_aspect=True (CLI: --keep-aspect) to pad it to the "
                    "training aspect instead", AspectRatioWarning, stacklevel=3)
                return

    def predict_depth(
        self,
        image: Any,
        *,
        return_disparity: bool = False,
        scale: float | None = None,
        batch_size: int | None = None,
        keep_aspect: bool = False,
        camera_height: float | None = None,
        K: Any = None,
        height_from: str = "plane",
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray] | list:
        """Depth for one image or a batch, at the input's resolution.

        ``predict_depth(image, camera_height=1.65)`` returns metres for any model: the scale of each image comes
        from the ground plane of its own predicted depth and the known camera height
        (:func:`~featdepth.geometry.scale_recovery.recover_scale_from_camera_height`, on the network-resolution
        depth). For a video prefer :meth:`predict_depth_sequence` (one median scale for all frames).

        Args:
            image: a PIL image, a NumPy array ``(H,W,3)`` (uint8 or float in ``[0,1]``) or ``(B,H,W,3)``,
                a tensor ``(3,H,W)`` or ``(B,3,H,W)`` (float in ``[0,1]``), a path, or a list of these.
                Any resolution: each image is resized (bilinear) to the training size and the output
                resized back (bilinear).
            return_disparity: also return the network's sigmoid disparity in ``(0,1)`` (what the
                colour maps show), upsampled to the input resolution.
            scale: factor on the network's depth; default ``metric_factor`` (see ``depth_kind``).
            batch_size: images per forward pass (default: the model's, 8).
            keep_aspect: pad each image (edge pixels repeated, symmetrically) to the training aspect ratio
                before the resize, and crop the prediction back: no distortion, the output is still at the
                input's size. Without it, an input whose aspect ratio is more than 15 % away from the
                training size's gives an :class:`AspectRatioWarning`.
            camera_height: the camera's height above the ground in metres (> 0); replaces ``scale`` by the
                recovered per-image metric scale.
            K: with ``camera_height``: pixel intrinsics ``(3,3)`` or ``(fx, fy, cx, cy)`` of the input
                resolution (default: the model's normalised ``K``, see :meth:`set_intrinsics`).
            height_from: with ``camera_height``: ``"plane"`` (default, any camera orientation) or ``"level"``
                (a camera mounted level, e.g. on a car like KITTI's: more accurate on predicted depth); see
                :mod:`featdepth.geometry.scale_recovery`, step 6.

        Returns:
            ``depth`` float32 ``(H,W)`` for one image, ``(B,H,W)`` for a batch (a list of ``(H_i,W_i)``
            arrays for a list of differently sized images); with ``return_disparity``, ``(depth, disp)``.
            Depth lies in ``[min_depth, max_depth]`` times ``scale / metric_factor``.

        Raises:
            ValueError: a bad ``scale`` / ``camera_height`` / ``K``; with ``camera_height``: no intrinsics known,
                or an image whose ground plane was not found (the message gives the reason, e.g. "no ground plane
                found: only 3% of the lower 50% of the image ... lies on a near-horizontal plane ...").
        """
        images, single = to_image_list(image)
        if camera_height is not None:
            if scale is not None:
                raise ValueError("give either scale= or camera_height= (which recovers the scale), not both")
            camera_height = check_camera_height(camera_height)
            height_from = check_height_from(height_from)
            K_norm = self._normalised_K_for(images, K)
        elif K is not None:
            raise ValueError("K= is used only with camera_height= (for the ground plane); for points use predict_points")
        factor = self.metric_factor if scale is None else float(scale)
        if not factor > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        bs = int(batch_size or self.batch_size)
        depths: list[np.ndarray] = []
        disps: list[np.ndarray] = []
        if not keep_aspect:
            self._warn_aspect(images)
        for start, batch in self._batches(images, bs):
            disp_small = self._disparity_at_training_size(batch, keep_aspect)
            factors = [factor] * len(batch)
            if camera_height is not None:
                results = self._recover_scales(disp_small, K_norm[start : start + len(batch)], camera_height,
                                               [tuple(im.shape[-2:]) for im in batch], keep_aspect, height_from)
                for j, r in enumerate(results):
                    if not r.ok:
                        what = "the image" if single else f"image {start + j}"
                        raise ValueError(f"{what}: cannot recover the metric scale from the camera height "
                                         f"({camera_height:g} m): {r.reason}")
                factors = [r.scale for r in results]
            for im, d, f in zip(batch, disp_small, factors):
                d_full = self._to_input_size(d, tuple(im.shape[-2:]), keep_aspect)
                _, depth = disp_to_depth(d_full, self.network_min_depth, self.network_max_depth)
                depths.append((depth[0, 0] * f).cpu().numpy().astype(np.float32))
                disps.append(d_full[0, 0].cpu().numpy().astype(np.float32))
        if single:
            out_depth: Any = depths[0]
            out_disp: Any = disps[0]
        elif len({d.shape for d in depths}) == 1:
            out_depth, out_disp = np.stack(depths), np.stack(disps)
        else:
            out_depth, out_disp = depths, disps
        return (out_depth, out_disp) if return_disparity else out_depth

    def scale_from_camera_height(self, image: Any, camera_height: float, *, K: Any = None,
                                 batch_size: int | None = None, keep_aspect: bool = False,
                                 height_from: str = "plane") -> ScaleRecoveryResult | list[ScaleRecoveryResult]:
        """The metric scale of the network's depth for one image (or a batch) from the known camera height.

        Runs the depth network at its training size and fits the ground plane to the back-projected depth
        (:func:`~featdepth.geometry.scale_recovery.recover_scale_from_camera_height`). A frame without a usable
        ground plane is not an error here: its result has ``ok=False``, ``scale=nan`` and the ``reason``.

        Args:
            image: as for :meth:`predict_depth`.
            camera_height: the camera's height above the ground in metres (> 0).
            K: pixel intrinsics of the input resolution (default: the model's normalised ``K``).
            keep_aspect: as for :meth:`predict_depth` (the network sees the padded image).
            height_from: ``"plane"`` or ``"level"``, as for :meth:`predict_depth`.

        Returns:
            A :class:`~featdepth.geometry.scale_recovery.ScaleRecoveryResult` (a list for a batch): ``scale``
            multiplies the network's depth (``predict_depth(image, scale=result.scale)`` is in metres).
        """
        images, single = to_image_list(image)
        camera_height = check_camera_height(camera_height)
        height_from = check_height_from(height_from)
        K_norm = self._normalised_K_for(images, K)
        results: list[ScaleRecoveryResult] = []
        for start, batch in self._batches(images, int(batch_size or self.batch_size)):
            results.extend(self._recover_scales(self._disparity_at_training_size(batch, keep_aspect),
                                                K_norm[start : start + len(batch)], camera_height,
                                                [tuple(im.shape[-2:]) for im in batch], keep_aspect, height_from))
        return results[0] if single else results

    def predict_depth_sequence(self, frames: Any, camera_height: float, *, K: Any = None,
                               batch_size: int | None = None, min_accepted: int = 1,
                               height_from: str = "plane") -> MetricDepthSequence:
        """Metric depth of a video's frames with ONE scale: the median of the per-frame recovered scales.

        Frames whose ground plane was not found (e.g. a wall or a car filling the view) get the sequence
        scale too; the median is robust to the per-frame noise of the plane fit.

        Args:
            frames: a list of images, a ``(N,H,W,3)`` array or a ``(N,3,H,W)`` tensor (as for :meth:`predict_depth`).
            camera_height: the camera's height above the ground in metres (> 0).
            K: pixel intrinsics of the input resolution (default: the model's normalised ``K``).
            min_accepted: least number of frames with a ground plane.
            height_from: ``"plane"`` or ``"level"``, as for :meth:`predict_depth`.

        Returns:
            :class:`MetricDepthSequence` ``(depth, scale, frames)``.

        Raises:
            ValueError: bad arguments, no intrinsics, or fewer than ``min_accepted`` accepted frames (the
                message gives the rejection reasons).
        """
        images, _ = to_image_list(frames, "frames")
        camera_height = check_camera_height(camera_height)
        height_from = check_height_from(height_from)
        K_norm = self._normalised_K_for(images, K)
        results: list[ScaleRecoveryResult] = []
        raw: list[Tensor] = []
        for start, batch in self._batches(images, int(batch_size or self.batch_size)):
            disp_small = self._disparity_at_training_size(batch)
            results.extend(self._recover_scales(disp_small, K_norm[start : start + len(batch)], camera_height,
                                                height_from=height_from))
            for im, d in zip(batch, disp_small):
                d_full = F.interpolate(d.unsqueeze(0), size=tuple(im.shape[-2:]), mode="bilinear", align_corners=False)
                raw.append(disp_to_depth(d_full, self.network_min_depth, self.network_max_depth)[1][0, 0].cpu())
        seq = sequence_scale(results, min_accepted=min_accepted)
        depths = [(d * seq.scale).numpy().astype(np.float32) for d in raw]
        out: Any = np.stack(depths) if len({d.shape for d in depths}) == 1 else depths
        return MetricDepthSequence(out, seq, results)

    @torch.inference_mode()
    def _pose(self, a: list[Tensor], b: list[Tensor]) -> Tensor:
        size = (self.height, self.width)
        xa = torch.stack([_resize(im.unsqueeze(0), size)[0] for im in a])
        xb = torch.stack([_resize(im.unsqueeze(0), size)[0] for im in b])
        with self.evaluating():
            return self.relative_pose(xa, xb).cpu().double()

    def predict_pose(self, frame_a: Any, frame_b: Any, *, scale: float | None = None) -> np.ndarray:
        """Relative camera motion between two frames.

        Convention: returns ``T_{b<-a}``, the rigid transform that maps 3-D points from camera ``a``'s
        frame into camera ``b``'s frame, ``X_b = R X_a + t`` (``T_src_tgt`` with target ``a`` and
        source ``b`` in docs/design.md). PoseNet sees ``(earlier=a, later=b)``, the order it was
        trained with, so pass frames in time order; the camera motion from ``a`` to ``b`` in ``a``'s
        frame is ``inv(T)``. The translation is multiplied by ``scale`` (default ``metric_factor``),
        consistently with :meth:`predict_depth`.

        Args:
            frame_a, frame_b: images as for :meth:`predict_depth` (single images or equal-size batches).

        Returns:
            ``(4,4)`` float64 for single frames, ``(B,4,4)`` for batches.
        """
        a, single_a = to_image_list(frame_a, "frame_a")
        b, single_b = to_image_list(frame_b, "frame_b")
        if len(a) != len(b):
            raise ValueError(f"frame_a has {len(a)} images but frame_b has {len(b)}")
        factor = self.metric_factor if scale is None else float(scale)
        out = []
        for start in range(0, len(a), self.batch_size):
            out.append(self._pose(a[start : start + self.batch_size], b[start : start + self.batch_size]))
        T = torch.cat(out).numpy()
        T[:, :3, 3] *= factor
        return T[0] if (single_a and single_b) else T

    def predict_relative_poses(self, frames: Sequence[Any], *, scale: float | None = None) -> np.ndarray:
        """``T_{i+1<-i}`` for consecutive frames -> ``(N-1, 4, 4)`` float64 (for :func:`~featdepth.evaluation.trajectory.chain_relative_poses`)."""
        images, _ = to_image_list(list(frames), "frames")
        if len(images) < 2:
            raise ValueError(f"need at least 2 frames for relative poses, got {len(images)}")
        return np.asarray(self.predict_pose(images[:-1], images[1:], scale=scale)).reshape(-1, 4, 4)

    def predict_points(self, image: Any, K: Any = None, *, scale: float | None = None,
                       keep_aspect: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Coloured 3-D points of one image: ``(points (H*W,3) float32, colours (H*W,3) uint8)``.

        Args:
            image: one image, as for :meth:`predict_depth`.
            K: pixel intrinsics of the input resolution, in the forms ``featdepth predict --intrinsics``
                takes: a ``(3,3)`` matrix, four numbers ``(fx, fy, cx, cy)``, the text ``"fx fy cx cy"``,
                or a file (3x3, ``fx fy cx cy``, KITTI ``calib.txt`` / ``calib_cam_to_cam.txt``: camera P2).
                Default: the model's normalised ``K`` scaled to the input (see :meth:`set_intrinsics`).
            scale: factor on the network's depth (default ``metric_factor``).
            keep_aspect: see :meth:`predict_depth`.

        Returns:
            Points in the camera frame (x right, y down, z forward, units of the depth), in row-major
            pixel order, and their RGB colours.

        Raises:
            ValueError: a single image is required; no intrinsics known; malformed ``K`` (the message
                names the file or shows the value).
        """

        images, single = to_image_list(image)
        if not single:
            raise ValueError("predict_points takes a single image")
        im = images[0]
        h, w = im.shape[-2:]
        K_px = as_pixel_intrinsics(K) if K is not None else self.intrinsics(h, w)
        if K_px is None:
            raise ValueError("no intrinsics: pass K= (pixel 3x3 or 'fx fy cx cy' of the input) or load the model "
                             "with intrinsics=")
        depth = self.predict_depth(im, scale=scale, keep_aspect=keep_aspect)
        points = depth_to_points(depth, K_px)
        colours = (im.permute(1, 2, 0).reshape(-1, 3).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        return points, colours


#: The name this type had before the package was restructured (kept for user code).
DepthModel = Model
