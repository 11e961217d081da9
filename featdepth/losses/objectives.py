"""The total objectives of FeatDepth (docs/method.md §2.6), assembled from the loss primitives.

Each objective returns a :class:`LossOutput`: the weighted total, every *unweighted* term by name,
and the weight each term carries in the total, so logs can show both (the official code printed
the 1e-3-weighted terms rounded to 0.0000).

Objectives:

- :func:`featurenet_objective`: stage 1, FeatureNet alone (reconstruction + discriminative + convergent).
- :func:`depth_objective`: stage 2 with a frozen FeatureNet (photometric + feature-metric + smoothness);
  with ``feature_target=None`` it is the photometric-only baseline (monodepth2-style ablation).
- :func:`joint_objective`: depth objective with a trainable FeatureNet plus its own losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import Tensor

from featdepth.losses.feature_metric import feature_metric_error
from featdepth.losses.featurenet import feature_regularization, reconstruction_loss
from featdepth.losses.photometric import appearance_error, min_reprojection
from featdepth.losses.ssim import ssim_target
from featdepth.losses.smoothness import edge_aware_smoothness


@dataclass
class LossOutput:
    """Weighted total plus unweighted named terms and their weights in the total."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)

    def weighted_terms(self) -> dict[str, Tensor]:
        return {k: v * self.weights.get(k, 1.0) for k, v in self.terms.items()}


@dataclass
class DepthLossSettings:
    """Weights and switches of the depth/pose objective (see :class:`featdepth.config.LossConfig`)."""

    ssim_weight: float = 0.85
    robust_l1: bool = True
    automask: bool = True
    disp_norm: bool = True
    noise_std: float = 1e-5
    smoothness_weight: float = 1e-3
    smoothness_edge_scale: float = 0.5
    second_order_smoothness: bool = True
    feature_metric_weight: float = 1e-3


def depth_objective(
    target: Tensor,
    warped: Sequence[Tensor],
    disps: Sequence[Tensor],
    settings: DepthLossSettings,
    *,
    sources: Tensor | None = None,
    feature_target: Tensor | None = None,
    feature_warped: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """Stage-2 objective (docs/method.md §2.6, ``mono_fm``), or the baseline when no features are given.

    Args:
        target: un-augmented target image ``(B,3,H,W)``.
        warped: per scale, the sources warped into the target view at full resolution, ``(S,B,3,H,W)``
            (S sources, in ``frame_ids[1:]`` order).
        disps: per scale, the raw sigmoid disparity at its native resolution ``(B,1,h_s,w_s)``.
        settings: weights and switches.
        sources: un-warped sources ``(S,B,3,H,W)``; needed for auto-masking (identity errors).
        feature_target: FeatureNet features of the target ``(B,C,h,w)``; ``None`` for the baseline.
        feature_warped: source features warped into the target view ``(S,B,C,h,w)``.
        generator: random generator for the tie-breaking noise of the identity errors.

    Returns:
        :class:`LossOutput` with terms ``photometric`` (mean over scales), ``smoothness`` (scale-weighted
        sum ``Σ_s L_s / 2^s / N``), and ``feature_metric`` when features are given. The feature-metric
        term is computed once per step and weighted once (the official code adds the same value at each
        of the 4 scales divided by 4: the same total weight).
    """
    n_scales = len(warped)
    if n_scales == 0 or n_scales != len(disps):
        raise ValueError(f"need the same positive number of warped and disparity scales, got {len(warped)} and {len(disps)}")
    # The target's SSIM statistics are computed once per step and shared by every scale and the
    # identity errors; each call compares a whole stack of sources in one pass.
    tgt = ssim_target(target) if settings.ssim_weight > 0 else target
    identity: list[Tensor] | None = None
    if settings.automask:
        if sources is None:
            raise ValueError("automask needs the un-warped sources (S,B,3,H,W)")
        # Identity errors are the same at every scale: computed once per step.
        identity = list(appearance_error(sources, tgt, settings.ssim_weight, settings.robust_l1).unbind(0))

    photometric = target.new_zeros(())
    smoothness = target.new_zeros(())
    automask = None
    for s in range(n_scales):
        errors = list(appearance_error(warped[s], tgt, settings.ssim_weight, settings.robust_l1).unbind(0))
        result = min_reprojection(errors, identity, noise_std=settings.noise_std, generator=generator)
        photometric = photometric + result.loss_map.mean() / n_scales
        if s == 0 and identity is not None:
            automask = result.automask
        smooth = edge_aware_smoothness(
            disps[s],
            target,
            second_order=settings.second_order_smoothness,
            edge_scale=settings.smoothness_edge_scale,
            normalize=settings.disp_norm,
        )
        smoothness = smoothness + smooth / (2**s) / n_scales

    terms = {"photometric": photometric, "smoothness": smoothness}
    weights = {"photometric": 1.0, "smoothness": settings.smoothness_weight}
    total = photometric + settings.smoothness_weight * smoothness
    if feature_target is not None:
        if feature_warped is None:
            raise ValueError("feature_warped is required with feature_target")
        fm_errors = [feature_metric_error(feature_target, fw) for fw in feature_warped.unbind(0)]
        fm = torch.cat(fm_errors, dim=1).min(dim=1, keepdim=True).values.mean()
        terms["feature_metric"] = fm
        weights["feature_metric"] = settings.feature_metric_weight
        total = total + settings.feature_metric_weight * fm
    extras = {"automask": automask} if automask is not None else {}
    return LossOutput(total=total, terms=terms, weights=weights, extras=extras)


def featurenet_objective(
    features: Sequence[Tensor],
    reconstructions: Mapping[int, Tensor],
    image: Tensor,
    *,
    discriminative_weight: float = 1e-3,
    convergent_weight: float = 1e-3,
    ssim_weight: float = 0.85,
) -> LossOutput:
    """Stage-1 objective (docs/method.md §2.6, ``autoencoder``).

    ``total = reconstruction − α·discriminative + β·convergent`` where ``discriminative`` and
    ``convergent`` are the level-weighted first- and second-order edge-weighted feature gradient
    magnitudes (both reported positive), α = ``discriminative_weight``, β = ``convergent_weight``.
    """
    rec = reconstruction_loss(reconstructions, image, ssim_weight=ssim_weight)
    reg_total, reg_terms = feature_regularization(features, image, dis=discriminative_weight, cvt=convergent_weight)
    terms = {
        "reconstruction": rec,
        "discriminative": reg_terms["discriminative"],
        "convergent": reg_terms["convergent"],
    }
    weights = {"reconstruction": 1.0, "discriminative": -discriminative_weight, "convergent": convergent_weight}
    return LossOutput(total=rec + reg_total, terms=terms, weights=weights)


def joint_objective(depth: LossOutput, featurenet: LossOutput) -> LossOutput:
    """Single-stage objective (``mono_fm_joint``): depth/pose losses plus the FeatureNet losses."""
    overlap = set(depth.terms) & set(featurenet.terms)
    if overlap:
        raise ValueError(f"term names collide: {sorted(overlap)}")
    return LossOutput(
        total=depth.total + featurenet.total,
        terms={**depth.terms, **featurenet.terms},
        weights={**depth.weights, **featurenet.weights},
        extras={**depth.extras, **featurenet.extras},
    )
