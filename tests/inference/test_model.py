"""featdepth.load / DepthModel: every input type, shapes, ranges, pose convention, scale conventions, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import featdepth
from featdepth.inference.model import KITTI_NORMALIZED_K, ModelLoadError, depth_kind_from_config
from featdepth.config import config_to_dict, load_config
from featdepth.training.checkpoints import atomic_save
from featdepth.geometry import pose_from_axis_angle_translation
from featdepth.models.layers import disp_to_depth
from featdepth.training.system import FeatDepthSystem

TINY = ["data.height=64", "data.width=192", "train.stage=depth"]


pytestmark = pytest.mark.usefixtures("single_thread")


def make_tiny_checkpoint(path: Path, overrides: list[str] = (), state: dict | None = None, stage: str = "depth",
                         decoder: str = "featdepth") -> Path:
    """A trained-like checkpoint: ResNet-18 networks at 64x192 (random weights), saved as the trainer does.

    ``decoder="monodepth2"`` gives a network ~5x cheaper on the CPU, for tests that run many predictions
    (the API does not depend on the decoder beyond the output stride, which the FeatDepth-decoder tests cover).
    """
    cfg = load_config("synthetic_small", TINY + [f"train.stage={stage}", f"model.depth_decoder={decoder}"] + list(overrides))
    torch.manual_seed(0)
    system = FeatDepthSystem(cfg, stage)
    if state is not None:
        system.load_state_dict(state, strict=False)
    atomic_save(
        {"model": system.state_dict(), "config": config_to_dict(cfg), "stage": stage, "versions": {"featdepth": "test"}},
        path,
    )
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def model(ckpt):
    return featdepth.load(ckpt, device="cpu")


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "fast.pt", stage="baseline", decoder="monodepth2")
    return featdepth.load(path, device="cpu")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 7.0)], axis=-1) * 200
    return np.clip(base + rng.integers(0, 50, (h, w, 3)), 0, 255).astype(np.uint8)


def _check_depth(model, depth: np.ndarray, shape: tuple) -> None:
    assert depth.shape == shape
    assert depth.dtype == np.float32
    assert np.isfinite(depth).all()
    assert depth.min() >= model.min_depth * (1 - 1e-5)
    assert depth.max() <= model.max_depth * (1 + 1e-5)


class TestLoad:
    def test_attributes(self, model, ckpt):
        assert (model.height, model.width) == (64, 192)
        assert model.depth_kind == "relative" and model.metric_factor == 1.0
        assert (model.min_depth, model.max_depth) == (0.1, 100.0)
        assert model.has_pose and model.K is None
        assert model.source == str(ckpt) and model.stage == "depth"
        assert "64x192" in repr(model)

    def test_weights_are_the_checkpoints(self, model, ckpt):
        state = torch.load(ckpt, weights_only=False)["model"]
        ours = model.depth_net.state_dict()
        for key in ("encoder.encoder.conv1.weight", "decoder.crp2.0.3_pointwise.conv.weight", "decoder.disp1.0.conv.bias"):
            assert torch.equal(ours[key], state["depth_net." + key])
        assert torch.equal(model.pose_net.state_dict()["decoder.conv3.weight"], state["pose_net.decoder.conv3.weight"])
        assert not model.depth_net.training  # eval mode: the decoder's dropout is off


class TestPredictDepth:
    def test_every_input_type_gives_the_same_depth(self, fast_model):
        model = fast_model
        img = _image(50, 90)
        d_np, disp = model.predict_depth(img, return_disparity=True)
        _check_depth(model, d_np, (50, 90))
        assert disp.shape == (50, 90) and 0 < disp.min() and disp.max() < 1
        # depth is disp_to_depth of the returned disparity
        expected = 1.0 / (1 / model.max_depth + (1 / model.min_depth - 1 / model.max_depth) * disp.astype(np.float64))
        np.testing.assert_allclose(d_np, expected, rtol=1e-5)

        d_pil = model.predict_depth(Image.fromarray(img))
        d_float = model.predict_depth(img.astype(np.float32) / 255.0)
        d_tensor = model.predict_depth(torch.from_numpy(img).permute(2, 0, 1).float() / 255.0)
        for d in (d_pil, d_float, d_tensor):
            _check_depth(model, d, (50, 90))
            np.testing.assert_allclose(d, d_np, rtol=1e-4)

    def test_batches_and_lists(self, fast_model):
        model = fast_model
        a, b = _image(70, 100, 1), _image(70, 100, 2)
        batch = torch.stack([torch.from_numpy(x).permute(2, 0, 1).float() / 255 for x in (a, b)])
        d_batch = model.predict_depth(batch)
        _check_depth(model, d_batch, (2, 70, 100))
        d_list = model.predict_depth([Image.fromarray(a), b])
        assert isinstance(d_list, np.ndarray)
        np.testing.assert_allclose(d_list, d_batch, rtol=1e-4)
        d_uint8_batch = model.predict_depth(np.stack([a, b]))
        np.testing.assert_allclose(d_uint8_batch, d_batch, rtol=1e-4)
        # differently sized images in one list: a list of arrays, each at its own resolution
        mixed = model.predict_depth([a, _image(40, 64, 3)], batch_size=1)
        assert isinstance(mixed, list) and [m.shape for m in mixed] == [(70, 100), (40, 64)]
        np.testing.assert_allclose(mixed[0], d_batch[0], rtol=1e-4)

    def test_training_size_matches_the_network(self, model):
        # FeatDepth decoder: the finest disparity is at H/2 and is upsampled back to the input size
        x = torch.rand(1, 3, 64, 192)
        depth, disp = model.predict_depth(x, return_disparity=True, scale=2.5)
        with torch.no_grad():
            raw = model.depth_net(x)[0]
        assert raw.shape[-2:] == (32, 96)
        ref = F.interpolate(raw, size=(64, 192), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(disp[0], ref[0, 0].numpy(), atol=1e-6)
        np.testing.assert_allclose(depth[0], 2.5 * disp_to_depth(ref, 0.1, 100.0)[1][0, 0].numpy(), rtol=1e-5)

    def test_bad_inputs(self, fast_model):
        model = fast_model
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model.predict_depth(np.full((32, 32, 3), 7.0, np.float32))
        with pytest.raises(ValueError, match="shape"):
            model.predict_depth(torch.rand(2, 5, 32, 32))
        with pytest.raises(TypeError, match="unsupported input"):
            model.predict_depth(42)
        with pytest.raises(ValueError, match="scale"):
            model.predict_depth(_image(32, 32), scale=-1.0)


    def test_bf16_autocast(self, fast_model):
        fp32 = fast_model.predict_depth(_image(64, 96, 9))
        bf16_model = featdepth.load(fast_model.source, device="cpu", amp="bf16")
        assert bf16_model.amp == "bf16"
        depth = bf16_model.predict_depth(_image(64, 96, 9))
        assert depth.dtype == np.float32 and depth.shape == (64, 96)
        np.testing.assert_allclose(depth, fp32, rtol=0.05)


class TestPredictPose:
    def test_rigid_and_in_the_documented_order(self, model):
        a, b = _image(64, 192, 4), _image(64, 192, 5)
        T = model.predict_pose(a, b)
        assert T.shape == (4, 4)
        R = T[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
        # PoseNet sees (earlier=a, later=b) and the result is not inverted: T_{b<-a}
        ta = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        tb = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            aa, t = model.pose_net(ta, tb)
            aa_rev, t_rev = model.pose_net(tb, ta)
        np.testing.assert_allclose(T, pose_from_axis_angle_translation(aa, t)[0].double().numpy(), atol=1e-6)
        assert not np.allclose(T, pose_from_axis_angle_translation(aa_rev, t_rev)[0].double().numpy(), atol=1e-9)

    def test_batched(self, model):
        a = torch.rand(3, 3, 48, 80)
        T = model.predict_pose(a, a.flip(0))
        assert T.shape == (3, 4, 4)
        single = model.predict_pose(a[1], a[1])
        np.testing.assert_allclose(T[1], single, atol=1e-6)
        rel = model.predict_relative_poses([a[0], a[1], a[2]])
        assert rel.shape == (2, 4, 4)


class TestScaleConventions:
    def test_depth_kind_from_config(self):
        def kind(*over):
            return depth_kind_from_config(load_config("synthetic_small", list(over)))[:2]

        assert kind() == ("relative", 1.0)
        assert kind("data.frame_ids=[0,-1,1,s]") == ("metric", 1.0)
        k, f = kind("data.frame_ids=[0,-1,1,s]", "data.stereo_baseline=0.015")
        assert k == "metric (×36)" and f == pytest.approx(36.0)  # KITTI/synthetic 0.54 / 0.015
        k, f = kind("data.dataset=folder", "data.frame_ids=[0,s]", "data.stereo_baseline=0.015")
        assert (k, f) == ("relative", 1.0)  # real baseline unknown
        cfg = load_config("synthetic_small", ["data.dataset=folder", "data.frame_ids=[0,s]", "data.stereo_baseline=0.1"])
        assert depth_kind_from_config(cfg, real_baseline=0.3)[:2] == ("metric (×3)", pytest.approx(3.0))

    def test_ms_checkpoint_scales_depth_and_translation_by_36(self, fast_model, tmp_path):
        state = {"depth_net." + k: v for k, v in fast_model.depth_net.state_dict().items()}
        state.update({"pose_net." + k: v for k, v in fast_model.pose_net.state_dict().items()})
        ms = make_tiny_checkpoint(tmp_path / "ms.pt", ["data.frame_ids=[0,-1,1,s]", "data.stereo_baseline=0.015"], state,
                                  stage="baseline", decoder="monodepth2")
        ms_model = featdepth.load(ms, device="cpu")
        assert ms_model.depth_kind == "metric (×36)"
        assert ms_model.min_depth == pytest.approx(3.6) and ms_model.max_depth == pytest.approx(3600.0)
        x = torch.rand(3, 64, 192)
        relative = fast_model.predict_depth(x)
        np.testing.assert_allclose(ms_model.predict_depth(x), 36.0 * relative, rtol=1e-5)
        np.testing.assert_allclose(ms_model.predict_depth(x, scale=1.0), relative, rtol=1e-5)
        T_ms, T = ms_model.predict_pose(x, x.flip(-1)), fast_model.predict_pose(x, x.flip(-1))
        np.testing.assert_allclose(T_ms[:3, 3], 36.0 * T[:3, 3], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(T_ms[:3, :3], T[:3, :3], atol=1e-9)


class TestIntrinsicsAndPoints:
    def test_kitti_intrinsics_and_points(self, fast_model):
        m = fast_model
        m.set_intrinsics("kitti")
        K = m.intrinsics(375, 1242)
        fx, fy, cx, cy = KITTI_NORMALIZED_K
        np.testing.assert_allclose(K, [[fx * 1242, 0, cx * 1242], [0, fy * 375, cy * 375], [0, 0, 1]])
        img = _image(40, 60, 7)
        points, colours = m.predict_points(img)
        assert points.shape == (40 * 60, 3) and colours.shape == (40 * 60, 3)
        np.testing.assert_array_equal(colours, img.reshape(-1, 3))
        depth = m.predict_depth(img)
        np.testing.assert_allclose(points[:, 2], depth.reshape(-1), rtol=1e-6)
        K = m.intrinsics(40, 60)
        v, u = 13, 41
        z = depth[v, u]
        np.testing.assert_allclose(points[v * 60 + u], [(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], rtol=1e-5)
        m.K = None

    def test_pixel_intrinsics(self, model):
        model.set_intrinsics([500.0, 400.0, 300.0, 100.0], image_size=(200, 600))
        try:
            np.testing.assert_allclose(model.intrinsics(400, 1200), [[1000, 0, 600], [0, 800, 200], [0, 0, 1]])
        finally:
            model.K = None


class TestLoadErrors:
    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nope.pt"):
            featdepth.load(tmp_path / "nope.pt")

    def test_not_a_checkpoint(self, tmp_path):
        bad = tmp_path / "garbage.pt"
        bad.write_bytes(b"\x00not a checkpoint at all")
        with pytest.raises(ModelLoadError, match="garbage.pt"):
            featdepth.load(bad)
        other = tmp_path / "other.pt"
        torch.save({"weights": torch.zeros(3)}, other)
        with pytest.raises(ModelLoadError, match="other.pt"):
            featdepth.load(other)

    def test_featurenet_checkpoint_has_no_depth(self, tmp_path):
        path = make_tiny_checkpoint(tmp_path / "stage1.pt", stage="featurenet")
        with pytest.raises(ModelLoadError, match="stage-1"):
            featdepth.load(path)

    def test_cuda_unavailable(self, ckpt):
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        with pytest.raises(ValueError, match="CUDA is not available"):
            featdepth.load(ckpt, device="cuda")
