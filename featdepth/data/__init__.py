"""Datasets and data loading: every dataset returns the sample structure of ``docs/design.md``.

Registry: ``DATASETS[name]`` maps a dataset name to its class (``folder``, ``kitti_raw``, ``kitti_odom``).
"""

from featdepth.data.base import SKIP_REASONS, FrameId, MonoDataset, check_image_size, validate_frame_ids
from featdepth.data.folder import FolderDataset, list_sequences, split_sequences
from featdepth.data.io import (
    DataError,
    DataFileNotFoundError,
    load_depth_npy,
    load_image,
    load_regions_png,
    read_baseline,
    read_intrinsics_file,
    read_kitti_poses,
    write_kitti_poses,
)
from featdepth.data.kitti import KITTI_NORMALISED_K, KittiOdometryDataset, KittiRawDataset
from featdepth.data.kitti_calib import (
    RawCalibration,
    read_calib_file,
    read_odometry_calib,
    read_raw_calibration,
)
from featdepth.data.splits import find_split_files, read_split_file, split_file_path, write_split_file
from featdepth.data.transforms import ColorJitterParams, resize_image

DATASETS: dict[str, type[MonoDataset]] = {
    "folder": FolderDataset,
    "kitti_raw": KittiRawDataset,
    "kitti_odom": KittiOdometryDataset,
}

__all__ = [
    "DATASETS",
    "ColorJitterParams",
    "DataError",
    "DataFileNotFoundError",
    "FolderDataset",
    "FrameId",
    "KITTI_NORMALISED_K",
    "KittiOdometryDataset",
    "KittiRawDataset",
    "MonoDataset",
    "RawCalibration",
    "SKIP_REASONS",
    "check_image_size",
    "find_split_files",
    "list_sequences",
    "load_depth_npy",
    "load_image",
    "load_regions_png",
    "read_baseline",
    "read_calib_file",
    "read_intrinsics_file",
    "read_kitti_poses",
    "read_odometry_calib",
    "read_raw_calibration",
    "read_split_file",
    "resize_image",
    "split_file_path",
    "split_sequences",
    "validate_frame_ids",
    "write_kitti_poses",
    "write_split_file",
]
