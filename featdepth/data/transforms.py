"""Image, intrinsics and pose transforms used by the datasets.

Conventions (``docs/design.md``): pixel centres at integer coordinates ``u = 0..W-1``; ``K`` is a
``(3, 3)`` pixel intrinsics matrix; ``T_src_tgt`` maps target-camera points into the source camera.

Colour augmentation follows the published protocol: the jitter parameters (brightness, contrast,
saturation in ``(0.8, 1.2)``, hue in ``(-0.1, 0.1)``, applied in a random order like torchvision's
``ColorJitter``) are drawn **once per sample** and applied identically to every frame of it; the
whole augmentation is applied with probability 0.5. (The official FeatDepth HEAD re-draws them per
frame, docs/method.md §7 item 1.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

__all__ = [
    "RandomGenerator",
    "ColorJitterParams",
    "resize_image",
    "hflip_image",
    "hflip_array",
    "hflip_intrinsics",
    "hflip_pose",
    "scale_intrinsics",
    "invert_intrinsics",
    "image_to_tensor",
    "random_uniform",
]

RandomGenerator = Optional[Union[torch.Generator, np.random.Generator]]
ImageLike = Union[Image.Image, torch.Tensor]


def random_uniform(generator: RandomGenerator = None, low: float = 0.0, high: float = 1.0) -> float:
    """One draw from ``U(low, high)`` with a torch or numpy generator (``None`` = torch's global RNG)."""
    if isinstance(generator, np.random.Generator):
        return float(generator.uniform(low, high))
    return float(torch.empty(1).uniform_(low, high, generator=generator).item())


def _random_permutation(n: int, generator: RandomGenerator) -> tuple[int, ...]:
    if isinstance(generator, np.random.Generator):
        return tuple(int(i) for i in generator.permutation(n))
    return tuple(int(i) for i in torch.randperm(n, generator=generator))


@dataclass(frozen=True)
class ColorJitterParams:
    """One draw of colour-jitter parameters, shared by all frames of a sample.

    Attributes:
        brightness, contrast, saturation: multiplicative factors (1 = unchanged).
        hue: hue shift in ``[-0.5, 0.5]`` (0 = unchanged).
        order: the order in which the four adjustments are applied (0 brightness, 1 contrast,
            2 saturation, 3 hue), a permutation of ``(0, 1, 2, 3)``.
        applied: ``False`` for the identity (the augmentation was not drawn).
    """

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[int, ...] = (0, 1, 2, 3)
    applied: bool = False

    @classmethod
    def identity(cls) -> "ColorJitterParams":
        """Parameters that leave the image unchanged."""
        return cls()

    @classmethod
    def sample(
        cls,
        generator: RandomGenerator = None,
        brightness: tuple[float, float] = (0.8, 1.2),
        contrast: tuple[float, float] = (0.8, 1.2),
        saturation: tuple[float, float] = (0.8, 1.2),
        hue: tuple[float, float] = (-0.1, 0.1),
        p: float = 0.5,
    ) -> "ColorJitterParams":
        """Draw parameters: with probability ``p`` a random jitter, otherwise the identity.

        Args:
            generator: ``torch.Generator``, ``numpy.random.Generator`` or ``None`` (torch's global RNG,
                which the DataLoader seeds per worker).
            brightness, contrast, saturation, hue: ranges of the uniform draws.
            p: probability that the jitter is applied at all.
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not (-0.5 <= hue[0] <= hue[1] <= 0.5):
            raise ValueError(f"hue range must lie in [-0.5, 0.5], got {hue}")
        if random_uniform(generator) >= p:
            return cls.identity()
        order = _random_permutation(4, generator)
        return cls(
            brightness=random_uniform(generator, *brightness),
            contrast=random_uniform(generator, *contrast),
            saturation=random_uniform(generator, *saturation),
            hue=random_uniform(generator, *hue),
            order=order,
            applied=True,
        )

    def __call__(self, img: ImageLike) -> ImageLike:
        return self.apply(img)

    def apply(self, img: ImageLike) -> ImageLike:
        """Apply the jitter to a PIL RGB image or a ``(3, H, W)`` float tensor in ``[0, 1]``.

        Deterministic: the same parameters give the same output for the same input.
        """
        if not self.applied:
            return img.copy() if isinstance(img, Image.Image) else img.clone()
        for fn_id in self.order:
            if fn_id == 0:
                img = TF.adjust_brightness(img, self.brightness)
            elif fn_id == 1:
                img = TF.adjust_contrast(img, self.contrast)
            elif fn_id == 2:
                img = TF.adjust_saturation(img, self.saturation)
            else:
                img = TF.adjust_hue(img, self.hue)
        return img


def resize_image(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize a PIL image to ``size = (height, width)`` with Lanczos (Pillow's ``LANCZOS``)."""
    height, width = size
    if (img.height, img.width) == (height, width):
        return img
    return img.resize((width, height), resample=Image.Resampling.LANCZOS)


def hflip_image(img: ImageLike) -> ImageLike:
    """Horizontal flip of a PIL image or of a ``(..., H, W)`` tensor (flips the last dimension)."""
    if isinstance(img, Image.Image):
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return torch.flip(img, dims=[-1])


def hflip_array(arr: np.ndarray) -> np.ndarray:
    """Horizontal flip of an ``(H, W)`` or ``(..., H, W)`` numpy array (a contiguous copy)."""
    return np.ascontiguousarray(arr[..., ::-1])


def hflip_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of the horizontally flipped image.

    With pixel centres at integers a flip maps ``u -> W - 1 - u``, which equals mirroring the scene
    ``X -> -X`` and using ``cx' = W - 1 - cx`` (and skew ``s' = -s``); ``fx, fy, cy`` are unchanged.
    (The official code keeps ``K`` unchanged, exact only for ``cx = (W - 1) / 2``.)

    Args:
        K: ``(3, 3)`` or ``(4, 4)`` pixel intrinsics of an image of ``width`` pixels.
    """
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] = (width - 1) - K[0, 2]
    K[0, 1] = 0.0 - K[0, 1]  # (0.0 - x keeps a zero skew +0.0)
    return K


_MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


def hflip_pose(T: np.ndarray) -> np.ndarray:
    """``T_src_tgt`` seen in horizontally flipped images: ``M T M`` with ``M = diag(-1, 1, 1, 1)``.

    (A flipped image is the image of the x-mirrored scene; the translation's x and the rotation's
    y/z components change sign.)
    """
    T = np.asarray(T, dtype=np.float64)
    return _MIRROR_X @ T @ _MIRROR_X


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Rescale pixel intrinsics for a resize from ``from_size`` to ``to_size`` (both ``(H, W)``).

    Row 0 (``fx, s, cx``) is multiplied by ``W / W0`` and row 1 (``fy, cy``) by ``H / H0``: the
    field's convention (monodepth2 / FeatDepth), also used for the strided feature maps.
    """
    (h0, w0), (h, w) = from_size, to_size
    if min(h0, w0, h, w) <= 0:
        raise ValueError(f"image sizes must be positive, got {from_size} -> {to_size}")
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, :3] *= w / w0
    K[1, :3] *= h / h0
    return K


def invert_intrinsics(K: np.ndarray) -> np.ndarray:
    """Closed-form inverse of upper-triangular ``(3, 3)`` pixel intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``."""
    K = np.asarray(K, dtype=np.float64)
    fx, s, cx = K[0, 0], K[0, 1], K[0, 2]
    fy, cy = K[1, 1], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise ValueError(f"fx and fy must be > 0, got fx={fx}, fy={fy}")
    return np.array(
        [
            [1.0 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy)],
            [0.0, 1.0 / fy, -cy / fy],
            [0.0, 0.0, 1.0],
        ]
    )


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> ``(3, H, W)`` float32 tensor in ``[0, 1]``."""
    return TF.pil_to_tensor(img).to(torch.float32).div_(255.0)
