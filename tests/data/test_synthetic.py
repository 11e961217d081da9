"""Tests of the synthetic driving-sequence generator (featdepth.data.synthetic).

The reprojection checks use a small NumPy oracle written here (back-projection, rigid transform,
projection, bilinear sampling), independent of featdepth.geometry.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from PIL import Image

from featdepth.data.synthetic import (
    SynthConfig,
    generate_dataset,
    load_poses,
    render_sequence,
    save_poses,
    write_sequence,
)

SMALL = dict(height=64, width=208, num_frames=3)


# ---------------------------------------------------------------------------------------------
# oracle helpers
# ---------------------------------------------------------------------------------------------


def _project(depth: np.ndarray, K: np.ndarray, T: np.ndarray):
    """Back-project every pixel with its depth, map with T (target -> source), project with K."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    X = rays * depth[..., None].astype(np.float64)
    Xs = X @ T[:3, :3].T + T[:3, 3]
    zs = Xs[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        us = K[0, 0] * Xs[..., 0] / zs + K[0, 2]
        vs = K[1, 1] * Xs[..., 1] / zs + K[1, 2]
    return us, vs, zs


def _bilinear(img: np.ndarray, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
    H, W = img.shape[:2]
    us = np.nan_to_num(us, nan=0.0, posinf=0.0, neginf=0.0)
    vs = np.nan_to_num(vs, nan=0.0, posinf=0.0, neginf=0.0)
    u0 = np.clip(np.floor(us).astype(np.int64), 0, W - 2)
    v0 = np.clip(np.floor(vs).astype(np.int64), 0, H - 2)
    fu = np.clip(us - u0, 0, 1)
    fv = np.clip(vs - v0, 0, 1)
    if img.ndim == 3:
        fu, fv = fu[..., None], fv[..., None]
    top = img[v0, u0] * (1 - fu) + img[v0, u0 + 1] * fu
    bot = img[v0 + 1, u0] * (1 - fu) + img[v0 + 1, u0 + 1] * fu
    return top * (1 - fv) + bot * fv


def _splat_depth(depth: np.ndarray, K: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Z-buffer of the target's points seen from the source (for views without GT depth)."""
    H, W = depth.shape
    us, vs, zs = _project(depth, K, T)
    zb = np.full((H, W), np.inf)
    for ru in (np.floor(us), np.floor(us) + 1):
        for rv in (np.floor(vs), np.floor(vs) + 1):
            ok = np.isfinite(ru) & np.isfinite(rv) & (ru >= 0) & (ru < W) & (rv >= 0) & (rv < H) & (zs > 0)
            np.minimum.at(zb, (rv[ok].astype(np.int64), ru[ok].astype(np.int64)), zs[ok])
    return zb


def _valid_mask(depth, regions, K, T, src_depth):
    """Target pixels that are not sky, away from depth/region edges, in view and not occluded."""
    H, W = depth.shape
    us, vs, zs = _project(depth, K, T)
    ok = (regions > 0) & (zs > 0.1) & (us >= 1) & (us <= W - 2) & (vs >= 1) & (vs <= H - 2)
    u0 = np.clip(np.floor(np.nan_to_num(us)).astype(np.int64), 0, W - 2)
    v0 = np.clip(np.floor(np.nan_to_num(vs)).astype(np.int64), 0, H - 2)
    for dv in (0, 1):
        for du in (0, 1):
            ok &= np.abs(src_depth[v0 + dv, u0 + du] - zs) < 0.05 * zs
    pd = np.pad(depth, 1, mode="edge")
    pr = np.pad(regions, 1, mode="edge")
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            nd = pd[1 + dv : 1 + dv + H, 1 + du : 1 + du + W]
            nr = pr[1 + dv : 1 + dv + H, 1 + du : 1 + du + W]
            ok &= (np.abs(nd - depth) < 0.05 * depth) & (nr == regions)
    return ok


def _warp_error(tgt, depth, K, T, src) -> np.ndarray:
    """Per-pixel mean absolute colour error (in [0, 1]) of the source warped into the target."""
    us, vs, _ = _project(depth, K, T)
    warped = _bilinear(src.astype(np.float64) / 255.0, us, vs)
    return np.abs(warped - tgt.astype(np.float64) / 255.0).mean(-1)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    H, W = mask.shape[-2:]
    p = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(r, r), (r, r)], constant_values=False)
    out = mask.copy()
    for dv in range(-r, r + 1):
        for du in range(-r, r + 1):
            out &= p[..., r + dv : r + dv + H, r + du : r + du + W]
    return out


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_mono():
    """A default-size 100-frame mono sequence and its render time (s)."""
    t0 = time.perf_counter()
    data = render_sequence(SynthConfig(num_frames=100, stereo=False, seed=0))
    return data, time.perf_counter() - t0


@pytest.fixture(scope="module")
def short_stereo():
    return render_sequence(SynthConfig(num_frames=6, seed=3))


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------


def test_determinism_and_distinct_seeds():
    cfg = SynthConfig(seed=11, **SMALL)
    a, b = render_sequence(cfg), render_sequence(SynthConfig(seed=11, **SMALL))
    for key in ("images", "images_right", "depths", "regions", "poses", "K"):
        np.testing.assert_array_equal(a[key], b[key])
    c = render_sequence(SynthConfig(seed=12, **SMALL))
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["depths"], c["depths"])
    assert not np.allclose(a["poses"], c["poses"])


def test_output_shapes_and_conventions(short_stereo):
    d = short_stereo
    n, h, w = 6, 128, 416
    assert d["images"].shape == (n, h, w, 3) and d["images"].dtype == np.uint8
    assert d["images_right"].shape == (n, h, w, 3) and d["images_right"].dtype == np.uint8
    assert d["depths"].shape == (n, h, w) and d["depths"].dtype == np.float32
    assert d["regions"].shape == (n, h, w) and d["regions"].dtype == np.uint8
    assert d["poses"].shape == (n, 4, 4)
    np.testing.assert_array_equal(d["poses"][0], np.eye(4))
    np.testing.assert_allclose(d["poses"][:, 3], np.tile([0, 0, 0, 1.0], (n, 1)))
    K = d["K"]
    np.testing.assert_allclose([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], [0.58 * w, 1.92 * h, 0.5 * w, 0.5 * h])
    assert d["depths"].min() > 0 and d["depths"].max() <= 80.0
    np.testing.assert_array_equal(d["depths"][d["regions"] == 0], 80.0)
    assert set(np.unique(d["regions"])) <= {0, 1, 2, 3, 4}
    # the camera height is constant: no vertical motion in the world (= first camera) frame
    np.testing.assert_allclose(d["poses"][:, 1, 3], 0.0, atol=1e-9)


def test_centre_ray_geometry_independent_of_supersampling():
    outs = [render_sequence(SynthConfig(seed=5, supersample=s, stereo=False, **SMALL)) for s in (1, 2, 3)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o["depths"], outs[0]["depths"])
        np.testing.assert_array_equal(o["regions"], outs[0]["regions"])
    # anti-aliasing changes colours at edges only a little on average
    diff = np.abs(outs[2]["images"].astype(float) - outs[0]["images"].astype(float)).mean()
    assert 0 < diff < 8


def test_road_depth_matches_analytic_plane():
    cfg = SynthConfig(seed=2, yaw_amplitude_deg=0.0, pitch_amplitude_deg=0.0, stereo=False, num_frames=4)
    d = render_sequence(cfg)
    K = d["K"]
    fy, cy = K[1, 1], K[1, 2]
    for i in range(cfg.num_frames):
        np.testing.assert_allclose(d["poses"][i, :3, :3], np.eye(3), atol=1e-12)
        v = np.arange(cfg.height, dtype=np.float64)[:, None] * np.ones((1, cfg.width))
        road = (d["regions"][i] == 1) & (v > cy + 3)
        assert road.sum() > 2000
        expected = 1.65 * fy / (v[road] - cy)
        np.testing.assert_allclose(d["depths"][i][road], expected, rtol=1e-5)
    # far road beyond max_depth is labelled background with depth = max_depth
    far = (np.arange(cfg.height) > cy) & (1.65 * fy / np.maximum(np.arange(cfg.height) - cy, 1e-9) > 80.0)
    rows = np.flatnonzero(far)
    assert rows.size > 0
    centre_col = cfg.width // 2
    assert np.all(d["depths"][0][rows, centre_col] == 80.0)


def test_temporal_reprojection_consistency(short_stereo):
    d = short_stereo
    K, P = d["K"], d["poses"]
    checked = 0
    for i in range(d["images"].shape[0] - 1):
        for tgt, src in ((i, i + 1), (i + 1, i)):
            T = np.linalg.inv(P[src]) @ P[tgt]  # T_src_tgt
            ok = _valid_mask(d["depths"][tgt], d["regions"][tgt], K, T, d["depths"][src])
            assert ok.mean() > 0.4
            err = _warp_error(d["images"][tgt], d["depths"][tgt], K, T, d["images"][src])
            T_bad = T.copy()
            T_bad[:3, 3] *= 2.0
            err_bad = _warp_error(d["images"][tgt], d["depths"][tgt], K, T_bad, d["images"][src])
            us, vs, _ = _project(d["depths"][tgt], K, T_bad)
            both = ok & (us >= 0) & (us <= K[0, 2] * 2 - 1) & (vs >= 0) & (vs <= K[1, 2] * 2 - 1)
            assert err[ok].mean() < 0.01, (tgt, src, err[ok].mean())
            assert err_bad[both].mean() > 3 * err[both].mean(), (tgt, src, err_bad[both].mean(), err[both].mean())
            checked += 1
    assert checked == 10


def test_stereo_reprojection_consistency(short_stereo):
    d = short_stereo
    K = d["K"]
    T = np.eye(4)
    T[0, 3] = -0.54  # T_src_tgt with target = left, source = right (right camera at +x)
    for i in range(d["images"].shape[0]):
        depth, reg = d["depths"][i], d["regions"][i]
        ok = _valid_mask(depth, reg, K, T, _splat_depth(depth, K, T))
        assert ok.mean() > 0.5
        err = _warp_error(d["images"][i], depth, K, T, d["images_right"][i])
        for scale in (0.0, 2.0, -1.0):  # no shift, doubled baseline, right camera on the wrong side
            T_bad = T.copy()
            T_bad[0, 3] *= scale
            err_bad = _warp_error(d["images"][i], depth, K, T_bad, d["images_right"][i])
            assert err_bad[ok].mean() > 4 * err[ok].mean()
        assert err[ok].mean() < 0.01


def test_textureless_walls_carry_no_photometric_signal(short_stereo):
    """A wrong pose barely changes the photometric error inside textureless walls (the paper's point)."""
    d = short_stereo
    K, P = d["K"], d["poses"]
    tgt, src = 2, 3
    T = np.linalg.inv(P[src]) @ P[tgt]
    T_bad = T.copy()
    T_bad[:3, 3] *= 1.5
    ok = _valid_mask(d["depths"][tgt], d["regions"][tgt], K, T, d["depths"][src])
    err_bad = _warp_error(d["images"][tgt], d["depths"][tgt], K, T_bad, d["images"][src])
    reg = _erode(d["regions"][tgt] == 2, 3)
    flat = ok & reg
    textured = ok & _erode(np.isin(d["regions"][tgt], (1, 3)), 1)
    assert flat.sum() > 500 and textured.sum() > 500
    assert err_bad[flat].mean() < 0.25 * err_bad[textured].mean()


def test_textureless_regions_are_textureless(long_mono):
    d, _ = long_mono
    img = d["images"].astype(np.float64) / 255.0
    reg = d["regions"]
    g = np.abs(np.diff(img, axis=2))[:, :-1].sum(-1) + np.abs(np.diff(img, axis=1))[:, :, :-1].sum(-1)
    fracs = np.array([(reg == k).mean() for k in range(5)])
    assert fracs[2] > 0.10, fracs
    assert fracs[3] > 0.03 and fracs[1] > 0.10 and fracs[0] > 0.01 and fracs[4] > 0.01, fracs
    means = {}
    for k in (1, 2, 3):
        m = _erode(reg == k, 2)[:, :-1, :-1]
        means[k] = g[m].mean()
        if k == 2:
            assert np.median(g[m]) < 0.01
    assert means[2] < 0.25 * means[3] and means[2] < 0.15 * means[1], means


def test_camera_motion_and_speed(long_mono):
    d, elapsed = long_mono
    P = d["poses"]
    steps = np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1)
    assert steps.min() >= 0.5 - 1e-6 and steps.max() <= 1.2 + 1e-6, (steps.min(), steps.max())
    # forward motion along the optical axis, gentle rotations between frames
    rel = [np.linalg.inv(P[i]) @ P[i + 1] for i in range(len(P) - 1)]
    assert all(r[2, 3] > 0.45 for r in rel)
    angles = [np.degrees(np.arccos(np.clip((np.trace(r[:3, :3]) - 1) / 2, -1, 1))) for r in rel]
    assert max(angles) < 1.0
    # the heading varies by a few degrees over the sequence, not more
    yaw = np.degrees(np.arctan2(P[:, 0, 2], P[:, 2, 2]))
    assert 0.3 < yaw.max() - yaw.min() < 12.0
    # 100 frames at 416x128 (2x2 supersampling): a vectorised caster needs a few seconds
    assert elapsed < 20.0, elapsed


def test_pose_file_round_trip(tmp_path, long_mono):
    P = long_mono[0]["poses"]
    save_poses(tmp_path / "poses.txt", P)
    rows = (tmp_path / "poses.txt").read_text().strip().splitlines()
    assert len(rows) == len(P) and all(len(r.split()) == 12 for r in rows)
    np.testing.assert_array_equal(load_poses(tmp_path / "poses.txt"), P)


def test_write_sequence_folder_format(tmp_path):
    cfg = SynthConfig(seed=4, **SMALL)
    out = write_sequence(tmp_path / "seq", cfg)
    mem = render_sequence(cfg)
    n, h, w = cfg.num_frames, cfg.height, cfg.width
    for sub, ext in (("images", "png"), ("images_right", "png"), ("depth", "npy"), ("regions", "png")):
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == [f"{i:06d}.{ext}" for i in range(n)], sub
    for i in range(n):
        im = Image.open(out / "images" / f"{i:06d}.png")
        assert im.mode == "RGB" and im.size == (w, h)
        np.testing.assert_array_equal(np.asarray(im), mem["images"][i])
        np.testing.assert_array_equal(np.asarray(Image.open(out / "images_right" / f"{i:06d}.png")), mem["images_right"][i])
        rg = Image.open(out / "regions" / f"{i:06d}.png")
        assert rg.mode == "L"
        np.testing.assert_array_equal(np.asarray(rg), mem["regions"][i])
        dep = np.load(out / "depth" / f"{i:06d}.npy")
        assert dep.dtype == np.float32 and dep.shape == (h, w)
        np.testing.assert_array_equal(dep, mem["depths"][i])
    K = np.loadtxt(out / "intrinsics.txt")
    assert K.shape == (3, 3)
    np.testing.assert_allclose(K, mem["K"], rtol=1e-9)
    assert float((out / "stereo.txt").read_text()) == pytest.approx(0.54)
    np.testing.assert_array_equal(load_poses(out / "poses.txt"), mem["poses"])
    meta = json.loads((out / "meta.json").read_text())
    for key in ("seed", "size", "speed", "baseline", "version"):
        assert key in meta
    assert meta["seed"] == 4 and meta["size"] == [h, w] and meta["baseline"] == 0.54

    mono = write_sequence(tmp_path / "mono", SynthConfig(seed=4, stereo=False, **SMALL))
    assert not (mono / "images_right").exists() and not (mono / "stereo.txt").exists()
    assert len(list((mono / "images").iterdir())) == n


def test_generate_dataset_deterministic(tmp_path, capsys):
    kw = dict(height=32, width=104, num_frames=2)
    a = generate_dataset(tmp_path / "a", 2, seed=7, **kw)
    b = generate_dataset(tmp_path / "b", 2, seed=7, **kw)
    c = generate_dataset(tmp_path / "c", 1, seed=8, **kw)
    assert capsys.readouterr().out == ""
    assert [p.name for p in a] == ["seq_000", "seq_001"]
    files = sorted(p.relative_to(a[0]) for p in a[0].rglob("*") if p.is_file())
    assert len(files) == 2 * 4 + 5  # 2 frames x (image, right image, depth, regions) + 5 text files
    for pa, pb in zip(a, b):
        for f in files:
            assert (pa / f).read_bytes() == (pb / f).read_bytes(), f
    # distinct scenes per sequence and per dataset seed
    assert (a[0] / "images/000000.png").read_bytes() != (a[1] / "images/000000.png").read_bytes()
    assert (a[0] / "images/000000.png").read_bytes() != (c[0] / "images/000000.png").read_bytes()
    meta = json.loads((a[1] / "meta.json").read_text())
    assert meta["size"] == [32, 104] and meta["num_frames"] == 2
    with pytest.raises(TypeError):
        generate_dataset(tmp_path / "d", 1, bogus=1)


def test_ensure_synthetic_data_renders_the_right_camera_only_when_needed(tmp_path):
    from featdepth.config import load_config
    from featdepth.data.factory import ensure_synthetic_data

    common = [f"data.path={tmp_path / 'synth'}", "data.synth_sequences=1", "data.synth_val_sequences=0",
              "data.synth_frames=3", "data.height=32", "data.width=64"]
    mono = load_config("synthetic_small", common + ["data.frame_ids=[0,-1,1]"])
    root = ensure_synthetic_data(mono)
    seq = root / "seq_000"
    assert (seq / "meta.json").is_file() and not (seq / "images_right").exists()
    stamp = (seq / "meta.json").stat().st_mtime_ns
    ensure_synthetic_data(mono)  # already there: not rendered again
    assert (seq / "meta.json").stat().st_mtime_ns == stamp
    stereo = load_config("synthetic_small", common + ["data.frame_ids=[0,-1,1,s]"])
    ensure_synthetic_data(stereo)  # a stereo config needs the right camera: rendered now
    assert (seq / "stereo.txt").is_file() and len(list((seq / "images_right").glob("*.png"))) == 3


@pytest.mark.parametrize(
    "option, value",
    [("num_sequences", -1), ("num_sequences", 0), ("num_frames", 0), ("num_frames", -5), ("height", 0),
     ("width", -8), ("supersample", 0), ("baseline", -0.5), ("max_depth", float("nan")), ("num_frames", 2.5)],
)
def test_bad_synthetic_options_name_option_and_value(tmp_path, option, value):
    kwargs = {"num_sequences": 1, "num_frames": 2, "height": 8, "width": 8}
    kwargs[option] = value
    root = tmp_path / "synth"
    with pytest.raises(ValueError, match=rf"^{option} must be .*, got {re.escape(repr(value))}$"):
        generate_dataset(root, **kwargs)
    assert not root.exists()  # nothing written


def test_load_poses_refuses_a_block_that_is_not_a_rotation(tmp_path):
    from featdepth.data.io import DataError
    from featdepth.data.synthetic import load_poses

    good = tmp_path / "poses.txt"
    good.write_text("1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 0 0 1 0 0 0 0 1 1.5\n")
    assert load_poses(good)[1, 2, 3] == 1.5
    bad = tmp_path / "bad.txt"
    bad.write_text("1 0 0 0 0 1 0 0 0 0 1 0\n2 0 0 0 0 1 0 0 0 0 1 1.5\n")
    with pytest.raises(DataError, match=r"bad\.txt, line 2: the 3x3 rotation block is not a rotation"):
        load_poses(bad)


# ---------------------------------------------------------------------------------------------
# weaving camera (sway_max_m, sway_period_range) and rotation pairs
# ---------------------------------------------------------------------------------------------


def _camera_path(cfg: SynthConfig) -> np.ndarray:
    from featdepth.data.synthetic_scene import camera_path

    path, _ = camera_path(np.random.default_rng(cfg.seed), cfg.num_frames, cfg.speed_range, cfg.speed_jitter,
                          cfg.yaw_amplitude_deg, cfg.pitch_amplitude_deg, cfg.sway_max_m, cfg.sway_period_range)
    return path


def test_default_sway_options_leave_the_sequences_unchanged():
    from featdepth.data.synthetic_scene import camera_path

    for seed in range(5):
        cfg = SynthConfig(seed=seed, num_frames=60)
        old_call = camera_path(np.random.default_rng(seed), 60, cfg.speed_range, cfg.speed_jitter,
                               cfg.yaw_amplitude_deg, cfg.pitch_amplitude_deg)  # the signature before the options
        np.testing.assert_array_equal(_camera_path(cfg), old_call[0])


def test_a_weaving_camera_turns_more_and_keeps_clear_of_the_parked_cars():
    from featdepth.data.synthetic import WEAVE_OPTIONS

    turns_default, turns_weave = [], []
    for seed in range(6):
        for options, store in (({}, turns_default), (WEAVE_OPTIONS, turns_weave)):
            cfg = SynthConfig(seed=seed, num_frames=80, **options)
            path = _camera_path(cfg)
            yaw = np.degrees(np.arctan2(path[:, 0, 2], path[:, 2, 2]))
            store.append(np.abs(np.diff(yaw)).max())
            x = path[:, 0, 3]
            assert np.all(np.abs(x) <= 1.6 + 1e-9), (seed, options, x.min(), x.max())  # parked cars from ~2.3 m
    assert max(turns_default) < 0.4 and min(turns_weave) > 0.6, (turns_default, turns_weave)


@pytest.mark.parametrize("option, value", [("sway_max_m", 2.0), ("sway_max_m", -0.1),
                                           ("sway_period_range", (5.0, 20.0)), ("sway_period_range", (60.0, 40.0))])
def test_bad_sway_options_name_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        SynthConfig(**{option: value})


def test_rotation_pairs_carry_the_requested_turn():
    from featdepth.data.synthetic import render_rotation_pairs

    cfg = SynthConfig(seed=2, height=32, width=96, num_frames=20, stereo=False)
    pairs = render_rotation_pairs(cfg, yaws_deg=(-2.0, 0.0, 3.0), frames=[4, 10])
    assert pairs["images_a"].shape == pairs["images_b"].shape == (6, 32, 96, 3)
    T = pairs["T_b_a"]
    # camera b is turned by +theta (to the right) relative to a: T_b_a rotates a's points by -theta about y
    yaw = np.degrees(np.arctan2(T[:, 0, 2], T[:, 2, 2]))
    np.testing.assert_allclose(yaw, -pairs["yaw_deg"], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(T[:, :3, 3], axis=1), 0.9, atol=1e-9)  # 0.9 m forward
    np.testing.assert_array_equal(pairs["images_a"][0], pairs["images_a"][2])  # same frame for every yaw
    assert not np.array_equal(pairs["images_b"][0], pairs["images_b"][2])
    with pytest.raises(ValueError, match="outside"):
        render_rotation_pairs(cfg, frames=[25])


def test_config_from_meta_rebuilds_the_sequence(tmp_path):
    from featdepth.data.synthetic import config_from_meta

    cfg = SynthConfig(seed=5, sway_max_m=1.2, sway_period_range=(45.0, 50.0), **SMALL)
    meta = json.loads((write_sequence(tmp_path / "s", cfg) / "meta.json").read_text())
    assert config_from_meta(meta) == cfg
    old = dict(meta["config"])
    del old["sway_max_m"], old["sway_period_range"]  # a sequence written before the options existed
    assert config_from_meta({"config": old}).sway_max_m == 0.6
    with pytest.raises(ValueError, match="does not know"):
        config_from_meta({"config": {**old, "warp_drive": 1}})
    with pytest.raises(ValueError, match="config"):
        config_from_meta({})


def test_data_synth_options_reach_the_generator_and_are_checked(tmp_path):
    from featdepth.config import ConfigError, load_config
    from featdepth.data.factory import ensure_synthetic_data

    common = [f"data.path={tmp_path / 'synth'}", "data.synth_sequences=1", "data.synth_val_sequences=0",
              "data.synth_frames=3", "data.height=32", "data.width=64", "data.frame_ids=[0,-1,1]"]
    weave = common + ["data.synth_options.sway_max_m=1.5", "data.synth_options.sway_period_range=[40,60]"]
    root = ensure_synthetic_data(load_config("synthetic_small", weave))
    used = json.loads((root / "seq_000" / "meta.json").read_text())["config"]
    assert used["sway_max_m"] == 1.5 and used["sway_period_range"] == [40.0, 60.0]
    ensure_synthetic_data(load_config("synthetic_small", weave))  # same options: reused
    ensure_synthetic_data(load_config("synthetic_small", common))  # no options asked for: the folder is usable
    with pytest.raises(ConfigError, match=r"sway_max_m=1\.5.*asks for 0\.8"):
        ensure_synthetic_data(load_config("synthetic_small", common + ["data.synth_options.sway_max_m=0.8"]))
    for bad, msg in (("data.synth_options.sway_max=1", r"unknown generator option 'sway_max' \(did you mean 'sway_max_m'"),
                     ("data.synth_options.num_frames=9", r"data\.synth_options\.num_frames: set it with data\.synth_frames"),
                     ("data.synth_options.sway_max_m=4", r"data\.synth_options: sway_max_m must be in")):
        with pytest.raises(ConfigError, match=msg):
            ensure_synthetic_data(load_config("synthetic_small", common + [bad]))


def test_data_synth_options_on_a_non_synthetic_dataset_is_an_error(tmp_path):
    """The generator options used to be ignored silently for folder/KITTI data; now the error names the key."""
    from featdepth.config import ConfigError, load_config
    from featdepth.data.factory import build_datasets

    cfg = load_config("synthetic_small", [f"data.path={tmp_path}", "data.dataset=folder",
                                          "data.synth_options.sway_max_m=1.5"])
    with pytest.raises(ConfigError, match=r"data\.synth_options \(sway_max_m\) only applies to data\.dataset=synthetic.*'folder'"):
        build_datasets(cfg)
