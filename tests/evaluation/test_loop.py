"""The one evaluation loop against the computation the separate code paths did before it existed
(network -> disp_to_depth -> median scaling -> metrics; PoseNet -> 5-frame ATE), on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featdepth.config import load_config
from featdepth.evaluation.depth_metrics import evaluate_depth
from featdepth.evaluation.loop import evaluate_depth_batches, evaluate_pose, evaluate_sequences, SequenceData
from featdepth.evaluation.pose_metrics import snippets_from_relative_poses
from featdepth.evaluation.trajectory import chain_relative_poses, relative_poses_from_absolute
from featdepth.geometry import pose_from_axis_angle_translation
from featdepth.inference.model import Model
from featdepth.models.layers import disp_to_depth
from featdepth.models.stage import StageNetworks

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def nets():
    cfg = load_config("synthetic_small", ["data.height=64", "data.width=192", "model.depth_decoder=monodepth2",
                                          "train.stage=baseline"])
    torch.manual_seed(3)
    n = StageNetworks(cfg, "baseline").eval()
    return cfg, n


def _scene(n: int = 6, h: int = 64, w: int = 192, gt_scale: int = 1):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, h, w, generator=g)
    gts = [np.asarray(1.0 + 30.0 * torch.rand(h * gt_scale, w * gt_scale, generator=g).numpy(), np.float32)
           for _ in range(n)]
    for gt in gts:
        gt[:3] = 0.0  # invalid pixels
    t = np.cumsum(np.full(n, 0.8))
    poses = np.stack([np.eye(4) for _ in range(n)])
    poses[:, 2, 3] = t
    poses[:, 0, 3] = 0.1 * t ** 2
    return images, gts, poses


def test_depth_equals_the_old_path(nets):
    cfg, n = nets
    images, gts, _ = _scene()
    model = Model.from_networks(n.depth_net, n.pose_net, cfg, stage="baseline")
    result, disps = evaluate_depth_batches(model, [(images[:4], gts[:4]), (images[4:], gts[4:])],
                                           protocol="uncropped", scaling="median")
    with torch.no_grad():  # the old validation / demo path
        disp = n.depth_net(images)[0]
    _, depth = disp_to_depth(disp, cfg.model.min_depth, cfg.model.max_depth)
    old = evaluate_depth(gts, [d[0].numpy() for d in depth], protocol="uncropped", scaling="median")
    assert result.num_images == old.num_images == 6
    for k, v in old.metrics.items():
        assert result.metrics[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    assert result.ratio_median == pytest.approx(old.ratio_median, rel=1e-5)
    assert disps.shape == (6, 64, 192)


def test_max_images_and_no_ground_truth(nets):
    cfg, n = nets
    images, gts, _ = _scene()
    model = Model.from_networks(n.depth_net, n.pose_net, cfg, stage="baseline")
    result, disps = evaluate_depth_batches(model, [(images[:4], gts[:4]), (images[4:], gts[4:])],
                                           protocol="uncropped", max_images=4)
    assert result.num_images == 4 and len(disps) == 4
    with pytest.raises(ValueError, match="no image with ground-truth depth"):
        evaluate_depth_batches(model, [], protocol="uncropped")


def test_pose_equals_the_old_path(nets):
    cfg, n = nets
    images, _, poses = _scene()
    model = Model.from_networks(n.depth_net, n.pose_net, cfg, stage="baseline")
    out = evaluate_pose(model, images, poses, batch_size=2)
    with torch.no_grad():  # the old path: one PoseNet call over all consecutive pairs
        aa, t = n.pose_net(images[:-1], images[1:])
    rel = pose_from_axis_angle_translation(aa, t).double().numpy()
    rel_gt = relative_poses_from_absolute(poses)
    ates = snippets_from_relative_poses(rel_gt, rel)
    zero = snippets_from_relative_poses(rel_gt, np.broadcast_to(np.eye(4), rel_gt.shape).copy())
    assert out["ate5"] == pytest.approx(float(np.mean(ates)), rel=1e-4)
    assert out["zero_motion_ate5"] == pytest.approx(float(np.mean(zero)), rel=1e-9)
    np.testing.assert_allclose(out["trajectory"]["pred"], chain_relative_poses(rel), atol=1e-5)
    assert out["r_err"] is None  # a 4 m trajectory has no 100 m KITTI segment


def test_sequences_combine_depth_and_pose(nets):
    cfg, n = nets
    images, gts, poses = _scene()
    model = Model.from_networks(n.depth_net, n.pose_net, cfg, stage="baseline")
    seq = SequenceData("s0", images, gts, poses)
    out = evaluate_sequences(model, "unused", [], height=64, width=192, sequences=[seq])
    alone, _ = evaluate_depth_batches(model, [(images, gts)], protocol="uncropped", scaling="median")
    assert out["depth"] == alone.metrics and "ate5" in out and set(out["trajectories"]) == {"s0"}


def test_evaluation_restores_training_mode(nets):
    cfg, n = nets
    images, gts, _ = _scene(n=2)
    n.train()
    try:
        model = Model.from_networks(n.depth_net, n.pose_net, cfg, stage="baseline")
        evaluate_depth_batches(model, [(images, gts)], protocol="uncropped")
        assert n.depth_net.training and n.pose_net.training
    finally:
        n.eval()


def _turning_trajectory(n: int, turn_deg: float) -> np.ndarray:
    """``(n,4,4)`` T_world_cam of a camera moving 1 m per frame while its yaw grows linearly to ``turn_deg``."""
    poses = np.stack([np.eye(4) for _ in range(n)])
    yaw = np.linspace(0.0, np.radians(turn_deg), n)
    for i in range(1, n):
        c, s = np.cos(yaw[i]), np.sin(yaw[i])
        poses[i, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        poses[i, :3, 3] = poses[i - 1, :3, 3] + poses[i - 1, :3, :3] @ np.array([0.0, 0.0, 1.0])
    return poses


def test_short_trajectories_get_the_devkit_errors_on_short_segments_and_a_heading_error():
    """A 60 m turning trajectory: no 100 m KITTI segment, so t_err/r_err use 10-50 m segments; predicting the
    ground truth gives zero errors, predicting a straight line misses the whole turn (heading error = the turn)."""
    from featdepth.evaluation.loop import heading_error_deg
    from featdepth.evaluation.pose_metrics import kitti_odometry_errors

    n = 61
    poses = _turning_trajectory(n, 30.0)
    straight = np.stack([np.eye(4) for _ in range(n)])
    straight[:, 2, 3] = np.arange(n)
    assert heading_error_deg(poses, poses) == pytest.approx(0.0, abs=1e-6)
    assert heading_error_deg(poses, straight) == pytest.approx(30.0, abs=1e-6)
    assert kitti_odometry_errors(poses, poses, align="scale")["num_segments"] == 0
    short = kitti_odometry_errors(poses, straight, align="scale", lengths=(10.0, 20.0, 30.0, 40.0, 50.0))
    assert short["num_segments"] > 0 and short["r_err_deg_per_100m"] > 10.0


def test_no_rotation_reference_of_evaluate_pose(monkeypatch):
    """evaluate_pose reports what a prediction with the true translations and no rotation scores: on a
    60 m trajectory turning by 30 deg it misses the whole turn (heading error 30 deg, r_err well above 0),
    while a perfect prediction scores 0 on both; pooled by evaluate_pose_sequences."""
    from featdepth.evaluation import loop

    n = 61
    poses = _turning_trajectory(n, 30.0)
    rel_gt = loop.relative_poses_from_absolute(poses)
    monkeypatch.setattr(loop, "predict_relative_poses", lambda model, images, batch_size=8: rel_gt.copy())
    images = torch.zeros(n, 3, 8, 8)
    out = loop.evaluate_pose(object(), images, poses)
    assert out["r_err"] == pytest.approx(0.0, abs=1e-3) and out["heading_error_deg"] == pytest.approx(0.0, abs=1e-4)
    assert out["no_rotation_heading_error_deg"] == pytest.approx(30.0, abs=1e-4)
    assert out["no_rotation_r_err"] > 10.0
    model = type("M", (), {"has_pose": True})()
    pooled = loop.evaluate_pose_sequences(model, [loop.SequenceData("a", images, [], poses)] * 2)
    assert pooled["no_rotation_r_err"] == pytest.approx(out["no_rotation_r_err"])
    assert pooled["no_rotation_heading_error_deg"] == pytest.approx(30.0, abs=1e-4)


class _PosesInOrder:
    """A stand-in model whose PoseNet returns given transforms in call order (an oracle, or identity)."""

    def __init__(self, transforms, height, width):
        import torch

        self.queue = list(transforms)
        self.height, self.width, self.device = height, width, torch.device("cpu")
        self.shapes = []

    def evaluating(self):
        import contextlib

        return contextlib.nullcontext(self)

    def relative_pose(self, a, b):
        import torch

        self.shapes.append(tuple(a.shape))
        out = [self.queue.pop(0) for _ in range(a.shape[0])]
        return torch.as_tensor(np.stack(out), dtype=torch.float32)


def test_rotation_response_of_an_oracle_and_of_a_posenet_that_ignores_rotation(tmp_path):
    from featdepth.data.synthetic import SynthConfig, render_rotation_pairs, write_sequence
    from featdepth.evaluation.loop import evaluate_rotation_response

    cfg = SynthConfig(seed=1, height=32, width=96, num_frames=12, stereo=False)
    seq = write_sequence(tmp_path / "seq", cfg)
    yaws = (-4.0, -1.0, 0.0, 2.0)
    truth = render_rotation_pairs(cfg, yaws)["T_b_a"]
    oracle = _PosesInOrder(truth, 64, 192)  # a different network size: the pairs are resized to it
    out = evaluate_rotation_response(oracle, seq, yaws_deg=yaws)
    assert out["slope"] == pytest.approx(1.0, abs=1e-5) and out["r"] == pytest.approx(1.0, abs=1e-6)
    assert out["pairs"] == 5 * len(yaws) and not oracle.queue
    assert all(s[-2:] == (64, 192) for s in oracle.shapes)
    assert out["true_by_yaw"] == pytest.approx([-y for y in yaws], abs=1e-6)
    assert out["predicted_by_yaw"] == pytest.approx(out["true_by_yaw"], abs=1e-4)
    still = evaluate_rotation_response(_PosesInOrder([np.eye(4)] * len(truth), 32, 96), seq, yaws_deg=yaws)
    assert still["slope"] == pytest.approx(0.0, abs=1e-9) and still["mae_deg"] == pytest.approx(np.mean(np.abs(yaws)), rel=1e-6)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="plain.*not a sequence written by the synthetic generator"):
        evaluate_rotation_response(oracle, tmp_path / "plain")
