"""ResNet encoders (torchvision ResNet v1.5) returning the 5-level feature pyramid of docs/method.md §1.1.

One factory, :func:`build_encoder`, builds every backbone. Weights:

- ``None``: random init (torchvision's: Kaiming-normal fan_out for convs, BN weight 1 / bias 0);
- ``"imagenet"``: torchvision's classic ``ResNet*_Weights.IMAGENET1K_V1`` (the weights the paper used);
  this is the only place anything is downloaded, and only when asked for;
- a path to a local ``.pth``/``.pt`` torchvision state dict (loaded strictly).

The torchvision model is kept as ``self.encoder`` (including its unused ``fc``, so ImageNet state
dicts load strictly), so state-dict keys read ``encoder.conv1.weight`` … like the official
``DepthEncoder.encoder.*`` / ``PoseEncoder.encoder.*`` / ``Encoder.encoder.*`` (docs/method.md §1.7).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from featdepth.models.layers import check_image_batch

__all__ = ["ENCODER_CHOICES", "ResnetEncoder", "build_encoder", "resolve_num_layers", "imagenet_weights_file"]

# depth -> (torchvision constructor, weights enum, channels of f0..f4)
_REGISTRY: dict[int, tuple[Callable[..., tvm.ResNet], type, tuple[int, ...]]] = {
    18: (tvm.resnet18, tvm.ResNet18_Weights, (64, 64, 128, 256, 512)),
    34: (tvm.resnet34, tvm.ResNet34_Weights, (64, 64, 128, 256, 512)),
    50: (tvm.resnet50, tvm.ResNet50_Weights, (64, 256, 512, 1024, 2048)),
    101: (tvm.resnet101, tvm.ResNet101_Weights, (64, 256, 512, 1024, 2048)),
}

#: Supported ResNet depths. ``build_encoder`` also accepts the names ``"resnet18"`` … ``"resnet101"``.
ENCODER_CHOICES: tuple[int, ...] = tuple(_REGISTRY)

WeightsSpec = str | os.PathLike | None


def resolve_num_layers(num_layers: int | str) -> int:
    """Normalise an encoder choice (``50``, ``"50"``, ``"resnet50"``) to its depth; ``ValueError`` if unknown."""
    value: object = num_layers
    if isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("resnet"):
            text = text[len("resnet"):]
        value = int(text) if text.isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or value not in _REGISTRY:
        choices = ", ".join(f"{n} (resnet{n})" for n in ENCODER_CHOICES)
        raise ValueError(f"unknown encoder {num_layers!r}; choices are: {choices}")
    return value


def _load_local_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / not a torch file / unsupported pickle
        raise ValueError(f"could not read encoder weights from {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(
            f"encoder weights file {path} does not hold a torchvision ResNet state dict "
            f"(a mapping of parameter names to tensors); got {type(obj).__name__}"
        )
    return dict(obj)


class ResnetEncoder(nn.Module):
    """torchvision ResNet returning the feature pyramid ``[f0, f1, f2, f3, f4]``.

    Args:
        num_layers: 18, 34, 50 or 101 (or ``"resnet50"`` …).
        num_input_images: number of RGB images stacked along channels (PoseNet uses 2); ``conv1``
            then takes ``3 * num_input_images`` channels.
        weights: ``None`` (random), ``"imagenet"`` (torchvision IMAGENET1K_V1, downloads if not
            cached) or a path to a local torchvision state dict. With several input images a 3-channel
            ``conv1`` weight ``w`` is expanded to ``cat([w] * N, dim=1) / N``.

    Input: ``(B, 3 * num_input_images, H, W)``, used as given (no normalisation inside).

    Output: list of 5 tensors:

    - ``f0 = relu(bn1(conv1(x)))``: ``(B, c0, H/2, W/2)``
    - ``f1 = layer1(maxpool(f0))``: ``(B, c1, H/4, W/4)``
    - ``f2 = layer2(f1)``: ``(B, c2, H/8, W/8)``
    - ``f3 = layer3(f2)``: ``(B, c3, H/16, W/16)``
    - ``f4 = layer4(f3)``: ``(B, c4, H/32, W/32)``

    with ``num_ch_enc = [c0..c4]`` = ``[64, 64, 128, 256, 512]`` (18/34) or
    ``[64, 256, 512, 1024, 2048]`` (50/101). Sizes are ceil-divided for H, W not multiples of 32.
    """

    def __init__(self, num_layers: int | str = 50, num_input_images: int = 1, weights: WeightsSpec = None) -> None:
        super().__init__()
        self.num_layers = resolve_num_layers(num_layers)
        if int(num_input_images) != num_input_images or num_input_images < 1:
            raise ValueError(f"num_input_images must be a positive integer, got {num_input_images!r}")
        self.num_input_images = int(num_input_images)
        constructor, _, channels = _REGISTRY[self.num_layers]
        self.num_ch_enc: list[int] = list(channels)

        self.encoder: tvm.ResNet = constructor(weights=None)
        if self.num_input_images != 1:
            conv1 = nn.Conv2d(3 * self.num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
            self.encoder.conv1 = conv1

        if weights is not None:
            self.load_pretrained(weights)

    @property
    def in_channels(self) -> int:
        """Number of input channels, ``3 * num_input_images``."""
        return 3 * self.num_input_images

    def load_pretrained(self, weights: str | os.PathLike) -> None:
        """Load ``"imagenet"`` or a local torchvision state dict (strict), adapting ``conv1`` for N images."""
        if isinstance(weights, str) and weights.strip().lower() in ("imagenet", "imagenet1k_v1"):
            _, weights_enum, _ = _REGISTRY[self.num_layers]
            cached = imagenet_weights_file(self.num_layers)
            try:
                state = weights_enum.IMAGENET1K_V1.get_state_dict(progress=True)
            except OSError as exc:  # urllib's URLError, socket errors: offline or blocked
                raise OSError(
                    f"the ImageNet weights of resnet{self.num_layers} are not on this machine ({cached}) and could not be "
                    f"downloaded ({exc}). Offline: copy {cached.name} to {cached.parent}, or set the weights key "
                    "(model.depth_weights / pose_weights / feature_weights) to a local torchvision .pth file, "
                    "or to null to start from random weights"
                ) from exc
            source = f"torchvision {weights_enum.__name__}.IMAGENET1K_V1"
        elif isinstance(weights, (str, os.PathLike)):
            path = Path(weights).expanduser()
            state = _load_local_state_dict(path)
            source = str(path)
        else:
            raise TypeError(f"weights must be None, 'imagenet' or a file path, got {type(weights).__name__}")

        state = dict(state)
        w = state.get("conv1.weight")
        if isinstance(w, Tensor) and w.dim() == 4 and self.num_input_images > 1 and w.shape[1] == 3:
            state["conv1.weight"] = torch.cat([w] * self.num_input_images, dim=1) / self.num_input_images
        try:
            self.encoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"weights from {source} do not match resnet{self.num_layers} with "
                f"{self.in_channels} input channels: {exc}"
            ) from exc

    def forward(self, x: Tensor) -> list[Tensor]:
        check_image_batch(x, self.in_channels, "ResnetEncoder input")
        enc = self.encoder
        f0 = enc.relu(enc.bn1(enc.conv1(x)))
        f1 = enc.layer1(enc.maxpool(f0))
        f2 = enc.layer2(f1)
        f3 = enc.layer3(f2)
        f4 = enc.layer4(f3)
        return [f0, f1, f2, f3, f4]


def imagenet_weights_file(num_layers: int | str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``resnet{num_layers}`` (exists once downloaded):
    ``<torch hub dir>/checkpoints/<file name of the weights URL>``."""
    _, weights_enum, _ = _REGISTRY[resolve_num_layers(num_layers)]
    url = weights_enum.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def build_encoder(num_layers: int | str, num_input_images: int = 1, weights: WeightsSpec = None) -> ResnetEncoder:
    """Build a :class:`ResnetEncoder` (the single factory for every backbone).

    Args:
        num_layers: one of :data:`ENCODER_CHOICES` (18, 34, 50, 101) or ``"resnet18"`` …; anything
            else raises ``ValueError`` listing the choices.
        num_input_images: images stacked along channels (``conv1`` takes ``3 * N`` channels).
        weights: ``None`` (random init), ``"imagenet"`` (downloads torchvision IMAGENET1K_V1 weights
            if not cached) or a path to a local torchvision state dict (``FileNotFoundError`` if
            missing; ``ValueError`` naming the file if unreadable or mismatched).
    """
    return ResnetEncoder(num_layers=num_layers, num_input_images=num_input_images, weights=weights)
