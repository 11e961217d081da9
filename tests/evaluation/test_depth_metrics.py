"""Tests of featdepth.evaluation.depth_metrics (hand-computed values and independent oracles)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from featdepth.evaluation.depth_metrics import (
    DEPTH_METRIC_NAMES,
    DepthEvalResult,
    compute_depth_errors,
    disp_to_depth,
    eigen_mask,
    evaluate_depth,
    evaluate_depth_image,
    garg_crop_mask,
    load_gt_depths,
    load_predictions,
    post_process_disparity,
    resize_bilinear,
)


def _dense_gt(h: int = 40, w: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(2.0, 60.0, size=(h, w)).astype(np.float32)


def _resize_oracle(img: np.ndarray, H: int, W: int) -> np.ndarray:
    """Loop version of OpenCV's INTER_LINEAR sampling (half-pixel centres, border clamping)."""
    h, w = img.shape

    def taps(dst: int, src_n: int, dst_n: int) -> tuple[int, int, float]:
        s = (dst + 0.5) * src_n / dst_n - 0.5
        if s < 0:
            s = 0.0
        i0 = int(math.floor(s))
        f = s - i0
        if i0 >= src_n - 1:
            return src_n - 1, src_n - 1, 0.0
        return i0, i0 + 1, f

    out = np.zeros((H, W))
    for y in range(H):
        y0, y1, fy = taps(y, h, H)
        for x in range(W):
            x0, x1, fx = taps(x, w, W)
            top = (1 - fx) * img[y0, x0] + fx * img[y0, x1]
            bot = (1 - fx) * img[y1, x0] + fx * img[y1, x1]
            out[y, x] = (1 - fy) * top + fy * bot
    return out


class TestComputeDepthErrors:
    def test_hand_computed(self):
        gt = np.array([1.0, 2.0, 4.0, 1.5, 5.0])
        pred = np.array([1.8, 2.0, 2.0, 1.8, 7.0])
        m = compute_depth_errors(gt, pred)
        # |g-p|/g = .8, 0, .5, .2, .4 ; (g-p)^2/g = .64, 0, 1, .06, .8 ; (g-p)^2 = .64, 0, 4, .09, 4
        assert m["abs_rel"] == pytest.approx(1.9 / 5)
        assert m["sq_rel"] == pytest.approx(2.5 / 5)
        assert m["rmse"] == pytest.approx(math.sqrt(8.73 / 5))
        logs = [math.log(1.8), 0.0, math.log(2.0), math.log(1.2), math.log(1.4)]
        assert m["rmse_log"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 5))
        # max ratios 1.8, 1, 2, 1.2, 1.4 vs thresholds 1.25, 1.5625, 1.953125
        assert m["a1"] == pytest.approx(2 / 5)
        assert m["a2"] == pytest.approx(3 / 5)
        assert m["a3"] == pytest.approx(4 / 5)
        assert tuple(m) == DEPTH_METRIC_NAMES

    def test_perfect_prediction(self):
        gt = np.array([1.0, 3.5, 70.0, 0.2])
        m = compute_depth_errors(gt, gt.copy())
        for k in ("abs_rel", "sq_rel", "rmse", "rmse_log"):
            assert m[k] == 0.0
        assert m["a1"] == m["a2"] == m["a3"] == 1.0

    @pytest.mark.parametrize(
        "gt,pred",
        [
            (np.ones(3), np.ones(4)),
            (np.zeros(0), np.zeros(0)),
            (np.ones((2, 2)), np.ones((2, 2))),
            (np.array([1.0, 0.0]), np.ones(2)),
            (np.ones(2), np.array([1.0, -1.0])),
        ],
    )
    def test_errors(self, gt, pred):
        with pytest.raises(ValueError):
            compute_depth_errors(gt, pred)


class TestMasks:
    def test_garg_crop_kitti_size(self):
        # int32 truncation: 0.40810811*375=153.04, 0.99189189*375=371.96, 0.03594771*1242=44.65, 0.96405229*1242=1197.35
        assert int(np.int32(0.40810811 * 375)) == 153 and int(np.int32(0.99189189 * 375)) == 371
        assert int(np.int32(0.03594771 * 1242)) == 44 and int(np.int32(0.96405229 * 1242)) == 1197
        mask = garg_crop_mask(375, 1242)
        assert mask.shape == (375, 1242) and mask.dtype == bool
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        assert (rows[0], rows[-1]) == (153, 370)  # rows [153, 371)
        assert (cols[0], cols[-1]) == (44, 1196)  # cols [44, 1197)
        assert mask.sum() == (371 - 153) * (1197 - 44)
        assert mask[153:371, 44:1197].all()

    def test_eigen_mask_range_is_strict(self):
        gt = np.zeros((375, 1242), dtype=np.float32)
        r, c = 200, 600  # inside the crop
        gt[r, c : c + 6] = [1e-3, 0.5e-3, 2e-3, 79.99, 80.0, 95.0]
        mask = eigen_mask(gt)
        assert mask[r, c : c + 6].tolist() == [False, False, True, True, False, False]
        assert mask.sum() == 2
        gt[10, 10] = 5.0  # outside the crop
        assert not eigen_mask(gt)[10, 10]
        assert eigen_mask(gt, crop=None)[10, 10]
        with pytest.raises(ValueError):
            eigen_mask(gt, crop="eigen")


class TestResize:
    @pytest.mark.parametrize("src,dst", [((4, 6), (9, 13)), ((7, 11), (3, 5)), ((5, 8), (5, 8))])
    def test_matches_opencv_linear_semantics(self, src, dst):
        img = np.random.default_rng(1).uniform(0, 1, size=src).astype(np.float64)
        out = resize_bilinear(img, dst)
        assert out.shape == dst
        np.testing.assert_allclose(out, _resize_oracle(img, *dst), rtol=0, atol=1e-12)


def test_disp_to_depth():
    scaled, depth = disp_to_depth(np.array([0.0, 1.0, 0.5]), 0.1, 100.0)
    np.testing.assert_allclose(scaled, [0.01, 10.0, 0.01 + 0.5 * 9.99])
    np.testing.assert_allclose(depth, 1.0 / scaled)
    assert depth[0] == pytest.approx(100.0) and depth[1] == pytest.approx(0.1)


class TestEvaluateImage:
    def test_uncropped_protocol_excludes_far_background_only(self):
        # a 4x4 "synthetic" GT: the top row is sky stored at exactly max_depth; the prediction is wrong
        # there and right elsewhere. eigen_benchmark (gt > 0) counts the sky, uncropped does not, and
        # uncropped keeps the border pixels that the Garg crop would drop.
        gt = np.full((4, 4), 10.0)
        gt[0] = 80.0
        pred = gt.copy()
        pred[0] = 20.0
        m_unc, _ = evaluate_depth_image(gt, pred, protocol="uncropped", scaling=None)
        m_bench, _ = evaluate_depth_image(gt, pred, protocol="eigen_benchmark", scaling=None)
        assert m_unc["abs_rel"] == pytest.approx(0.0, abs=1e-7)
        assert m_bench["abs_rel"] == pytest.approx(0.25 * 60.0 / 80.0)  # 4 of 16 pixels off by 60/80
        with pytest.raises(ValueError, match="uncropped"):
            evaluate_depth_image(gt, pred, protocol="nonsense")

    def test_gt_as_prediction(self):
        gt = _dense_gt()
        m, ratio = evaluate_depth_image(gt, gt.copy(), protocol="eigen_benchmark")
        assert ratio == pytest.approx(1.0)
        assert m["abs_rel"] == pytest.approx(0.0, abs=1e-7) and m["a1"] == 1.0

    def test_median_scaling_recovers_scaled_gt(self):
        gt = np.zeros((375, 1242), dtype=np.float64)
        rng = np.random.default_rng(2)
        sel = rng.uniform(size=gt.shape) < 0.05
        gt[sel] = rng.uniform(1.0, 20.0, size=sel.sum())  # x3.7 stays below the 80 m clamp
        pred = np.where(gt > 0, gt * 3.7, 1.0)
        m, ratio = evaluate_depth_image(gt, pred, protocol="eigen", scaling="median")
        assert ratio == pytest.approx(1 / 3.7, rel=1e-12)
        for k in ("abs_rel", "sq_rel", "rmse", "rmse_log"):
            assert m[k] == pytest.approx(0.0, abs=1e-12)
        assert m["a1"] == 1.0
        # without scaling the error is large, and the ratio is still reported
        m_raw, ratio_raw = evaluate_depth_image(gt, pred, scaling=None)
        assert ratio_raw == pytest.approx(1 / 3.7) and m_raw["abs_rel"] == pytest.approx(2.7)

    def test_fixed_factor(self):
        gt = _dense_gt()
        m, ratio = evaluate_depth_image(gt, gt / 36.0, protocol="eigen_benchmark", scaling=36.0)
        assert ratio == pytest.approx(36.0, rel=1e-6)
        assert m["abs_rel"] == pytest.approx(0.0, abs=1e-6)
        m2, _ = evaluate_depth_image(gt, gt / 36.0, protocol="eigen_benchmark", scaling=18.0)
        assert m2["abs_rel"] == pytest.approx(0.5, rel=1e-6)

    def test_clamp_after_scaling(self):
        gt = np.full((4, 4), 50.0)
        pred = np.full((4, 4), 500.0)
        m, _ = evaluate_depth_image(gt, pred, protocol="eigen_benchmark", scaling=None, max_depth=80.0)
        assert m["abs_rel"] == pytest.approx(30.0 / 50.0)  # pred clamped to 80

    def test_disparity_input_is_resized_before_inversion(self):
        gt = _dense_gt(12, 20)
        disp = np.random.default_rng(3).uniform(0.05, 0.5, size=(6, 10))
        m, ratio = evaluate_depth_image(gt, disp, protocol="eigen_benchmark", scaling=None, pred_is_disparity=True)
        depth = 1.0 / _resize_oracle(disp, 12, 20)
        expected = compute_depth_errors(gt.reshape(-1).astype(np.float64), np.clip(depth, 1e-3, 80).reshape(-1))
        for k in DEPTH_METRIC_NAMES:
            assert m[k] == pytest.approx(expected[k], rel=1e-5)
        assert ratio == pytest.approx(np.median(gt) / np.median(depth), rel=1e-5)

    def test_errors(self):
        gt = _dense_gt(8, 8)
        with pytest.raises(ValueError, match="protocol"):
            evaluate_depth_image(gt, gt, protocol="nyu")
        with pytest.raises(ValueError, match="scaling"):
            evaluate_depth_image(gt, gt, scaling="mean")
        with pytest.raises(ValueError, match="no valid"):
            evaluate_depth_image(np.zeros((8, 8)), gt, protocol="eigen_benchmark")
        with pytest.raises(ValueError):
            evaluate_depth_image(gt[None, None], gt)


class TestEvaluateDepth:
    def test_per_image_averaging_not_pixel_pooling(self):
        gt_a = np.full((10, 10), 10.0)  # 100 valid pixels, perfect prediction
        gt_b = np.zeros((10, 10))
        gt_b[0, :4] = 10.0  # 4 valid pixels, prediction off by 20 %
        preds = [gt_a.copy(), np.full((10, 10), 12.0)]
        res = evaluate_depth([gt_a, gt_b], preds, protocol="eigen_benchmark", scaling=None)
        assert res.num_images == 2
        assert res.metrics["abs_rel"] == pytest.approx((0.0 + 0.2) / 2)
        assert res.metrics["abs_rel"] != pytest.approx(4 * 0.2 / 104)  # what pooling would give
        assert res.metrics["a1"] == pytest.approx(1.0)
        assert res.per_image[1]["abs_rel"] == pytest.approx(0.2)
        np.testing.assert_allclose(res.ratios, [1.0, 10.0 / 12.0])

    def test_ratio_statistics_and_serialisation(self, tmp_path):
        gts = [_dense_gt(8, 12, seed=s) for s in range(3)]
        factors = [2.0, 2.5, 4.0]
        preds = np.stack([g / f for g, f in zip(gts, factors)])
        res = evaluate_depth(gts, preds, protocol="eigen_benchmark", scaling="median")
        assert res.ratio_median == pytest.approx(2.5, rel=1e-6)
        r = np.array(factors) / 2.5
        assert res.ratio_std == pytest.approx(float(np.std(r)), rel=1e-6)
        assert res.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
        row = res.table_row()
        assert len(row.split("|")) == 7 and row.split("|")[4].strip() == "1.000"
        assert DepthEvalResult.table_header().split("|")[0].strip() == "abs_rel"
        d = json.loads(res.to_json(tmp_path / "r.json"))
        assert d["num_images"] == 3 and list(d["metrics"]) == list(DEPTH_METRIC_NAMES)
        assert json.loads((tmp_path / "r.json").read_text()) == d
        assert "ratio med" in str(res)

    def test_count_mismatch(self):
        with pytest.raises(ValueError, match="2 ground-truth maps but 1"):
            evaluate_depth([np.ones((2, 2))] * 2, [np.ones((2, 2))])
        with pytest.raises(ValueError, match="image 1"):
            evaluate_depth([np.ones((2, 2)), np.zeros((2, 2))], [np.ones((2, 2))] * 2, protocol="eigen_benchmark")


class TestPostProcess:
    def test_borders_and_middle(self):
        w = 41  # x = j / 40: l_mask = 1 for j <= 2, ramps to 0 at j = 4
        d_l = np.full((2, 3, w), 1.0)
        d_r = np.full((2, 3, w), 3.0)
        pp = post_process_disparity(d_l, d_r)
        assert pp.shape == d_l.shape
        np.testing.assert_allclose(pp[..., :3], 3.0)  # left border from the flipped prediction
        np.testing.assert_allclose(pp[..., -3:], 1.0)  # right border from the un-flipped one
        np.testing.assert_allclose(pp[..., 4:-4], 2.0)  # middle: the mean
        np.testing.assert_allclose(pp[..., 3], 0.5 * 3.0 + 0.5 * 2.0)  # l_mask(3/40) = 0.5

    def test_flip_back_of_the_flipped_prediction(self):
        rng = np.random.default_rng(4)
        h, w = 5, 30
        d_l = rng.uniform(0.1, 1.0, size=(h, w))
        d_r = rng.uniform(0.1, 1.0, size=(h, w))  # as predicted on the flipped image
        pp = post_process_disparity(d_l, d_r)
        for j in range(w):
            x = j / (w - 1)
            lm = 1.0 - min(max(20.0 * (x - 0.05), 0.0), 1.0)
            xr = (w - 1 - j) / (w - 1)
            rm = 1.0 - min(max(20.0 * (xr - 0.05), 0.0), 1.0)
            back = d_r[:, w - 1 - j]
            expected = rm * d_l[:, j] + lm * back + (1 - lm - rm) * 0.5 * (d_l[:, j] + back)
            np.testing.assert_allclose(pp[:, j], expected, atol=1e-12)

    def test_symmetric_input_is_unchanged(self):
        d = np.random.default_rng(5).uniform(size=(4, 16))
        np.testing.assert_allclose(post_process_disparity(d, d[:, ::-1]), d, atol=1e-12)

    def test_shape_mismatch(self):
        with pytest.raises(ValueError):
            post_process_disparity(np.ones((2, 4)), np.ones((2, 5)))


class TestLoaders:
    def test_npy_and_npz(self, tmp_path):
        arr = np.random.default_rng(6).uniform(size=(3, 4, 5)).astype(np.float32)
        np.save(tmp_path / "p.npy", arr)
        np.testing.assert_array_equal(load_predictions(tmp_path / "p.npy"), arr)
        np.save(tmp_path / "c.npy", arr[:, None])
        assert load_predictions(tmp_path / "c.npy").shape == (3, 4, 5)
        np.savez(tmp_path / "k.npz", other=np.zeros(2), disp=arr)
        np.testing.assert_array_equal(load_predictions(tmp_path / "k.npz"), arr)
        np.savez(tmp_path / "f.npz", arr)
        np.testing.assert_array_equal(load_predictions(tmp_path / "f.npz"), arr)

    def test_errors_name_file_and_shape(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="missing.npy"):
            load_predictions(tmp_path / "missing.npy")
        np.save(tmp_path / "bad.npy", np.zeros((4, 5)))
        with pytest.raises(ValueError, match=r"bad\.npy.*\(4, 5\)"):
            load_predictions(tmp_path / "bad.npy")
        (tmp_path / "x.txt").write_text("1 2 3")
        with pytest.raises(ValueError, match="x.txt"):
            load_predictions(tmp_path / "x.txt")
        np.savez(tmp_path / "empty.npz")
        with pytest.raises(ValueError, match="empty.npz"):
            load_predictions(tmp_path / "empty.npz")

    def test_load_gt_depths(self, tmp_path):
        maps = [np.ones((3, 4), np.float32), np.full((5, 6), 2.0, np.float32)]
        data = np.empty(2, dtype=object)
        data[0], data[1] = maps
        np.savez_compressed(tmp_path / "gt.npz", data=data)
        out = load_gt_depths(tmp_path / "gt.npz")
        assert [m.shape for m in out] == [(3, 4), (5, 6)] and out[1][0, 0] == 2.0
        np.savez(tmp_path / "wrong.npz", depth=np.ones((2, 3, 3)))
        with pytest.raises(ValueError, match=r"wrong\.npz.*'data'"):
            load_gt_depths(tmp_path / "wrong.npz")
        with pytest.raises(FileNotFoundError, match="nope.npz"):
            load_gt_depths(tmp_path / "nope.npz")


@pytest.mark.realdata
class TestRealKittiDepth:
    def _load(self, shared_data, idx: int) -> np.ndarray:
        p = shared_data / "kitti_raw_tiny/2011_09_26/2011_09_26_drive_0023_sync/proj_depth/velodyne/image_02"
        with np.load(p / f"{idx:010d}.npz") as f:
            return f["velodyne_depth"]

    def test_self_and_perturbed(self, shared_data):
        gts = [self._load(shared_data, i) for i in (0, 3)]
        assert gts[0].shape == (375, 1242)
        res = evaluate_depth(gts, [g.copy() for g in gts], protocol="eigen", scaling=None)
        assert res.metrics["abs_rel"] == 0.0 and res.metrics["rmse"] == 0.0 and res.metrics["a1"] == 1.0

        rng = np.random.default_rng(7)
        preds = [np.where(g > 0, g * rng.uniform(0.7, 1.3, size=g.shape), 5.0).astype(np.float32) for g in gts]
        res_none = evaluate_depth(gts, preds, protocol="eigen", scaling=None)
        res_med = evaluate_depth(gts, preds, protocol="eigen", scaling="median")
        # direct computation
        direct_none, direct_med = [], []
        for g, p in zip(gts, preds):
            h, w = g.shape
            crop = np.zeros_like(g, dtype=bool)
            crop[int(0.40810811 * h) : int(0.99189189 * h), int(0.03594771 * w) : int(0.96405229 * w)] = True
            m = (g > 1e-3) & (g < 80) & crop
            gg, pp = g[m].astype(np.float64), p[m].astype(np.float64)
            for scale, store in ((1.0, direct_none), (np.median(gg) / np.median(pp), direct_med)):
                q = np.clip(pp * scale, 1e-3, 80)
                store.append(np.mean(np.abs(gg - q) / gg))
                if store is direct_none:
                    store.append(np.sqrt(np.mean((gg - q) ** 2)))
        assert res_none.metrics["abs_rel"] > 0.05
        assert res_none.metrics["abs_rel"] == pytest.approx((direct_none[0] + direct_none[2]) / 2, rel=1e-9)
        assert res_none.metrics["rmse"] == pytest.approx((direct_none[1] + direct_none[3]) / 2, rel=1e-9)
        assert res_med.metrics["abs_rel"] == pytest.approx(np.mean(direct_med), rel=1e-9)
