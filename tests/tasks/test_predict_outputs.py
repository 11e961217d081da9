"""`featdepth predict` outputs that keep their source and read well: names, index.csv, source frame numbers,
colour maps (cmap, fixed range, colour bar), side-by-side from frames, quiet mode, the aspect-ratio warning,
and `predict trajectory`'s own help and plot units."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F
from PIL import Image

import featdepth
from featdepth.cli import main
from featdepth.evaluation.plots import colorize_disparity
from featdepth.inference.model import AspectRatioWarning
from featdepth.tasks.predict import PredictOptions, resolve_inputs, run_predict
from tests.inference.test_model import make_tiny_checkpoint
from tests.tasks.test_predict import _read_video, _write_video

pytestmark = pytest.mark.usefixtures("single_thread")
pytest.importorskip("av", reason="PyAV (the 'video' extra) is needed for the video tests")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", decoder="monodepth2")


@pytest.fixture(scope="module")
def model(ckpt):
    return featdepth.load(ckpt, device="cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    _write_video(path, n=6, h=64, w=192)  # the training aspect: no warning
    return path


def _frames_folder(root: Path, n: int = 3, h: int = 64, w: int = 192) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i:06d}.png")
    return root


def test_every_keeps_source_frame_numbers_and_index_csv(ckpt, video, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", str(video), "-k", str(ckpt), "-o", str(out), "--every", "2", "--npy", "--device", "cpu", "-q"])
    assert rc == 0
    assert capsys.readouterr() == ("", "")  # -q: nothing but errors
    names = sorted(p.name for p in out.glob("*_depth.npy"))
    assert names == ["clip_000000_depth.npy", "clip_000002_depth.npy", "clip_000004_depth.npy"]
    with (out / "index.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["frame"] for r in rows] == ["0", "2", "4"]
    assert all(r["input"] == str(video) for r in rows)
    assert rows[1]["outputs"] == "clip_000002_disp.png;clip_000002_depth.npy"
    assert float(rows[0]["depth_factor"]) == 1.0 and rows[0]["depth_kind"] == "relative"


def test_video_colour_range_is_fixed_over_sampled_frames(ckpt, model, video, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(video), "-k", str(ckpt), "-o", str(out), "--cmap", "viridis", "--device", "cpu", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["color"]["range"] == "fixed" and summary["color"]["cmap"] == "viridis"
    # independent oracle: 6 frames <= 16, so every frame is sampled
    frames = _read_video(video)
    _, disps = model.predict_depth(frames, return_disparity=True)
    vmin, vmax = float(disps.min()), float(np.percentile(disps.reshape(-1), 95))
    assert summary["color"]["vmin"] == pytest.approx(vmin, rel=1e-5)
    assert summary["color"]["vmax"] == pytest.approx(vmax, rel=1e-5)
    for i in (0, 5):
        png = np.asarray(Image.open(out / f"clip_{i:06d}_disp.png"))
        expected = colorize_disparity(disps[i], vmin=vmin, vmax=vmax, cmap="viridis")
        assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1


def test_single_images_keep_a_per_frame_range_and_colorbar_widens(ckpt, model, tmp_path):
    folder = _frames_folder(tmp_path / "seq" / "images", n=2)
    out = tmp_path / "out"
    assert main(["predict", str(folder), "-k", str(ckpt), "-o", str(out), "--device", "cpu", "-q"]) == 0
    img = np.asarray(Image.open(folder / "000001.png"))
    _, disp = model.predict_depth(img, return_disparity=True)
    expected = colorize_disparity(disp, vmax=float(np.percentile(disp, 95)))
    png = np.asarray(Image.open(out / "000001_disp.png"))
    # batched vs single forward passes differ by float noise: a few pixels may land on the next colour
    assert np.mean(np.abs(png.astype(int) - expected.astype(int)) > 1) < 1e-3
    out2 = tmp_path / "out2"
    assert main(["predict", str(folder), "-k", str(ckpt), "-o", str(out2), "--colorbar", "--device", "cpu", "-q"]) == 0
    bar = np.asarray(Image.open(out2 / "000001_disp.png"))
    assert bar.shape[0] == 64 and bar.shape[1] > 192
    assert np.array_equal(bar[:, :192], png)


def test_unknown_cmap_is_a_plain_error(ckpt, video, tmp_path, capsys):
    rc = main(["predict", str(video), "-k", str(ckpt), "-o", str(tmp_path / "o"), "--cmap", "nope", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "'nope'" in err and "Error" not in err
    assert not (tmp_path / "o").exists()


def test_side_by_side_from_a_frame_folder(ckpt, tmp_path):
    folder = _frames_folder(tmp_path / "drive_a" / "images", n=3)
    out = tmp_path / "out"
    rc = main(["predict", str(folder), "-k", str(ckpt), "-o", str(out), "--side-by-side", "--fps", "5", "--device", "cpu", "-q"])
    assert rc == 0
    frames = _read_video(out / "drive_a_side_by_side.mp4")
    assert len(frames) == 3 and frames[0].shape == (64, 384, 3)


def test_quiet_prints_nothing_and_json_only_on_request(ckpt, tmp_path, capsys):
    folder = _frames_folder(tmp_path / "f", n=1, h=40, w=60)  # far from the training aspect: would warn
    assert main(["predict", str(folder), "-k", str(ckpt), "-o", str(tmp_path / "o1"), "--device", "cpu", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["predict", str(folder), "-k", str(ckpt), "-o", str(tmp_path / "o2"), "--device", "cpu", "-q", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["input"]["frames"] == 1
    assert main(["predict", str(folder), "-k", str(ckpt), "-o", str(tmp_path / "o3"), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "index:" in captured.out and not captured.out.lstrip().startswith("{")
    assert "loading" in captured.err and "--keep-aspect" in captured.err


class TestAspect:
    def test_cli_warns_and_keep_aspect_silences(self, ckpt, tmp_path, capsys):
        image = tmp_path / "phone.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
        assert main(["predict", str(image), "-k", str(ckpt), "-o", str(tmp_path / "a"), "--npy", "--device", "cpu"]) == 0
        err = capsys.readouterr().err
        assert "phone.png is 64x48" in err and "192x64" in err and "--keep-aspect" in err
        assert main(["predict", str(image), "-k", str(ckpt), "-o", str(tmp_path / "b"), "--npy", "--keep-aspect",
                     "--device", "cpu"]) == 0
        assert "keep-aspect" not in capsys.readouterr().err
        assert np.load(tmp_path / "b" / "phone_depth.npy").shape == (48, 64)

    def test_api_warning_and_keep_aspect_equals_manual_padding(self, model):
        rng = np.random.default_rng(2)
        img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        with pytest.warns(AspectRatioWarning, match="keep_aspect=True"):
            model.predict_depth(img)
        with warnings.catch_warnings():
            warnings.simplefilter("error", AspectRatioWarning)
            kept = model.predict_depth(img, keep_aspect=True)
            # oracle: pad by hand to the 3:1 training aspect (120x40, edge pixels repeated), predict, crop
            padded = np.pad(img, ((0, 0), (30, 30), (0, 0)), mode="edge")
            manual = model.predict_depth(padded)[:, 30:90]
        assert kept.shape == (40, 60)
        np.testing.assert_allclose(kept, manual, rtol=1e-5, atol=1e-6)
        # close to the training aspect (within 15 %): no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error", AspectRatioWarning)
            model.predict_depth(rng.integers(0, 256, (64, 180, 3), dtype=np.uint8))

    def test_predict_points_accepts_the_cli_forms(self, model, tmp_path):
        img = np.random.default_rng(3).integers(0, 256, (64, 192, 3), dtype=np.uint8)
        K = np.array([[100.0, 0, 96], [0, 100.0, 32], [0, 0, 1]])
        ref, _ = model.predict_points(img, K)
        (tmp_path / "K.txt").write_text("100\n100\n96\n32\n")
        for form in ([100, 100, 96, 32], "100 100 96 32", tmp_path / "K.txt", str(tmp_path / "K.txt")):
            pts, _ = model.predict_points(img, form)
            np.testing.assert_array_equal(pts, ref)
        with pytest.raises(ValueError, match="no_such"):
            model.predict_points(img, str(tmp_path / "no_such.txt"))


def test_trajectory_has_its_own_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "trajectory", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "featdepth predict trajectory" in text and "trajectory_kitti.txt" in text
    assert "--ply" not in text and text.count("featdepth predict trajectory ") >= 2


def test_trajectory_plot_in_relative_units_titled_by_sequence(ckpt, video, tmp_path, capsys):
    out = tmp_path / "traj"
    assert main(["predict", "trajectory", str(video), "-k", str(ckpt), "-o", str(out), "--device", "cpu", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["units"] == "relative units" and summary["sequence"] == "clip"
    assert main(["predict", "trajectory", str(video), "-k", str(ckpt), "-o", str(out), "--scale", "2", "--device", "cpu",
                 "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["units"] == "scaled units"


def test_every_on_an_image_folder_keeps_source_numbers(ckpt, tmp_path):
    folder = _frames_folder(tmp_path / "seq" / "images", n=5)
    source = resolve_inputs([folder], every=2)
    assert source.names == ["000000", "000002", "000004"] and source.source_frames == [0, 2, 4]
    assert source.title == "seq"  # a folder called images is named after its sequence
    assert resolve_inputs([folder], every=2, max_frames=2).source_frames == [0, 2]
