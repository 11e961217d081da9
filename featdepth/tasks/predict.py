"""``featdepth predict``: depth (and trajectories) for images, folders, globs and videos.

Two steps, so that nothing is half-written:

1. :func:`resolve_inputs` finds and **validates every input before any output exists**: each image
   is decoded once (unreadable, truncated or non-image files raise :class:`PredictError` naming the
   file), a video is decoded through once (no video stream, undecodable data), intrinsics are read
   and checked against the input size, and the output folder is probed for writing.
2. :func:`run_predict` / :func:`run_trajectory` run the model in batches and write each output file
   **atomically** (to a temporary name in the output folder, then renamed), so an interrupted run leaves
   only complete files.

Outputs of :func:`run_predict` (per input frame ``<name>``; select with :class:`PredictOptions`). Names keep
their source: for images, ``<name>`` is the input's path relative to the inputs' common folder, without the
extension (``a/000001.png`` and ``b/000001.png`` -> ``a/000001_disp.png``, ``b/000001_disp.png``, in
sub-folders of the output); for a video, ``<video>_<frame>`` where ``<frame>`` is the frame's number in
the video (with ``every=2``: 000000, 000002, ...).

- ``<name>_disp.png``: colour-mapped disparity (``cmap``, default magma) [default]. Colour range: per
  frame (``vmin`` = the frame's minimum, ``vmax`` = its ``vmax_percentile``, 95th) for single images; for a
  video or a side-by-side video one FIXED range for all frames, so the colours do not flicker: ``vmin`` =
  the minimum and ``vmax`` = the ``vmax_percentile`` of the disparities of up to 16 frames sampled evenly
  over the input (``color_range="frame"|"fixed"`` overrides). ``colorbar`` appends a bar labelled in depth;
- ``<name>_depth.npy``: float32 depth ``(H, W)`` at the input resolution;
- ``<name>_depth.png``: 16-bit PNG, ``round(depth × 256)`` clipped to ``[0, 65535]`` (KITTI convention:
  divide by 256 for the depth; 0 would mean invalid, which never occurs here);
- ``<name>.ply``: coloured point cloud, one vertex per pixel (``H × W`` points, or those closer than
  ``ply_max_depth``), see :mod:`featdepth.inference.pointcloud`;
- ``<video>_side_by_side.mp4``: input | colour-mapped disparity, for a video or for frames of one size
  (``<folder>_side_by_side.mp4``, at ``fps`` or 10 frames per second);
- ``index.csv``: one row per frame: ``input`` (file), ``frame`` (source frame number), ``time_s``,
  ``outputs`` (``;``-separated, relative to the output folder), ``depth_factor`` (the factor applied to the
  network's depth) and ``depth_kind``;
- ``summary.json``: the depth kind (relative / metric / scaled by ``--scale``), counts, timings.

An input whose aspect ratio is more than 15 % away from the training size's is distorted by the resize;
a warning says so, and ``keep_aspect`` pads it (edge pixels repeated) to the training aspect instead; the
outputs are still at the input's size.

:func:`run_trajectory` writes ``trajectory_kitti.txt`` (12 columns of ``T_world_cam``),
``trajectory_tum.txt`` (``t tx ty tz qx qy qz qw``), ``trajectory_topview.png`` and ``summary.json``.
"""

from __future__ import annotations

import csv
import glob as globlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

from featdepth.data.io import DataError, as_pixel_intrinsics, load_image
from featdepth.evaluation.plots import colorize_disparity, plot_trajectories_topview
from featdepth.evaluation.trajectory import chain_relative_poses, write_kitti_trajectory, write_tum_trajectory
from featdepth.geometry import check_height_from, sequence_scale
from featdepth.inference.model import ASPECT_TOLERANCE, AspectRatioWarning, check_camera_height
from featdepth.inference.pointcloud import depth_to_points, ply_bytes
from featdepth.utils.constants import KITTI_NORMALIZED_K
from featdepth.utils.files import atomic_write_bytes, atomic_write_via


def _write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, durable=False)  # outputs can be written again: no fsync per frame

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "PredictError",
    "InputSource",
    "PredictOptions",
    "resolve_inputs",
    "parse_intrinsics",
    "run_predict",
    "run_trajectory",
    "depth_to_png16",
    "import_av",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
_GLOB_CHARS = set("*?[")


class PredictError(ValueError):
    """A bad input, option or output location; the message names the file or the option."""


def import_av():
    """Import PyAV lazily, with an installation hint when it is missing."""
    try:
        import av  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PredictError(
            'video input/output needs PyAV, which is not installed: pip install "featdepth[video]" (or pip install av)'
        ) from exc
    return av


# ------------------------------------------------------------------------------------------------
# atomic writing


def _png_bytes(array: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    Image.fromarray(array).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def depth_to_png16(depth: np.ndarray, scale: float = 256.0) -> np.ndarray:
    """16-bit depth encoding: ``round(depth × scale)`` clipped to ``[0, 65535]``, uint16 (KITTI: ``scale=256``)."""
    return np.clip(np.round(np.asarray(depth, dtype=np.float64) * float(scale)), 0, 65535).astype(np.uint16)


def png16_scale(depth_kind: str, max_depth: float) -> float:
    """The factor of the 16-bit PNG encoding: KITTI's 256 for metres (1/256 m steps, up to 256 m). Relative depth
    (unknown scale, any range) gets the largest factor that keeps the model's whole depth range
    ``(0, max_depth]`` below 65535, so nothing clips and no precision is wasted; it is recorded in
    ``summary.json`` and in each PNG's text chunk ``featdepth:depth_scale`` (depth = value / scale)."""
    if depth_kind.startswith("metric") or not (max_depth > 0 and math.isfinite(max_depth)):
        return 256.0
    return 65535.0 / float(max_depth)


# ------------------------------------------------------------------------------------------------
# inputs


@dataclass
class InputSource:
    """Validated inputs.

    Attributes:
        kind: ``"images"`` or ``"video"``.
        paths: the image files (images) or ``[video]``.
        names: output name per frame (unique; relative path without extension for images,
            ``<video>_<source frame>`` for a video; may contain ``/``).
        sizes: ``(H, W)`` per frame.
        timestamps: seconds per frame (video presentation times; frame index for images).
        fps: the video's frame rate (after ``every``), else None.
        every, max_frames: the frame selection used for videos.
        source_frames: each frame's number in its source (video frame number; index among the images).
        title: a name for the whole input (the video's stem, or the images' common folder; a folder
            called ``images`` is named after its parent, the sequence).
    """

    kind: str
    paths: list[Path]
    names: list[str]
    sizes: list[tuple[int, int]]
    timestamps: list[float]
    fps: float | None = None
    every: int = 1
    max_frames: int | None = None
    source_frames: list[int] = field(default_factory=list)
    title: str = ""

    def __post_init__(self) -> None:
        if not self.source_frames:
            self.source_frames = list(range(len(self.names)))
        if not self.title:
            self.title = _title_for(self.paths, self.kind)

    @property
    def num_frames(self) -> int:
        """Number of frames (images, or the selected video frames)."""
        return len(self.names)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, RGB uint8 (H, W, 3))`` for every frame, in order."""
        if self.kind == "images":

            for i, p in enumerate(self.paths):
                try:
                    yield i, np.asarray(load_image(p))
                except DataError as exc:
                    raise PredictError(str(exc)) from exc
            return
        for i, (_, _, frame) in enumerate(_iter_video(self.paths[0], self.every, self.max_frames)):
            yield i, frame


def _title_for(paths: Sequence[Path], kind: str) -> str:
    if not paths:
        return ""
    if kind == "video" or len(paths) == 1:
        return paths[0].stem
    try:
        folder = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    except ValueError:  # different drives
        return paths[0].parent.name
    return folder.parent.name if folder.name == "images" and folder.parent.name else folder.name


def _iter_video(path: Path, every: int, max_frames: int | None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(source frame number, time in seconds, RGB uint8 frame)`` of the selected frames of a video."""
    av = import_av()
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - PyAV raises many error types
        raise PredictError(f"cannot open video file {path}: {exc}") from exc
    try:
        if not container.streams.video:
            raise PredictError(f"{path} holds no video stream")
        stream = container.streams.video[0]
        count = 0
        index = 0
        try:
            for frame in container.decode(stream):
                if index % every == 0:
                    t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 1)
                    yield index, t, frame.to_ndarray(format="rgb24")
                    count += 1
                    if max_frames is not None and count >= max_frames:
                        return
                index += 1
        except PredictError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise PredictError(f"cannot decode video file {path} (frame {index}): {exc}") from exc
    finally:
        container.close()


def _video_fps(path: Path) -> float | None:
    av = import_av()
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
    return float(rate) if rate else None


def _expand(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
            images = [q for q in found if q.suffix.lower() in IMAGE_EXTENSIONS]
            if not images:
                raise PredictError(
                    f"folder {p} holds no images ({', '.join(IMAGE_EXTENSIONS)}); pass a video file directly"
                )
            files.extend(images)
        elif p.exists():
            if not p.is_file():
                raise PredictError(f"input is not a regular file: {p}")
            files.append(p)
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in globlib.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise PredictError(f"no files match the pattern {text!r}")
            files.extend(matches)
        else:
            raise PredictError(f"input not found: {p}")
    return files


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Output names that keep the source: each path relative to the inputs' common folder, without the
    extension (``left/frame``, ``right/frame``); the extension is kept where two inputs differ only by it."""
    if not paths:
        return []
    absolute = [p.resolve() for p in paths]
    try:
        root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    except ValueError:  # different drives: fall back to the full paths
        root = None
    rel = [p.relative_to(root) if root is not None else Path(*p.parts[1:]) for p in absolute]
    stems = [r.with_suffix("").as_posix() for r in rel]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    names = [f"{s}_{r.suffix.lstrip('.').lower()}" if seen[s] > 1 else s for s, r in zip(stems, rel)]
    if len(set(names)) != len(names):  # the same file given twice
        names = [f"{n}_{i:06d}" for i, n in enumerate(names)]
    return names


def resolve_inputs(
    inputs: Sequence[str | os.PathLike],
    *,
    every: int = 1,
    max_frames: int | None = None,
    progress: bool = False,
) -> InputSource:
    """Find and validate the inputs (decodes every image, and the video once).

    Args:
        inputs: image files, folders of images, glob patterns, or one video file.
        every: keep every ``every``-th frame (of a video, or of the sorted images).
        max_frames: keep at most this many frames (images or video).

    Raises:
        PredictError: a missing input, an empty folder, an unreadable or non-image file, an
            undecodable video, or a video mixed with other inputs; the message names the file.
    """
    if every < 1:
        raise PredictError(f"--every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise PredictError(f"--max-frames must be >= 1, got {max_frames}")
    files = _expand(inputs)
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    if videos:
        if len(files) != 1:
            raise PredictError(f"a video input must be the only input; got {len(files)} inputs including {videos[0]}")
        path = videos[0]
        sizes, stamps, numbers = [], [], []
        last = time.monotonic()
        for number, t, frame in _iter_video(path, every, max_frames):
            sizes.append(frame.shape[:2])
            stamps.append(t)
            numbers.append(number)
            if progress and time.monotonic() - last > 1.0:
                last = time.monotonic()
                print(f"\rchecking {path.name}: {len(sizes)} frames", end="", file=sys.stderr, flush=True)
        if progress:
            print(f"\rchecked {path.name}: {len(sizes)} frames", file=sys.stderr, flush=True)
        if not sizes:
            raise PredictError(f"video file {path} has no decodable frames")
        fps = _video_fps(path)
        return InputSource(
            kind="video",
            paths=[path],
            names=[f"{path.stem}_{n:06d}" for n in numbers],
            sizes=[tuple(s) for s in sizes],
            timestamps=stamps,
            fps=(fps / every) if fps else None,
            every=every,
            max_frames=max_frames,
            source_frames=numbers,
        )

    numbers = list(range(0, len(files), every))  # --every applies to image sequences too
    files = files[::every]
    if max_frames is not None:
        files, numbers = files[:max_frames], numbers[:max_frames]
    sizes = []
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="checking inputs", unit="img", leave=False)
    for p in iterator:
        try:
            img = load_image(p)
        except DataError as exc:
            kinds = f"images: {', '.join(IMAGE_EXTENSIONS)}; videos: {', '.join(VIDEO_EXTENSIONS)}"
            raise PredictError(f"{exc} (supported {kinds})") from exc
        sizes.append((img.height, img.width))
    return InputSource(
        kind="images",
        paths=list(files),
        names=_unique_names(files),
        sizes=sizes,
        timestamps=[float(n) for n in numbers],
        every=every,
        max_frames=max_frames,
        source_frames=numbers,
    )


def parse_intrinsics(value: Any, camera: str | int | None = None) -> np.ndarray:
    """``--intrinsics`` -> pixel K ``(3,3)``: a file (3x3; ``fx fy cx cy`` on one line or four; a 3x4
    projection; KITTI ``calib.txt`` with or without ``P0:`` labels or ``calib_cam_to_cam.txt``, camera
    ``camera``, default P2), the text ``"fx fy cx cy"``, four numbers or a 3x3 matrix.

    Raises:
        PredictError: a missing or malformed file, or a value of another form (names the file / value).
    """
    try:
        return as_pixel_intrinsics(value, camera=camera)
    except DataError as exc:
        raise PredictError(f"--intrinsics: {exc}") from exc


def _check_output_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PredictError(f"output folder {out_dir} is not writable: {exc}") from exc


# ------------------------------------------------------------------------------------------------
# video writing


def _pick_codec(preferred: str | None = None) -> str:
    av = import_av()
    for name in ([preferred] if preferred else []) + ["libx264", "h264", "mpeg4"]:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001
            continue
    raise PredictError("no usable video encoder in this PyAV build (tried libx264, h264, mpeg4)")


class _SideBySideWriter:
    """Stream frames into ``path`` (MP4) through a temporary file; :meth:`close` renames it."""

    def __init__(self, path: Path, fps: float | None, codec: str | None = None) -> None:
        self.av = import_av()
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        self.codec = _pick_codec(codec)
        self.rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(10)
        self.container = self.av.open(str(self.tmp), mode="w", format="mp4")
        self.stream = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if self.stream is None:
            self.stream = self.container.add_stream(self.codec, rate=self.rate)
            self.stream.width = w + (w % 2)
            self.stream.height = h + (h % 2)
            self.stream.pix_fmt = "yuv420p"
            if self.codec == "mpeg4":
                self.stream.bit_rate = 8_000_000
        if (h % 2) or (w % 2):
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001
            pass
        self.tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# prediction


@dataclass
class PredictOptions:
    """Which outputs to write and how.

    Attributes:
        color: colour-mapped disparity PNG (default on).
        npy: float32 depth ``.npy``.
        png16: 16-bit PNG depth (metres × 256 for metric models; the same encoding otherwise).
        ply: coloured point cloud (needs intrinsics).
        ply_ascii: ASCII PLY instead of binary little-endian.
        ply_max_depth: drop points farther than this (None: keep all ``H × W`` points).
        side_by_side: input | disparity video (a video, or images of one size).
        scale: user factor replacing the model's default depth factor.
        intrinsics: pixel K ``(3,3)`` of the input resolution (``--intrinsics``).
        kitti_intrinsics: use the normalised KITTI K scaled to each input's size.
        batch_size: frames per forward pass.
        vmax_percentile: colour-map upper percentile (95).
        codec: preferred video encoder (default: libx264, else mpeg4).
        progress: show a tqdm progress bar.
        cmap: any ``matplotlib.colormaps`` name (default ``"magma"``).
        colorbar: append a colour bar labelled in depth to the colour PNGs (and the video).
        color_range: ``"auto"`` (fixed for videos and side-by-side output, per frame otherwise),
            ``"fixed"`` (one range from up to 16 sampled frames) or ``"frame"`` (per frame).
        keep_aspect: pad inputs to the training aspect ratio instead of distorting them.
        fps: frame rate of a side-by-side video made from images (default 10).
        warn: print warnings (aspect ratio) to stderr; off for ``--quiet``.
        camera_height: metres above the ground (``--camera-height``): metric depth with the scale recovered
            from the ground plane (:func:`camera_height_scale`; the median over all frames, needs intrinsics).
        height_from: ``--height-from``: ``"plane"`` (default) or ``"level"`` (a camera mounted level;
            :mod:`featdepth.geometry.scale_recovery`, step 6).
    """

    color: bool = True
    npy: bool = False
    png16: bool = False
    ply: bool = False
    ply_ascii: bool = False
    ply_max_depth: float | None = None
    side_by_side: bool = False
    scale: float | None = None
    intrinsics: np.ndarray | None = None
    kitti_intrinsics: bool = False
    batch_size: int = 4
    vmax_percentile: float = 95.0
    codec: str | None = None
    progress: bool = True
    cmap: str = "magma"
    colorbar: bool = False
    color_range: str = "auto"
    keep_aspect: bool = False
    fps: float | None = None
    warn: bool = True
    camera_height: float | None = None
    height_from: str = "plane"
    extra: dict[str, Any] = field(default_factory=dict)


def _describe_kind(model: Any, scale: float | None) -> tuple[str, float, str]:
    if scale is not None:
        return f"scaled by --scale {scale:g}", float(scale), (
            f"network depth multiplied by the user factor {scale:g} (the model's own kind: {model.depth_kind})"
        )
    return model.depth_kind, float(model.metric_factor), model.scale_note


def camera_height_scale(model: Any, source: InputSource, camera_height: float, opts: PredictOptions
                        ) -> tuple[dict[str, Any], str, float, str]:
    """The metric scale of ``source`` from the camera height (``--camera-height``): a first pass over the frames.

    Each frame's network depth gets its ground plane fitted (:meth:`~featdepth.inference.model.Model.scale_from_camera_height`,
    intrinsics from ``opts``: ``--intrinsics``, ``--kitti-intrinsics`` or the model's); the median over the accepted
    frames is the one factor of every frame's depth (and of the trajectory's translations), so a video's depth does
    not flicker with the per-frame noise of the plane fit and frames without ground (a wall, a car close by) still
    get metres.

    Returns:
        ``(report, depth kind, factor, note)``: the report (camera height, sequence scale, counts, spread and one
        ``{"name", "scale", "ok", "reason"}`` per frame) goes into ``summary.json``.

    Raises:
        PredictError: a bad height, no intrinsics, ``--scale`` given too, or no frame with a ground plane.
    """
    try:
        camera_height = check_camera_height(camera_height, "--camera-height")
        check_height_from(opts.height_from)
    except ValueError as exc:
        raise PredictError(str(exc)) from None
    if opts.scale is not None:
        raise PredictError("give either --scale or --camera-height (which recovers the scale), not both")
    if opts.intrinsics is None and not opts.kitti_intrinsics and model.K is None:
        raise PredictError("--camera-height needs intrinsics (the ground plane is fitted in 3-D): pass --intrinsics "
                           "FILE|'fx fy cx cy' (pixels, input resolution) or --kitti-intrinsics")
    results = []
    for batch in _batched(source.frames(), opts.batch_size):
        frames = [f for _, f in batch]
        for shape in dict.fromkeys(f.shape[:2] for f in frames):
            group = [f for f in frames if f.shape[:2] == shape]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AspectRatioWarning)
                out = model.scale_from_camera_height(group, camera_height, K=_intrinsics_for(model, opts, shape),
                                                     batch_size=opts.batch_size, keep_aspect=opts.keep_aspect,
                                                     height_from=opts.height_from)
            it = iter(out)
            for j, f in enumerate(frames):
                if f.shape[:2] == shape:
                    results.append((batch[j][0], next(it)))
    results.sort(key=lambda item: item[0])
    try:
        seq = sequence_scale([r for _, r in results])
    except ValueError as exc:
        raise PredictError(f"--camera-height {camera_height:g}: {exc}") from None
    report = {
        "camera_height": camera_height,
        "height_from": opts.height_from,
        "scale": seq.scale,
        "rule": "median of the accepted frames' scales, applied to every frame",
        "num_accepted": seq.num_accepted,
        "num_rejected": seq.num_rejected,
        "relative_spread": seq.relative_spread,
        "frames": [{"name": source.names[i], "scale": r.scale if r.ok else None, "ok": r.ok, "reason": r.reason}
                   for i, r in results],
    }
    kind = f"metric (camera height {camera_height:g} m)"
    note = (f"network depth multiplied by {seq.scale:.6g}, the median over {seq.num_accepted} frame(s) of the scale "
            f"recovered from the ground plane and the camera height {camera_height:g} m ({seq.num_rejected} frame(s) "
            f"without a usable ground plane; the model's own kind: {model.depth_kind})")
    return report, kind, float(seq.scale), note


def _validate_options(model: Any, source: InputSource, opts: PredictOptions) -> None:
    if not (opts.color or opts.npy or opts.png16 or opts.ply or opts.side_by_side):
        raise PredictError("no output selected (use --color, --npy, --png16, --ply or --side-by-side)")
    if opts.batch_size < 1:
        raise PredictError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if opts.scale is not None and not opts.scale > 0:
        raise PredictError(f"--scale must be > 0, got {opts.scale}")
    if not 0 < opts.vmax_percentile <= 100:
        raise PredictError(f"the colour-map percentile must be in (0, 100], got {opts.vmax_percentile}")
    if opts.side_by_side and source.kind != "video" and len(set(source.sizes)) > 1:
        ref = source.sizes[0]
        odd = next(p for p, size in zip(source.paths, source.sizes) if size != ref)
        raise PredictError(f"--side-by-side makes one video, so the images must have one size: {source.paths[0]} is "
                           f"{ref[1]}x{ref[0]} but {odd} is not")
    if opts.cmap not in _colormap_names():
        raise PredictError(f"--cmap: unknown colour map {opts.cmap!r} (any matplotlib colormap, e.g. magma, viridis, "
                           "plasma, inferno, turbo, gray)")
    if opts.color_range not in ("auto", "fixed", "frame"):
        raise PredictError(f"colour range must be auto, fixed or frame, got {opts.color_range!r}")
    if opts.fps is not None and not opts.fps > 0:
        raise PredictError(f"--fps must be > 0, got {opts.fps}")
    if opts.intrinsics is not None and opts.kitti_intrinsics:
        raise PredictError("give either --intrinsics or --kitti-intrinsics, not both")
    if opts.ply:
        if opts.intrinsics is None and not opts.kitti_intrinsics and model.K is None:
            raise PredictError(
                "--ply needs intrinsics: pass --intrinsics FILE|'fx fy cx cy' (pixels, input resolution) "
                "or --kitti-intrinsics"
            )
        if opts.intrinsics is not None:
            ref = source.sizes[0]
            for size, path in zip(source.sizes, _paths_per_frame(source)):
                if size != ref:
                    raise PredictError(
                        f"--intrinsics are pixel intrinsics of one resolution ({ref[1]}x{ref[0]}), but {path} "
                        f"is {size[1]}x{size[0]}; use inputs of one size or --kitti-intrinsics"
                    )


def _colormap_names() -> list[str]:
    import matplotlib

    return list(matplotlib.colormaps)


def _warn(opts: PredictOptions, message: str) -> None:
    if opts.warn:
        print(f"featdepth: warning: {message}", file=sys.stderr)


def check_aspect(model: Any, source: InputSource) -> str | None:
    """A warning text when an input's aspect ratio is more than 15 % away from the training size's, else None."""
    worst = max(((model.aspect_mismatch(h, w), (h, w), p) for (h, w), p in zip(source.sizes, _paths_per_frame(source))),
                key=lambda item: item[0])
    off, (h, w), path = worst
    if off <= ASPECT_TOLERANCE:
        return None
    return (f"{path} is {w}x{h} (aspect {w / h:.2f}), {off:.0%} away from the model's training size "
            f"{model.width}x{model.height} (aspect {model.width / model.height:.2f}); the resize distorts it and biases "
            "the depth. Use --keep-aspect to pad it to the training aspect instead (outputs stay at the input size)")


def _fixed_range(model: Any, source: InputSource, opts: PredictOptions, factor: float) -> tuple[float, float]:
    """``(vmin, vmax)`` of the disparity over up to 16 frames sampled evenly: the minimum and the
    ``vmax_percentile`` of all their pixels."""
    n = source.num_frames
    wanted = set(np.unique(np.linspace(0, n - 1, min(n, 16)).round().astype(int)).tolist())
    samples = []
    for i, frame in source.frames():
        if i in wanted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AspectRatioWarning)
                _, disp = model.predict_depth(frame, return_disparity=True, scale=factor, keep_aspect=opts.keep_aspect)
            samples.append(np.asarray(disp, dtype=np.float32).reshape(-1))
        if len(samples) == len(wanted):
            break
    values = np.concatenate(samples)
    return float(values.min()), float(np.percentile(values, opts.vmax_percentile))


def _depth_at(model: Any, disp: float, factor: float) -> float:
    """The depth a sigmoid disparity ``disp`` maps to (``disp_to_depth`` of the network, times ``factor``)."""
    lo, hi = 1.0 / model.network_max_depth, 1.0 / model.network_min_depth
    return factor / (lo + (hi - lo) * float(disp))


def _with_colorbar(colour: np.ndarray, vmin: float, vmax: float, cmap: str, near: float, far: float, unit: str) -> np.ndarray:
    """``colour`` with a vertical colour bar on the right: top = ``vmax`` (near), bottom = ``vmin`` (far), labelled in depth."""


    h, w = colour.shape[:2]
    bar_w = max(8, w // 40)
    ramp = np.linspace(vmax, vmin, h, dtype=np.float64)[:, None].repeat(bar_w, axis=1)
    bar = colorize_disparity(ramp, vmin=vmin, vmax=vmax, cmap=cmap)
    label_w = 64
    panel = Image.new("RGB", (bar_w + label_w + 4, h), (255, 255, 255))
    panel.paste(Image.fromarray(bar), (2, 0))
    draw = ImageDraw.Draw(panel)
    suffix = f" {unit}" if unit else ""
    draw.text((bar_w + 4, 0), f"{near:.3g}{suffix}", fill=(0, 0, 0))
    draw.text((bar_w + 4, max(0, h - 12)), f"{far:.3g}{suffix}", fill=(0, 0, 0))
    if h >= 48:
        draw.text((bar_w + 4, h // 2 - 6), "depth", fill=(0, 0, 0))
    return np.concatenate([colour, np.asarray(panel)], axis=1)


def _paths_per_frame(source: InputSource) -> list[Path]:
    return list(source.paths) if source.kind == "images" else [source.paths[0]] * source.num_frames


def _intrinsics_for(model: Any, opts: PredictOptions, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if opts.intrinsics is not None:
        return np.asarray(opts.intrinsics, dtype=np.float64)
    if opts.kitti_intrinsics:

        fx, fy, cx, cy = KITTI_NORMALIZED_K
        return np.array([[fx * w, 0, cx * w], [0, fy * h, cy * h], [0, 0, 1.0]])
    K = model.intrinsics(h, w)
    assert K is not None
    return K


def _batched(iterator: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    batch: list[tuple[int, np.ndarray]] = []
    for item in iterator:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_predict(model: Any, source: InputSource, out_dir: str | os.PathLike, opts: PredictOptions | None = None) -> dict[str, Any]:
    """Predict depth for every frame of ``source`` and write the selected outputs into ``out_dir``.

    Everything is validated before the first output is written (options, intrinsics, the output
    folder); see the module docstring for the files. Returns the summary (also written as
    ``summary.json``).
    """

    opts = opts or PredictOptions()
    out = Path(out_dir)
    _validate_options(model, source, opts)
    _check_output_dir(out)
    kind, factor, note = _describe_kind(model, opts.scale)
    height_report = None
    if opts.camera_height is not None:
        height_report, kind, factor, note = camera_height_scale(model, source, opts.camera_height, opts)
    aspect_warning = None if opts.keep_aspect else check_aspect(model, source)
    if aspect_warning:
        _warn(opts, aspect_warning)
    fixed = opts.color_range == "fixed" or (
        opts.color_range == "auto" and (source.kind == "video" or opts.side_by_side))
    vrange = None
    if fixed and (opts.color or opts.side_by_side):
        vrange = _fixed_range(model, source, opts, factor)
    unit = "m" if kind.startswith("metric") else ""

    writer = None
    if opts.side_by_side:
        stem = source.paths[0].stem if source.kind == "video" else (source.title or "images")
        writer = _SideBySideWriter(out / f"{stem}_side_by_side.mp4", opts.fps or source.fps or 10.0, opts.codec)
    counts = {"color": 0, "npy": 0, "png16": 0, "ply": 0}
    png_scale = png16_scale(kind, model.network_max_depth * factor)
    png_text = {"featdepth:depth_scale": repr(png_scale), "featdepth:depth_kind": kind,
                "featdepth:decode": "depth = value / depth_scale"}
    if opts.png16 and not kind.startswith("metric"):
        _warn(opts, f"16-bit PNGs hold relative depth (unknown scale): value = round(depth x {png_scale:.4g}), "
                    "recorded in summary.json and in each PNG's text chunk")
    rows: list[list[Any]] = []
    ply_points = 0
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=source.num_frames, desc="predict", unit="img")
    start = time.perf_counter()
    try:
        for batch in _batched(source.frames(), opts.batch_size):
            frames = [f for _, f in batch]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AspectRatioWarning)  # reported once above, naming the file
                depths, disps = model.predict_depth(frames, return_disparity=True, scale=factor,
                                                    batch_size=opts.batch_size, keep_aspect=opts.keep_aspect)
            for (i, frame), depth, disp in zip(batch, depths, disps):
                name = source.names[i]
                written: list[str] = []
                colour = None
                if opts.color or writer is not None:
                    if vrange is not None:
                        vmin, vmax = vrange
                    else:
                        vmin, vmax = float(np.min(disp)), float(np.percentile(disp, opts.vmax_percentile))
                    colour = colorize_disparity(disp, vmin=vmin, vmax=vmax, cmap=opts.cmap)
                    if opts.colorbar:
                        colour = _with_colorbar(colour, vmin, vmax, opts.cmap, _depth_at(model, vmax, factor),
                                                _depth_at(model, vmin, factor), unit)
                if opts.color:
                    _write(out / f"{name}_disp.png", _png_bytes(colour))
                    counts["color"] += 1
                    written.append(f"{name}_disp.png")
                if opts.npy:
                    _write(out / f"{name}_depth.npy", _npy_bytes(depth.astype(np.float32)))
                    counts["npy"] += 1
                    written.append(f"{name}_depth.npy")
                if opts.png16:
                    _write(out / f"{name}_depth.png", _png_bytes(depth_to_png16(depth, png_scale), png_text))
                    counts["png16"] += 1
                    written.append(f"{name}_depth.png")
                if opts.ply:
                    K = _intrinsics_for(model, opts, depth.shape)
                    points = depth_to_points(depth, K)
                    colours = frame.reshape(-1, 3)
                    if opts.ply_max_depth is not None:
                        keep = points[:, 2] <= opts.ply_max_depth
                        points, colours = points[keep], colours[keep]
                    _write(out / f"{name}.ply", ply_bytes(points, colours, binary=not opts.ply_ascii))
                    counts["ply"] += 1
                    ply_points += int(points.shape[0])
                    written.append(f"{name}.ply")
                if writer is not None:
                    writer.write(np.concatenate([frame, colour], axis=1))
                path = source.paths[i] if source.kind == "images" else source.paths[0]
                rows.append([str(path), source.source_frames[i], f"{source.timestamps[i]:.6f}", ";".join(written),
                             f"{factor:.9g}", kind])
            if bar is not None:
                bar.update(len(batch))
        if writer is not None:
            writer.close()
            writer_path = str(writer.path)
            writer = None
        else:
            writer_path = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    table = io.StringIO()
    csv_writer = csv.writer(table, lineterminator="\n")
    csv_writer.writerow(["input", "frame", "time_s", "outputs", "depth_factor", "depth_kind"]
                        + (["frame_scale", "ground_plane"] if height_report else []))
    if height_report:  # --camera-height: each frame's own recovered scale ("" when rejected) beside the one applied
        rows = [row + ["" if f["scale"] is None else f"{f['scale']:.9g}", "found" if f["ok"] else f["reason"]]
                for row, f in zip(rows, height_report["frames"])]
    csv_writer.writerows(rows)
    _write(out / "index.csv", table.getvalue().encode())
    summary = {
        "checkpoint": model.source,
        "depth_kind": kind,
        "depth_factor": factor,
        "note": note,
        "depth_units": "metres" if kind.startswith("metric") else ("user-scaled" if opts.scale is not None else "relative (unknown scale)"),
        "input": {"kind": source.kind, "frames": source.num_frames,
                  "path": str(source.paths[0]) if source.kind == "video" or len(source.paths) == 1 else f"{len(source.paths)} images"},
        "model": model.describe(),
        "outputs": {k: v for k, v in counts.items() if v},
        "png16_encoding": (f"round(depth * {png_scale!r}) clipped to [0, 65535]" if counts["png16"] else None),
        "png16_scale": png_scale if counts["png16"] else None,
        "ply_points": ply_points if counts["ply"] else None,
        "side_by_side_video": writer_path,
        "index": str(out / "index.csv"),
        "names": "relative paths of the inputs" if source.kind == "images" else "<video>_<source frame number>",
        "color": {"cmap": opts.cmap, "range": "fixed" if vrange is not None else "per frame",
                  "vmin": vrange[0] if vrange else None, "vmax": vrange[1] if vrange else None,
                  "vmax_percentile": opts.vmax_percentile, "colorbar": opts.colorbar} if (opts.color or writer_path) else None,
        "keep_aspect": opts.keep_aspect,
        "aspect_warning": aspect_warning,
        "seconds": round(seconds, 3),
        "frames_per_second": round(source.num_frames / seconds, 3) if seconds > 0 else None,
        "output_dir": str(out),
    }
    if height_report is not None:
        summary["camera_height"] = height_report
    _write(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def run_trajectory(
    model: Any,
    source: InputSource,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 4,
    scale: float | None = None,
    fps: float | None = None,
    progress: bool = True,
    camera_height: float | None = None,
    intrinsics: np.ndarray | None = None,
    kitti_intrinsics: bool = False,
    height_from: str = "plane",
) -> dict[str, Any]:
    """Chain PoseNet outputs over consecutive frames into a camera trajectory.

    ``camera_height`` (metres): a metric trajectory; the translations are multiplied by the median over the frames
    of the scale recovered from the depth network's ground plane (:func:`camera_height_scale`; intrinsics from
    ``intrinsics`` (pixels, input resolution), ``kitti_intrinsics`` or the model's).

    PoseNet sees (earlier = frame i, later = frame i+1) and gives ``T_{i+1<-i}``; these are chained
    with :func:`~featdepth.evaluation.trajectory.chain_relative_poses` into ``T_world_cam`` (the first
    camera is the world frame). Translations carry the model's depth factor (or ``scale``).
    Timestamps (TUM file): the video's presentation times, ``i / fps`` with ``fps``, else the frame index.
    """

    out = Path(out_dir)
    if not model.has_pose:
        raise PredictError(
            f"{model.source} has no PoseNet (no pose weights; training frames {model.config.data.frame_ids}); "
            "a trajectory needs a model trained with temporal frames"
        )
    if source.num_frames < 2:
        raise PredictError(f"a trajectory needs at least 2 frames; {source.paths[0]} gives {source.num_frames}")
    if batch_size < 1:
        raise PredictError(f"--batch-size must be >= 1, got {batch_size}")
    if scale is not None and not scale > 0:
        raise PredictError(f"--scale must be > 0, got {scale}")
    _check_output_dir(out)
    kind, factor, note = _describe_kind(model, scale)
    height_report = None
    if camera_height is not None:
        height_opts = PredictOptions(scale=scale, intrinsics=intrinsics, kitti_intrinsics=kitti_intrinsics,
                                     batch_size=batch_size, height_from=height_from)
        height_report, kind, factor, note = camera_height_scale(model, source, camera_height, height_opts)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=source.num_frames - 1, desc="trajectory", unit="pair")
    rel: list[np.ndarray] = []
    start = time.perf_counter()
    previous: np.ndarray | None = None
    try:
        for batch in _batched(source.frames(), batch_size):
            frames = ([previous] if previous is not None else []) + [f for _, f in batch]
            previous = frames[-1]
            if len(frames) < 2:
                continue
            T = model.predict_pose(frames[:-1], frames[1:], scale=factor)
            rel.append(np.asarray(T).reshape(-1, 4, 4))
            if bar is not None:
                bar.update(len(frames) - 1)
    finally:
        if bar is not None:
            bar.close()
    rel_poses = np.concatenate(rel)
    poses = chain_relative_poses(rel_poses)
    if source.kind == "video":
        stamps = np.asarray(source.timestamps, dtype=np.float64)
    elif fps:  # image sequences: source frame numbers (they keep --every's gaps) over the frame rate
        stamps = np.asarray(source.source_frames, dtype=np.float64) / float(fps)
    else:
        stamps = np.asarray(source.source_frames, dtype=np.float64)

    kitti_path = out / "trajectory_kitti.txt"
    tum_path = out / "trajectory_tum.txt"
    plot_path = out / "trajectory_topview.png"
    atomic_write_via(kitti_path, lambda p: write_kitti_trajectory(p, poses))
    atomic_write_via(tum_path, lambda p: write_tum_trajectory(p, poses, stamps))
    units = "m" if kind.startswith("metric") else ("scaled units" if scale is not None else "relative units")
    atomic_write_via(plot_path, lambda p: plot_trajectories_topview(
        p, None, poses, labels=[f"PoseNet ({kind})"], units=units,
        title=f"{source.title}: {len(poses)} frames" + ("" if units == "m" else " (scale unknown)")))
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    summary = {
        "checkpoint": model.source,
        "convention": "KITTI rows = top 3x4 of T_world_cam (camera-to-world, first camera = world); "
        "relative poses T_{i+1<-i} from PoseNet(earlier=i, later=i+1)",
        "depth_kind": kind,
        "translation_factor": factor,
        "note": note,
        "input": {"kind": source.kind, "frames": source.num_frames, "path": str(source.paths[0])},
        "sequence": source.title,
        "units": units,
        "poses": int(poses.shape[0]),
        "path_length": float(steps.sum()),
        "files": {"kitti": str(kitti_path), "tum": str(tum_path), "plot": str(plot_path)},
        "seconds": round(time.perf_counter() - start, 3),
    }
    if height_report is not None:
        summary["camera_height"] = height_report
    _write(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def options_to_dict(opts: PredictOptions) -> dict[str, Any]:
    d = asdict(opts)
    if d.get("intrinsics") is not None:
        d["intrinsics"] = np.asarray(d["intrinsics"]).tolist()
    return d
