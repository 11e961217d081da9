"""Datasets report what they indexed and skipped, and refuse inconsistent folders with plain errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featdepth.data import DataError, FolderDataset, KittiRawDataset

H, W = 64, 192  # stored frame size
TRAIN = (32, 96)
DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def _frame(h: int = H, w: int = W, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def make_seq(root: Path, n: int = 5, name: str = "seq_a", depth: bool = False) -> Path:
    seq = root / name
    (seq / "images").mkdir(parents=True)
    for i in range(n):
        _frame(seed=i).save(seq / "images" / f"{i:06d}.png")
    if depth:
        (seq / "depth").mkdir()
        for i in range(n):
            np.save(seq / "depth" / f"{i:06d}.npy", np.full((H, W), 5.0, np.float32))
    (seq / "intrinsics.txt").write_text("100 90 95.5 31.5\n")
    return seq


# ---------------------------------------------------------------- index report
def test_folder_index_report_counts_skips_per_reason(tmp_path, caplog):
    seq = make_seq(tmp_path, n=5, depth=True)
    (seq / "depth" / "000002.npy").unlink()
    with caplog.at_level(logging.INFO, logger="featdepth.data"):
        ds = FolderDataset(seq, [0, -1, 1], *TRAIN, load_depth=True)
    report = ds.index_report
    assert report["candidates"] == 5 and report["indexed"] == 2 and report["skipped"] == 3 == ds.num_skipped
    assert report["skipped_by_reason"] == {"missing neighbour frame": 2, "missing depth file": 1}
    assert report["examples"]["missing depth file"] == [f"seq_a/images/000002.png: no {seq / 'depth' / '000002.npy'}"]
    summary = ds.index_summary()
    assert summary.startswith(f"FolderDataset({seq}): 2 samples indexed, 3 skipped (2 missing neighbour frame")
    assert "1 missing depth file" in summary and summary in caplog.text


def test_kitti_split_lines_naming_missing_frames_are_counted_and_reported(tmp_path, caplog):
    data = tmp_path / "raw" / DRIVE / "image_02" / "data"
    data.mkdir(parents=True)
    for i in range(4):
        _frame(seed=i).save(data / f"{i:010d}.png")
    lines = [f"{DRIVE} {i} l" for i in (1, 2, 7, 9)]  # 7 and 9 do not exist
    with caplog.at_level(logging.INFO, logger="featdepth.data"):
        ds = KittiRawDataset(tmp_path / "raw", lines, [0, -1, 1], *TRAIN, use_calibration_K=False)
    assert len(ds) == 2
    assert ds.index_report["skipped_by_reason"] == {"missing target frame": 2}
    assert f"split line '{DRIVE} 7 l'" in ds.index_summary() and "0000000007.png" in ds.index_summary()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "2 missing target frame" in warnings[0].getMessage()


# ---------------------------------------------------------------- mixed extensions
def test_mixed_png_and_jpg_frames_refused_unless_allowed(tmp_path):
    seq = make_seq(tmp_path, n=4)
    (seq / "images" / "000003.png").unlink()
    _frame(seed=3).save(seq / "images" / "000003.jpg")
    with pytest.raises(DataError) as info:
        FolderDataset(seq, [0, -1, 1], *TRAIN)
    msg = str(info.value)
    assert str(seq / "images") in msg and "000003.jpg" in msg and "000000.png" in msg
    assert "allow_mixed_extensions" in msg
    ds = FolderDataset(seq, [0, -1, 1], *TRAIN, allow_mixed_extensions=True)
    assert len(ds) == 2 and ds[1]["color"][1].shape == (3, *TRAIN)


def test_one_frame_stored_twice_with_different_extensions_is_refused(tmp_path):
    seq = make_seq(tmp_path, n=4)
    _frame(seed=9).save(seq / "images" / "000002.jpg")
    for allow in (False, True):
        with pytest.raises(DataError, match=r"images: 1 frame\(s\) stored twice.*000002\.jpg and 000002\.png"):
            FolderDataset(seq, [0, -1, 1], *TRAIN, allow_mixed_extensions=allow)


# ---------------------------------------------------------------- sizes
def test_frame_of_another_size_is_refused_naming_file_and_sizes(tmp_path):
    seq = make_seq(tmp_path, n=5)
    _frame(8, 8).save(seq / "images" / "000003.png")
    with pytest.raises(DataError) as info:
        FolderDataset(seq, [0, -1, 1], *TRAIN)
    msg = str(info.value)
    assert str(seq / "images" / "000003.png") in msg and "8x8" in msg and "192x64" in msg


def test_kitti_neighbour_of_another_size_is_refused_when_loaded(tmp_path):
    data = tmp_path / "raw" / DRIVE / "image_02" / "data"
    data.mkdir(parents=True)
    for i in range(3):
        _frame(*((8, 8) if i == 2 else (H, W)), seed=i).save(data / f"{i:010d}.png")
    ds = KittiRawDataset(tmp_path / "raw", [f"{DRIVE} 1 l"], [0, -1, 1], *TRAIN, use_calibration_K=False)
    with pytest.raises(DataError, match=r"0000000002\.png is 8x8 but its target frame .*0000000001\.png is 192x64"):
        ds[0]


def test_depth_map_of_another_size_is_refused_naming_the_file(tmp_path):
    seq = make_seq(tmp_path, n=3, depth=True)
    np.save(seq / "depth" / "000001.npy", np.ones((10, 10), np.float32))
    with pytest.raises(DataError) as info:
        FolderDataset(seq, [0], *TRAIN, load_depth=True)
    msg = str(info.value)
    assert str(seq / "depth" / "000001.npy") in msg and "(10, 10)" in msg and "192x64" in msg
    # without load_depth the depth folder is not looked at
    assert len(FolderDataset(seq, [0], *TRAIN)) == 3
