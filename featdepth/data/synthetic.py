"""Synthetic driving sequences with ground truth, rendered by our own NumPy ray caster.

The scenes are street canyons: a road plane ``camera_height`` below the camera with an asphalt-like
noise texture and white lane marks, building facades on both sides (some *large uniformly coloured,
textureless walls*, others with window grids or stone blocks), parked cars, poles and bins, and a
smooth sky/fog background at ``max_depth``.  A camera drives forward 0.5-1.2 m per frame, swaying
gently in its lane (a few degrees of yaw) with a small pitch oscillation; an optional right camera
sits ``baseline`` metres to the right (+x of the left camera).  Everything is deterministic from
``SynthConfig.seed``.

Outputs follow the folder format of ``docs/design.md``:

- colour: the average of ``supersample x supersample`` sub-pixel rays (anti-aliased edges);
- depth: z-depth (along the optical axis, not the ray length) of the *pixel-centre* ray, float32
  metres, ``max_depth`` for the far background;
- regions: label of the pixel-centre ray: 0 sky/far, 1 road (incl. kerb and pavement), 2 textureless
  wall, 3 textured wall, 4 object;
- poses: ``T_world_cam`` of the left camera, world = the first camera (frame 0 = identity), so the
  road is the plane ``y = +camera_height`` of the world frame.

Public API: :class:`SynthConfig`, :func:`render_sequence`, :func:`write_sequence`,
:func:`generate_dataset`, plus :func:`save_poses` / :func:`load_poses` (KITTI 12-column files).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from featdepth.data.io import read_kitti_poses
from featdepth.data.synthetic_scene import Renderer, build_scene, camera_path, rot_y
from featdepth.utils.constants import KITTI_NORMALIZED_K

GENERATOR_VERSION = "1"

#: Options of a camera that weaves across the road instead of keeping its lane: heading up to ~11 degrees,
#: up to ~1.2 degrees of turn per frame (the lane-keeping default: ~0.13 degrees, too little for a
#: PoseNet to learn rotation from; docs/experiments.md, "Is rotation learned?"). `featdepth data synth
#: --weave`, `featdepth demo --weave`, or `data.synth_options` in a config.
WEAVE_OPTIONS = {"sway_max_m": 1.5, "sway_period_range": (40.0, 60.0), "yaw_amplitude_deg": 15.0}

__all__ = [
    "SynthConfig",
    "render_sequence",
    "render_rotation_pairs",
    "config_from_meta",
    "write_sequence",
    "generate_dataset",
    "save_poses",
    "load_poses",
    "GENERATOR_VERSION",
    "WEAVE_OPTIONS",
]


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_positive_int(name: str, value: object) -> int:
    if _check_int(name, value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def _check_number(name: str, value: object, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (value <= 0) if positive else (value < 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


@dataclass
class SynthConfig:
    """Parameters of one synthetic sequence.

    Sizes are in pixels, lengths in metres, angles in degrees.  ``intrinsics_norm`` is the
    KITTI-style normalised ``(fx/W, fy/H, cx/W, cy/H)``; the pixel ``K`` is derived from it and the
    image size.  ``speed_range`` bounds the distance travelled per frame (a per-sequence speed is drawn
    inside it and varies slowly by ``speed_jitter``).  ``textureless_fraction`` is the probability
    that a building is a uniformly coloured wall.  ``fog_start`` is the fraction of ``max_depth`` where
    surfaces start to fade into the sky colour.  The camera sways sideways by at most ``sway_max_m``
    with a period drawn from ``sway_period_range`` (its heading follows the path, up to
    ``yaw_amplitude_deg``); the defaults keep it in its lane, turning by ~0.13 degrees per frame.
    """

    height: int = 128
    width: int = 416
    num_frames: int = 100
    stereo: bool = True
    baseline: float = 0.54
    supersample: int = 2
    max_depth: float = 80.0
    camera_height: float = 1.65
    speed_range: tuple[float, float] = (0.5, 1.2)
    speed_jitter: float = 0.08
    yaw_amplitude_deg: float = 3.0
    sway_max_m: float = 0.6
    sway_period_range: tuple[float, float] = (60.0, 140.0)
    pitch_amplitude_deg: float = 0.8
    textureless_fraction: float = 0.5
    facade_range: tuple[float, float] = (5.0, 9.0)
    road_half_width: float = 4.25
    object_density: float = 1.0
    fog_start: float = 0.5
    intrinsics_norm: tuple[float, float, float, float] = KITTI_NORMALIZED_K
    seed: int = 0

    def __post_init__(self) -> None:
        self.speed_range = tuple(float(v) for v in self.speed_range)
        self.facade_range = tuple(float(v) for v in self.facade_range)
        self.sway_period_range = tuple(float(v) for v in self.sway_period_range)
        self.intrinsics_norm = tuple(float(v) for v in self.intrinsics_norm)
        for name in ("height", "width", "num_frames", "supersample"):
            _check_positive_int(name, getattr(self, name))
        _check_int("seed", self.seed)
        for name in ("baseline", "max_depth", "camera_height", "road_half_width"):
            _check_number(name, getattr(self, name), positive=True)
        for name in ("speed_jitter", "yaw_amplitude_deg", "pitch_amplitude_deg", "object_density"):
            _check_number(name, getattr(self, name), positive=False)
        if not 0 <= _check_number("sway_max_m", self.sway_max_m, positive=False) <= 1.5:
            raise ValueError(f"sway_max_m must be in [0, 1.5] (metres; the parked cars stand ~2.3 m from the "
                             f"road's centre), got {self.sway_max_m!r}")
        for name in ("textureless_fraction", "fog_start"):
            value = _check_number(name, getattr(self, name), positive=False)
            if value > 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if len(self.speed_range) != 2 or not 0 < self.speed_range[0] <= self.speed_range[1] or not all(
            np.isfinite(self.speed_range)
        ):
            raise ValueError(f"speed_range must be (min, max) with 0 < min <= max, got {self.speed_range!r}")
        if len(self.sway_period_range) != 2 or not 10 <= self.sway_period_range[0] <= self.sway_period_range[1] \
                or not all(np.isfinite(self.sway_period_range)):
            raise ValueError(f"sway_period_range must be (min, max) metres with 10 <= min <= max, "
                             f"got {self.sway_period_range!r}")
        if len(self.facade_range) != 2 or not self.facade_range[0] <= self.facade_range[1]:
            raise ValueError(f"facade_range must be (near, far) with near <= far, got {self.facade_range!r}")
        if self.facade_range[0] <= self.road_half_width + 0.5:
            raise ValueError(
                f"facade_range {self.facade_range!r}: facades must stand beyond the road edge "
                f"(road_half_width + 0.5 = {self.road_half_width + 0.5})"
            )
        if len(self.intrinsics_norm) != 4 or not all(np.isfinite(self.intrinsics_norm)) or min(self.intrinsics_norm[:2]) <= 0:
            raise ValueError(f"intrinsics_norm must be (fx/W, fy/H, cx/W, cy/H) with fx, fy > 0, got {self.intrinsics_norm!r}")

    def intrinsics(self) -> np.ndarray:
        """Pixel intrinsics ``(3, 3)`` float64 of the rendered images."""
        fxn, fyn, cxn, cyn = self.intrinsics_norm
        return np.array(
            [[fxn * self.width, 0.0, cxn * self.width], [0.0, fyn * self.height, cyn * self.height], [0.0, 0.0, 1.0]]
        )


def _clean(m: np.ndarray) -> np.ndarray:
    m = np.array(m, np.float64)
    m[np.abs(m) < 1e-15] = 0.0
    return m


def _scene(cfg: SynthConfig) -> tuple[np.ndarray, float, Any, Renderer]:
    """The camera path (scene frame), mean speed, scene and renderer of the sequence ``cfg`` describes."""
    rng = np.random.default_rng(cfg.seed)
    path, speed = camera_path(
        rng, cfg.num_frames, cfg.speed_range, cfg.speed_jitter, cfg.yaw_amplitude_deg, cfg.pitch_amplitude_deg,
        cfg.sway_max_m, cfg.sway_period_range,
    )
    z_cams = path[:, 2, 3]
    scene = build_scene(
        rng,
        z_start=float(z_cams.min()) - 25.0,
        z_end=float(z_cams.max()) + cfg.max_depth + 30.0,
        camera_height=cfg.camera_height,
        road_half_width=cfg.road_half_width,
        facade_range=cfg.facade_range,
        textureless_fraction=cfg.textureless_fraction,
        object_density=cfg.object_density,
    )
    renderer = Renderer(scene, cfg.intrinsics(), cfg.height, cfg.width, cfg.supersample, cfg.max_depth,
                        cfg.fog_start * cfg.max_depth)
    return path, speed, scene, renderer


def config_from_meta(meta: dict) -> SynthConfig:
    """The :class:`SynthConfig` a sequence was generated with, from its ``meta.json`` content (options
    added to the generator later take their defaults, which are what older sequences used).

    Raises:
        ValueError: a ``meta`` without a ``config`` mapping, or one with unknown or bad options.
    """
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise ValueError("meta.json has no generator 'config' mapping")
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"meta.json's config has options this generator does not know: {unknown}")
    return SynthConfig(**config)


def render_rotation_pairs(
    config: SynthConfig,
    yaws_deg: Sequence[float] = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0),
    frames: Sequence[int] | None = None,
    forward_m: float = 0.9,
) -> dict:
    """Image pairs of the sequence ``config`` describes with a known extra turn: for each frame ``i`` of
    ``frames`` (default: 5 spread over the sequence) and each yaw ``θ``, image ``a`` is frame ``i`` and image
    ``b`` is seen from ``forward_m`` metres further along the camera's axis, turned by ``θ`` about its
    vertical axis (positive = to the right).

    Returns ``images_a`` / ``images_b`` ``(P, H, W, 3)`` float32 in [0, 1] (P = frames x yaws, frame-major),
    ``T_b_a`` ``(P, 4, 4)`` float64 (the true motion, camera a to camera b) and ``yaw_deg`` ``(P,)``.
    """
    path, _, _, renderer = _scene(config)
    n = len(path)
    if frames is None:
        frames = np.linspace(0, n - 1, 7).round().astype(int)[1:-1].tolist()
    frames = [int(i) for i in frames]
    bad = [i for i in frames if not 0 <= i < n]
    if bad:
        raise ValueError(f"frames {bad} are outside the sequence's 0..{n - 1}")
    images_a, images_b, T, yaw = [], [], [], []
    for i in frames:
        Pa = path[i]
        image_a = renderer.render(Pa[:3, 3], Pa[:3, :3], geometry=False)["image"]
        for theta in yaws_deg:
            Pb = np.eye(4)
            Pb[:3, :3] = Pa[:3, :3] @ rot_y(np.radians(float(theta)))
            Pb[:3, 3] = Pa[:3, 3] + Pa[:3, :3] @ np.array([0.0, 0.0, float(forward_m)])
            images_a.append(image_a)
            images_b.append(renderer.render(Pb[:3, 3], Pb[:3, :3], geometry=False)["image"])
            T.append(np.linalg.inv(Pb) @ Pa)
            yaw.append(float(theta))
    return {"images_a": np.stack(images_a), "images_b": np.stack(images_b), "T_b_a": np.stack(T),
            "yaw_deg": np.array(yaw)}


def render_sequence(config: SynthConfig | None = None) -> dict:
    """Render a sequence in memory.

    Returns a dict with ``images`` ``(N, H, W, 3)`` uint8 (left camera), ``images_right`` (same, only
    when ``config.stereo``), ``depths`` ``(N, H, W)`` float32 z-depth in metres, ``regions``
    ``(N, H, W)`` uint8 labels, ``poses`` ``(N, 4, 4)`` float64 ``T_world_cam`` of the left camera
    (frame 0 = identity), ``K`` ``(3, 3)`` float64 pixel intrinsics and ``meta`` (a dict of the
    generator parameters, see :func:`write_sequence`).
    """
    cfg = config if config is not None else SynthConfig()
    K = cfg.intrinsics()
    path, speed, scene, renderer = _scene(cfg)

    n, h, w = cfg.num_frames, cfg.height, cfg.width
    images = np.empty((n, h, w, 3), np.uint8)
    images_r = np.empty((n, h, w, 3), np.uint8) if cfg.stereo else None
    depths = np.empty((n, h, w), np.float32)
    regions = np.empty((n, h, w), np.uint8)
    for i in range(n):
        R, o = path[i, :3, :3], path[i, :3, 3]
        out = renderer.render(o, R, geometry=True)
        images[i] = np.round(out["image"] * 255.0).astype(np.uint8)
        depths[i] = out["depth"]
        regions[i] = out["regions"]
        if images_r is not None:
            o_r = o + R @ np.array([cfg.baseline, 0.0, 0.0])
            images_r[i] = np.round(renderer.render(o_r, R, geometry=False)["image"] * 255.0).astype(np.uint8)

    inv0 = np.linalg.inv(path[0])
    poses = np.stack([_clean(inv0 @ p) for p in path])
    poses[0] = np.eye(4)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1) if n > 1 else np.zeros(0)
    meta = {
        "generator": "featdepth.data.synthetic",
        "version": GENERATOR_VERSION,
        "config": asdict(cfg),
        "seed": int(cfg.seed),
        "size": [int(h), int(w)],
        "num_frames": int(n),
        "stereo": bool(cfg.stereo),
        "baseline": float(cfg.baseline) if cfg.stereo else None,
        "speed": float(speed),
        "step_min": float(steps.min()) if steps.size else 0.0,
        "step_max": float(steps.max()) if steps.size else 0.0,
        "K": K.tolist(),
        "camera_height": float(cfg.camera_height),
        "max_depth": float(cfg.max_depth),
        "num_boxes": int(scene.num_boxes),
        "depth": "z-depth of the pixel-centre ray (metres), max_depth for the far background",
        "regions": {"0": "sky/far", "1": "road", "2": "textureless wall", "3": "textured wall", "4": "object"},
    }
    result = {"images": images, "depths": depths, "regions": regions, "poses": poses, "K": K, "meta": meta}
    if images_r is not None:
        result["images_right"] = images_r
    return result


def save_poses(path: str | Path, poses: np.ndarray) -> None:
    """Write ``(N, 4, 4)`` poses as KITTI 12-column rows (the 3x4 top, row-major), round-trip exact."""
    rows = np.asarray(poses, np.float64)[:, :3, :4].reshape(-1, 12)
    with open(path, "w") as f:
        for r in rows:
            f.write(" ".join(format(float(v), ".17g") for v in r) + "\n")


def load_poses(path: str | Path) -> np.ndarray:
    """Read a KITTI 12-column pose file into ``(N, 4, 4)`` float64 matrices (the checks of
    :func:`featdepth.data.io.read_kitti_poses`: 12 numbers per line, rotation blocks that are rotations;
    a ``DataError``, a ``ValueError``, names the file and the line)."""
    return read_kitti_poses(path)


def write_sequence(out_dir: str | Path, config: SynthConfig | None = None) -> Path:
    """Render a sequence and write it in the folder format of ``docs/design.md``; returns the folder.

    Files: ``images/%06d.png`` (RGB), ``images_right/%06d.png`` and ``stereo.txt`` (stereo only),
    ``intrinsics.txt`` (3x3 pixel K), ``camera_height.txt`` (the camera's height above the road, metres,
    also ``camera_height`` in ``meta.json``), ``depth/%06d.npy`` (float32 z-depth, metres), ``poses.txt``
    (KITTI 12-column ``T_world_cam`` of the left camera), ``regions/%06d.png`` (uint8 labels) and
    ``meta.json`` (generator parameters: seed, size, speed, baseline, version, ...).  The output is
    byte-identical for the same configuration.
    """
    cfg = config if config is not None else SynthConfig()
    out = Path(out_dir)
    data = render_sequence(cfg)
    for sub in ("images", "depth", "regions") + (("images_right",) if cfg.stereo else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i in range(cfg.num_frames):
        name = f"{i:06d}"
        Image.fromarray(data["images"][i], "RGB").save(out / "images" / f"{name}.png", compress_level=3)
        if cfg.stereo:
            Image.fromarray(data["images_right"][i], "RGB").save(
                out / "images_right" / f"{name}.png", compress_level=3
            )
        Image.fromarray(data["regions"][i], "L").save(out / "regions" / f"{name}.png", compress_level=3)
        np.save(out / "depth" / f"{name}.npy", data["depths"][i])
    K = data["K"]
    with open(out / "intrinsics.txt", "w") as f:
        for r in K:
            f.write(" ".join(format(float(v), ".10g") for v in r) + "\n")
    if cfg.stereo:
        (out / "stereo.txt").write_text(format(float(cfg.baseline), ".10g") + "\n")
    (out / "camera_height.txt").write_text(format(float(cfg.camera_height), ".10g") + "\n")
    save_poses(out / "poses.txt", data["poses"])
    (out / "meta.json").write_text(json.dumps(data["meta"], indent=2, sort_keys=True) + "\n")
    return out


def sequence_seed(seed: int, index: int) -> int:
    """Seed of sequence ``index`` of a dataset generated with ``seed`` (distinct per index and seed)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def generate_dataset(
    root: str | Path, num_sequences: int, seed: int = 0, progress: bool = False, **config_overrides
) -> list[Path]:
    """Write ``num_sequences`` sequences ``root/seq_000``, ``root/seq_001``, ... and return their paths.

    Sequence ``i`` uses ``SynthConfig(seed=sequence_seed(seed, i), **config_overrides)``; the same
    arguments give byte-identical output.  Prints nothing unless ``progress`` (one line per sequence
    on stderr).

    Raises:
        ValueError: ``num_sequences`` < 1 or a bad option (the message names the option and the
            value); checked before anything is written.
    """
    _check_positive_int("num_sequences", num_sequences)
    _check_int("seed", seed)
    if "seed" in config_overrides:
        raise TypeError("pass the dataset seed as `seed`, not as a config override")
    known = {f.name for f in fields(SynthConfig)}
    unknown = set(config_overrides) - known
    if unknown:
        raise TypeError(f"unknown SynthConfig fields: {sorted(unknown)}")
    SynthConfig(seed=0, **config_overrides)  # validate the options before writing anything
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(int(num_sequences)):
        cfg = SynthConfig(seed=sequence_seed(seed, i), **config_overrides)
        p = write_sequence(root / f"seq_{i:03d}", cfg)
        paths.append(p)
        if progress:
            print(f"[synth] {i + 1}/{num_sequences} {p} ({cfg.num_frames} frames)", file=sys.stderr, flush=True)
    return paths
