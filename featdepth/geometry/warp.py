"""View synthesis: back-projection, rigid transform, projection, and depth-based warping with ``grid_sample``.

Conventions (see ``docs/design.md``):

- Pixel centres are at integer coordinates: ``u = 0..W-1`` (column), ``v = 0..H-1`` (row).
- ``depth`` is the camera-frame ``z`` (not the ray length) of every target pixel, in scene units.
- ``K`` is ``(B, 3, 3)`` or ``(B, 4, 4)`` pixel intrinsics (only the top-left 3x3 block is used); an unbatched
  ``(3, 3)`` / ``(4, 4)`` matrix is expanded to the batch. A batched ``K`` must have exactly ``B`` entries.
- ``T_src_tgt`` maps target-camera points into the source camera: ``X_src = R X_tgt + t``.
- Normalisation for ``grid_sample``: with ``align_corners=True`` pixel ``u`` maps to ``2u/(W-1) - 1``; with
  ``False`` to ``(2u+1)/W - 1``. The same flag is always passed to ``grid_sample``, so an identity warp
  reproduces the source exactly under either setting (the official code normalised with ``W-1`` but sampled
  with PyTorch's default ``align_corners=False``, a sub-pixel misregistration; docs/method.md §7 item 6).

Precision: the geometry runs with autocast disabled, in float32 (float64 if any geometric input is float64,
for gradcheck); half-precision depth / K / T are upcast. The source is sampled in float32 (float64 for a
float64 source) and the warped result is returned in the source's dtype.

Nothing here depends on the batch size: pixel grids are built from the input's (H, W, device, dtype) and
cached per key; the ``nn.Module`` twins hold no buffers.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featdepth.geometry.camera import (
    _autocast_disabled,
    _check_intrinsics,
    _check_size,
    _check_tensor,
    _geometry_dtype,
    invert_intrinsics,
)

__all__ = [
    "pixel_grid",
    "backproject",
    "transform_points",
    "project",
    "pixels_to_grid",
    "warp",
    "BackprojectDepth",
    "Project3D",
    "Warper",
]

_PADDING_MODES = ("zeros", "border", "reflection")
# Tolerance (pixels) of the inside-the-image test of the validity mask, absorbing float rounding of the
# back-projection / projection round trip (an identity warp must keep its border pixels valid).
_MASK_TOL_PX = 1e-3


@functools.lru_cache(maxsize=32)
def _cached_pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # Built as a normal (non-inference, grad-free) tensor even when first requested inside inference_mode,
    # so that the cached grid can later be used in autograd graphs.
    with torch.inference_mode(False), torch.no_grad():
        v, u = torch.meshgrid(
            torch.arange(height, device=device, dtype=dtype),
            torch.arange(width, device=device, dtype=dtype),
            indexing="ij",
        )
        grid = torch.stack([u, v, torch.ones_like(u)], dim=0).unsqueeze(0)
    return grid


def pixel_grid(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Homogeneous pixel coordinates ``[u, v, 1]`` of every pixel centre.

    Args:
        height: ``H``; width: ``W`` (pixels).
        device: device of the grid (default CPU).
        dtype: floating dtype of the grid (default float32).

    Returns:
        ``(1, 3, H, W)`` tensor with ``grid[0, 0, v, u] = u``, ``grid[0, 1, v, u] = v``, ``grid[0, 2] = 1``.
        The tensor is cached per ``(H, W, device, dtype)`` and shared between callers: do not modify it in
        place.
    """
    height = _check_size(height, "height")
    width = _check_size(width, "width")
    device = torch.device("cpu") if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = torch.float32 if dtype is None else dtype
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    return _cached_pixel_grid(height, width, device, dtype)


# ----------------------------------------------------------------------------------------------------------------
# shape checks
# ----------------------------------------------------------------------------------------------------------------


def _check_depth(depth: object, name: str = "depth") -> Tensor:
    depth = _check_tensor(depth, name)
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(depth.shape)}")
    return depth


def _check_points(points: object, name: str = "points") -> Tensor:
    points = _check_tensor(points, name)
    if points.dim() != 4 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(points.shape)}")
    return points


def _batched_3x3(K: object, name: str, batch: int, dtype: torch.dtype) -> Tensor:
    """Top-left ``(B, 3, 3)`` block of ``K`` (``(B,3,3)``, ``(B,4,4)``, ``(3,3)`` or ``(4,4)``) in ``dtype``."""
    K = _check_intrinsics(K, name)
    if K.dim() == 2:
        K = K.unsqueeze(0).expand(batch, -1, -1)
    elif K.dim() != 3 or K.shape[0] != batch:
        raise ValueError(
            f"{name} must have shape ({batch}, 3, 3), ({batch}, 4, 4), (3, 3) or (4, 4) to match batch size "
            f"{batch}, got {tuple(K.shape)}"
        )
    return K[:, :3, :3].to(dtype)


def _batched_pose(T: object, name: str, batch: int, dtype: torch.dtype) -> Tensor:
    T = _check_tensor(T, name)
    if T.dim() == 2 and T.shape == (4, 4):
        T = T.unsqueeze(0).expand(batch, -1, -1)
    elif T.dim() != 3 or T.shape[1:] != (4, 4) or T.shape[0] != batch:
        raise ValueError(
            f"{name} must have shape ({batch}, 4, 4) or (4, 4) to match batch size {batch}, got {tuple(T.shape)}"
        )
    return T.to(dtype)


# ----------------------------------------------------------------------------------------------------------------
# geometry ops
# ----------------------------------------------------------------------------------------------------------------


def _backproject(depth: Tensor, inv_K3: Tensor) -> Tensor:
    b, _, h, w = depth.shape
    grid = pixel_grid(h, w, device=depth.device, dtype=depth.dtype).reshape(1, 3, h * w)
    rays = inv_K3 @ grid  # (B, 3, H*W), rays with z = 1 for standard intrinsics
    return (depth.reshape(b, 1, h * w) * rays).reshape(b, 3, h, w)


def backproject(depth: Tensor, inv_K: Tensor) -> Tensor:
    """Lift every pixel to a 3-D point in its camera frame: ``X = depth(u, v) * K^-1 [u, v, 1]^T``.

    Args:
        depth: ``(B, 1, H, W)`` camera-frame ``z`` per pixel (scene units, e.g. metres).
        inv_K: ``(B, 3, 3)`` / ``(B, 4, 4)`` inverse pixel intrinsics (top-left 3x3 block used), or unbatched.

    Returns:
        ``(B, 3, H, W)`` camera-frame points ``(x, y, z)`` (x right, y down, z forward), in float32 (float64 if
        ``depth`` or ``inv_K`` is float64), computed with autocast disabled.
    """
    depth = _check_depth(depth)
    with _autocast_disabled(depth.device):
        dtype = _geometry_dtype(depth, inv_K if isinstance(inv_K, Tensor) else None)
        inv_K3 = _batched_3x3(inv_K, "inv_K", depth.shape[0], dtype)
        return _backproject(depth.to(dtype), inv_K3)


def _transform_points(T: Tensor, points: Tensor) -> Tensor:
    b, _, h, w = points.shape
    flat = points.reshape(b, 3, h * w)
    return (T[:, :3, :3] @ flat + T[:, :3, 3:4]).reshape(b, 3, h, w)


def transform_points(T: Tensor, points: Tensor) -> Tensor:
    """Apply a rigid transform to a point map: ``X' = R X + t``.

    Args:
        T: ``(B, 4, 4)`` (or unbatched ``(4, 4)``) transform ``T_dst_src`` mapping points from the frame of
            ``points`` into the destination frame.
        points: ``(B, 3, H, W)`` points.

    Returns:
        ``(B, 3, H, W)`` transformed points in float32 (float64 if an input is float64).
    """
    points = _check_points(points)
    with _autocast_disabled(points.device):
        dtype = _geometry_dtype(points, T if isinstance(T, Tensor) else None)
        T = _batched_pose(T, "T", points.shape[0], dtype)
        return _transform_points(T, points.to(dtype))


def _project(points: Tensor, K3: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    b, _, h, w = points.shape
    cam = K3 @ points.reshape(b, 3, h * w)  # (B, 3, H*W)
    z = points[:, 2:3].reshape(b, 1, h * w)
    # K's last row is (0, 0, 1) for pinhole intrinsics, so cam[:, 2] == z; divide by the clamped z so that
    # points at or behind the camera give finite (far out of view) pixels instead of inf / nan.
    denom = cam[:, 2:3].clamp(min=eps)
    pixels = (cam[:, :2] / denom).reshape(b, 2, h, w).permute(0, 2, 3, 1)
    return pixels, z.reshape(b, 1, h, w)


def project(points: Tensor, K: Tensor, eps: float = 1e-7) -> tuple[Tensor, Tensor]:
    """Perspective projection of camera-frame points to pixel coordinates.

    ``[u, v] = (K X)[:2] / max((K X)[2], eps)``. For points with ``z >= eps`` this is the exact pinhole
    projection; points at or behind the camera (``z < eps``) get finite but meaningless pixels far from the
    image (use ``z`` to mask them, as :func:`warp` does).

    Args:
        points: ``(B, 3, H, W)`` camera-frame points.
        K: ``(B, 3, 3)`` / ``(B, 4, 4)`` pixel intrinsics (top-left 3x3 block used), or unbatched.
        eps: smallest depth used in the division.

    Returns:
        ``pixels``: ``(B, H, W, 2)`` pixel coordinates ``(u, v)`` (column, row; integer pixel centres), and
        ``z``: ``(B, 1, H, W)`` camera-frame depth of each point (unclamped), both in float32 (float64 if an
        input is float64).
    """
    points = _check_points(points)
    with _autocast_disabled(points.device):
        dtype = _geometry_dtype(points, K if isinstance(K, Tensor) else None)
        K3 = _batched_3x3(K, "K", points.shape[0], dtype)
        return _project(points.to(dtype), K3, eps)


def pixels_to_grid(pixels: Tensor, height: int, width: int, align_corners: bool = True) -> Tensor:
    """Normalise pixel coordinates to the ``[-1, 1]`` range of ``F.grid_sample``.

    ``align_corners=True``: ``u -> 2u/(W-1) - 1`` (pixel centres ``0`` and ``W-1`` map to -1 and 1);
    ``align_corners=False``: ``u -> (2u+1)/W - 1`` (the outer pixel edges ``-0.5`` and ``W-0.5`` map to -1 and 1).
    Pass the same ``align_corners`` to ``grid_sample``. For a size-1 axis with ``align_corners=True`` every
    coordinate maps to -1 (``grid_sample`` reads the single pixel anyway).

    Args:
        pixels: ``(B, H', W', 2)`` pixel coordinates ``(u, v)``.
        height: ``H`` of the image to be sampled; width: its ``W``.
        align_corners: the convention, see above.

    Returns:
        ``(B, H', W', 2)`` grid with ``pixels``' dtype.
    """
    pixels = _check_tensor(pixels, "pixels")
    if pixels.dim() != 4 or pixels.shape[-1] != 2:
        raise ValueError(f"pixels must have shape (B, H, W, 2), got {tuple(pixels.shape)}")
    height = _check_size(height, "height")
    width = _check_size(width, "width")
    u, v = pixels[..., 0], pixels[..., 1]
    if align_corners:
        gu = u * (2.0 / (width - 1)) - 1.0 if width > 1 else u * 0.0 - 1.0
        gv = v * (2.0 / (height - 1)) - 1.0 if height > 1 else v * 0.0 - 1.0
    else:
        gu = (2.0 * u + 1.0) / width - 1.0
        gv = (2.0 * v + 1.0) / height - 1.0
    return torch.stack([gu, gv], dim=-1)


def warp(
    source: Tensor,
    depth: Tensor,
    T_src_tgt: Tensor,
    K: Tensor,
    inv_K: Tensor | None = None,
    *,
    align_corners: bool = True,
    padding_mode: str = "border",
    return_mask: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Synthesise the target view by sampling the source image at the reprojection of the target depth.

    For every target pixel ``p``: ``X = depth(p) K^-1 p`` (target camera), ``X' = T_src_tgt X`` (source
    camera), ``p' = K X' / z'`` and ``out(p) = source(p')`` by bilinear ``grid_sample`` with the given
    ``padding_mode`` and the same ``align_corners`` as the normalisation. Both views share ``K`` and the image
    size (for a stride-``s`` feature map pass ``intrinsics_for_stride(K, s)``).

    Args:
        source: ``(B, C, H, W)`` source image or feature map (floating dtype).
        depth: ``(B, 1, H, W)`` target-camera depth ``z`` (scene units).
        T_src_tgt: ``(B, 4, 4)`` (or unbatched ``(4, 4)``) transform from the target into the source camera.
        K: ``(B, 3, 3)`` / ``(B, 4, 4)`` (or unbatched) pixel intrinsics of the ``H x W`` images.
        inv_K: optional precomputed ``K^-1`` of the same shapes; computed in closed form when ``None``.
        align_corners: normalisation / sampling convention (see :func:`pixels_to_grid`).
        padding_mode: ``"border"`` (default), ``"zeros"`` or ``"reflection"``.
        return_mask: also return the validity mask.

    Returns:
        ``warped``: ``(B, C, H, W)`` in ``source``'s dtype (sampled in float32, or float64 for a float64
        source). With ``return_mask=True`` also ``mask``: ``(B, 1, H, W)`` in the same dtype, 1 where the point
        lies in front of the source camera (``z' > eps`` with ``eps = 1e-7``) and projects inside the source
        image, 0 elsewhere. "Inside" means the normalised grid lies in ``[-1, 1]`` in both coordinates, i.e.
        ``0 <= u' <= W-1`` and ``0 <= v' <= H-1`` for ``align_corners=True`` (between the outer pixel centres)
        and ``-0.5 <= u' <= W-0.5``, ``-0.5 <= v' <= H-0.5`` for ``align_corners=False`` (within the outer pixel
        edges): in both cases the region where ``grid_sample`` interpolates rather than pads. The bounds have a
        tolerance of 1e-3 pixel for float rounding. The mask carries no gradient.
    """
    source = _check_tensor(source, "source")
    if source.dim() != 4:
        raise ValueError(f"source must have shape (B, C, H, W), got {tuple(source.shape)}")
    if not source.is_floating_point():
        raise ValueError(f"source must be a floating-point tensor, got dtype {source.dtype}")
    depth = _check_depth(depth)
    b, _, h, w = source.shape
    if depth.shape[0] != b or depth.shape[-2:] != (h, w):
        raise ValueError(
            f"depth must have shape ({b}, 1, {h}, {w}) to match source {tuple(source.shape)}, got {tuple(depth.shape)}"
        )
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    eps = 1e-7

    with _autocast_disabled(source.device):
        tensors = [t for t in (depth, T_src_tgt, K, inv_K) if isinstance(t, Tensor)]
        dtype = _geometry_dtype(*tensors)
        K3 = _batched_3x3(K, "K", b, dtype)
        inv_K3 = invert_intrinsics(K3) if inv_K is None else _batched_3x3(inv_K, "inv_K", b, dtype)
        T = _batched_pose(T_src_tgt, "T_src_tgt", b, dtype)

        points = _backproject(depth.to(dtype), inv_K3)
        points = _transform_points(T, points)
        pixels, z = _project(points, K3, eps)

        sample_dtype = torch.float64 if source.dtype == torch.float64 else torch.float32
        grid = pixels_to_grid(pixels, h, w, align_corners=align_corners).to(sample_dtype)
        warped = F.grid_sample(
            source.to(sample_dtype), grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners
        ).to(source.dtype)
        if not return_mask:
            return warped
        with torch.no_grad():
            lo = 0.0 if align_corners else -0.5
            u, v = pixels[..., 0], pixels[..., 1]
            inside = (
                (u >= lo - _MASK_TOL_PX)
                & (u <= (w - 1) - lo + _MASK_TOL_PX)
                & (v >= lo - _MASK_TOL_PX)
                & (v <= (h - 1) - lo + _MASK_TOL_PX)
            )
            mask = (inside.unsqueeze(1) & (z > eps)).to(source.dtype)
        return warped, mask


# ----------------------------------------------------------------------------------------------------------------
# nn.Module twins (no buffers, any batch size)
# ----------------------------------------------------------------------------------------------------------------


class BackprojectDepth(nn.Module):
    """Module form of :func:`backproject`: ``forward(depth (B,1,H,W), inv_K) -> points (B,3,H,W)``."""

    def forward(self, depth: Tensor, inv_K: Tensor) -> Tensor:
        return backproject(depth, inv_K)


class Project3D(nn.Module):
    """Module form of :func:`project`: ``forward(points (B,3,H,W), K) -> (pixels (B,H,W,2), z (B,1,H,W))``."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, points: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
        return project(points, K, eps=self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class Warper(nn.Module):
    """Module form of :func:`warp` with a fixed sampling convention.

    Args:
        align_corners: normalisation / sampling convention (see :func:`pixels_to_grid`).
        padding_mode: ``"border"`` (default), ``"zeros"`` or ``"reflection"``.
    """

    def __init__(self, align_corners: bool = True, padding_mode: str = "border") -> None:
        super().__init__()
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.align_corners = bool(align_corners)
        self.padding_mode = padding_mode

    def forward(
        self,
        source: Tensor,
        depth: Tensor,
        T_src_tgt: Tensor,
        K: Tensor,
        inv_K: Tensor | None = None,
        return_mask: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        return warp(
            source,
            depth,
            T_src_tgt,
            K,
            inv_K,
            align_corners=self.align_corners,
            padding_mode=self.padding_mode,
            return_mask=return_mask,
        )

    def extra_repr(self) -> str:
        return f"align_corners={self.align_corners}, padding_mode={self.padding_mode!r}"
