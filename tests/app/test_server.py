"""`featdepth app` served on a free localhost port in a subprocess, called through gradio_client's named endpoints."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featdepth.app import handlers
from tests.app.conftest import HAS_GRADIO, NO_GRADIO

pytestmark = pytest.mark.skipif(not HAS_GRADIO, reason=NO_GRADIO)


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def _ply_vertex_count(path: str) -> int:
    header = Path(path).read_bytes().split(b"end_header\n", 1)[0].decode("ascii")
    return int(header.split("element vertex ")[1].split()[0])


def test_image_depth_point_cloud_and_npy(client, examples_dir):
    from gradio_client import handle_file

    frame = handlers.example_frames(examples_dir)[0]
    colour, npy, ply, summary = client.predict(handle_file(str(frame)), None, None, None, None, None,
                                               api_name="/predict_image")
    w, h = Image.open(frame).size
    assert np.asarray(Image.open(colour)).shape == (h, w, 3)
    depth = np.load(npy)
    assert depth.shape == (h, w) and depth.dtype == np.float32 and np.isfinite(depth).all() and depth.min() > 0
    assert _ply_vertex_count(ply) == h * w
    assert summary["size"] == f"{w}x{h}" and summary["units"] == "relative units"
    assert summary["model"]["training_size"] == "192x64"


def test_bad_files_are_plain_errors_and_the_server_keeps_serving(client, examples_dir, tmp_path, app_server):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    (tmp_path / "notes.txt").write_text("not an image")
    frame = handlers.example_frames(examples_dir)[1]
    data = frame.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    for bad, expected in (("notes.txt", "notes.txt is not an image file that can be read"),
                          ("cut.png", "cut.png is corrupt or truncated")):
        with pytest.raises(AppError) as info:
            client.predict(handle_file(str(tmp_path / bad)), None, None, None, None, None, api_name="/predict_image")
        assert expected in str(info.value) and "Traceback" not in str(info.value)
    with pytest.raises(AppError, match="missing: cy"):
        client.predict(handle_file(str(frame)), 300, 300, 200, None, None, api_name="/predict_image")
    # still serving: a good request after the bad ones
    _, npy, _, summary = client.predict(handle_file(str(frame)), 371.2, 368.64, 320, 96, None, "level",
                                        api_name="/predict_image")
    assert np.load(npy).shape == (192, 640) and summary["intrinsics_px"] == [371.2, 368.64, 320.0, 96.0]
    assert app_server.proc.poll() is None


def test_video_endpoint_and_frame_cap(client, examples_dir, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    sequence = handlers.example_sequence_zip(examples_dir)  # 30 frames; the server takes at most 12
    with pytest.raises(AppError, match="has more than 12 frames, the page's limit"):
        client.predict(handle_file(str(sequence)), api_name="/predict_video")
    short = tmp_path / "short.zip"
    with zipfile.ZipFile(sequence) as src, zipfile.ZipFile(short, "w") as dst:
        for name in sorted(src.namelist())[:6]:
            dst.writestr(name, src.read(name))
    video, plot, files, text = client.predict(handle_file(str(short)), api_name="/predict_video")
    video_path = video["video"] if isinstance(video, dict) else video
    assert Path(video_path).stat().st_size > 1000 and Image.open(plot).size[0] > 100
    names = {Path(f).name for f in files}
    assert {"trajectory_kitti.txt", "trajectory_tum.txt"} <= names
    kitti = next(f for f in files if Path(f).name == "trajectory_kitti.txt")
    assert np.loadtxt(kitti).shape == (6, 12) and "6 frames" in text


def test_checkpoint_info_endpoint(client, app_ckpt):
    info = client.predict(api_name="/checkpoint_info")
    assert info["checkpoint"] == app_ckpt.name and info["stage"] == "depth" and info["metric_factor"] == 1.0
