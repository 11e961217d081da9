"""Integration: the synthetic generator and the geometry agree (warping a frame with GT depth and GT
pose through featdepth.geometry.warp reproduces its neighbour)."""

from __future__ import annotations

import numpy as np
import torch

from featdepth.data.synthetic import SynthConfig, render_sequence
from featdepth.geometry import relative_pose, warp


def test_warp_with_ground_truth_reproduces_the_neighbour():
    seq = render_sequence(SynthConfig(height=64, width=192, num_frames=3, seed=11))
    K = torch.from_numpy(seq["K"]).float()[None]
    img = torch.from_numpy(seq["images"]).float().permute(0, 3, 1, 2) / 255.0
    depth = torch.from_numpy(seq["depths"])[:, None].float()
    poses = torch.from_numpy(seq["poses"]).float()
    tgt, src = 1, 2
    T = relative_pose(poses[tgt : tgt + 1], poses[src : src + 1])
    warped, mask = warp(img[src : src + 1], depth[tgt : tgt + 1], T, K, return_mask=True)
    regions = torch.from_numpy(seq["regions"][tgt])
    valid = (mask[0, 0] > 0) & (regions > 0)  # sky is at 'infinity', not at its stored depth
    err = (warped[0] - img[tgt]).abs().mean(0)[valid].mean().item()
    T_wrong = T.clone()
    T_wrong[:, :3, 3] *= 2
    wrong = warp(img[src : src + 1], depth[tgt : tgt + 1], T_wrong, K)
    err_wrong = (wrong[0] - img[tgt]).abs().mean(0)[valid].mean().item()
    assert err < 0.03, err
    assert err_wrong > 1.5 * err, (err, err_wrong)
    assert np.isfinite(err)
