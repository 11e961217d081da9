"""featdepth.geometry: camera intrinsics, rigid poses and depth-based view synthesis.

Conventions are documented in ``docs/design.md`` and in each module's docstring.
"""

from featdepth.geometry.camera import (
    from_homogeneous_intrinsics,
    intrinsics_for_stride,
    intrinsics_from_normalized,
    invert_intrinsics,
    normalize_intrinsics,
    resize_intrinsics,
    scale_intrinsics,
    to_homogeneous_intrinsics,
)
from featdepth.geometry.pose import (
    axis_angle_to_matrix,
    compose_poses,
    invert_pose,
    matrix_to_axis_angle,
    pose_from_axis_angle_translation,
    relative_pose,
)
from featdepth.geometry.warp import (
    BackprojectDepth,
    Project3D,
    Warper,
    backproject,
    pixel_grid,
    pixels_to_grid,
    project,
    transform_points,
    warp,
)

__all__ = [
    # camera
    "intrinsics_from_normalized",
    "normalize_intrinsics",
    "scale_intrinsics",
    "intrinsics_for_stride",
    "resize_intrinsics",
    "to_homogeneous_intrinsics",
    "from_homogeneous_intrinsics",
    "invert_intrinsics",
    # pose
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "pose_from_axis_angle_translation",
    "invert_pose",
    "compose_poses",
    "relative_pose",
    # warp
    "pixel_grid",
    "backproject",
    "transform_points",
    "project",
    "pixels_to_grid",
    "warp",
    "BackprojectDepth",
    "Project3D",
    "Warper",
]

# scale recovery from the camera height (imported last: it builds on camera and warp)
from featdepth.geometry.scale_recovery import (  # noqa: E402
    HEIGHT_FROM,
    PlaneFit,
    ScaleRecoveryResult,
    SequenceScale,
    check_height_from,
    fit_plane,
    recover_scale_from_camera_height,
    recover_scale_from_camera_height_batch,
    sequence_scale,
)

__all__ += [
    "HEIGHT_FROM",
    "PlaneFit",
    "ScaleRecoveryResult",
    "SequenceScale",
    "check_height_from",
    "fit_plane",
    "recover_scale_from_camera_height",
    "recover_scale_from_camera_height_batch",
    "sequence_scale",
]
