"""featdepth.losses: per-pixel loss maps and reduced loss terms (docs/method.md §2).

Primitives return per-pixel maps where a minimum is taken later (SSIM, appearance error,
feature-metric error) and reduced scalars otherwise. The total objectives that assemble them live
in :mod:`featdepth.losses.objectives`.
"""

from featdepth.losses.feature_metric import feature_metric_error, feature_metric_loss
from featdepth.losses.featurenet import feature_gradient_terms, feature_regularization, reconstruction_loss
from featdepth.losses.photometric import (
    MinReprojection,
    appearance_error,
    min_reprojection,
    photometric_loss,
    robust_l1,
)
from featdepth.losses.smoothness import edge_aware_smoothness, gradient_x, gradient_y, smoothness_terms
from featdepth.losses.ssim import SSIM, ssim_dissimilarity, ssim_map

__all__ = [
    "SSIM",
    "MinReprojection",
    "appearance_error",
    "edge_aware_smoothness",
    "feature_gradient_terms",
    "feature_metric_error",
    "feature_metric_loss",
    "feature_regularization",
    "gradient_x",
    "gradient_y",
    "min_reprojection",
    "photometric_loss",
    "reconstruction_loss",
    "robust_l1",
    "smoothness_terms",
    "ssim_dissimilarity",
    "ssim_map",
]
