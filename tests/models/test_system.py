"""The training system of every stage: terms, weights, frozen FeatureNet, gradient flow."""

from __future__ import annotations

import pytest
import torch

from featdepth.config import load_config
from featdepth.training.system import FeatDepthSystem

H, W, B = 64, 192, 2


def make_cfg(stage: str, frame_ids=(0, -1, 1), **extra):
    overrides = [
        f"train.stage={stage}",
        f"data.frame_ids=[{','.join(map(str, frame_ids))}]",
        f"data.height={H}",
        f"data.width={W}",
        "model.depth_decoder=featdepth",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config("synthetic_small", overrides)


def make_batch(frame_ids, seed=0):
    g = torch.Generator().manual_seed(seed)
    color = {f: torch.rand(B, 3, H, W, generator=g) for f in frame_ids}
    K = torch.tensor([[0.58 * W, 0, W / 2], [0, 1.92 * H, H / 2], [0, 0, 1.0]]).expand(B, 3, 3).clone()
    stereo = torch.eye(4).expand(B, 4, 4).clone()
    stereo[:, 0, 3] = -0.1
    return {"color": color, "color_aug": {f: c.clone() for f, c in color.items()}, "K": K,
            "inv_K": torch.linalg.inv(K), "stereo_T": stereo}


@pytest.mark.parametrize(
    "stage, frame_ids, expected",
    [
        ("featurenet", (0, -1, 1), {"reconstruction", "discriminative", "convergent"}),
        ("depth", (0, -1, 1), {"photometric", "smoothness", "feature_metric"}),
        ("depth", (0, -1, 1, "s"), {"photometric", "smoothness", "feature_metric"}),
        ("depth", (0, "s"), {"photometric", "smoothness", "feature_metric"}),
        ("joint", (0, -1, 1), {"photometric", "smoothness", "feature_metric", "reconstruction", "discriminative", "convergent"}),
        ("baseline", (0, -1, 1), {"photometric", "smoothness"}),
    ],
)
def test_every_stage_returns_named_terms_and_consistent_total(stage, frame_ids, expected):
    system = FeatDepthSystem(make_cfg(stage, frame_ids))
    out, outputs = system(make_batch(frame_ids))
    assert set(out.terms) == expected
    assert all(torch.isfinite(v) for v in out.terms.values())
    recomposed = sum(out.weights[k] * v for k, v in out.terms.items())
    torch.testing.assert_close(out.total, recomposed)
    if stage != "featurenet":
        assert set(outputs["poses"]) == set(frame_ids[1:])
        assert outputs["disp"][0].shape == (B, 1, H // 2, W // 2)  # FeatDepth decoder: finest at H/2


def test_weights_follow_the_config():
    system = FeatDepthSystem(make_cfg("depth", **{"loss.feature_metric_weight": 0.5, "loss.smoothness_weight": 0.25}))
    out, _ = system(make_batch((0, -1, 1)))
    assert out.weights["feature_metric"] == 0.5 and out.weights["smoothness"] == 0.25 and out.weights["photometric"] == 1.0


def test_two_stage_feature_metric_gradients_reach_depth_and_pose_only():
    system = FeatDepthSystem(make_cfg("depth"))
    assert not any(p.requires_grad for p in system.feature_net.parameters())
    out, _ = system(make_batch((0, -1, 1)))
    out.terms["feature_metric"].backward()
    assert all(p.grad is None for p in system.feature_net.parameters())
    depth_grad = sum(p.grad.abs().sum() for p in system.depth_net.parameters() if p.grad is not None)
    pose_grad = sum(p.grad.abs().sum() for p in system.pose_net.parameters() if p.grad is not None)
    assert depth_grad > 0 and pose_grad > 0


def test_frozen_feature_net_stays_in_eval_mode_and_keeps_statistics():
    system = FeatDepthSystem(make_cfg("depth"))
    system.train()
    assert system.depth_net.training and not system.feature_net.training
    bn = next(m for m in system.feature_net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    system(make_batch((0, -1, 1)))
    torch.testing.assert_close(bn.running_mean, before)
    assert system.feature_net.decoder is None  # only the encoder is kept as the extractor


def test_official_train_mode_bn_is_selectable():
    system = FeatDepthSystem(make_cfg("depth", **{"loss.frozen_bn": "train"}))
    system.train()
    assert system.feature_net.training


def test_joint_trains_feature_net():
    system = FeatDepthSystem(make_cfg("joint"))
    out, _ = system(make_batch((0, -1, 1)))
    out.total.backward()
    grads = [p.grad for p in system.feature_net.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0


def test_automask_only_in_monocular_mode():
    _, outputs = FeatDepthSystem(make_cfg("baseline"))(make_batch((0, -1, 1)))
    assert "automask" in outputs
    ms = FeatDepthSystem(make_cfg("baseline", (0, -1, 1, "s")))
    assert not ms.settings.automask and not ms.settings.disp_norm
    _, outputs = ms(make_batch((0, -1, 1, "s")))
    assert "automask" not in outputs


def test_poses_for_earlier_sources_are_inverted():
    """PoseNet sees (earlier, later): T for source -1 is the inverse of the network's transform."""
    from featdepth.geometry import invert_pose, pose_from_axis_angle_translation

    system = FeatDepthSystem(make_cfg("baseline")).eval()
    batch = make_batch((0, -1, 1))
    poses = system.predict_poses(batch["color_aug"])
    aa, t = system.pose_net(batch["color_aug"][-1], batch["color_aug"][0])
    torch.testing.assert_close(poses[-1], invert_pose(pose_from_axis_angle_translation(aa, t)), atol=1e-5, rtol=1e-5)
    aa, t = system.pose_net(batch["color_aug"][0], batch["color_aug"][1])
    torch.testing.assert_close(poses[1], pose_from_axis_angle_translation(aa, t), atol=1e-5, rtol=1e-5)


def test_monodepth2_decoder_option():
    system = FeatDepthSystem(make_cfg("depth", **{"model.depth_decoder": "monodepth2"}))
    out, outputs = system(make_batch((0, -1, 1)))
    assert outputs["disp"][0].shape == (B, 1, H, W)
    assert torch.isfinite(out.total)


def test_bf16_autocast_runs():
    system = FeatDepthSystem(make_cfg("depth"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = system(make_batch((0, -1, 1)))
    assert torch.isfinite(out.total)
    out.total.backward()
