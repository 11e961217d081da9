"""``featdepth predict``: depth (and trajectories) for images, folders, globs and videos.

Two steps, so that nothing is half-written:

1. :func:`resolve_inputs` finds and **validates every input before any output exists**: each image
   is decoded once (unreadable, truncated or non-image files raise :class:`PredictError` naming the
   file), a video is decoded through once (no video stream, undecodable data), intrinsics are read
   and checked against the input size, and the output folder is probed for writing.
2. :func:`run_predict` / :func:`run_trajectory` run the model in batches and write each output file
   **atomically** (to a temporary name in the output folder, then renamed), so an interrupted run leaves
   only complete files.

Outputs of :func:`run_predict` (per input frame ``<name>``; select with :class:`PredictOptions`):

- ``<name>_disp.png``: colour-mapped disparity (magma, ``vmax`` = 95th percentile) [default];
- ``<name>_depth.npy``: float32 depth ``(H, W)`` at the input resolution;
- ``<name>_depth.png``: 16-bit PNG, ``round(depth × 256)`` clipped to ``[0, 65535]`` (KITTI convention:
  divide by 256 for the depth; 0 would mean invalid, which never occurs here);
- ``<name>.ply``: coloured point cloud, one vertex per pixel (``H × W`` points, or those closer than
  ``ply_max_depth``), see :mod:`featdepth.inference.pointcloud`;
- ``<video>_side_by_side.mp4``: for video input, input | colour-mapped disparity;
- ``summary.json``: the depth kind (relative / metric / scaled by ``--scale``), counts, timings.

:func:`run_trajectory` writes ``trajectory_kitti.txt`` (12 columns of ``T_world_cam``),
``trajectory_tum.txt`` (``t tx ty tz qx qy qz qw``), ``trajectory_topview.png`` and ``summary.json``.
"""

from __future__ import annotations

import glob as globlib
import io
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from featdepth.data.io import DataError, load_image, read_intrinsics_file
from featdepth.evaluation.plots import colorize_disparity, plot_trajectories_topview
from featdepth.evaluation.trajectory import chain_relative_poses, write_kitti_trajectory, write_tum_trajectory
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
            "video input/output needs PyAV: pip install av  (or pip install 'featdepth[video]')"
        ) from exc
    return av


# ------------------------------------------------------------------------------------------------
# atomic writing


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """KITTI 16-bit depth encoding: ``round(depth × 256)`` clipped to ``[0, 65535]``, uint16."""
    return np.clip(np.round(np.asarray(depth, dtype=np.float64) * 256.0), 0, 65535).astype(np.uint16)


# ------------------------------------------------------------------------------------------------
# inputs


@dataclass
class InputSource:
    """Validated inputs.

    Attributes:
        kind: ``"images"`` or ``"video"``.
        paths: the image files (images) or ``[video]``.
        names: output stem per frame (unique).
        sizes: ``(H, W)`` per frame.
        timestamps: seconds per frame (video presentation times; frame index for images).
        fps: the video's frame rate (after ``every``), else None.
        every, max_frames: the frame selection used for videos.
    """

    kind: str
    paths: list[Path]
    names: list[str]
    sizes: list[tuple[int, int]]
    timestamps: list[float]
    fps: float | None = None
    every: int = 1
    max_frames: int | None = None

    @property
    def num_frames(self) -> int:
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
        for i, (_, frame) in enumerate(_iter_video(self.paths[0], self.every, self.max_frames)):
            yield i, frame


def _iter_video(path: Path, every: int, max_frames: int | None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time in seconds, RGB uint8 frame)`` of the selected frames of a video."""
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
                    yield t, frame.to_ndarray(format="rgb24")
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
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [f"{s}_{i:06d}" if counts[s] > 1 else s for i, s in enumerate(stems)]


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
        every: keep every ``every``-th video frame (videos only).
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
        sizes, stamps = [], []
        for t, frame in _iter_video(path, every, max_frames):
            sizes.append(frame.shape[:2])
            stamps.append(t)
        if not sizes:
            raise PredictError(f"video file {path} has no decodable frames")
        fps = _video_fps(path)
        return InputSource(
            kind="video",
            paths=[path],
            names=[f"{path.stem}_{i:06d}" for i in range(len(sizes))],
            sizes=[tuple(s) for s in sizes],
            timestamps=stamps,
            fps=(fps / every) if fps else None,
            every=every,
            max_frames=max_frames,
        )

    if max_frames is not None:
        files = files[:max_frames]
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
        timestamps=[float(i) for i in range(len(files))],
    )


def parse_intrinsics(value: str | os.PathLike) -> np.ndarray:
    """``--intrinsics``: a file (3 lines of 3, or ``fx fy cx cy``) or the text ``"fx fy cx cy"`` -> pixel K (3,3)."""

    text = str(value)
    if Path(text).is_file():
        try:
            return read_intrinsics_file(text)
        except DataError as exc:
            raise PredictError(str(exc)) from exc
    tokens = text.replace(",", " ").split()
    try:
        numbers = [float(t) for t in tokens]
    except ValueError:
        numbers = []
    if len(numbers) == 4 and all(math.isfinite(v) for v in numbers):
        fx, fy, cx, cy = numbers
        if fx <= 0 or fy <= 0:
            raise PredictError(f"--intrinsics: fx and fy must be > 0, got {text!r}")
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if Path(text).exists() or len(tokens) == 1:
        raise PredictError(f"intrinsics file not found or not a file: {text}")
    raise PredictError(f"--intrinsics {text!r} is neither a file nor four numbers 'fx fy cx cy' (pixels)")


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
        side_by_side: input | disparity video (video input only).
        scale: user factor replacing the model's default depth factor.
        intrinsics: pixel K ``(3,3)`` of the input resolution (``--intrinsics``).
        kitti_intrinsics: use the normalised KITTI K scaled to each input's size.
        batch_size: frames per forward pass.
        vmax_percentile: colour-map upper percentile (95).
        codec: preferred video encoder (default: libx264, else mpeg4).
        progress: show a tqdm progress bar.
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
    extra: dict[str, Any] = field(default_factory=dict)


def _describe_kind(model: Any, scale: float | None) -> tuple[str, float, str]:
    if scale is not None:
        return f"scaled by --scale {scale:g}", float(scale), (
            f"network depth multiplied by the user factor {scale:g} (the model's own kind: {model.depth_kind})"
        )
    return model.depth_kind, float(model.metric_factor), model.scale_note


def _validate_options(model: Any, source: InputSource, opts: PredictOptions) -> None:
    if not (opts.color or opts.npy or opts.png16 or opts.ply or opts.side_by_side):
        raise PredictError("no output selected (use --color, --npy, --png16, --ply or --side-by-side)")
    if opts.batch_size < 1:
        raise PredictError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if opts.scale is not None and not opts.scale > 0:
        raise PredictError(f"--scale must be > 0, got {opts.scale}")
    if not 0 < opts.vmax_percentile <= 100:
        raise PredictError(f"the colour-map percentile must be in (0, 100], got {opts.vmax_percentile}")
    if opts.side_by_side and source.kind != "video":
        raise PredictError("--side-by-side needs a video input")
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

    writer = None
    if opts.side_by_side:
        writer = _SideBySideWriter(out / f"{source.paths[0].stem}_side_by_side.mp4", source.fps, opts.codec)
    counts = {"color": 0, "npy": 0, "png16": 0, "ply": 0}
    ply_points = 0
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=source.num_frames, desc="predict", unit="img")
    start = time.perf_counter()
    try:
        for batch in _batched(source.frames(), opts.batch_size):
            frames = [f for _, f in batch]
            depths, disps = model.predict_depth(frames, return_disparity=True, scale=factor, batch_size=opts.batch_size)
            for (i, frame), depth, disp in zip(batch, depths, disps):
                name = source.names[i]
                colour = None
                if opts.color or writer is not None:
                    vmax = float(np.percentile(disp, opts.vmax_percentile))
                    colour = colorize_disparity(disp, vmax=vmax)
                if opts.color:
                    _write(out / f"{name}_disp.png", _png_bytes(colour))
                    counts["color"] += 1
                if opts.npy:
                    _write(out / f"{name}_depth.npy", _npy_bytes(depth.astype(np.float32)))
                    counts["npy"] += 1
                if opts.png16:
                    _write(out / f"{name}_depth.png", _png_bytes(depth_to_png16(depth)))
                    counts["png16"] += 1
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
                if writer is not None:
                    writer.write(np.concatenate([frame, colour], axis=1))
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
        "png16_encoding": "round(depth * 256) clipped to [0, 65535]" if counts["png16"] else None,
        "ply_points": ply_points if counts["ply"] else None,
        "side_by_side_video": writer_path,
        "seconds": round(seconds, 3),
        "frames_per_second": round(source.num_frames / seconds, 3) if seconds > 0 else None,
        "output_dir": str(out),
    }
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
) -> dict[str, Any]:
    """Chain PoseNet outputs over consecutive frames into a camera trajectory.

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
    elif fps:
        stamps = np.arange(source.num_frames, dtype=np.float64) / float(fps)
    else:
        stamps = np.arange(source.num_frames, dtype=np.float64)

    kitti_path = out / "trajectory_kitti.txt"
    tum_path = out / "trajectory_tum.txt"
    plot_path = out / "trajectory_topview.png"
    atomic_write_via(kitti_path, lambda p: write_kitti_trajectory(p, poses))
    atomic_write_via(tum_path, lambda p: write_tum_trajectory(p, poses, stamps))
    atomic_write_via(plot_path, lambda p: plot_trajectories_topview(p, None, poses, labels=[f"PoseNet ({kind})"],
                                                                 title=f"{source.paths[0].name}: {len(poses)} frames"))
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    summary = {
        "checkpoint": model.source,
        "convention": "KITTI rows = top 3x4 of T_world_cam (camera-to-world, first camera = world); "
        "relative poses T_{i+1<-i} from PoseNet(earlier=i, later=i+1)",
        "depth_kind": kind,
        "translation_factor": factor,
        "note": note,
        "input": {"kind": source.kind, "frames": source.num_frames, "path": str(source.paths[0])},
        "poses": int(poses.shape[0]),
        "path_length": float(steps.sum()),
        "files": {"kitti": str(kitti_path), "tum": str(tum_path), "plot": str(plot_path)},
        "seconds": round(time.perf_counter() - start, 3),
    }
    _write(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def options_to_dict(opts: PredictOptions) -> dict[str, Any]:
    d = asdict(opts)
    if d.get("intrinsics") is not None:
        d["intrinsics"] = np.asarray(d["intrinsics"]).tolist()
    return d
