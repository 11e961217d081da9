"""Pinhole camera intrinsics: normalised <-> pixel form, rescaling, homogeneous form, closed-form inverse.

Conventions (see ``docs/design.md``):

- Pixel intrinsics ``K`` are ``(..., 3, 3)`` upper-triangular matrices
  ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, with pixel centres at integer coordinates
  (``u = 0..W-1`` is the column, ``v = 0..H-1`` the row). The homogeneous form is the ``(..., 4, 4)``
  matrix ``[[K, 0], [0, 1]]``.
- KITTI-style normalised intrinsics are ``(fx/W, fy/H, cx/W, cy/H)``.
- ``K`` for a map of stride ``s`` is ``K`` with rows 0 and 1 divided by ``s`` (the field's convention,
  identical to denormalising the normalised intrinsics at the smaller size).

All functions are pure, differentiable, keep the device and dtype of their tensor inputs, and never
modify their inputs. The private helpers at the bottom are shared with :mod:`featdepth.geometry.pose`
and :mod:`featdepth.geometry.warp`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = [
    "intrinsics_from_normalized",
    "normalize_intrinsics",
    "scale_intrinsics",
    "intrinsics_for_stride",
    "resize_intrinsics",
    "to_homogeneous_intrinsics",
    "from_homogeneous_intrinsics",
    "invert_intrinsics",
]


# ----------------------------------------------------------------------------------------------------------------
# private helpers (shared by the geometry modules)
# ----------------------------------------------------------------------------------------------------------------


def _check_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _check_intrinsics(K: object, name: str = "K", allow_batch: bool = True) -> Tensor:
    """Check that ``K`` is a ``(..., 3, 3)`` or ``(..., 4, 4)`` tensor; raise ValueError naming it otherwise."""
    K = _check_tensor(K, name)
    if K.dim() < 2 or K.shape[-2:] not in ((3, 3), (4, 4)) or (not allow_batch and K.dim() != 2):
        expected = "(..., 3, 3) or (..., 4, 4)" if allow_batch else "(3, 3) or (4, 4)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(K.shape)}")
    return K


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _geometry_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any tensor is float64, else float32 (half / bfloat16 / integer inputs are upcast)."""
    for t in tensors:
        if t is not None and t.dtype == torch.float64:
            return torch.float64
    return torch.float32


@contextlib.contextmanager
def _autocast_disabled(device: torch.device) -> Iterator[None]:
    """Disable autocast for ``device``'s type (geometry runs in float32 even inside an autocast region)."""
    device_type = device.type
    if torch.amp.is_autocast_available(device_type):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:
        yield


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------


def intrinsics_from_normalized(norm: Tensor | Sequence[float], height: int, width: int) -> Tensor:
    """Pixel intrinsics from KITTI-style normalised intrinsics.

    Args:
        norm: ``(..., 4)`` tensor or a sequence of four numbers ``[fx/W, fy/H, cx/W, cy/H]`` (unitless).
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.

    Returns:
        Pixel intrinsics ``(..., 3, 3)`` ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels; ``(3, 3)`` for a
        sequence. A sequence gives float32 on the CPU; a floating tensor keeps its dtype and device (an
        integer tensor becomes float32).

    Example:
        >>> intrinsics_from_normalized([0.58, 1.92, 0.5, 0.5], 320, 1024)[0, 0]  # fx = 0.58 * 1024
        tensor(593.9200)
    """
    height = _check_size(height, "height")
    width = _check_size(width, "width")
    if isinstance(norm, Tensor):
        n = norm if norm.is_floating_point() else norm.to(torch.float32)
    else:
        values = list(norm)
        if len(values) != 4:
            raise ValueError(f"norm must have 4 values [fx/W, fy/H, cx/W, cy/H], got {len(values)}: {values!r}")
        n = torch.tensor([float(v) for v in values], dtype=torch.float32)
    if n.dim() < 1 or n.shape[-1] != 4:
        raise ValueError(f"norm must have shape (..., 4), got {tuple(n.shape)}")
    fx_n, fy_n, cx_n, cy_n = n.unbind(-1)
    zero = torch.zeros_like(fx_n)
    one = torch.ones_like(fx_n)
    rows = [
        torch.stack([fx_n * width, zero, cx_n * width], dim=-1),
        torch.stack([zero, fy_n * height, cy_n * height], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def normalize_intrinsics(K: Tensor, height: int, width: int) -> Tensor:
    """KITTI-style normalised intrinsics from pixel intrinsics; exact inverse of :func:`intrinsics_from_normalized`.

    Args:
        K: pixel intrinsics ``(..., 3, 3)`` or ``(..., 4, 4)`` (the skew ``K[0, 1]`` is dropped).
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.

    Returns:
        ``(..., 4)`` tensor ``[fx/W, fy/H, cx/W, cy/H]`` with ``K``'s dtype and device.
    """
    K = _check_intrinsics(K)
    height = _check_size(height, "height")
    width = _check_size(width, "width")
    return torch.stack(
        [K[..., 0, 0] / width, K[..., 1, 1] / height, K[..., 0, 2] / width, K[..., 1, 2] / height], dim=-1
    )


def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """Scale pixel intrinsics for an image resized by ``sx`` horizontally and ``sy`` vertically.

    Row 0 (``fx``, skew, ``cx``) is multiplied by ``sx`` and row 1 (``fy``, ``cy``) by ``sy``: the field's
    convention, which equals denormalising the normalised intrinsics at the new size.

    Args:
        K: pixel intrinsics ``(..., 3, 3)`` or ``(..., 4, 4)``.
        sx: horizontal scale factor (new width / old width).
        sy: vertical scale factor (new height / old height).

    Returns:
        A new tensor with ``K``'s shape, dtype and device.
    """
    K = _check_intrinsics(K)
    n = K.shape[-1]
    scale = torch.ones(n, 1, dtype=K.dtype, device=K.device)
    scale[0, 0] = float(sx)
    scale[1, 0] = float(sy)
    return K * scale


def intrinsics_for_stride(K: Tensor, stride: int) -> Tensor:
    """Intrinsics of a map with the given stride (e.g. ``stride=2`` for the H/2 FeatureNet features).

    Equal to ``scale_intrinsics(K, 1/stride, 1/stride)``: ``fx, cx, fy, cy`` (and the skew) divided by ``stride``.

    Args:
        K: full-resolution pixel intrinsics ``(..., 3, 3)`` or ``(..., 4, 4)``.
        stride: positive integer stride of the map.

    Returns:
        A new tensor with ``K``'s shape, dtype and device.
    """
    stride = _check_size(stride, "stride")
    return scale_intrinsics(K, 1.0 / stride, 1.0 / stride)


def resize_intrinsics(K: Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """Intrinsics for an image resized from ``old_size`` to ``new_size`` (both ``(H, W)`` in pixels).

    Equal to ``scale_intrinsics(K, W_new / W_old, H_new / H_old)``.

    Args:
        K: pixel intrinsics of the ``old_size`` image, ``(..., 3, 3)`` or ``(..., 4, 4)``.
        old_size: ``(H, W)`` of the image ``K`` belongs to.
        new_size: ``(H, W)`` of the resized image.

    Returns:
        A new tensor with ``K``'s shape, dtype and device.
    """
    for name, size in (("old_size", old_size), ("new_size", new_size)):
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise ValueError(f"{name} must be a (height, width) pair, got {size!r}")
        _check_size(size[0], f"{name}[0] (height)")
        _check_size(size[1], f"{name}[1] (width)")
    (h0, w0), (h1, w1) = old_size, new_size
    return scale_intrinsics(K, w1 / w0, h1 / h0)


def to_homogeneous_intrinsics(K3: Tensor) -> Tensor:
    """Embed ``(..., 3, 3)`` intrinsics into the ``(..., 4, 4)`` homogeneous form ``[[K, 0], [0, 1]]``."""
    K3 = _check_tensor(K3, "K3")
    if K3.dim() < 2 or K3.shape[-2:] != (3, 3):
        raise ValueError(f"K3 must have shape (..., 3, 3), got {tuple(K3.shape)}")
    K4 = torch.nn.functional.pad(K3, (0, 1, 0, 1))  # zeros in the new row and column
    corner = torch.zeros(4, 4, dtype=K3.dtype, device=K3.device)
    corner[3, 3] = 1.0
    return K4 + corner


def from_homogeneous_intrinsics(K4: Tensor) -> Tensor:
    """Top-left ``(..., 3, 3)`` block of ``(..., 4, 4)`` homogeneous intrinsics (a copy)."""
    K4 = _check_tensor(K4, "K4")
    if K4.dim() < 2 or K4.shape[-2:] != (4, 4):
        raise ValueError(f"K4 must have shape (..., 4, 4), got {tuple(K4.shape)}")
    return K4[..., :3, :3].clone()


def invert_intrinsics(K: Tensor) -> Tensor:
    """Closed-form inverse of upper-triangular intrinsics (no ``pinverse``, no LU).

    For ``K = [[fx, s, cx], [0, fy, cy], [0, 0, k]]``::

        K^-1 = [[1/fx, -s/(fx fy), (s cy - cx fy)/(fx fy k)],
                [0,     1/fy,      -cy/(fy k)],
                [0,     0,          1/k]]

    and a ``(..., 4, 4)`` matrix ``[[A, b], [0, w]]`` (``A`` the 3x3 block) inverts to
    ``[[A^-1, -A^-1 b / w], [0, 1/w]]``. Entries below the diagonal are assumed zero and ignored.

    Args:
        K: ``(..., 3, 3)`` or ``(..., 4, 4)`` pixel intrinsics with non-zero diagonal.

    Returns:
        ``K^-1`` with ``K``'s shape, dtype and device.
    """
    K = _check_intrinsics(K)
    fx, s, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
    fy, cy = K[..., 1, 1], K[..., 1, 2]
    k = K[..., 2, 2]
    zero = torch.zeros_like(fx)
    inv_fx, inv_fy, inv_k = 1.0 / fx, 1.0 / fy, 1.0 / k
    a00, a01, a02 = inv_fx, -s * inv_fx * inv_fy, (s * cy - cx * fy) * inv_fx * inv_fy * inv_k
    a11, a12 = inv_fy, -cy * inv_fy * inv_k
    rows = [[a00, a01, a02], [zero, a11, a12], [zero, zero, inv_k]]
    if K.shape[-1] == 4:
        b0, b1, b2 = K[..., 0, 3], K[..., 1, 3], K[..., 2, 3]
        inv_w = 1.0 / K[..., 3, 3]
        # -A^-1 b / w, written out elementwise (autocast-proof, no matmul)
        c0 = -(a00 * b0 + a01 * b1 + a02 * b2) * inv_w
        c1 = -(a11 * b1 + a12 * b2) * inv_w
        c2 = -(inv_k * b2) * inv_w
        rows = [rows[0] + [c0], rows[1] + [c1], rows[2] + [c2], [zero, zero, zero, inv_w]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)
