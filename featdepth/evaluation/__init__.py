"""featdepth.evaluation: KITTI depth and odometry evaluation (NumPy), GT export, trajectories and plots.

- :mod:`.depth_metrics`: Eigen / eigen_benchmark depth protocol, metrics, post-processing, file loaders.
- :mod:`.gt_export`: Velodyne -> depth projection (the standard GT) and ``gt_depths.npz`` export.
- :mod:`.pose_metrics`: 5-frame ATE and KITTI devkit t_err / r_err, Umeyama alignment.
- :mod:`.trajectory`: chaining relative poses, KITTI and TUM trajectory files.
- :mod:`.plots`: trajectory top views and colour-mapped disparities (matplotlib Agg, no pyplot).
"""

from featdepth.evaluation.depth_metrics import (
    DEPTH_METRIC_NAMES,
    DepthEvalResult,
    compute_depth_errors,
    disp_to_depth,
    eigen_mask,
    evaluate_depth,
    evaluate_depth_image,
    garg_crop_mask,
    load_gt_depths,
    load_predictions,
    post_process_disparity,
    resize_bilinear,
)
from featdepth.evaluation.gt_export import (
    export_gt_depths,
    parse_split_line,
    project_velodyne_to_depth,
    read_benchmark_depth_png,
    read_velodyne_points,
    save_gt_depths,
    velodyne_to_image_matrix,
)
from featdepth.evaluation.plots import colorize_disparity, plot_trajectories_topview
from featdepth.evaluation.pose_metrics import (
    KITTI_SEGMENT_LENGTHS,
    accumulate_positions,
    align_trajectory,
    ate_5frame,
    calc_sequence_errors,
    evaluate_ate5,
    kitti_odometry_errors,
    last_frame_from_segment_length,
    rotation_error,
    snippets_from_relative_poses,
    trajectory_distances,
    translation_error,
    umeyama_alignment,
)
from featdepth.evaluation.trajectory import (
    chain_relative_poses,
    quaternion_to_rotation_matrix,
    read_kitti_trajectory,
    read_tum_trajectory,
    relative_poses_from_absolute,
    rotation_matrix_to_quaternion,
    write_kitti_trajectory,
    write_tum_trajectory,
)

__all__ = [
    # depth
    "DEPTH_METRIC_NAMES",
    "DepthEvalResult",
    "compute_depth_errors",
    "disp_to_depth",
    "eigen_mask",
    "evaluate_depth",
    "evaluate_depth_image",
    "garg_crop_mask",
    "load_gt_depths",
    "load_predictions",
    "post_process_disparity",
    "resize_bilinear",
    # GT export
    "export_gt_depths",
    "parse_split_line",
    "project_velodyne_to_depth",
    "read_benchmark_depth_png",
    "read_velodyne_points",
    "save_gt_depths",
    "velodyne_to_image_matrix",
    # pose
    "KITTI_SEGMENT_LENGTHS",
    "accumulate_positions",
    "align_trajectory",
    "ate_5frame",
    "calc_sequence_errors",
    "evaluate_ate5",
    "kitti_odometry_errors",
    "last_frame_from_segment_length",
    "rotation_error",
    "snippets_from_relative_poses",
    "trajectory_distances",
    "translation_error",
    "umeyama_alignment",
    # trajectories
    "chain_relative_poses",
    "quaternion_to_rotation_matrix",
    "read_kitti_trajectory",
    "read_tum_trajectory",
    "relative_poses_from_absolute",
    "rotation_matrix_to_quaternion",
    "write_kitti_trajectory",
    "write_tum_trajectory",
    # plots
    "colorize_disparity",
    "plot_trajectories_topview",
]
