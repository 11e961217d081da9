"""`featdepth data from-video`: a short generated video -> the folder format, read back by FolderDataset."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
from PIL import Image

from featdepth.cli import main
from featdepth.data import FolderDataset
from featdepth.data.io import read_intrinsics_file
from featdepth.data.video import VideoError, frames_from_video

av = pytest.importorskip("av", reason="PyAV (the 'video' extra) is needed to write the test video")


def _write_video(path, n=7, h=72, w=100):
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        rgb = np.stack([127 + 100 * np.sin((xx + 4 * i) / 6.0), 127 + 100 * np.cos(yy / 5.0), (xx * 2 + i * 30) % 255], -1)
        frames.append(rgb.astype(np.uint8))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "walk.mp4"
    _write_video(path)
    return path


def _decoded(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_cli_every_max_frames_resize(video, tmp_path, capsys):
    out = tmp_path / "my_data" / "walk"
    rc = main(["data", "from-video", str(video), "--intrinsics", "60 58 50 36", "--out", str(out), "--every", "2",
               "--max-frames", "3", "--resize", "64x48", "-q"])
    assert rc == 0 and capsys.readouterr() == ("", "")
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["000000.png", "000002.png", "000004.png"]  # source frame numbers
    decoded = _decoded(video)
    for name in names:
        stored = np.asarray(Image.open(out / "images" / name))
        assert stored.shape == (48, 64, 3)
        # oracle: the decoded source frame resized with PIL
        expected = np.asarray(Image.fromarray(decoded[int(name[:6])]).resize((64, 48), Image.BILINEAR, reducing_gap=None))
        assert np.abs(stored.astype(int) - expected.astype(int)).max() <= 1
    K = read_intrinsics_file(out / "intrinsics.txt")
    np.testing.assert_allclose(K, [[60 * 0.64, 0, 50 * 0.64], [0, 58 * 48 / 72, 36 * 48 / 72], [0, 0, 1]], rtol=1e-6)
    meta = json.loads((out / "from_video.json").read_text())
    assert meta["frames"] == 3 and meta["every"] == 2 and meta["stored_size"] == [64, 48] and meta["video_size"] == [100, 72]
    # the folder format is what training reads
    ds = FolderDataset(tmp_path / "my_data", [0, -1, 1], 32, 64, is_train=False)
    assert len(ds) == 1  # only the middle frame has both neighbours


def test_intrinsics_file_and_native_size(video, tmp_path):
    kfile = tmp_path / "K.txt"
    kfile.write_text("60 0 50\n0 60 36\n0 0 1\n")
    summary = frames_from_video(video, tmp_path / "seq", kfile, image_format="jpg")
    assert summary["frames"] == 7 and summary["stored_size"] == [100, 72]
    np.testing.assert_allclose(read_intrinsics_file(tmp_path / "seq" / "intrinsics.txt"), read_intrinsics_file(kfile))
    assert len(list((tmp_path / "seq" / "images").glob("*.jpg"))) == 7


def test_errors_name_the_problem(video, tmp_path, capsys, monkeypatch):
    with pytest.raises(VideoError, match="principal point"):
        frames_from_video(video, tmp_path / "a", "600 600 500 360")  # intrinsics of another resolution
    with pytest.raises(VideoError, match="WIDTHxHEIGHT"):
        frames_from_video(video, tmp_path / "b", "60 60 50 36", resize="64by48")
    rc = main(["data", "from-video", str(tmp_path / "none.mp4"), "--intrinsics", "60 60 50 36", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 1 and "none.mp4" in err and "Error" not in err
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    rc = main(["data", "from-video", str(video), "--intrinsics", "60 60 50 36", "--out", str(tmp_path / "d")])
    assert rc == 1 and 'pip install "featdepth[video]"' in capsys.readouterr().err
