"""Colour jitter, resize, flip and intrinsics helpers of featdepth.data.transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featdepth.data.transforms import (
    ColorJitterParams,
    hflip_array,
    hflip_image,
    hflip_intrinsics,
    hflip_pose,
    image_to_tensor,
    invert_intrinsics,
    resize_image,
    scale_intrinsics,
)


def _texture(h: int = 24, w: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _project(K: np.ndarray, X: np.ndarray) -> np.ndarray:
    x = K @ X
    return x[:2] / x[2]


class TestColorJitter:
    def test_same_params_same_output_for_every_frame(self):
        params = ColorJitterParams.sample(torch.Generator().manual_seed(3), p=1.0)
        assert params.applied and sorted(params.order) == [0, 1, 2, 3]
        img = _texture()
        a = np.asarray(params.apply(img.copy()))
        b = np.asarray(params.apply(img.copy()))
        np.testing.assert_array_equal(a, b)
        assert np.abs(a.astype(int) - np.asarray(img).astype(int)).max() > 0
        # tensors too
        t = image_to_tensor(img)
        torch.testing.assert_close(params.apply(t.clone()), params.apply(t.clone()), rtol=0, atol=0)

    def test_ranges_and_fresh_draws(self):
        g = torch.Generator().manual_seed(0)
        draws = [ColorJitterParams.sample(g, p=1.0) for _ in range(20)]
        for d in draws:
            assert 0.8 <= d.brightness <= 1.2 and 0.8 <= d.contrast <= 1.2 and 0.8 <= d.saturation <= 1.2
            assert -0.1 <= d.hue <= 0.1
        assert len({(d.brightness, d.contrast, d.saturation, d.hue) for d in draws}) == 20
        assert len({d.order for d in draws}) > 1  # random order, as torchvision's ColorJitter

    def test_reproducible_with_torch_and_numpy_generators(self):
        a = ColorJitterParams.sample(torch.Generator().manual_seed(5), p=1.0)
        b = ColorJitterParams.sample(torch.Generator().manual_seed(5), p=1.0)
        assert a == b
        c = ColorJitterParams.sample(np.random.default_rng(5), p=1.0)
        d = ColorJitterParams.sample(np.random.default_rng(5), p=1.0)
        assert c == d and c.applied

    def test_probability(self):
        g = torch.Generator().manual_seed(1)
        assert not ColorJitterParams.sample(g, p=0.0).applied
        applied = [ColorJitterParams.sample(g, p=0.5).applied for _ in range(200)]
        assert 60 < sum(applied) < 140
        img = _texture()
        np.testing.assert_array_equal(np.asarray(ColorJitterParams.identity().apply(img)), np.asarray(img))


class TestResizeAndFlip:
    def test_lanczos_resize_size(self):
        img = _texture(64, 192)
        out = resize_image(img, (32, 96))
        assert (out.height, out.width) == (32, 96)
        ref = img.resize((96, 32), resample=Image.Resampling.LANCZOS)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
        # bilinear differs: Lanczos is really used
        assert not np.array_equal(np.asarray(out), np.asarray(img.resize((96, 32), Image.Resampling.BILINEAR)))

    def test_flip_pil_tensor_array_agree(self):
        img = _texture()
        flipped = image_to_tensor(hflip_image(img))
        torch.testing.assert_close(flipped, torch.flip(image_to_tensor(img), dims=[-1]))
        torch.testing.assert_close(hflip_image(image_to_tensor(img)), flipped)
        arr = np.arange(12).reshape(3, 4)
        np.testing.assert_array_equal(hflip_array(arr), arr[:, ::-1])

    def test_flipped_intrinsics_project_mirrored_points(self):
        W = 96
        K = np.array([[80.0, 2.0, 40.3], [0.0, 70.0, 15.2], [0.0, 0.0, 1.0]])
        Kf = hflip_intrinsics(K, W)
        X = np.array([1.3, -0.4, 5.0])
        u, v = _project(K, X)
        uf, vf = _project(Kf, X * np.array([-1.0, 1.0, 1.0]))
        assert uf == pytest.approx(W - 1 - u) and vf == pytest.approx(v)
        np.testing.assert_array_equal(hflip_intrinsics(Kf, W), K)

    def test_flipped_pose_acts_on_mirrored_points(self):
        rng = np.random.default_rng(0)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        T = np.eye(4)
        T[:3, :3] = q * np.sign(np.linalg.det(q))
        T[:3, 3] = rng.normal(size=3)
        M = np.diag([-1.0, 1.0, 1.0, 1.0])
        X = np.array([0.3, -1.2, 4.0, 1.0])
        np.testing.assert_allclose(hflip_pose(T) @ (M @ X), M @ (T @ X), atol=1e-12)
        R = hflip_pose(T)[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)


class TestIntrinsics:
    def test_scale(self):
        K = np.array([[100.0, 0.0, 95.5], [0.0, 90.0, 31.5], [0.0, 0.0, 1.0]])
        Ks = scale_intrinsics(K, (64, 192), (32, 128))
        np.testing.assert_allclose(Ks, [[100 * 128 / 192, 0, 95.5 * 128 / 192], [0, 45, 15.75], [0, 0, 1]])

    def test_closed_form_inverse(self):
        K = np.array([[80.0, 1.5, 40.3], [0.0, 70.0, 15.2], [0.0, 0.0, 1.0]])
        np.testing.assert_allclose(invert_intrinsics(K) @ K, np.eye(3), atol=1e-14)
        np.testing.assert_allclose(invert_intrinsics(K), np.linalg.inv(K), rtol=1e-13, atol=1e-15)
        with pytest.raises(ValueError, match="fx"):
            invert_intrinsics(np.diag([0.0, 1.0, 1.0]))
