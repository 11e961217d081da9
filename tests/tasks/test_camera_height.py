"""Metric depth from the camera height everywhere a user needs it: ``Model.predict_depth(camera_height=)``, the
evaluation loop's ``scaling="camera-height"``, folder datasets' ``camera_height.txt``, and the CLI options
(``predict --camera-height``, ``predict trajectory --camera-height``, ``evaluate depth|pose --scaling camera-height``).

The depth network is replaced (monkeypatched ``Model.disparity``) by an exact ground-plane scene, so the recovered
scale has a hand-computed value: a camera ``h0`` network units above a flat road, seen with KITTI's normalised
intrinsics, has ``scale = camera_height / h0``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featdepth
from featdepth.cli.main import main
from featdepth.data import FolderDataset
from featdepth.data.folder import read_camera_height
from featdepth.data.io import DataError
from featdepth.evaluation.loop import CameraHeightInfo, evaluate_depth_batches
from featdepth.inference.model import Model
from featdepth.tasks.evaluate import dataset_camera_heights, evaluate_depth_checkpoint, evaluate_pose_checkpoint
from featdepth.utils.constants import KITTI_NORMALIZED_K
from tests.inference.test_model import make_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

H, W = 64, 192  # the tiny checkpoint's training size
FAR = 50.0  # network units: everything above the horizon


def plane_depth(h0: float, height: int = H, width: int = W) -> np.ndarray:
    """Network-unit depth of a flat road ``h0`` below the camera (KITTI K), ``FAR`` above the horizon."""
    fy, cy = KITTI_NORMALIZED_K[1] * height, KITTI_NORMALIZED_K[3] * height
    v = np.arange(height, dtype=np.float64)[:, None].repeat(width, axis=1)
    with np.errstate(divide="ignore"):
        z = np.where(v > cy + 1, h0 * fy / (v - cy), FAR)
    return np.minimum(z, FAR)


@pytest.fixture
def plane_net(monkeypatch):
    """Replace the depth network: uniform images of red ``c`` show a road ``h0 = 0.5 + 2c`` below the camera;
    images with green > 0.9 show a fronto-parallel wall at 5 units (no ground: rejected)."""

    def disparity(self: Model, images: torch.Tensor) -> torch.Tensor:
        out = []
        for im in images.cpu():
            if float(im[1, 0, 0]) > 0.9:
                z = np.full(im.shape[-2:], 5.0)
            else:
                z = plane_depth(0.5 + 2.0 * float(im[0, 0, 0]), *im.shape[-2:])
            lo, hi = 1.0 / self.network_max_depth, 1.0 / self.network_min_depth
            out.append(torch.from_numpy((1.0 / z - lo) / (hi - lo)).float()[None])
        return torch.stack(out).to(self.device)

    monkeypatch.setattr(Model, "disparity", disparity)


def uniform(red: int, green: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    im = np.zeros((*size, 3), np.uint8)
    im[..., 0], im[..., 1] = red, green
    return im


def h0_of(red: int) -> float:
    return 0.5 + 2.0 * red / 255.0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", stage="baseline", decoder="monodepth2")


@pytest.fixture
def model(ckpt) -> Model:
    return featdepth.load(ckpt, device="cpu", intrinsics="kitti")


# ------------------------------------------------------------------------------------------ Python API
def test_predict_depth_in_metres(plane_net, model):
    image = uniform(128)
    expected = 1.65 / h0_of(128)
    relative = model.predict_depth(image, scale=1.0)
    metric = model.predict_depth(image, camera_height=1.65)
    np.testing.assert_allclose(metric, relative * expected, rtol=1e-3)
    r = model.scale_from_camera_height(image, 1.65)
    assert r.ok and r.scale == pytest.approx(expected, rel=1e-3) and r.predicted_height == pytest.approx(h0_of(128), rel=1e-3)
    # an input of another size with explicit pixel intrinsics: the same scale, the output at the input size
    big = uniform(128, size=(128, 384))
    K = np.array([[0.58 * 384, 0, 0.5 * 384], [0, 1.92 * 128, 0.5 * 128], [0, 0, 1]])
    model.K = None
    out = model.predict_depth(big, camera_height=1.65, K=K)
    assert out.shape == (128, 384)
    np.testing.assert_allclose(out, model.predict_depth(big, scale=expected), rtol=1e-3)
    # a batch: every image its own scale
    batch = model.predict_depth([uniform(40), uniform(200)], camera_height=2.0, K=(0.58 * W, 1.92 * H, 0.5 * W, 0.5 * H))
    for d, red in zip(batch, (40, 200)):
        np.testing.assert_allclose(d, model.predict_depth(uniform(red), scale=2.0 / h0_of(red)), rtol=1e-3)


def test_predict_depth_errors(plane_net, ckpt):
    model = featdepth.load(ckpt, device="cpu")  # no intrinsics
    with pytest.raises(ValueError, match="needs intrinsics"):
        model.predict_depth(uniform(100), camera_height=1.65)
    model.set_intrinsics("kitti")
    for bad in (0, -1.65, float("nan"), "high"):
        with pytest.raises(ValueError, match="camera_height must be"):
            model.predict_depth(uniform(100), camera_height=bad)
    with pytest.raises(ValueError, match="not both"):
        model.predict_depth(uniform(100), camera_height=1.65, scale=2.0)
    with pytest.raises(ValueError, match=r"image 1: cannot recover the metric scale .* no ground plane found"):
        model.predict_depth([uniform(100), uniform(100, green=255)], camera_height=1.65)
    r = model.scale_from_camera_height(uniform(100, green=255), 1.65)
    assert not r.ok and "from vertical" in r.reason


def test_predict_depth_sequence_median(plane_net, model):
    reds = [40, 100, 160, 0]
    frames = [uniform(r) for r in reds] + [uniform(0, green=255)]
    seq = model.predict_depth_sequence(frames, 1.65)
    expected = [1.65 / h0_of(r) for r in reds]
    assert seq.scale.num_accepted == 4 and seq.scale.num_rejected == 1 and seq.scale.rejected[0][0] == 4
    assert seq.scale.scale == pytest.approx(float(np.median(expected)), rel=1e-3)
    assert seq.depth.shape == (5, H, W)
    np.testing.assert_allclose(seq.depth[0], model.predict_depth(frames[0], scale=seq.scale.scale), rtol=1e-5)
    with pytest.raises(ValueError, match="no frame was accepted"):
        model.predict_depth_sequence([uniform(0, green=255)], 1.65)


# ------------------------------------------------------------------------------------------ the loop
def test_loop_camera_height_scaling_against_hand_computation(plane_net, model):
    reds = [40, 100, 160]
    images = torch.stack([torch.from_numpy(uniform(r)).permute(2, 0, 1).float() / 255.0 for r in reds]
                         + [torch.from_numpy(uniform(0, green=255)).permute(2, 0, 1).float() / 255.0])
    heights = [1.65, 1.65, 1.2, 1.2]  # two sequences with their own camera heights
    names = ["a", "a", "b", "b"]
    truth = []  # metric GT: the scene at the true scale, but the far region at 30 m (so median != camera height)
    for red, h in zip(reds, heights):
        g = plane_depth(h0_of(red)) * h / h0_of(red)
        g[plane_depth(1.0) >= FAR] = 30.0
        truth.append(g.astype(np.float32))
    truth.append(np.full((H, W), 7.0, np.float32))  # the wall frame
    K = torch.tensor([[0.58 * W, 0, 0.5 * W], [0, 1.92 * H, 0.5 * H], [0, 0, 1.0]]).expand(4, 3, 3)
    batches = [(images[:2], truth[:2], CameraHeightInfo(K[:2], heights[:2], names[:2])),
               (images[2:], truth[2:], CameraHeightInfo(K[2:], heights[2:], names[2:]))]
    result, disps = evaluate_depth_batches(model, batches, protocol="uncropped", scaling="camera-height",
                                           camera_height_scale="frame")
    rep = result.scale_recovery
    scales = [h / h0_of(r) for r, h in zip(reds, heights)] + [1.2 / h0_of(160)]  # the wall: sequence b's median
    np.testing.assert_allclose(rep["scales"], scales, rtol=1e-3)
    assert rep["num_rejected"] == 1 and rep["rejected"][0]["index"] == 3 and rep["recovered"][3] is None
    assert rep["per_sequence"]["b"]["num_accepted"] == 1 and rep["per_sequence"]["a"]["camera_height"] == 1.65
    # per sequence (the default): sequence a's two images both take the median (= mean) of their two scales
    seq_scales = [(scales[0] + scales[1]) / 2] * 2 + [scales[2]] * 2

    def hand_abs_rel(used: list[float]) -> tuple[float, list[float]]:
        """abs_rel by hand: network depth (1 / scaled disparity) times the scale, clamped to [1e-3, 80]."""
        abs_rels, ratios = [], []
        for i, s in enumerate(used):
            z = np.minimum(np.where(i == 3, 5.0, plane_depth(h0_of(reds[min(i, 2)]))), FAR)
            pred = np.clip(z * s, 1e-3, 80.0)
            mask = (truth[i] > 1e-3) & (truth[i] < 80.0)
            abs_rels.append(np.mean(np.abs(truth[i][mask] - pred[mask]) / truth[i][mask]))
            ratios.append(np.median(truth[i][mask]) / np.median(z[mask]))
        return float(np.mean(abs_rels)), ratios

    frame_abs_rel, med_ratio = hand_abs_rel(scales)
    seq_abs_rel, _ = hand_abs_rel(seq_scales)
    assert abs(seq_abs_rel - frame_abs_rel) > 0.01  # the two modes differ on this data
    assert result.metrics["abs_rel"] == pytest.approx(frame_abs_rel, rel=1e-3, abs=1e-5)
    assert rep["scale_mode"] == "frame" and rep["metrics_per_frame"]["abs_rel"] == result.metrics["abs_rel"]
    assert rep["metrics_per_sequence"]["abs_rel"] == pytest.approx(seq_abs_rel, rel=1e-3, abs=1e-5)
    by_seq, seq_disps = evaluate_depth_batches(model, batches, protocol="uncropped", scaling="camera-height")
    assert by_seq.scale_recovery["scale_mode"] == "sequence"
    assert by_seq.metrics["abs_rel"] == pytest.approx(seq_abs_rel, rel=1e-3, abs=1e-5)
    np.testing.assert_allclose(by_seq.scale_recovery["scales_used"], seq_scales, rtol=1e-3)
    np.testing.assert_allclose(seq_disps[0] * seq_scales[0], disps[0] * scales[0], rtol=1e-4)
    with pytest.raises(ValueError, match="camera_height_scale must be one of sequence, frame"):
        evaluate_depth_batches(model, batches, scaling="camera-height", camera_height_scale="image")
    assert result.scaling == "camera-height" and disps.shape == (4, H, W)
    ratio = np.array(scales) / np.array(med_ratio)
    assert rep["scale_over_median_ratio"]["mean"] == pytest.approx(ratio.mean(), rel=1e-3)
    assert rep["scale_over_median_ratio"]["std"] == pytest.approx(ratio.std(), rel=1e-2, abs=1e-5)
    # the same predictions with median scaling, by hand
    med_abs_rel = []
    for i, r in enumerate(med_ratio):
        z = np.minimum(np.where(i == 3, 5.0, plane_depth(h0_of(reds[min(i, 2)]))), FAR)
        mask = (truth[i] > 1e-3) & (truth[i] < 80.0)
        pred = np.clip(z * r, 1e-3, 80.0)
        med_abs_rel.append(np.mean(np.abs(truth[i][mask] - pred[mask]) / truth[i][mask]))
    assert rep["median_scaling"]["metrics"]["abs_rel"] == pytest.approx(np.mean(med_abs_rel), rel=1e-3, abs=1e-5)
    assert "scale_recovery" in result.as_dict()
    with pytest.raises(ValueError, match="CameraHeightInfo"):
        evaluate_depth_batches(model, [(images[:1], truth[:1])], scaling="camera-height")


# ------------------------------------------------------------------------------------------ folder datasets
def write_folder_sequence(root: Path, name: str, reds: list[int], height: float | None) -> Path:
    seq = root / name
    (seq / "images").mkdir(parents=True)
    (seq / "depth").mkdir()
    for i, red in enumerate(reds):
        Image.fromarray(uniform(red, size=(2 * H, 2 * W))).save(seq / "images" / f"{i:06d}.png")
        gt = plane_depth(h0_of(red), 2 * H, 2 * W) * (height or 1.65) / h0_of(red)
        np.save(seq / "depth" / f"{i:06d}.npy", np.where(gt >= FAR * (height or 1.65) / h0_of(red), 0, gt).astype(np.float32))
    K = np.array([[0.58 * 2 * W, 0, 0.5 * 2 * W], [0, 1.92 * 2 * H, 0.5 * 2 * H], [0, 0, 1]])
    np.savetxt(seq / "intrinsics.txt", K)
    if height is not None:
        (seq / "camera_height.txt").write_text(f"{height}\n")
    return seq


def test_folder_dataset_reads_camera_height(tmp_path):
    write_folder_sequence(tmp_path, "s1", [50], 1.3)
    write_folder_sequence(tmp_path, "s2", [50], None)
    ds = FolderDataset(tmp_path, [0], H, W)
    assert [ds.camera_height(it) for it in ds.items] == [1.3, None]
    with pytest.raises(ValueError, match=r"'s2' has no recorded camera height: pass --camera-height .*camera_height.txt"):
        dataset_camera_heights(ds)
    assert dataset_camera_heights(ds, 2.0) == ([2.0, 2.0], ["s1", "s2"])
    with pytest.raises(ValueError, match="must be"):
        dataset_camera_heights(ds, -1.0)
    # the synthetic generator's meta.json stands in for sequences generated before camera_height.txt
    (tmp_path / "s2" / "meta.json").write_text(json.dumps({"generator": "featdepth.data.synthetic", "camera_height": 1.7}))
    assert read_camera_height(tmp_path / "s2") == 1.7
    for bad in ("0", "-1.5", "1.6 1.7", "tall"):
        (tmp_path / "s1" / "camera_height.txt").write_text(bad)
        with pytest.raises(DataError, match="camera_height.txt"):
            read_camera_height(tmp_path / "s1")


def test_synthetic_generator_writes_camera_height(tmp_path):
    from featdepth.data.synthetic import SynthConfig, write_sequence

    seq = write_sequence(tmp_path / "seq", SynthConfig(height=32, width=96, num_frames=1, stereo=False, supersample=1,
                                                       camera_height=1.4))
    assert float((seq / "camera_height.txt").read_text()) == 1.4
    assert json.loads((seq / "meta.json").read_text())["camera_height"] == 1.4
    assert read_camera_height(seq) == 1.4


# ------------------------------------------------------------------------------------------ CLI
def test_cli_evaluate_depth_camera_height(plane_net, ckpt, tmp_path, capsys):
    root = tmp_path / "data"
    write_folder_sequence(root, "s1", [40, 120, 200], 1.4)
    base = ["evaluate", "depth", "--checkpoint", str(ckpt), "--data-path", str(root), "--dataset", "folder",
            "--device", "cpu", "--quiet", "--protocol", "eigen_benchmark"]
    out = tmp_path / "m.json"
    # the default: one scale per sequence (the median of its frames'), as `predict --camera-height` for a video
    assert main(base + ["--scaling", "camera-height", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scale per sequence used; abs_rel with each sequence's median scale" in printed
    rep = json.loads(out.read_text())
    assert rep["scale_recovery"]["scale_mode"] == "sequence"
    np.testing.assert_allclose(rep["scale_recovery"]["scales_used"], [1.4 / h0_of(120)] * 3, rtol=1e-3)
    # these frames were made with three different scales: each frame's own scale is exact
    assert main(base + ["--scaling", "camera-height", "--camera-height-scale", "frame", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "camera-height scaling (1.4 m" in printed and "recovered scale / median-scaling ratio: mean" in printed
    rep = json.loads(out.read_text())
    assert rep["scale_recovery"]["scale_mode"] == "frame" and rep["scale_recovery"]["height_from"] == "plane"
    assert main(base + ["--scaling", "camera-height", "--camera-height-scale", "frame", "--height-from", "level",
                        "--json", str(out)]) == 0
    level = json.loads(out.read_text())["scale_recovery"]
    assert level["height_from"] == "level" and "height from the ground level" in capsys.readouterr().out
    np.testing.assert_allclose(level["scales"], rep["scale_recovery"]["scales"], rtol=1e-6)  # a level road: the same
    assert rep["scaling"] == "camera-height" and rep["source"]["camera_height"] == {"s1": 1.4}
    np.testing.assert_allclose(rep["scale_recovery"]["scales"], [1.4 / h0_of(r) for r in (40, 120, 200)], rtol=1e-3)
    assert rep["metrics"]["abs_rel"] < 0.05  # the GT is the same scene in metres (resampling errors only)
    assert rep["scale_recovery"]["scale_over_median_ratio"]["mean"] == pytest.approx(1.0, abs=0.03)
    # --camera-height overrides camera_height.txt; a folder without one needs it; bad values
    assert main(base + ["--scaling", "camera-height", "--camera-height-scale", "frame", "--camera-height", "2.8",
                        "--json", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["abs_rel"] == pytest.approx(1.0, abs=0.05)  # twice too deep
    (root / "s1" / "camera_height.txt").unlink()
    assert main(base + ["--scaling", "camera-height"]) != 0
    assert "no recorded camera height" in capsys.readouterr().err
    for bad in ("0", "-1"):
        with pytest.raises(SystemExit):
            main(base + ["--scaling", "camera-height", "--camera-height", bad])
        assert "camera height must be > 0" in capsys.readouterr().err


def test_cli_predict_camera_height(plane_net, ckpt, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    reds = [60, 100, 140]
    for i, red in enumerate(reds):
        Image.fromarray(uniform(red, size=(2 * H, 2 * W))).save(folder / f"{i:03d}.png")
    Image.fromarray(uniform(0, green=255, size=(2 * H, 2 * W))).save(folder / "003.png")
    out = tmp_path / "out"
    rc = main(["predict", str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--npy", "--png16", "--ply",
               "--kitti-intrinsics", "--camera-height", "1.65", "--device", "cpu", "-q", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    scale = float(np.median([1.65 / h0_of(r) for r in reds]))
    ch = summary["camera_height"]
    assert ch["scale"] == pytest.approx(scale, rel=1e-3) and ch["num_rejected"] == 1 and summary["depth_units"] == "metres"
    assert [f["ok"] for f in ch["frames"]] == [True, True, True, False] and ch["height_from"] == "plane"
    # --height-from level: the road is level under a level camera, so the same scale (and it is recorded)
    rc = main(["predict", str(folder), "--checkpoint", str(ckpt), "--out", str(tmp_path / "level"), "--npy",
               "--kitti-intrinsics", "--camera-height", "1.65", "--height-from", "level", "--device", "cpu", "-q", "--json"])
    level = json.loads(capsys.readouterr().out)["camera_height"]
    assert rc == 0 and level["height_from"] == "level" and level["scale"] == pytest.approx(scale, rel=1e-3)
    depth = np.load(out / "000_depth.npy")
    # metres: the road under the camera is 1.65 m below it, so the bottom row lies at 1.65 * fy / (v - cy)
    fy, cy = 1.92 * 2 * H, 0.5 * 2 * H
    true_scale = 1.65 / h0_of(60)
    assert depth[-1].mean() == pytest.approx(scale / true_scale * 1.65 * fy / (2 * H - 1 - cy), rel=0.02)
    png = np.asarray(Image.open(out / "000_depth.png"))
    np.testing.assert_allclose(png / 256.0, depth, atol=1 / 256)
    with open(out / "index.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["frame_scale"]) == pytest.approx(1.65 / h0_of(100), rel=1e-3)
    assert float(rows[1]["depth_factor"]) == pytest.approx(scale, rel=1e-6)
    assert rows[3]["frame_scale"] == "" and "no ground plane" in rows[3]["ground_plane"]
    # bad heights and missing intrinsics: clear errors, nothing written
    for bad in ("0", "-2"):
        rc = main(["predict", str(folder), "--checkpoint", str(ckpt), "--out", str(tmp_path / "bad"), "--npy",
                   "--kitti-intrinsics", "--camera-height", bad, "--device", "cpu", "-q"])
        assert rc != 0 and "--camera-height must be the camera's height above the ground in metres" in capsys.readouterr().err
    rc = main(["predict", str(folder), "--checkpoint", str(ckpt), "--out", str(tmp_path / "bad"), "--npy",
               "--camera-height", "1.65", "--device", "cpu", "-q"])
    assert rc != 0 and "--camera-height needs intrinsics" in capsys.readouterr().err


def test_cli_trajectory_camera_height(plane_net, tmp_path, capsys):
    ckpt = make_tiny_checkpoint(tmp_path / "pose.pt", stage="baseline", decoder="monodepth2",
                                overrides=["data.frame_ids=[0,-1,1]"])
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, red in enumerate([60, 100, 140]):
        Image.fromarray(uniform(red)).save(folder / f"{i:03d}.png")
    runs = {}
    for name, extra in (("plain", ["--scale", "1"]), ("metric", ["--camera-height", "1.65", "--kitti-intrinsics"])):
        assert main(["predict", "trajectory", str(folder), "--checkpoint", str(ckpt), "--out", str(tmp_path / name),
                     "--device", "cpu", "-q", *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "summary.json").read_text())
    scale = 1.65 / h0_of(100)
    assert runs["metric"]["camera_height"]["scale"] == pytest.approx(scale, rel=1e-3)
    assert runs["metric"]["units"] == "m"
    assert runs["metric"]["path_length"] == pytest.approx(runs["plain"]["path_length"] * scale, rel=1e-4)
    capsys.readouterr()


@pytest.mark.realdata
def test_evaluate_pose_camera_height(plane_net, shared_data, tmp_path, monkeypatch):
    from tests.tasks.test_evaluate import build_odometry_layout

    root = build_odometry_layout(shared_data, tmp_path / "odom", 6)
    ckpt = make_tiny_checkpoint(tmp_path / "pose.pt", stage="baseline", decoder="monodepth2",
                                overrides=["data.frame_ids=[0,-1,1]"])
    model = featdepth.load(ckpt, device="cpu")
    plain = evaluate_pose_checkpoint(ckpt, root, "06", out_dir=tmp_path / "plain", model=model)
    metric = evaluate_pose_checkpoint(ckpt, root, "06", out_dir=tmp_path / "metric", model=model,
                                      scaling="camera-height", camera_height=1.65)
    ch = metric.metrics["camera_height"]
    assert ch["num_accepted"] + ch["num_rejected"] == 6 and ch["num_accepted"] >= 1
    assert metric.metrics["kitti"]["align"] == "none"
    np.testing.assert_allclose(metric.pred[:, :3, 3], plain.pred[:, :3, 3] * ch["scale"], rtol=1e-6, atol=1e-9)
    assert plain.metrics["kitti"]["align"] == "scale"
    with pytest.raises(ValueError, match="applies to --scaling camera-height"):
        evaluate_pose_checkpoint(ckpt, root, "06", out_dir=tmp_path / "x", model=model, camera_height=1.65)


def test_height_from_auto_by_dataset(tmp_path):
    """``--height-from auto`` (the evaluation default): level for KITTI and for the synthetic generator's
    sequences (level cameras), plane for other folder data; explicit choices pass through, bad ones are named."""
    from featdepth.tasks.evaluate import resolve_height_from

    write_folder_sequence(tmp_path / "own", "s1", [50], 1.3)
    own = FolderDataset(tmp_path / "own", [0], H, W)
    assert resolve_height_from("auto", own) == "plane"
    for name in ("g1", "g2"):
        seq = write_folder_sequence(tmp_path / "gen", name, [50], 1.65)
        (seq / "meta.json").write_text(json.dumps({"generator": "featdepth.data.synthetic", "camera_height": 1.65}))
    assert resolve_height_from("auto", FolderDataset(tmp_path / "gen", [0], H, W)) == "level"
    write_folder_sequence(tmp_path / "gen", "g3", [50], 1.65)  # one sequence not from the generator: plane
    assert resolve_height_from("auto", FolderDataset(tmp_path / "gen", [0], H, W)) == "plane"
    assert resolve_height_from("auto", None) == "level"  # KITTI odometry
    assert resolve_height_from("plane", None) == "plane" and resolve_height_from("level", own) == "level"
    with pytest.raises(ValueError, match="height_from must be 'level' or 'plane', got 'tilted'"):
        resolve_height_from("tilted", own)
