"""Own video -> the folder format: frames with PyAV, intrinsics of the stored size.

``featdepth data from-video VIDEO --intrinsics FILE --out DIR`` runs :func:`frames_from_video`, which
writes one sequence of the folder format (``docs/design.md``)::

    DIR/
      images/000000.png ...   the kept frames; the name is the frame's number in the video (so
                              ``every=2`` gives 000000, 000002, ...), zero-padded to sort by name
      intrinsics.txt          the pixel K (3x3) of the STORED images (scaled when ``resize`` is given)
      from_video.json         where the frames came from: video, every, max_frames, size, fps, frames

PyAV is an optional dependency (the ``video`` extra); without it the error says how to install it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from featdepth.data.io import DataError, PathLike, as_pixel_intrinsics, scale_intrinsics

__all__ = ["VideoError", "import_av", "parse_size", "frames_from_video"]

#: The installation hint of every "PyAV is missing" message.
INSTALL_HINT = 'pip install "featdepth[video]"'


class VideoError(DataError):
    """A video that cannot be read, PyAV missing, or a bad option; the message names the file or the value."""


def import_av():
    """Import PyAV, or raise :class:`VideoError` naming ``pip install "featdepth[video]"``."""
    try:
        import av  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise VideoError(f"reading video needs PyAV, which is not installed: {INSTALL_HINT} (or pip install av)") from exc
    return av


def parse_size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"WxH"`` (or ``(W, H)``) -> ``(W, H)`` positive integers; ``None`` stays ``None``."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.lower().replace("×", "x").split("x")
        try:
            w, h = (int(p) for p in parts)
        except ValueError:
            raise VideoError(f"a size must look like WIDTHxHEIGHT (e.g. 640x192), got {text!r}") from None
    else:
        w, h = (int(v) for v in text)
    if w < 1 or h < 1:
        raise VideoError(f"a size must be positive, got {w}x{h}")
    return w, h


def _check_intrinsics_fit(K: np.ndarray, size: tuple[int, int], source: str) -> None:
    h, w = size
    if not (0 < K[0, 2] < w and 0 < K[1, 2] < h):
        raise VideoError(
            f"the intrinsics from {source} put the principal point at ({K[0, 2]:g}, {K[1, 2]:g}), outside the "
            f"video's {w}x{h} frames: they must be the pixel intrinsics of the video's own resolution"
        )


def frames_from_video(
    video: PathLike,
    out_dir: PathLike,
    intrinsics: Any,
    *,
    camera: str | int | None = None,
    every: int = 1,
    max_frames: int | None = None,
    resize: str | Sequence[int] | None = None,
    image_format: str = "png",
    progress: bool = False,
) -> dict[str, Any]:
    """Write the frames of ``video`` and their intrinsics as one sequence of the folder format.

    Args:
        video: any file PyAV (FFmpeg) decodes.
        out_dir: the sequence folder (created; ``images/`` must not hold frames already).
        intrinsics: pixel intrinsics of the VIDEO's resolution: a file (any form of
            :func:`~featdepth.data.io.read_intrinsics_file`), ``"fx fy cx cy"``, 4 numbers or a 3x3.
        camera: KITTI calibration files: which camera (default P2).
        every: keep every ``every``-th frame (source frame numbers are kept in the names).
        max_frames: stop after this many kept frames.
        resize: ``"WxH"``: store frames at this size (bilinear, antialiased); ``K`` is scaled to match.
        image_format: ``"png"`` (lossless, default) or ``"jpg"``.
        progress: print the progress to stderr.

    Returns:
        the summary also written as ``from_video.json``.

    Raises:
        VideoError: PyAV missing, an unreadable video, no video stream, a bad option, or intrinsics
            that do not fit the video's size; DataError: a malformed intrinsics file.
    """
    video = Path(video)
    out = Path(out_dir)
    if every < 1:
        raise VideoError(f"--every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"--max-frames must be >= 1, got {max_frames}")
    if image_format not in ("png", "jpg"):
        raise VideoError(f"image format must be png or jpg, got {image_format!r}")
    size = parse_size(resize)
    if not video.is_file():
        raise VideoError(f"video file not found: {video}")
    K_video = as_pixel_intrinsics(intrinsics, camera=camera)
    images = out / "images"
    if images.is_dir() and any(images.iterdir()):
        raise VideoError(f"{images} already holds files; choose an empty --out folder")
    av = import_av()
    try:
        container = av.open(str(video))
    except Exception as exc:  # noqa: BLE001 - PyAV raises many error types
        raise VideoError(f"cannot open video file {video}: {exc}") from exc
    kept: list[int] = []
    video_size: tuple[int, int] | None = None
    fps = None
    try:
        if not container.streams.video:
            raise VideoError(f"{video} holds no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        images.mkdir(parents=True, exist_ok=True)
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index % every:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                if video_size is None:
                    video_size = (rgb.shape[0], rgb.shape[1])
                    _check_intrinsics_fit(K_video, video_size, str(intrinsics))
                img = Image.fromarray(rgb)
                if size is not None and img.size != size:
                    img = img.resize(size, Image.BILINEAR, reducing_gap=None)
                target = images / f"{index:06d}.{image_format}"
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                img.save(tmp, format="PNG" if image_format == "png" else "JPEG", **({"quality": 95} if image_format == "jpg" else {}))
                os.replace(tmp, target)
                kept.append(index)
                if progress and (len(kept) == 1 or len(kept) % 25 == 0):
                    print(f"\r[from-video] {len(kept)} frames written (source frame {index})", end="", file=sys.stderr, flush=True)
                if max_frames is not None and len(kept) >= max_frames:
                    break
        except VideoError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise VideoError(f"cannot decode video file {video} (frame {index}): {exc}") from exc
    finally:
        container.close()
        if progress:
            print(file=sys.stderr)
    if not kept or video_size is None:
        raise VideoError(f"video file {video} has no decodable frames")
    stored = (size[1], size[0]) if size is not None else video_size
    K = scale_intrinsics(K_video, video_size, stored)
    (out / "intrinsics.txt").write_text(
        "# pixel K of the stored images (" + f"{stored[1]}x{stored[0]}" + "), written by featdepth data from-video\n"
        + "\n".join(" ".join(f"{v:.6f}" for v in row) for row in K) + "\n"
    )
    summary = {
        "video": str(video),
        "out": str(out),
        "frames": len(kept),
        "source_frames": [kept[0], kept[-1]],
        "every": every,
        "max_frames": max_frames,
        "video_size": [video_size[1], video_size[0]],
        "stored_size": [stored[1], stored[0]],
        "fps": fps,
        "stored_fps": (fps / every) if fps else None,
        "intrinsics": K.tolist(),
        "intrinsics_source": str(intrinsics),
    }
    (out / "from_video.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
