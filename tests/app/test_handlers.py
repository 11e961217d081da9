"""The app's handlers without a server: outputs checked against independent computations, and plain errors."""

from __future__ import annotations

import io
import os
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import featdepth
from featdepth.app import handlers
from featdepth.app.handlers import AppError, AppState
from featdepth.cli import main
from featdepth.data.synthetic import SynthConfig, render_sequence
from featdepth.evaluation.plots import colorize_disparity
from featdepth.utils.constants import KITTI_NORMALIZED_K

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model(app_ckpt):
    return featdepth.load(app_ckpt, device="cpu")


@pytest.fixture(scope="module")
def frames(examples_dir) -> list[Path]:
    return handlers.example_frames(examples_dir)


@pytest.fixture(scope="module")
def sequence() -> np.ndarray:
    """Five consecutive 128x96 synthetic frames."""
    return render_sequence(SynthConfig(height=96, width=128, num_frames=5, stereo=False, seed=3, supersample=1))["images"]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _read_ply(path: Path) -> np.ndarray:
    """Independent reader of our binary PLY: (N,) records x y z (float32) red green blue (uint8)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii")
    assert "format binary_little_endian 1.0" in header
    count = int(header.split("element vertex ")[1].split()[0])
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    records = np.frombuffer(data[end:], dtype=dtype)
    assert len(records) == count
    return records


def _write_video(path: Path, frames: np.ndarray) -> Path:
    av = pytest.importorskip("av", reason="PyAV is not installed (the video extra)")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _count_video_frames(path: Path) -> tuple[int, int, int]:
    av = pytest.importorskip("av", reason="PyAV is not installed (the video extra)")
    with av.open(str(path)) as container:
        shapes = [f.to_ndarray(format="rgb24").shape for f in container.decode(video=0)]
    return len(shapes), shapes[0][0], shapes[0][1]


# ------------------------------------------------------------------------------------------------
# checkpoint


class TestCheckpoint:
    def test_default_is_the_demo_checkpoint(self, tmp_path):
        with pytest.raises(AppError, match="make demo"):
            handlers.find_checkpoint(None, cwd=tmp_path)
        (tmp_path / "demo-output").mkdir()
        (tmp_path / "demo-output" / "checkpoint.pt").write_bytes(b"x")
        assert handlers.find_checkpoint(None, cwd=tmp_path) == tmp_path / "demo-output" / "checkpoint.pt"
        with pytest.raises(AppError, match="checkpoint not found: .*nope.pt"):
            handlers.find_checkpoint(tmp_path / "nope.pt")

    @pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04 broken zip"])
    def test_a_wrong_checkpoint_is_a_plain_error(self, tmp_path, content):
        bad = tmp_path / "weights.pt"
        bad.write_bytes(content)
        with pytest.raises(AppError) as info:
            handlers.load_model(bad, device="cpu")
        message = str(info.value)
        assert message.startswith("weights.pt cannot be used as a depth model")
        assert "Traceback" not in message and str(tmp_path) not in message

    def test_info_names_stage_networks_size_and_factor(self, model, app_ckpt):
        info = handlers.checkpoint_info(model)
        assert info["checkpoint"] == app_ckpt.name
        assert (info["stage"], info["training_size"], info["metric_factor"]) == ("depth", "192x64", 1.0)
        assert info["depth_network"] == "resnet18 + monodepth2 decoder" and info["pose_network"] == "resnet18"
        md = handlers.checkpoint_markdown(model)
        for text in ("| stage | depth |", "192x64", "| metric factor | 1 |", "relative"):
            assert text in md


# ------------------------------------------------------------------------------------------------
# examples and inputs


def test_examples_are_rendered_once_and_cached(tmp_path):
    first = handlers.example_frames(tmp_path)
    assert len(first) == 3 and all(p.is_file() for p in first)
    stamps = [p.stat().st_mtime_ns for p in first]
    assert handlers.example_frames(tmp_path) == first
    assert [p.stat().st_mtime_ns for p in first] == stamps  # not rendered again
    img = np.asarray(Image.open(first[0]))
    assert img.shape == (192, 640, 3) and img.std() > 10  # a picture, not a blank
    fx, fy, cx, cy = handlers.example_intrinsics(first[0])
    assert (fx, fy, cx, cy) == pytest.approx((0.58 * 640, 1.92 * 192, 320, 96))
    seq = handlers.example_sequence_zip(tmp_path)
    with zipfile.ZipFile(seq) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 30


class TestReadImage:
    def test_not_an_image(self, tmp_path):
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(AppError, match=r"^notes.txt is not an image file that can be read \(supported: png"):
            handlers.read_image(str(tmp_path / "notes.txt"))

    def test_truncated_image(self, tmp_path, frames):
        data = frames[0].read_bytes()
        (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
        with pytest.raises(AppError, match="^cut.png is corrupt or truncated"):
            handlers.read_image(str(tmp_path / "cut.png"))

    def test_nothing_video_and_huge(self, tmp_path):
        with pytest.raises(AppError, match="no image"):
            handlers.read_image(None)
        with pytest.raises(AppError, match="use the video tab"):
            handlers.read_image(str(tmp_path / "clip.mp4"))
        Image.new("RGB", (handlers.MAX_IMAGE_SIDE + 1, 8)).save(tmp_path / "wide.png")
        with pytest.raises(AppError, match=f"at most {handlers.MAX_IMAGE_SIDE} pixels per side"):
            handlers.read_image(str(tmp_path / "wide.png"))

    def test_grey_and_rgba_become_rgb(self, tmp_path):
        Image.new("LA", (20, 10), (100, 255)).save(tmp_path / "grey.png")
        rgb = handlers.read_image(str(tmp_path / "grey.png"))
        assert rgb.shape == (10, 20, 3) and rgb.dtype == np.uint8 and (rgb == 100).all()


class TestIntrinsics:
    def test_given_default_and_partial(self, model):
        K, note = handlers.resolve_intrinsics(model, 100, 200, 150, 160, 99.5, 50.5)
        np.testing.assert_allclose(K, [[150, 0, 99.5], [0, 160, 50.5], [0, 0, 1]])
        assert "as given" in note
        K, note = handlers.resolve_intrinsics(model, 100, 200, 0, 0, 0, 0)  # the page's empty fields
        fx, fy, cx, cy = KITTI_NORMALIZED_K
        np.testing.assert_allclose(K, [[fx * 200, 0, cx * 200], [0, fy * 100, cy * 100], [0, 0, 1]])
        assert "KITTI-like" in note and "approximate" in note
        with pytest.raises(AppError, match="missing: cx, cy"):
            handlers.resolve_intrinsics(model, 100, 200, 150, 160, None, None)
        with pytest.raises(AppError, match="fx and fy must be > 0"):
            handlers.resolve_intrinsics(model, 100, 200, -1, 160, 10, 10)

    def test_the_checkpoints_intrinsics_come_before_kitti(self, app_ckpt):
        m = featdepth.load(app_ckpt, device="cpu", intrinsics=(0.5, 1.0, 0.5, 0.5))
        K, note = handlers.resolve_intrinsics(m, 100, 200)
        np.testing.assert_allclose(K, [[100, 0, 100], [0, 100, 50], [0, 0, 1]])
        assert "checkpoint's intrinsics" in note


# ------------------------------------------------------------------------------------------------
# one image


@pytest.fixture(scope="module")
def result(model, frames, tmp_path_factory):
    return handlers.predict_image(model, str(frames[0]), tmp_path_factory.mktemp("img"), fx=371.2, fy=368.64,
                                  cx=320, cy=96, max_points=4000)


class TestPredictImage:
    def test_depth_and_colour(self, model, frames, result):
        rgb = np.asarray(Image.open(frames[0]).convert("RGB"))
        depth, disp = model.predict_depth(rgb, return_disparity=True)
        np.testing.assert_array_equal(result.image, rgb)
        np.testing.assert_array_equal(np.load(result.depth_npy), depth)
        assert np.load(result.depth_npy).dtype == np.float32
        np.testing.assert_array_equal(np.asarray(Image.open(result.colour_png)), colorize_disparity(disp))
        assert result.colour.shape == rgb.shape
        png16 = np.asarray(Image.open(result.depth_png16))
        assert png16.dtype == np.uint16
        np.testing.assert_array_equal(png16, np.round(depth.astype(np.float64) * 256).astype(np.uint16))
        assert result.units == "relative units" and "depth is relative" in result.markdown()

    def test_ply_holds_every_pixel_back_projected(self, result):
        rec = _read_ply(result.ply)
        h, w = result.depth.shape
        assert len(rec) == h * w
        v, u = 37, 411  # any pixel: X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = depth
        r = rec[v * w + u]
        z = result.depth[v, u]
        assert r["z"] == pytest.approx(z, rel=1e-6)
        assert r["x"] == pytest.approx((u - 320) * z / 371.2, rel=1e-5)
        assert r["y"] == pytest.approx((v - 96) * z / 368.64, rel=1e-5)
        assert (r["r"], r["g"], r["b"]) == tuple(result.image[v, u])

    def test_glb_is_a_subsampled_upright_cloud(self, result):
        trimesh = pytest.importorskip("trimesh", reason="trimesh is not installed (the app extra)")
        scene = trimesh.load(result.glb, file_type="glb")
        cloud = next(iter(scene.geometry.values()))
        pts = np.asarray(cloud.vertices)
        assert 0 < len(pts) <= 4000 and len(pts) == result.view_points
        cam = pts * [1, -1, -1]  # glTF axes back to the camera frame
        assert (cam[:, 2] > 0).all()  # everything in front of the camera
        fx, fy, cx, cy = 371.2, 368.64, 320, 96
        u = cam[:, 0] * fx / cam[:, 2] + cx
        v = cam[:, 1] * fy / cam[:, 2] + cy
        ui, vi = np.round(u).astype(int), np.round(v).astype(int)
        assert np.abs(u - ui).max() < 1e-2 and np.abs(v - vi).max() < 1e-2  # pixel centres
        np.testing.assert_allclose(cam[:, 2], result.depth[vi, ui], rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], result.image[vi, ui])
        # the farthest points (the sky) are left out of the view
        assert cam[:, 2].max() <= np.percentile(result.depth, 99.9)

    def test_camera_height_scales_to_metres(self, model, frames, tmp_path, monkeypatch):
        plain = handlers.predict_image(model, str(frames[1]), tmp_path / "a")
        found = SimpleNamespace(ok=True, scale=2.5, inlier_fraction=0.6, angle_from_vertical_deg=1.5, reason="")
        calls = []
        monkeypatch.setattr(model, "scale_from_camera_height",
                            lambda im, h, K=None, height_from="?": calls.append((h, K, height_from)) or found)
        metric = handlers.predict_image(model, str(frames[1]), tmp_path / "b", camera_height=1.65)
        np.testing.assert_allclose(metric.depth, plain.depth * 2.5, rtol=1e-6)
        assert metric.units == "metres" and "scale ×2.5" in metric.markdown()
        assert calls[0][0] == 1.65 and calls[0][1].shape == (3, 3) and calls[0][2] == "plane"  # the default
        handlers.predict_image(model, str(frames[1]), tmp_path / "b2", camera_height=1.65, height_from="level")
        assert calls[1][2] == "level"
        with pytest.raises(AppError, match="from 'plane' or 'level', got 'sky'"):
            handlers.predict_image(model, str(frames[1]), tmp_path / "b3", camera_height=1.65, height_from="sky")
        monkeypatch.undo()
        # the random network finds no ground plane: the depth stays relative, with the reason
        failed = handlers.predict_image(model, str(frames[1]), tmp_path / "c", camera_height=1.65)
        assert failed.units == "relative units"
        assert any(n.startswith("no metric scale from the camera height (1.65 m): no ground plane") for n in failed.notes)
        with pytest.raises(AppError, match="camera height must be > 0"):
            handlers.predict_image(model, str(frames[1]), tmp_path / "d", camera_height=-1)


# ------------------------------------------------------------------------------------------------
# videos and zips of frames


class TestPredictVideo:
    def test_zip_of_frames(self, model, sequence, tmp_path):
        archive = _zip(tmp_path / "clip.zip", {f"clip/{i:03d}.png": _png(f) for i, f in enumerate(sequence)}
                       | {"__MACOSX/clip/._000.png": b"junk", "clip/readme.txt": b"hi"})
        steps = []
        r = handlers.predict_video(model, str(archive), tmp_path / "out", progress=lambda f, d: steps.append(f))
        assert r.frames == 5 and steps[0] == 0.0 and steps[-1] == 1.0
        n, h, w = _count_video_frames(r.video)
        assert (n, h, w) == (5, 96, 256)  # input | depth
        kitti = np.loadtxt(next(p for p in r.files if p.name == "trajectory_kitti.txt"))
        assert kitti.shape == (5, 12)
        np.testing.assert_allclose(kitti[0], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], atol=1e-12)
        assert r.trajectory_plot.is_file() and Image.open(r.trajectory_plot).size[0] > 100
        assert {p.name for p in r.files} >= {"trajectory_tum.txt", "trajectory_summary.json", "depth_summary.json"}

    def test_video_file(self, model, sequence, tmp_path):
        video = _write_video(tmp_path / "clip.mp4", sequence[:4])
        r = handlers.predict_video(model, str(video), tmp_path / "out")
        assert r.frames == 4 and _count_video_frames(r.video)[0] == 4
        with pytest.raises(AppError, match=r"^clip.mp4 has more than 3 frames, the page's limit"):
            handlers.predict_video(model, str(video), tmp_path / "out2", max_frames=3)

    def test_without_posenet_no_trajectory(self, app_ckpt, sequence, tmp_path):
        m = featdepth.load(app_ckpt, device="cpu")
        m.networks.pose_net = None
        archive = _zip(tmp_path / "c.zip", {f"{i}.png": _png(f) for i, f in enumerate(sequence[:2])})
        r = handlers.predict_video(m, str(archive), tmp_path / "out")
        assert r.trajectory_plot is None and "no trajectory: this checkpoint has no PoseNet" in r.markdown()

    def test_bad_inputs(self, model, sequence, tmp_path):
        frames = {f"{i}.png": _png(f) for i, f in enumerate(sequence)}
        cases = [
            (_zip(tmp_path / "long.zip", frames), "^long.zip has more than 3 frames"),
            (_zip(tmp_path / "empty.zip", {"a.txt": b"x"}), r"^empty.zip holds no image frames"),
            (_zip(tmp_path / "mixed.zip", {"a.png": _png(sequence[0]), "b.png": _png(sequence[0][:50])}),
             "different sizes"),
            (_zip(tmp_path / "corrupt.zip", {"a.png": b"\x89PNG broken"}), "corrupt.zip"),
        ]
        (tmp_path / "fake.zip").write_bytes(b"not a zip")
        cases.append((tmp_path / "fake.zip", "^fake.zip is not a readable zip archive"))
        (tmp_path / "notes.txt").write_text("x")
        cases.append((tmp_path / "notes.txt", "^notes.txt is neither a video"))
        (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
        cases.append((tmp_path / "broken.mp4", "broken.mp4"))
        for path, pattern in cases:
            with pytest.raises(AppError, match=pattern) as info:
                handlers.predict_video(model, str(path), tmp_path / "out", max_frames=3)
            assert "Traceback" not in str(info.value) and str(tmp_path) not in str(info.value), str(info.value)
        with pytest.raises(AppError, match="no video"):
            handlers.predict_video(model, None, tmp_path / "out")


def test_request_dirs_are_fresh_and_old_ones_pruned(model, tmp_path):
    state = AppState(model=model, work_dir=tmp_path / "work", examples_dir=tmp_path / "ex")
    a, b = state.request_dir("image"), state.request_dir("image")
    assert a != b and a.is_dir() and b.is_dir()
    old = time.time() - handlers.KEEP_OUTPUTS_S - 10
    os.utime(a, (old, old))
    state.request_dir("video")
    assert not a.exists() and b.exists()


# ------------------------------------------------------------------------------------------------
# the command line without a server


class TestCommand:
    def test_without_gradio_names_the_extra(self, app_ckpt, monkeypatch, capsys):
        monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
        assert main(["app", "--checkpoint", str(app_ckpt)]) == 2
        assert 'pip install "featdepth[app]"' in capsys.readouterr().err

    def test_without_checkpoint_says_how_to_get_one(self, tmp_path, monkeypatch, capsys):
        monkeypatch.chdir(tmp_path)
        assert main(["app"]) == 2
        err = capsys.readouterr().err
        assert "make demo" in err and "featdepth demo" in err and "Traceback" not in err

    def test_a_wrong_checkpoint_stops_before_serving(self, tmp_path, monkeypatch, capsys):
        import featdepth.app.ui as ui

        monkeypatch.setattr(ui, "require_gradio", lambda: None)
        monkeypatch.setattr(ui, "launch", lambda *a, **k: pytest.fail("must not serve"))
        (tmp_path / "model.pt").write_text("not a model")
        assert main(["app", "--checkpoint", str(tmp_path / "model.pt"), "--device", "cpu"]) == 2
        assert "model.pt cannot be used as a depth model" in capsys.readouterr().err

    def test_options(self, app_ckpt, monkeypatch, capsys):
        import featdepth.app.ui as ui

        served = {}
        monkeypatch.setattr(ui, "require_gradio", lambda: None)
        monkeypatch.setattr(ui, "launch", lambda state, **k: served.update(k, state=state))
        assert main(["app", "--checkpoint", str(app_ckpt), "--device", "cpu", "--port", "8123", "--share", "no",
                     "--max-frames", "40"]) == 0
        assert (served["host"], served["port"], served["share"]) == ("127.0.0.1", 8123, False)
        assert served["state"].max_frames == 40 and served["state"].model.stage == "depth"
        with pytest.raises(SystemExit):
            main(["app", "--share", "maybe"])

