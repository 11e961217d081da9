"""FolderDataset on tiny sequences written in tmp_path: the sample structure of docs/design.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from featdepth.data import DATASETS, DataError, FolderDataset, MonoDataset, split_sequences
from featdepth.data.io import write_kitti_poses

STORED = (64, 192)  # (H, W) of the stored frames
TRAIN = (32, 96)  # training size
K_STORED = np.array([[100.0, 0.0, 95.5], [0.0, 90.0, 31.5], [0.0, 0.0, 1.0]])
BASELINE = 0.3


def _random_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        poses[i, :3, :3] = q * np.sign(np.linalg.det(q))
        poses[i, :3, 3] = rng.normal(size=3)
    return poses


def make_sequence(
    root: Path,
    name: str = "seq_a",
    n: int = 5,
    stereo: bool = True,
    stereo_txt: bool = True,
    identical_frames: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny sequence in the folder format; returns its folder."""
    rng = np.random.default_rng(seed)
    seq = root / name
    for sub in ("images", "images_right", "depth", "regions"):
        if sub == "images_right" and not stereo:
            continue
        (seq / sub).mkdir(parents=True)
    base = rng.integers(0, 256, (*STORED, 3), dtype=np.uint8)
    for i in range(n):
        frame = base if identical_frames else rng.integers(0, 256, (*STORED, 3), dtype=np.uint8)
        Image.fromarray(frame).save(seq / "images" / f"{i:06d}.png")
        if stereo:
            Image.fromarray(rng.integers(0, 256, (*STORED, 3), dtype=np.uint8)).save(seq / "images_right" / f"{i:06d}.png")
        np.save(seq / "depth" / f"{i:06d}.npy", rng.uniform(0, 50, STORED).astype(np.float32))
        Image.fromarray(rng.integers(0, 5, STORED, dtype=np.uint8), mode="L").save(seq / "regions" / f"{i:06d}.png")
    np.savetxt(seq / "intrinsics.txt", K_STORED)
    if stereo and stereo_txt:
        (seq / "stereo.txt").write_text(f"{BASELINE}\n")
    write_kitti_poses(seq / "poses.txt", _random_poses(n, rng))
    return seq


@pytest.fixture
def seq(tmp_path) -> Path:
    return make_sequence(tmp_path)


def test_registry_has_the_datasets():
    assert DATASETS["folder"] is FolderDataset
    assert {"folder", "kitti_raw", "kitti_odom"} <= set(DATASETS)
    assert all(issubclass(cls, MonoDataset) for cls in DATASETS.values())


def test_sample_structure(seq):
    ds = FolderDataset(seq, [0, -1, 1, "s"], *TRAIN, load_depth=True, load_poses=True, load_regions=True)
    sample = ds[0]
    assert set(sample) == {"color", "color_aug", "K", "inv_K", "stereo_T", "depth_gt", "pose_gt", "regions", "flipped", "index"}
    for key in ("color", "color_aug"):
        assert list(sample[key]) == [0, -1, 1, "s"]
        for t in sample[key].values():
            assert t.shape == (3, *TRAIN) and t.dtype == torch.float32
            assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert sample["K"].shape == (3, 3) and sample["K"].dtype == torch.float32
    assert sample["inv_K"].dtype == torch.float32
    assert sample["stereo_T"].shape == (4, 4) and sample["stereo_T"].dtype == torch.float32
    assert sample["depth_gt"].shape == (1, *STORED) and sample["depth_gt"].dtype == torch.float32
    assert sample["regions"].shape == (1, *STORED) and sample["regions"].dtype == torch.int64
    assert set(sample["pose_gt"]) == {-1, 1}
    assert all(T.shape == (4, 4) and T.dtype == torch.float32 for T in sample["pose_gt"].values())
    assert sample["flipped"].dtype == torch.bool and not bool(sample["flipped"])
    assert sample["index"] == 0
    # evaluation mode: no augmentation
    for f in ds.frame_ids:
        torch.testing.assert_close(sample["color_aug"][f], sample["color"][f], rtol=0, atol=0)
    # the content: the target frame of item 0 is frame 1, resized with Lanczos
    expected = Image.open(seq / "images" / "000001.png").convert("RGB").resize(TRAIN[::-1], Image.Resampling.LANCZOS)
    np.testing.assert_allclose(sample["color"][0].permute(1, 2, 0).numpy() * 255, np.asarray(expected), atol=1e-3)
    np.testing.assert_array_equal(sample["depth_gt"][0].numpy(), np.load(seq / "depth" / "000001.npy"))
    np.testing.assert_array_equal(sample["regions"][0].numpy(), np.asarray(Image.open(seq / "regions" / "000001.png")))


def test_default_collate(seq):
    ds = FolderDataset(seq, [0, -1, 1, "s"], *TRAIN, is_train=True, load_depth=True, load_poses=True)
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=0)))
    assert batch["color"][-1].shape == (2, 3, *TRAIN)
    assert batch["color_aug"]["s"].shape == (2, 3, *TRAIN)
    assert batch["K"].shape == (2, 3, 3) and batch["stereo_T"].shape == (2, 4, 4)
    assert batch["pose_gt"][1].shape == (2, 4, 4) and batch["depth_gt"].shape == (2, 1, *STORED)
    assert batch["flipped"].shape == (2,)


def test_intrinsics_scaled_to_training_size(seq):
    ds = FolderDataset(seq, [0], *TRAIN)
    K = ds[0]["K"].double().numpy()
    sx, sy = TRAIN[1] / STORED[1], TRAIN[0] / STORED[0]
    np.testing.assert_allclose(K, [[100 * sx, 0, 95.5 * sx], [0, 90 * sy, 31.5 * sy], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_allclose(ds[0]["inv_K"].double().numpy() @ K, np.eye(3), atol=1e-6)
    # a different training size (non-uniform scale)
    K2 = FolderDataset(seq, [0], 64, 128)[0]["K"].double().numpy()
    np.testing.assert_allclose(K2[0], [100 * 128 / 192, 0, 95.5 * 128 / 192], rtol=1e-6)
    np.testing.assert_allclose(K2[1], [0, 90, 31.5], rtol=1e-6)


def test_stereo_T_sign_and_flip(seq):
    plain = FolderDataset(seq, [0, -1, 1, "s"], *TRAIN, load_poses=True)
    s0 = plain[0]
    expected = torch.eye(4)
    expected[0, 3] = -BASELINE  # left target: the right camera is at +x, X_right = X_left - b
    torch.testing.assert_close(s0["stereo_T"], expected)

    flipped = FolderDataset(seq, [0, -1, 1, "s"], *TRAIN, is_train=True, flip_prob=1.0, color_jitter_prob=0.0, load_poses=True)
    s1 = flipped[0]
    assert bool(s1["flipped"])
    assert float(s1["stereo_T"][0, 3]) == pytest.approx(+BASELINE)
    for f in plain.frame_ids:  # every frame flipped
        torch.testing.assert_close(s1["color"][f], torch.flip(s0["color"][f], dims=[-1]), rtol=0, atol=0)
        torch.testing.assert_close(s1["color_aug"][f], s1["color"][f], rtol=0, atol=0)
    # cx' = W - 1 - cx for integer pixel centres; fx, fy, cy unchanged
    K0, K1 = s0["K"], s1["K"]
    assert float(K1[0, 2]) == pytest.approx(TRAIN[1] - 1 - float(K0[0, 2]), abs=1e-5)
    torch.testing.assert_close(K1[1], K0[1])
    assert float(K1[0, 0]) == float(K0[0, 0])
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    for f in (-1, 1):
        torch.testing.assert_close(s1["pose_gt"][f], M @ s0["pose_gt"][f] @ M)

    fixed = FolderDataset(seq, [0, "s"], *TRAIN, stereo_baseline=0.015)
    assert float(fixed[0]["stereo_T"][0, 3]) == pytest.approx(-0.015)


def test_missing_neighbours_skipped_at_index_time(seq):
    ds = FolderDataset(seq, [0, -1, 1], *TRAIN)
    assert len(ds) == 3 and ds.num_skipped == 2
    assert [i for _, i in ds.items] == [1, 2, 3]
    assert sorted(i for _, i in ds.skipped) == [0, 4]
    assert len(FolderDataset(seq, [0], *TRAIN)) == 5
    assert len(FolderDataset(seq, [0, 1], *TRAIN)) == 4
    strided = FolderDataset(seq, [0, -1, 1], *TRAIN, frame_stride=2)
    assert [i for _, i in strided.items] == [2]
    # the neighbours really are different frames (never the target reused)
    s = ds[0]
    assert not torch.equal(s["color"][-1], s["color"][0]) and not torch.equal(s["color"][1], s["color"][0])
    # a missing right image skips that target only
    (seq / "images_right" / "000002.png").unlink()
    stereo = FolderDataset(seq, [0, -1, 1, "s"], *TRAIN)
    assert [i for _, i in stereo.items] == [1, 3] and stereo.num_skipped == 3


def test_no_usable_sample_raises(tmp_path):
    seq = make_sequence(tmp_path, n=2)
    with pytest.raises(DataError, match="no usable samples"):
        FolderDataset(seq, [0, -1, 1], *TRAIN)


def test_stereo_requires_right_images_and_baseline(tmp_path):
    mono = make_sequence(tmp_path, "mono_seq", stereo=False)
    with pytest.raises(DataError, match=r"mono_seq.*images_right"):
        FolderDataset(mono, [0, "s"], *TRAIN)
    no_txt = make_sequence(tmp_path, "no_baseline", stereo_txt=False)
    with pytest.raises(DataError, match=r"no_baseline.*stereo.txt"):
        FolderDataset(no_txt, [0, "s"], *TRAIN)
    ds = FolderDataset(no_txt, [0, "s"], *TRAIN, stereo_baseline=0.015)  # a configured baseline is enough
    assert float(ds[0]["stereo_T"][0, 3]) == pytest.approx(-0.015)


def test_pose_gt_matches_poses_file(seq):
    from featdepth.data.io import read_kitti_poses

    poses = read_kitti_poses(seq / "poses.txt")
    ds = FolderDataset(seq, [0, -1, 1], *TRAIN, load_poses=True)
    for index, (_, tgt) in enumerate(ds.items):
        sample = ds[index]
        for f in (-1, 1):
            expected = np.linalg.inv(poses[tgt + f]) @ poses[tgt]
            np.testing.assert_allclose(sample["pose_gt"][f].double().numpy(), expected, atol=1e-5)
            # it maps target-camera points into the source camera: world points agree
            X_tgt = np.array([0.5, -0.2, 3.0, 1.0])
            np.testing.assert_allclose(poses[tgt + f] @ (expected @ X_tgt), poses[tgt] @ X_tgt, atol=1e-9)


def test_jitter_shared_by_frames_and_only_on_color_aug(tmp_path):
    seq = make_sequence(tmp_path, identical_frames=True)
    kwargs = dict(flip_prob=0.0, color_jitter_prob=1.0, generator=torch.Generator().manual_seed(0))
    ds = FolderDataset(seq, [0, -1, 1], *TRAIN, is_train=True, **kwargs)
    ref = FolderDataset(seq, [0, -1, 1], *TRAIN, is_train=False)[0]
    a = ds[0]
    for f in (0, -1, 1):
        torch.testing.assert_close(a["color"][f], ref["color"][f], rtol=0, atol=0)  # color un-augmented
    assert (a["color_aug"][0] - a["color"][0]).abs().max() > 0.01  # color_aug changed
    # the frames are identical, so identical parameters give identical augmented frames
    torch.testing.assert_close(a["color_aug"][-1], a["color_aug"][0], rtol=0, atol=0)
    torch.testing.assert_close(a["color_aug"][1], a["color_aug"][0], rtol=0, atol=0)
    b = ds[0]  # a fresh draw for the next sample
    assert not torch.equal(a["color_aug"][0], b["color_aug"][0])


def test_folder_of_sequences_and_split(tmp_path):
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        make_sequence(tmp_path, name, n=4, seed=seed)
    ds = FolderDataset(tmp_path, [0, -1, 1], *TRAIN)
    assert len(ds) == 6 and ds.num_skipped == 6
    only_b = FolderDataset(tmp_path, [0, -1, 1], *TRAIN, sequences=["b"])
    assert len(only_b) == 2 and [s.name for s in only_b.sequences] == ["b"]
    with pytest.raises(DataError, match="'zz'"):
        FolderDataset(tmp_path, [0], *TRAIN, sequences=["zz"])
    assert split_sequences(tmp_path, val_fraction=0.3) == (["a", "b"], ["c"])
    assert split_sequences(tmp_path, val_names=["a"]) == (["b", "c"], ["a"])
    assert split_sequences(tmp_path / "a") == (["a"], [])


class TestBadInputs:
    @pytest.mark.parametrize("height, width, bad", [(100, 96, "height=100"), (32, 90, "width=90"), (0, 96, "height")])
    def test_size_not_multiple_of_32(self, seq, height, width, bad):
        with pytest.raises(ValueError, match=bad):
            FolderDataset(seq, [0], height, width)

    @pytest.mark.parametrize("frame_ids", [[-1, 0], [0, 0], [0, "x"], []])
    def test_bad_frame_ids(self, seq, frame_ids):
        with pytest.raises(ValueError, match="frame_ids"):
            FolderDataset(seq, frame_ids, *TRAIN)

    def test_missing_frame_after_indexing_names_file(self, seq):
        ds = FolderDataset(seq, [0, -1, 1], *TRAIN)
        (seq / "images" / "000003.png").unlink()
        with pytest.raises(DataError, match="000003.png"):
            ds[1]

    def test_corrupt_image_names_file(self, seq):
        (seq / "images" / "000002.png").write_bytes(b"\x89PNG garbage")
        # The frame sizes are checked from the image headers at construction, so an unreadable
        # header is reported there (it used to surface only when the sample was loaded).
        with pytest.raises(DataError, match="000002.png"):
            FolderDataset(seq, [0, -1, 1], *TRAIN)

    def test_malformed_intrinsics_names_file(self, seq):
        (seq / "intrinsics.txt").write_text("100 90 95\n")
        with pytest.raises(DataError, match=r"intrinsics.txt, line 1"):
            FolderDataset(seq, [0], *TRAIN)
        (seq / "intrinsics.txt").unlink()
        with pytest.raises(FileNotFoundError, match="intrinsics.txt"):
            FolderDataset(seq, [0], *TRAIN)

    def test_poses_file_problems_name_file(self, seq):
        lines = (seq / "poses.txt").read_text().splitlines()
        (seq / "poses.txt").write_text("\n".join(lines[:-1]) + "\n")
        with pytest.raises(DataError, match=r"poses.txt: 4 poses but 5 frames"):
            FolderDataset(seq, [0, -1, 1], *TRAIN, load_poses=True)
        (seq / "poses.txt").write_text("\n".join(lines[:2] + ["1 2 3"] + lines[3:]) + "\n")
        with pytest.raises(DataError, match=r"poses.txt, line 3"):
            FolderDataset(seq, [0, -1, 1], *TRAIN, load_poses=True)

    def test_missing_root_and_empty_folder(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            FolderDataset(tmp_path / "nowhere", [0], *TRAIN)
        with pytest.raises(DataError, match="no sequence folders"):
            FolderDataset(tmp_path, [0], *TRAIN)
