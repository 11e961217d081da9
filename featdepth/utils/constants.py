"""Constants shared across the package (see docs/method.md for where each comes from)."""

#: KITTI's real stereo baseline in metres; FeatDepth's 0.015 m convention gives the factor 0.54/0.015 = 36.
KITTI_BASELINE = 0.54

#: Height of KITTI's cameras above the road in metres (the recording platform's sensor setup): the default
#: camera height of the metric scale recovery (``--scaling camera-height``, ``--camera-height``).
KITTI_CAMERA_HEIGHT = 1.65

#: monodepth2/FeatDepth's normalised KITTI intrinsics ``(fx/W, fy/H, cx/W, cy/H)``.
KITTI_NORMALIZED_K = (0.58, 1.92, 0.5, 0.5)

#: The real stereo baseline (metres) of the data each dataset type provides (folder data: unknown).
REAL_BASELINES = {"kitti_raw": KITTI_BASELINE, "kitti_odom": KITTI_BASELINE, "synthetic": 0.54}
