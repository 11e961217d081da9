"""FeatureNet statistics: feature gradients on textureless vs textured pixels, and PCA pictures.

The paper's feature-map figure, as numbers: a FeatureNet trained with the discriminative loss should
have *larger first-order* feature gradients on textureless surfaces than one trained with
reconstruction only, and the convergent loss should keep the *second-order* gradients small.

Per pixel of a feature map ``f`` ``(C, h, w)`` (forward differences, channel means of magnitudes):

- ``g1 = mean_c(|∂x f| + |∂y f|)``
- ``g2 = mean_c(|∂xx f| + |∂xy f| + |∂yx f| + |∂yy f|)`` (second differences of the first ones, the terms
  of the convergent loss)

both on the ``(h-2, w-2)`` top-left crop where every difference exists. Region labels are nearest-resized
to the feature size and eroded by ``erode`` pixels, so that region boundaries (where every surface shows
an edge) do not count. ``g1_rel``/``g2_rel`` divide by the mean feature magnitude ``mean|f|`` of the whole
image, which removes the overall feature scale (the discriminative term rewards scale too: it is
unbounded below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from featdepth.experiments.regions import EVAL_REGIONS, REGION_NAMES
from featdepth.losses.featurenet import feature_gradient_terms
from featdepth.training.logging import pca_image

__all__ = ["gradient_magnitude_maps", "region_gradient_stats", "feature_statistics", "write_pca_images"]


def gradient_magnitude_maps(features: Tensor) -> tuple[Tensor, Tensor]:
    """First- and second-order gradient magnitude maps of ``(B, C, h, w)`` features.

    Returns:
        ``(g1, g2)``, each ``(B, 1, h-2, w-2)`` (see the module docstring).
    """
    if features.dim() != 4 or features.shape[-1] < 3 or features.shape[-2] < 3:
        raise ValueError(f"features must be (B,C,h,w) with h, w >= 3, got {tuple(features.shape)}")
    f = features.float()
    gx = f[..., :, 1:] - f[..., :, :-1]  # (h, w-1)
    gy = f[..., 1:, :] - f[..., :-1, :]  # (h-1, w)
    gxx = gx[..., :, 1:] - gx[..., :, :-1]  # (h, w-2)
    gxy = gx[..., 1:, :] - gx[..., :-1, :]  # (h-1, w-1)
    gyx = gy[..., :, 1:] - gy[..., :, :-1]  # (h-1, w-1)
    gyy = gy[..., 1:, :] - gy[..., :-1, :]  # (h-2, w)
    h, w = f.shape[-2] - 2, f.shape[-1] - 2

    def crop(t: Tensor) -> Tensor:
        return t[..., :h, :w].abs()

    g1 = (crop(gx) + crop(gy)).mean(1, keepdim=True)
    g2 = (crop(gxx) + crop(gxy) + crop(gyx) + crop(gyy)).mean(1, keepdim=True)
    return g1, g2


def _labels_at(regions: np.ndarray | Tensor, size: tuple[int, int]) -> Tensor:
    r = torch.as_tensor(np.asarray(regions), dtype=torch.float32)[None, None]
    return F.interpolate(r, size, mode="nearest").long()[0, 0]


def _erode(mask: Tensor, pixels: int) -> Tensor:
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return ~(F.max_pool2d((~mask)[None, None].float(), k, stride=1, padding=pixels)[0, 0] > 0)


def region_gradient_stats(features: Tensor, regions: Sequence[np.ndarray], *, region_ids: Sequence[int] = EVAL_REGIONS,
                          erode: int = 1) -> dict[str, dict[str, float]]:
    """Mean ``g1``, ``g2``, ``g1_rel``, ``g2_rel`` per region over a batch of feature maps.

    Args:
        features: ``(B, C, h, w)``.
        regions: ``B`` label maps ``(H, W)`` (any size; nearest-resized to ``(h, w)``).

    Returns:
        ``{region name: {"g1", "g2", "g1_rel", "g2_rel", "pixels"}}`` plus ``"all"`` (non-sky pixels);
        pixel-weighted means over the batch.
    """
    if features.shape[0] != len(regions):
        raise ValueError(f"{features.shape[0]} feature maps but {len(regions)} region maps")
    g1, g2 = gradient_magnitude_maps(features)
    scale = features.float().abs().mean(dim=(1, 2, 3))  # (B,)
    h, w = g1.shape[-2:]
    names = ["all"] + [REGION_NAMES.get(int(r), f"region{r}") for r in region_ids]
    sums = {n: np.zeros(5) for n in names}  # g1, g2, g1_rel, g2_rel, pixels
    for b in range(features.shape[0]):
        labels = _labels_at(regions[b], tuple(features.shape[-2:]))[:h, :w]
        masks = {"all": _erode(labels != 0, erode)}
        for r in region_ids:
            masks[REGION_NAMES.get(int(r), f"region{r}")] = _erode(labels == int(r), erode)
        s = float(scale[b]) if float(scale[b]) > 0 else 1.0
        for n, m in masks.items():
            cnt = int(m.sum())
            if cnt == 0:
                continue
            a1 = float(g1[b, 0][m].sum())
            a2 = float(g2[b, 0][m].sum())
            sums[n] += np.array([a1, a2, a1 / s, a2 / s, cnt])
    out: dict[str, dict[str, float]] = {}
    for n, v in sums.items():
        cnt = v[4]
        out[n] = {"g1": v[0] / cnt, "g2": v[1] / cnt, "g1_rel": v[2] / cnt, "g2_rel": v[3] / cnt, "pixels": int(cnt)} if cnt else {
            "g1": float("nan"), "g2": float("nan"), "g1_rel": float("nan"), "g2_rel": float("nan"), "pixels": 0}
    return out


@torch.no_grad()
def feature_statistics(feature_nets: Mapping[str, Any], images: Tensor, regions: Sequence[np.ndarray], *,
                       include_intensity: bool = True, erode: int = 1, batch_size: int = 8,
                       device: torch.device | str = "cpu") -> dict[str, Any]:
    """:func:`region_gradient_stats` of every FeatureNet's ``extract()`` features (and of the raw image at H/2).

    Also reports, per net, the edge-aware terms of the training loss on the whole images
    (:func:`~featdepth.losses.featurenet.feature_gradient_terms`: ``S1``, ``S2``) and the ratio
    ``textureless / textured`` of ``g1`` and ``g2``.

    Args:
        feature_nets: ``{name: FeatureNet}``.
        images: ``(N, 3, H, W)`` in [0, 1].
        regions: ``N`` label maps.
    """

    dev = torch.device(device)
    extractors: dict[str, Any] = {}
    if include_intensity:
        extractors["intensity"] = lambda x: F.interpolate(x, (x.shape[-2] // 2, x.shape[-1] // 2), mode="area")
    for name, net in feature_nets.items():
        net = net.to(dev).eval()
        extractors[name] = net.extract
    out: dict[str, Any] = {}
    for name, fn in extractors.items():
        feats, s1s, s2s = [], [], []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(dev).float()
            f = fn(x)
            s1, s2 = feature_gradient_terms(f, x)
            s1s.append(float(s1) * x.shape[0])
            s2s.append(float(s2) * x.shape[0])
            feats.append(f.cpu())
        f_all = torch.cat(feats)
        stats = region_gradient_stats(f_all, regions, erode=erode)
        tl, tx = stats.get("textureless", {}), stats.get("textured", {})
        out[name] = {
            "regions": stats,
            "S1": sum(s1s) / images.shape[0],
            "S2": sum(s2s) / images.shape[0],
            "feature_mean_abs": float(f_all.abs().mean()),
            "textureless_over_textured_g1": _ratio(tl.get("g1"), tx.get("g1")),
            "textureless_over_textured_g2": _ratio(tl.get("g2"), tx.get("g2")),
        }
    return out


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return float("nan")
    return float(a / b)


@torch.no_grad()
def write_pca_images(feature_nets: Mapping[str, Any], images: Tensor, out_dir: str | Path, *,
                     device: torch.device | str = "cpu", prefix: str = "pca") -> list[Path]:
    """For each image, one PNG ``<prefix>_<k>.png``: the input and the PCA image
    (:func:`~featdepth.training.logging.pca_image`) of every FeatureNet's features, side by side with titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    paths = []
    nets = {n: net.to(dev).eval() for n, net in feature_nets.items()}
    for k in range(images.shape[0]):
        x = images[k : k + 1].to(dev).float()
        panels = [("input", x[0].permute(1, 2, 0).cpu().numpy())]
        for name, net in nets.items():
            panels.append((name, pca_image(net.extract(x)[0].cpu()).permute(1, 2, 0).numpy()))
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 1.5), squeeze=False)
        for ax, (title, img) in zip(axes[0], panels):
            ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        p = out / f"{prefix}_{k}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths
