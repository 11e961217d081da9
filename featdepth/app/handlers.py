"""What the app does, as plain functions: no web server and no Gradio here (see :mod:`featdepth.app.ui`).

Every user mistake (not an image, a corrupt file, a video too long, a checkpoint that is not one) raises
:class:`AppError` with a plain message that names the file or the value; the page shows that message.

Outputs are files in a fresh folder per request under the app's work folder (``AppState.work_dir``):

- image: ``<stem>_disp.png`` (colour-mapped disparity, magma, ``vmax`` = 95th percentile, as
  ``featdepth predict``), ``<stem>_depth.npy`` (float32 ``(H, W)`` depth), ``<stem>_depth16.png`` (16-bit,
  ``round(depth × 256)``, the KITTI encoding), ``<stem>.ply`` (one coloured point per pixel, camera frame:
  x right, y down, z forward) and ``<stem>_points.glb`` (the 3-D view: at most :data:`MAX_VIEW_POINTS` points
  on a regular pixel grid, the farthest :data:`VIEW_FAR_PERCENTILE` % dropped so that the sky does not
  squash the scene, in glTF axes: x right, y up, z backward);
- video: the side-by-side video ``input | disparity`` (MP4) and, for models with a PoseNet, the
  trajectory files of :func:`featdepth.tasks.predict.run_trajectory` (KITTI and TUM text files, top-view plot).
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from featdepth.data.io import load_image
from featdepth.data.synthetic import GENERATOR_VERSION, SynthConfig, render_sequence
from featdepth.evaluation.plots import colorize_disparity
from featdepth.geometry.scale_recovery import HEIGHT_FROM
from featdepth.inference.loading import load
from featdepth.inference.model import Model
from featdepth.inference.pointcloud import depth_to_points, ply_bytes
from featdepth.tasks.predict import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    PredictError,
    PredictOptions,
    depth_to_png16,
    import_av,
    resolve_inputs,
    run_predict,
    run_trajectory,
)
from featdepth.utils.constants import KITTI_NORMALIZED_K
from featdepth.utils.files import atomic_write_bytes

__all__ = [
    "AppError",
    "AppState",
    "ImageResult",
    "VideoResult",
    "DEMO_CHECKPOINT",
    "INSTALL_HINT",
    "MAX_VIDEO_FRAMES",
    "MAX_VIEW_POINTS",
    "find_checkpoint",
    "load_model",
    "checkpoint_info",
    "checkpoint_markdown",
    "default_examples_dir",
    "example_frames",
    "example_intrinsics",
    "extract_frames",
    "example_sequence_zip",
    "read_image",
    "resolve_intrinsics",
    "predict_image",
    "predict_video",
    "point_cloud_glb",
]

#: What to install for the app.
INSTALL_HINT = 'pip install "featdepth[app]"'
#: The checkpoint ``featdepth demo`` (``make demo``) writes; the app's default.
DEMO_CHECKPOINT = Path("demo-output") / "checkpoint.pt"
#: Most frames of a video (or zip of frames) the page takes; longer inputs are refused with a message.
MAX_VIDEO_FRAMES = 300
#: Most points in the 3-D view (the .ply download keeps every pixel).
MAX_VIEW_POINTS = 50_000
#: The 3-D view drops the points beyond this percentile of depth (the far background).
VIEW_FAR_PERCENTILE = 97.0
#: Largest image side the page takes (pixels).
MAX_IMAGE_SIDE = 4096
#: Largest total uncompressed size of a zip of frames (bytes).
MAX_ZIP_BYTES = 2 * 1024**3
#: Request folders older than this are deleted when a new request starts (seconds).
KEEP_OUTPUTS_S = 3600.0

ProgressFn = Callable[[float, str], None]


class AppError(ValueError):
    """A bad input or setting, said in plain words (the page shows the message as it is)."""


# ------------------------------------------------------------------------------------------------
# the model and the app's state


def find_checkpoint(checkpoint: str | os.PathLike | None, cwd: str | os.PathLike | None = None) -> Path:
    """The checkpoint to serve: ``checkpoint`` if given, else ``demo-output/checkpoint.pt`` (of ``cwd``).

    Raises:
        AppError: ``checkpoint`` does not exist, or none was given and there is no demo checkpoint
            (the message says how to get one).
    """
    if checkpoint is not None and str(checkpoint).strip():
        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise AppError(f"checkpoint not found: {path}")
        return path
    demo = Path(cwd or ".") / DEMO_CHECKPOINT
    if demo.is_file():
        return demo
    raise AppError(
        f"no --checkpoint given and {DEMO_CHECKPOINT} does not exist; train one with `make demo` "
        "(or `featdepth demo`, about 7 minutes on a CPU), or pass --checkpoint PATH (a featdepth checkpoint, "
        "an official FeatDepth .pth or a monodepth2 model folder)"
    )


def load_model(checkpoint: str | os.PathLike, device: str = "auto") -> Model:
    """:func:`featdepth.load` with every failure turned into an :class:`AppError` naming the file."""
    name = Path(checkpoint).name
    try:
        return load(checkpoint, device=device)
    except FileNotFoundError as exc:
        raise AppError(f"checkpoint not found: {name}") from exc
    except Exception as exc:  # noqa: BLE001 - a user's file: whatever breaks, say so in plain words
        text = str(exc).replace(str(checkpoint), name)
        raise AppError(f"{name} cannot be used as a depth model: {text}") from exc


@dataclass
class AppState:
    """What the page's handlers share: the model (replaceable), the example files, the output folder.

    ``lock`` serialises the model's use and its replacement (the page may get several requests at once).
    """

    model: Model
    work_dir: Path
    examples_dir: Path
    max_frames: int = MAX_VIDEO_FRAMES
    lock: threading.RLock = field(default_factory=threading.RLock)

    def request_dir(self, kind: str) -> Path:
        """A fresh folder for one request's outputs (and delete those older than :data:`KEEP_OUTPUTS_S`)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in self.work_dir.iterdir():
            try:
                if old.is_dir() and now - old.stat().st_mtime > KEEP_OUTPUTS_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.work_dir))


def checkpoint_info(model: Model) -> dict[str, Any]:
    """The checkpoint panel's facts: stage, networks, training size, depth kind and metric factor, intrinsics."""
    d = model.describe()
    h, w = d["input_size"]
    return {
        "checkpoint": Path(str(d["source"])).name,
        "stage": d["stage"],
        "step": d["step"],
        "depth_network": d["depth_network"],
        "pose_network": d["pose_network"] or "none (no trajectories)",
        "training_size": f"{w}x{h}",
        "frame_ids": d["frame_ids"],
        "depth_kind": d["depth_kind"],
        "metric_factor": d["metric_factor"],
        "scale_note": d["scale_note"],
        "depth_range": d["depth_range"],
        "intrinsics_normalised": None if model.K is None else [round(float(v), 6) for v in
                                                                (model.K[0, 0], model.K[1, 1], model.K[0, 2], model.K[1, 2])],
        "device": d["device"],
    }


def checkpoint_markdown(model: Model) -> str:
    """:func:`checkpoint_info` as a Markdown table."""
    info = checkpoint_info(model)
    rows = [
        ("checkpoint", f"`{info['checkpoint']}`" + (f" (step {info['step']})" if info["step"] is not None else "")),
        ("stage", info["stage"]),
        ("depth network", info["depth_network"]),
        ("pose network", info["pose_network"]),
        ("training size", f"{info['training_size']} (inputs are resized to it and depth back to theirs)"),
        ("training frames", ", ".join(str(f) for f in info["frame_ids"])),
        ("depth", f"{info['depth_kind']}: {info['scale_note']}"),
        ("metric factor", f"{info['metric_factor']:g}"),
        ("depth range", f"{info['depth_range'][0]:g} to {info['depth_range'][1]:g}"),
        ("intrinsics", "fx/W, fy/H, cx/W, cy/H = " + ", ".join(f"{v:g}" for v in info["intrinsics_normalised"])
         if info["intrinsics_normalised"] else "none stored (the image tab asks, or assumes KITTI-like ones)"),
        ("device", info["device"]),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


# ------------------------------------------------------------------------------------------------
# examples: frames of the project's own synthetic generator (nothing downloaded)

#: ``(seed, height, width)`` of the example frames.
EXAMPLE_FRAMES = ((1, 192, 640), (4, 192, 640), (7, 192, 640))
#: Frames of the example sequence (zip), its size and seed.
EXAMPLE_SEQUENCE = (0, 30, 128, 416)


def default_examples_dir() -> Path:
    """Where the rendered examples are cached (a temp folder, keyed by the generator's version)."""
    return Path(tempfile.gettempdir()) / f"featdepth-app-examples-v{GENERATOR_VERSION}"


def _write_once(path: Path, make: Callable[[], bytes]) -> Path:
    if not path.is_file():
        atomic_write_bytes(path, make(), durable=False)
    return path


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def example_frames(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """A few street frames rendered by :mod:`featdepth.data.synthetic` (cached as PNGs in ``cache_dir``).

    Their camera: KITTI-like normalised intrinsics :data:`~featdepth.utils.constants.KITTI_NORMALIZED_K`
    (see :func:`example_intrinsics`) at 1.65 m above the road.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_examples_dir()
    out = []
    for seed, h, w in EXAMPLE_FRAMES:
        cfg = SynthConfig(height=h, width=w, num_frames=1, stereo=False, seed=seed)
        out.append(_write_once(folder / f"street_seed{seed}_{w}x{h}.png",
                               lambda cfg=cfg: _png(render_sequence(cfg)["images"][0])))
    return out


def example_intrinsics(path: str | os.PathLike) -> tuple[float, float, float, float]:
    """Pixel ``(fx, fy, cx, cy)`` of an example frame (from its size)."""
    with Image.open(path) as im:
        w, h = im.size
    fx, fy, cx, cy = KITTI_NORMALIZED_K
    return fx * w, fy * h, cx * w, cy * h


def example_sequence_zip(cache_dir: str | os.PathLike | None = None) -> Path:
    """A zip of :data:`EXAMPLE_SEQUENCE` consecutive synthetic frames (``000000.png`` ...), cached."""
    folder = Path(cache_dir) if cache_dir is not None else default_examples_dir()
    seed, n, h, w = EXAMPLE_SEQUENCE

    def make() -> bytes:
        frames = render_sequence(SynthConfig(height=h, width=w, num_frames=n, stereo=False, seed=seed, supersample=1))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for i, frame in enumerate(frames["images"]):
                zf.writestr(f"street/{i:06d}.png", _png(frame))
        return buf.getvalue()

    return _write_once(folder / f"street_seed{seed}_{n}frames_{w}x{h}.zip", make)


# ------------------------------------------------------------------------------------------------
# images


def _display_name(path: str | os.PathLike) -> str:
    return Path(path).name or str(path)


def _safe_stem(path: str | os.PathLike | None) -> str:
    stem = Path(path).stem if path is not None else "image"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    return stem[:60]


def read_image(image: Any) -> np.ndarray:
    """An uploaded image (a file path, or an ``(H, W, 3)`` uint8 array) as RGB uint8 ``(H, W, 3)``.

    Raises:
        AppError: nothing given, not an image, a corrupt or truncated file, or larger than
            :data:`MAX_IMAGE_SIDE` pixels per side.
    """
    if image is None or (isinstance(image, str) and not image.strip()):
        raise AppError("no image: upload an image file (PNG, JPEG, ...) or pick one of the examples")
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise AppError(f"expected an (H, W, 3) 8-bit image array, got shape {arr.shape} and type {arr.dtype}")
        rgb = np.ascontiguousarray(arr[..., :3])
    else:
        name = _display_name(image)
        if Path(image).suffix.lower() in VIDEO_EXTENSIONS + (".zip",):
            raise AppError(f"{name} is a video or an archive: use the video tab for it")
        try:
            with Image.open(image) as probe:  # the size first: refuse huge images before decoding them
                w, h = probe.size
        except Exception as exc:  # noqa: BLE001 - any failure means "not an image we can read"
            raise AppError(f"{name} is not an image file that can be read (supported: "
                           f"{', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})") from exc
        if max(w, h) > MAX_IMAGE_SIDE:
            raise AppError(f"{name} is {w}x{h} pixels; the page takes at most {MAX_IMAGE_SIDE} pixels per side "
                           "(resize it, or use `featdepth predict` for large images)")
        try:
            rgb = np.asarray(load_image(image))
        except Exception as exc:  # noqa: BLE001
            raise AppError(f"{name} is corrupt or truncated: it is an image file but cannot be decoded") from exc
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_IMAGE_SIDE:
        raise AppError(f"the image is {w}x{h} pixels; the page takes at most {MAX_IMAGE_SIDE} pixels per side")
    if min(h, w) < 8:
        raise AppError(f"the image is {w}x{h} pixels: too small for depth (at least 8 pixels per side)")
    return rgb


def _number(value: Any, name: str) -> float | None:
    """A form field as a float, ``None`` when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise AppError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise AppError(f"{name} must be a finite number, got {value!r}")
    return x


def resolve_intrinsics(model: Model, height: int, width: int, fx: Any = None, fy: Any = None, cx: Any = None,
                       cy: Any = None) -> tuple[np.ndarray, str]:
    """Pixel intrinsics ``(3, 3)`` for an image of ``height × width`` and a sentence saying where they come from.

    All four of ``fx, fy, cx, cy`` (pixels of this image; all empty or all 0: not given), else the checkpoint's normalised ``K`` scaled to
    the image, else KITTI-like normalised intrinsics (:data:`~featdepth.utils.constants.KITTI_NORMALIZED_K`)
    with a note that the point cloud's shape is then approximate.

    Raises:
        AppError: only some of the four given, a non-number, or ``fx``/``fy`` not positive.
    """
    values = [_number(v, n) for v, n in ((fx, "fx"), (fy, "fy"), (cx, "cx"), (cy, "cy"))]
    if all(v is None or v == 0 for v in values):  # the page's number fields show empty as 0
        values = [None] * 4
    given = [v is not None for v in values]
    if all(given):
        fx_, fy_, cx_, cy_ = values
        if fx_ <= 0 or fy_ <= 0:
            raise AppError(f"fx and fy must be > 0 (pixels), got fx={fx_:g}, fy={fy_:g}")
        K = np.array([[fx_, 0.0, cx_], [0.0, fy_, cy_], [0.0, 0.0, 1.0]])
        return K, f"intrinsics as given: fx={fx_:g}, fy={fy_:g}, cx={cx_:g}, cy={cy_:g} pixels"
    if any(given):
        missing = ", ".join(n for n, g in zip(("fx", "fy", "cx", "cy"), given) if not g)
        raise AppError(f"give all four intrinsics fx, fy, cx, cy (pixels of this image), or none for the default; "
                       f"missing: {missing}")
    K = model.intrinsics(height, width)
    if K is not None:
        return K, f"the checkpoint's intrinsics scaled to {width}x{height}: fx={K[0, 0]:.1f}, fy={K[1, 1]:.1f} pixels"
    nfx, nfy, ncx, ncy = KITTI_NORMALIZED_K
    K = np.array([[nfx * width, 0.0, ncx * width], [0.0, nfy * height, ncy * height], [0.0, 0.0, 1.0]])
    return K, (f"no intrinsics given and none in the checkpoint: assumed KITTI-like ones (fx = {nfx:g} W, "
               f"fy = {nfy:g} H, centred; fx={K[0, 0]:.1f}, fy={K[1, 1]:.1f} pixels), so the point cloud's shape "
               "is approximate; enter your camera's fx fy cx cy for a faithful one")


def point_cloud_glb(points: np.ndarray, colours: np.ndarray) -> bytes:
    """A GLB (binary glTF) point cloud for the 3-D view.

    Args:
        points: ``(N, 3)`` camera-frame points (x right, y down, z forward).
        colours: ``(N, 3)`` uint8 RGB.

    Returns:
        The GLB bytes, in glTF axes (x right, y up, z backward: ``(x, -y, -z)``) so that the scene stands
        upright in front of the viewer.
    """
    try:
        import trimesh  # lazy: optional dependency (the `app` extra); the handlers import without it
    except ImportError as exc:
        raise AppError(f"the 3-D view needs trimesh: {INSTALL_HINT}") from exc
    p = np.asarray(points, dtype=np.float32) * np.array([1.0, -1.0, -1.0], dtype=np.float32)
    c = np.asarray(colours, dtype=np.uint8)
    rgba = np.concatenate([c, np.full((c.shape[0], 1), 255, np.uint8)], axis=1)
    return trimesh.PointCloud(p, colors=rgba).export(file_type="glb")


def _view_subset(depth: np.ndarray, max_points: int) -> np.ndarray:
    """Flat pixel indices of the 3-D view: a regular grid of at most ``max_points`` pixels, far ones dropped."""
    h, w = depth.shape
    step = max(1, math.ceil(math.sqrt(h * w / max_points)))
    while math.ceil(h / step) * math.ceil(w / step) > max_points:
        step += 1
    v, u = np.mgrid[0:h:step, 0:w:step]
    idx = (v * w + u).ravel()
    d = depth.ravel()[idx]
    keep = d <= np.percentile(d, VIEW_FAR_PERCENTILE)
    return idx[keep]


@dataclass
class ImageResult:
    """One image's outputs (arrays for the page, files for the downloads)."""

    image: np.ndarray  #: (H, W, 3) uint8 input
    colour: np.ndarray  #: (H, W, 3) uint8 colour-mapped disparity
    depth: np.ndarray  #: (H, W) float32
    K: np.ndarray  #: (3, 3) pixel intrinsics used for the points
    units: str  #: "metres" or "relative units"
    colour_png: Path
    depth_npy: Path
    depth_png16: Path
    ply: Path
    glb: Path
    view_points: int
    notes: list[str]
    summary: dict[str, Any]

    @property
    def downloads(self) -> list[Path]:
        return [self.depth_npy, self.depth_png16, self.ply, self.colour_png]

    def markdown(self) -> str:
        s = self.summary
        lines = [
            f"**{s['image']}**: {s['size']}, depth {s['depth_min']:.3g} to {s['depth_max']:.3g} "
            f"(median {s['depth_median']:.3g}) {self.units}",
            f"3-D view: {self.view_points:,} of {s['pixels']:,} points; the .ply holds every pixel",
        ]
        return "\n".join(f"- {line}" for line in lines + self.notes)


def predict_image(
    model: Model,
    image: Any,
    out_dir: str | os.PathLike,
    *,
    fx: Any = None,
    fy: Any = None,
    cx: Any = None,
    cy: Any = None,
    camera_height: Any = None,
    height_from: Any = "plane",
    max_points: int = MAX_VIEW_POINTS,
) -> ImageResult:
    """Depth, colour map, point cloud and download files of one image.

    Args:
        model: the loaded model.
        image: an image file path (an upload) or an ``(H, W, 3)`` uint8 array.
        out_dir: folder for the output files (created).
        fx, fy, cx, cy: pixel intrinsics of this image (all four, or none: see :func:`resolve_intrinsics`).
        camera_height: the camera's height above the ground in metres (optional): the depth is then scaled
            to metres from the ground plane (:meth:`~featdepth.inference.model.Model.scale_from_camera_height`).
            Where no ground plane is found, the depth stays in the model's units and a note says why.
        height_from: how the camera's height above the fitted ground is measured: ``"plane"`` (the plane's
            distance from the camera, any orientation; the default, empty means this) or ``"level"`` (the
            median height of the ground points, for a camera mounted level like KITTI's); README "Level cameras".
        max_points: most points in the 3-D view.

    Raises:
        AppError: a bad image, intrinsics, camera height or ``height_from``.
    """
    rgb = read_image(image)
    h, w = rgb.shape[:2]
    K, k_note = resolve_intrinsics(model, h, w, fx, fy, cx, cy)
    notes = [k_note]
    height = _number(camera_height, "camera height")
    height_from = "plane" if height_from in (None, "") else height_from
    if height_from not in HEIGHT_FROM:
        raise AppError(f"the camera height is measured from 'plane' or 'level', got {height_from!r}")
    scale = None
    metric = model.depth_kind.startswith("metric")
    if height is not None and height != 0:
        if height < 0:
            raise AppError(f"the camera height must be > 0 metres (or empty), got {height:g}")
        result = model.scale_from_camera_height(rgb, height, K=K, height_from=height_from)
        if result.ok:
            scale = float(result.scale)
            metric = True
            notes.append(f"metres from the camera height {height:g} m ({height_from}): ground plane under "
                         f"{100 * result.inlier_fraction:.0f}% of the lower image, "
                         f"{result.angle_from_vertical_deg:.1f}° from level; scale ×{scale:.4g}")
        else:
            notes.append(f"no metric scale from the camera height ({height:g} m): {result.reason}; "
                         "the depth is in the model's units")
    elif not metric:
        notes.append(f"depth is relative ({model.scale_note}); give the camera height for metres")
    depth, disp = model.predict_depth(rgb, return_disparity=True, scale=scale)
    colour = colorize_disparity(disp)  # magma, vmax = the 95th percentile
    points = depth_to_points(depth, K)
    colours = rgb.reshape(-1, 3)
    view = _view_subset(depth, max_points)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _safe_stem(image if not isinstance(image, np.ndarray) else None)
    files = {
        "colour_png": out / f"{stem}_disp.png",
        "depth_npy": out / f"{stem}_depth.npy",
        "depth_png16": out / f"{stem}_depth16.png",
        "ply": out / f"{stem}.ply",
        "glb": out / f"{stem}_points.glb",
    }
    buf = io.BytesIO()
    np.save(buf, depth.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(files["depth_npy"], buf.getvalue(), durable=False)
    atomic_write_bytes(files["colour_png"], _png(colour), durable=False)
    atomic_write_bytes(files["depth_png16"], _png(depth_to_png16(depth)), durable=False)
    atomic_write_bytes(files["ply"], ply_bytes(points, colours), durable=False)
    atomic_write_bytes(files["glb"], point_cloud_glb(points[view], colours[view]), durable=False)
    units = "metres" if metric else "relative units"
    summary = {
        "image": _display_name(image) if not isinstance(image, np.ndarray) else "image",
        "size": f"{w}x{h}",
        "pixels": int(h * w),
        "depth_min": float(depth.min()),
        "depth_max": float(depth.max()),
        "depth_median": float(np.median(depth)),
        "units": units,
        "scale": scale,
        "intrinsics_px": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])],
        "view_points": int(view.size),
        "notes": notes,
        "model": checkpoint_info(model),
    }
    return ImageResult(image=rgb, colour=colour, depth=depth, K=K, units=units, view_points=int(view.size),
                       notes=notes, summary=summary, **files)


# ------------------------------------------------------------------------------------------------
# videos and zips of frames


@dataclass
class VideoResult:
    """A video's outputs."""

    video: Path | None  #: side-by-side MP4 (input | disparity)
    trajectory_plot: Path | None  #: top-view PNG (None without a PoseNet)
    files: list[Path]  #: downloads: trajectory text files, summaries
    frames: int
    notes: list[str]
    summary: dict[str, Any]

    def markdown(self) -> str:
        return "\n".join(f"- {line}" for line in [f"{self.frames} frames"] + self.notes)


def _too_long(name: str, limit: int) -> AppError:
    return AppError(f"{name} has more than {limit} frames, the page's limit; shorten it (e.g. "
                    f"`ffmpeg -i in.mp4 -frames:v {limit} out.mp4`) or run `featdepth predict` on it")


def extract_frames(archive: str | os.PathLike, dest: str | os.PathLike, max_frames: int = MAX_VIDEO_FRAMES) -> Path:
    """The image files of a zip, in name order, as ``dest/000000.<ext>`` ... (no path from the archive is used).

    Raises:
        AppError: not a zip, no image inside, more than ``max_frames`` images, or too large uncompressed.
    """
    name = _display_name(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise AppError(f"{name} is not a readable zip archive") from exc
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith((".", "__MACOSX")) for part in Path(m.filename).parts)]
        if not members:
            raise AppError(f"{name} holds no image frames ({', '.join(IMAGE_EXTENSIONS)})")
        if len(members) > max_frames:
            raise _too_long(name, max_frames)
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise AppError(f"{name} is larger than {MAX_ZIP_BYTES // 1024**3} GB uncompressed")
        members.sort(key=lambda m: m.filename)
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(members):
            try:
                data = zf.read(m)
            except Exception as exc:  # noqa: BLE001 - a corrupt member
                raise AppError(f"{name}: cannot extract {m.filename} (corrupt archive)") from exc
            (out / f"{i:06d}{Path(m.filename).suffix.lower()}").write_bytes(data)
    return out


def _write_side_by_side(source: Any, colour_dir: Path, path: Path, fps: float) -> Path:
    """Encode ``frame | colour`` of every frame (colours from ``run_predict``'s ``<name>_disp.png``) as MP4."""
    av = import_av()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    container = av.open(str(tmp), mode="w", format="mp4")
    stream = None
    try:
        for i, frame in source.frames():
            colour = np.asarray(Image.open(colour_dir / f"{source.names[i]}_disp.png").convert("RGB"))
            both = np.concatenate([frame, colour], axis=1)
            h, w = both.shape[:2]
            both = np.pad(both, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            if stream is None:
                codec = "libx264"
                try:
                    av.codec.Codec(codec, "w")
                except Exception:  # noqa: BLE001
                    codec = "mpeg4"
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = both.shape[1], both.shape[0]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(both), format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    finally:
        container.close()
    os.replace(tmp, path)
    return path


def _no_progress(fraction: float, desc: str) -> None:
    pass


def predict_video(
    model: Model,
    upload: Any,
    out_dir: str | os.PathLike,
    *,
    max_frames: int = MAX_VIDEO_FRAMES,
    fps: float = 10.0,
    progress: ProgressFn | None = None,
) -> VideoResult:
    """Depth video (input | disparity, side by side) and PoseNet trajectory of a video or a zip of frames.

    Uses :func:`featdepth.tasks.predict.run_predict` and :func:`~featdepth.tasks.predict.run_trajectory`
    (their tqdm bars are what the page's progress bar follows).

    Args:
        upload: a video file (needs PyAV, the ``video`` extra) or a ``.zip`` of image frames (name order).
        out_dir: folder for the outputs (created).
        max_frames: refuse longer inputs (:data:`MAX_VIDEO_FRAMES`).
        fps: frame rate of the side-by-side video of a zip of frames.
        progress: ``progress(fraction, description)`` at each phase.

    Raises:
        AppError: no file, an unsupported or corrupt file, too many frames, frames of different sizes.
    """
    report = progress or _no_progress
    if upload is None or (isinstance(upload, str) and not upload.strip()):
        raise AppError("no video: upload a video file (MP4, ...) or a .zip of image frames, or pick the example")
    path = Path(upload)
    name = _display_name(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    report(0.0, "reading the frames")
    try:
        if suffix == ".zip":
            frames_dir = extract_frames(path, out / "frames", max_frames)
            source = resolve_inputs([frames_dir])
            if len(set(source.sizes)) > 1:
                raise AppError(f"the frames of {name} have different sizes; a video needs frames of one size")
        elif suffix in VIDEO_EXTENSIONS:
            import_av()
            source = resolve_inputs([path], max_frames=max_frames + 1)
            if source.num_frames > max_frames:
                raise _too_long(name, max_frames)
        else:
            raise AppError(f"{name} is neither a video ({', '.join(VIDEO_EXTENSIONS)}) nor a .zip of image frames")
    except PredictError as exc:
        text = str(exc).replace(str(path), name).replace(str(out / "frames"), name)
        if "PyAV" in text or "pip install av" in text:
            text = f"video files need PyAV: pip install \"featdepth[video]\" (or upload a .zip of frames) ({text})"
        raise AppError(text) from exc

    notes: list[str] = []
    report(0.1, f"depth of {source.num_frames} frames")
    depth_dir = out / "depth"
    try:
        if source.kind == "video":
            summary = run_predict(model, source, depth_dir, PredictOptions(color=False, side_by_side=True, progress=True))
            video = Path(summary["side_by_side_video"])
        else:
            summary = run_predict(model, source, depth_dir, PredictOptions(color=True, progress=True))
            video = _write_side_by_side(source, depth_dir, out / f"{path.stem}_side_by_side.mp4", fps)
    except PredictError as exc:
        raise AppError(str(exc).replace(str(path), name)) from exc
    notes.append(f"depth: {summary['depth_kind']} ({summary['note']})")
    files = [shutil.copyfile(depth_dir / "summary.json", out / "depth_summary.json")]

    plot = None
    if not model.has_pose:
        notes.append("no trajectory: this checkpoint has no PoseNet (trained without temporal frames)")
    elif source.num_frames < 2:
        notes.append("no trajectory: it needs at least 2 frames")
    else:
        report(0.6, f"trajectory over {source.num_frames - 1} frame pairs")
        traj = run_trajectory(model, source, out / "trajectory", progress=True)
        plot = Path(traj["files"]["plot"])
        files = [Path(traj["files"]["kitti"]), Path(traj["files"]["tum"]),
                 shutil.copyfile(out / "trajectory" / "summary.json", out / "trajectory_summary.json")] + files
        notes.append(f"trajectory: {traj['poses']} poses, path length {traj['path_length']:.3g} "
                     f"({'metres' if traj['depth_kind'].startswith('metric') else 'relative units'}); "
                     "top view: x right, z forward, first camera at the origin")
    report(1.0, "done")
    return VideoResult(video=video, trajectory_plot=plot, files=files, frames=source.num_frames, notes=notes,
                       summary={"frames": source.num_frames, "input": name, "depth": summary})
