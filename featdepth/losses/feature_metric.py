"""Feature-metric loss (docs/method.md §2.3): channel-mean Charbonnier between target and warped features.

Precision: half/bfloat16 inputs are upcast to float32 and autocast is disabled inside (the
Charbonnier ``eps**2 = 1e-6`` matters); float64 stays float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from featdepth.losses.photometric import robust_l1
from featdepth.losses.ssim import _autocast_disabled, _check_4d, _check_same_shape

__all__ = ["feature_metric_error", "feature_metric_loss"]


def feature_metric_error(target_features: Tensor, warped_features: Tensor, eps: float = 1e-3) -> Tensor:
    r"""Per-pixel feature-metric error :math:`\operatorname{mean}_c \rho(\phi_t, \hat\phi_f)`.

    Args:
        target_features: features of the target image ``(B, C, h, w)`` (FeatureNet ``f0``: 64
            channels at ``H/2``).
        warped_features: source features warped into the target view, same shape.
        eps: Charbonnier constant, default ``1e-3``.

    Returns:
        ``(B, 1, h, w)`` error map (float32 for half/bfloat16 inputs).

    Raises:
        ValueError: on non-4-D or mismatched inputs.
    """
    _check_4d(target_features, "target_features")
    _check_4d(warped_features, "warped_features")
    _check_same_shape(target_features, warped_features, "target_features", "warped_features")
    with _autocast_disabled(target_features.device):
        return robust_l1(warped_features, target_features, eps).mean(1, keepdim=True)


def feature_metric_loss(
    target_features: Tensor, warped_features: Sequence[Tensor], eps: float = 1e-3
) -> Tensor:
    r"""Scalar feature-metric loss :math:`L_{fm} = \operatorname{mean}_p \min_f e_{fm,f}(p)` (docs/method.md §2.3).

    A per-pixel minimum over the sources, with no auto-mask and no other masking. The reference
    code adds it at every scale with weight ``perception_weight / N_scales``; the value does not
    depend on the scale, so compute it once and weight it ``perception_weight`` (1e-3).

    Args:
        target_features: ``(B, C, h, w)`` target features.
        warped_features: non-empty sequence of ``(B, C, h, w)`` warped source features.
        eps: Charbonnier constant, default ``1e-3``.

    Returns:
        Scalar tensor (float32 for half/bfloat16 inputs).

    Raises:
        ValueError: if ``warped_features`` is empty or any shape mismatches.
    """
    if len(warped_features) == 0:
        raise ValueError("warped_features must contain at least one (B, C, h, w) tensor, got an empty sequence")
    errors = [feature_metric_error(target_features, w, eps) for w in warped_features]
    return torch.cat(errors, dim=1).min(dim=1).values.mean()
