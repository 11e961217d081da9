"""`featdepth predict` on real KITTI frames and a generated video: every output type, trajectories, errors.

PLY point count: one vertex per pixel of the input (``H × W``), in row-major order (no filtering by default).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featdepth
from featdepth.cli import main
from featdepth.evaluation.trajectory import read_kitti_trajectory, read_tum_trajectory, relative_poses_from_absolute
from featdepth.tasks.predict import PredictError, PredictOptions, resolve_inputs, run_predict
from tests.inference.test_model import make_tiny_checkpoint

KITTI_SEQ = "kitti_raw_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data"


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    # The monodepth2-decoder variant keeps these end-to-end runs cheap on the CPU; the FeatDepth
    # decoder's H/2 output path is covered in test_api.py and test_export.py.
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", decoder="monodepth2")


def parse_ply(path: Path) -> tuple[dict, np.ndarray]:
    """A small independent PLY reader: header fields and the vertex records (binary LE or ASCII)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply"
    fmt = header[1].split()[1]
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    props = [tuple(line.split()[1:]) for line in header if line.startswith("property")]
    assert props == [("float", "x"), ("float", "y"), ("float", "z"), ("uchar", "red"), ("uchar", "green"), ("uchar", "blue")]
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    if fmt == "binary_little_endian":
        body = data[end:]
        assert len(body) == count * 15
        records = np.frombuffer(body, dtype=dtype)
    else:
        rows = [line.split() for line in data[end:].decode("ascii").splitlines() if line.strip()]
        records = np.array([tuple(float(v) for v in r[:3]) + tuple(int(v) for v in r[3:]) for r in rows], dtype=dtype)
    assert len(records) == count
    return {"format": fmt, "count": count}, records


def _no_temporaries(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name]
    assert not leftovers, leftovers


class TestKittiImages:
    def test_every_output_type(self, ckpt, shared_data, tmp_path, capsys):
        folder = shared_data / KITTI_SEQ
        out = tmp_path / "out"
        rc = main(["predict", str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--all", "--kitti-intrinsics",
                   "--max-frames", "2", "--batch-size", "2", "--device", "cpu", "-q", "--json"])
        assert rc == 0
        printed = json.loads(capsys.readouterr().out)
        summary = json.loads((out / "summary.json").read_text())
        assert printed == summary
        assert summary["depth_kind"] == "relative" and summary["depth_units"] == "relative (unknown scale)"
        assert summary["outputs"] == {"color": 2, "npy": 2, "png16": 2, "ply": 2}

        model = featdepth.load(ckpt, device="cpu")
        frames = sorted(folder.glob("*.png"))[:2]
        for path in frames:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            h, w = rgb.shape[:2]
            name = path.stem
            colour = np.asarray(Image.open(out / f"{name}_disp.png"))
            assert colour.shape == (h, w, 3) and colour.dtype == np.uint8
            depth = np.load(out / f"{name}_depth.npy")
            assert depth.shape == (h, w) and depth.dtype == np.float32
            assert np.isfinite(depth).all() and depth.min() >= 0.1 - 1e-6 and depth.max() <= 100.0 + 1e-4
            if path == frames[0]:
                np.testing.assert_allclose(depth, model.predict_depth(rgb), rtol=1e-5)
            # 16-bit PNG decodes to round(depth * S); relative depth: S = 65535 / max_depth (no clipping, recorded)
            png16 = Image.open(out / f"{name}_depth.png")
            assert png16.mode.startswith("I")
            scale = float(png16.text["featdepth:depth_scale"])
            assert scale == pytest.approx(65535.0 / 100.0) == pytest.approx(summary["png16_scale"])
            png = np.asarray(png16).astype(np.float64)
            assert png.shape == (h, w) and png.max() <= 65535
            assert np.abs(png - depth.astype(np.float64) * scale).max() <= 0.5 + 1e-3
            # the PLY has one vertex per pixel, coloured with the input pixel, at the KITTI intrinsics
            info, rec = parse_ply(out / f"{name}.ply")
            assert info == {"format": "binary_little_endian", "count": h * w}
            colours = np.stack([rec["red"], rec["green"], rec["blue"]], axis=1)
            np.testing.assert_array_equal(colours, rgb.reshape(-1, 3))
            np.testing.assert_array_equal(rec["z"], depth.reshape(-1))
            fx, cx, fy, cy = 0.58 * w, 0.5 * w, 1.92 * h, 0.5 * h
            v, u = 100, 700
            z = depth[v, u]
            np.testing.assert_allclose([rec["x"][v * w + u], rec["y"][v * w + u]],
                                       [(u - cx) / fx * z, (v - cy) / fy * z], rtol=1e-5)
        _no_temporaries(out)


def _write_video(path: Path, n: int = 6, h: int = 72, w: int = 100) -> list[np.ndarray]:
    """A small synthetic video (a texture sliding sideways); returns the frames as written."""
    import av

    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        r = 127 + 100 * np.sin((xx + 3 * i) / 6.0)
        g = 127 + 100 * np.cos(yy / 5.0)
        b = (xx * 2 + i * 10) % 255
        frames.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


def _read_video(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    _write_video(path)
    return path


class TestVideo:
    def test_outputs_and_side_by_side(self, ckpt, video, tmp_path):
        out = tmp_path / "out"
        rc = main(["predict", str(video), "--checkpoint", str(ckpt), "--out", str(out), "--all", "--ply-ascii",
                   "--intrinsics", "60 60 50 36", "--device", "cpu", "-q", "-b", "4"])
        assert rc == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["input"] == {"kind": "video", "frames": 6, "path": str(video)}
        assert summary["outputs"] == {"color": 6, "npy": 6, "png16": 6, "ply": 6}
        for i in range(6):
            name = f"clip_{i:06d}"
            assert np.load(out / f"{name}_depth.npy").shape == (72, 100)
            assert np.asarray(Image.open(out / f"{name}_disp.png")).shape == (72, 100, 3)
            info, rec = parse_ply(out / f"{name}.ply")
            assert info == {"format": "ascii", "count": 72 * 100}
        decoded = _read_video(video)
        side = _read_video(Path(summary["side_by_side_video"]))
        assert len(side) == 6 and side[0].shape == (72, 200, 3)
        # the left half is the input frame (lossy codec: compare loosely), the right half the colour map
        assert np.abs(side[2][:, :100].astype(int) - decoded[2].astype(int)).mean() < 12
        colour = np.asarray(Image.open(out / "clip_000002_disp.png"))
        assert np.abs(side[2][:, 100:].astype(int) - colour.astype(int)).mean() < 12
        _no_temporaries(out)

    def test_trajectory(self, ckpt, video, tmp_path):
        out = tmp_path / "traj"
        rc = main(["predict", "trajectory", str(video), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu",
                   "-q", "-b", "2"])
        assert rc == 0
        poses = read_kitti_trajectory(out / "trajectory_kitti.txt")
        assert poses.shape == (6, 4, 4)
        np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-9)
        stamps, tum = read_tum_trajectory(out / "trajectory_tum.txt")
        assert stamps.shape == (6,) and np.all(np.diff(stamps) > 0)
        np.testing.assert_allclose(tum[:, :3, 3], poses[:, :3, 3], atol=1e-6)
        np.testing.assert_allclose(tum[:, :3, :3], poses[:, :3, :3], atol=1e-6)
        plot = Image.open(out / "trajectory_topview.png")
        assert plot.size[0] > 100 and plot.size[1] > 100
        # chaining convention: the file's relative poses are PoseNet(earlier=i, later=i+1) = T_{i+1<-i}
        frames = _read_video(video)
        model = featdepth.load(ckpt, device="cpu")
        expected = model.predict_pose(frames[:-1], frames[1:])
        np.testing.assert_allclose(relative_poses_from_absolute(poses), expected, atol=1e-6)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["poses"] == 6 and summary["depth_kind"] == "relative"
        _no_temporaries(out)


def test_glob_with_repeated_names(ckpt, tmp_path):
    for sub, value in (("left", 30), ("right", 200)):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.full((40, 60, 3), value, np.uint8)).save(tmp_path / sub / "frame.png")
    source = resolve_inputs([str(tmp_path / "*" / "frame.png")])
    # names keep the parent folders (not frame_000000, frame_000001)
    assert source.kind == "images" and source.names == ["left/frame", "right/frame"]
    assert source.sizes == [(40, 60), (40, 60)]
    model = featdepth.load(ckpt, device="cpu")
    summary = run_predict(model, source, tmp_path / "out", PredictOptions(npy=True, color=False, progress=False))
    assert summary["outputs"] == {"npy": 2}
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "index.csv", "left/frame_depth.npy", "right/frame_depth.npy", "summary.json"]
    # the two inputs differ: their depths differ too, and each lands under its own folder
    assert not np.array_equal(np.load(out / "left/frame_depth.npy"), np.load(out / "right/frame_depth.npy"))


class TestErrors:
    def _run(self, capsys, *argv) -> tuple[int, str]:
        rc = main(["predict", *map(str, argv), "--device", "cpu", "-q"])
        return rc, capsys.readouterr().err

    def test_garbage_image_in_a_folder_stops_before_any_output(self, ckpt, shared_data, tmp_path, capsys):
        folder = tmp_path / "images"
        folder.mkdir()
        good = sorted((shared_data / KITTI_SEQ).glob("*.png"))[0]
        (folder / "a_good.png").write_bytes(good.read_bytes())
        (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
        out = tmp_path / "out"
        rc, err = self._run(capsys, folder, "--checkpoint", ckpt, "--out", out, "--npy")
        assert rc != 0 and "b_broken.png" in err
        assert not out.exists() or not any(out.iterdir())

    def test_truncated_image(self, ckpt, shared_data, tmp_path, capsys):
        good = sorted((shared_data / KITTI_SEQ).glob("*.png"))[0].read_bytes()
        cut = tmp_path / "cut.png"
        cut.write_bytes(good[: len(good) // 3])
        rc, err = self._run(capsys, cut, "--checkpoint", ckpt, "--out", tmp_path / "out")
        assert rc != 0 and "cut.png" in err
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    def test_missing_and_non_image_files(self, ckpt, tmp_path, capsys):
        rc, err = self._run(capsys, tmp_path / "missing.png", "--checkpoint", ckpt, "--out", tmp_path / "o1")
        assert rc != 0 and "missing.png" in err
        notes = tmp_path / "notes.txt"
        notes.write_text("not an image\n")
        rc, err = self._run(capsys, notes, "--checkpoint", ckpt, "--out", tmp_path / "o2")
        assert rc != 0 and "notes.txt" in err
        broken_video = tmp_path / "broken.mp4"
        broken_video.write_bytes(b"\x00\x01 definitely not a video" * 10)
        rc, err = self._run(capsys, broken_video, "--checkpoint", ckpt, "--out", tmp_path / "o3")
        assert rc != 0 and "broken.mp4" in err
        rc, err = self._run(capsys, tmp_path / "*.jpg", "--checkpoint", ckpt, "--out", tmp_path / "o4")
        assert rc != 0 and "*.jpg" in err
        for name in ("o1", "o2", "o3", "o4"):
            assert not (tmp_path / name).exists()

    def test_not_a_checkpoint(self, tmp_path, capsys):
        image = tmp_path / "img.png"
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(image)
        fake = tmp_path / "weights.pth"
        fake.write_text("this is text, not a checkpoint")
        rc, err = self._run(capsys, image, "--checkpoint", fake, "--out", tmp_path / "out")
        assert rc != 0 and "weights.pth" in err
        assert not (tmp_path / "out").exists()

    def test_ply_without_intrinsics(self, ckpt, tmp_path, capsys):
        image = tmp_path / "img.png"
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(image)
        rc, err = self._run(capsys, image, "--checkpoint", ckpt, "--out", tmp_path / "out", "--ply")
        assert rc != 0 and "--ply needs intrinsics" in err
        assert not (tmp_path / "out").exists()
        rc, err = self._run(capsys, image, "--checkpoint", ckpt, "--out", tmp_path / "out", "--ply",
                            "--intrinsics", tmp_path / "no_such_K.txt")
        assert rc != 0 and "no_such_K.txt" in err

    def test_failure_midway_leaves_only_complete_files(self, ckpt, tmp_path, monkeypatch):
        import featdepth.tasks.predict as predict

        images = []
        for i in range(3):
            p = tmp_path / f"im{i}.png"
            Image.fromarray(np.full((40, 60, 3), 40 * i, np.uint8)).save(p)
            images.append(p)
        source = resolve_inputs([str(p) for p in images])
        real = predict._npy_bytes
        calls = {"n": 0}

        def failing(array):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk full (simulated)")
            return real(array)

        monkeypatch.setattr(predict, "_npy_bytes", failing)
        out = tmp_path / "out"
        model = featdepth.load(ckpt, device="cpu")
        with pytest.raises(OSError, match="simulated"):
            run_predict(model, source, out, PredictOptions(npy=True, color=False, batch_size=1, progress=False))
        assert sorted(p.name for p in out.iterdir()) == ["im0_depth.npy"]
        assert np.load(out / "im0_depth.npy").shape == (40, 60)

    def test_side_by_side_needs_images_of_one_size(self, ckpt, tmp_path):
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "a.png")
        Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "b.png")
        model = featdepth.load(ckpt, device="cpu")
        source = resolve_inputs([tmp_path / "a.png", tmp_path / "b.png"])
        with pytest.raises(PredictError, match="side-by-side.*one size"):
            run_predict(model, source, tmp_path / "out", PredictOptions(side_by_side=True, progress=False))
        assert not (tmp_path / "out").exists()
