"""KITTI split files: ``<date>/<drive> <frame> <l|r>`` lines (monodepth2 / FeatDepth format).

Split lists are not shipped with the package: the user names a folder laid out as
``<split_dir>/<split>/{train,val,test}_files.txt`` (for example a checkout of monodepth2's
``splits/`` folder).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from featdepth.data.io import DataError, DataFileNotFoundError, PathLike, _read_text

__all__ = [
    "SplitEntry",
    "parse_split_line",
    "parse_split_lines",
    "read_split_file",
    "write_split_file",
    "split_file_path",
    "find_split_files",
    "SPLIT_PARTS",
]

SplitEntry = tuple[str, int, str]
SPLIT_PARTS = ("train", "val", "test")

_IMAGE_PATH = re.compile(r"^(?P<folder>.+)/image_0(?P<cam>[0-3])/data/(?P<frame>\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)


def parse_split_line(line: str, source: str = "<split>", lineno: Optional[int] = None) -> Optional[SplitEntry]:
    """Parse one split line into ``(folder, frame_index, side)``; ``None`` for a blank line.

    Accepted forms:

    - ``<folder> <frame> <l|r>`` (monodepth2 / FeatDepth; KITTI odometry uses ``<seq> <frame> l``);
    - an image path ``<date>/<drive>/image_0X/data/<frame>.png`` possibly followed by further paths
      (packnet-sfm lists such as ``kitti_tiny.txt`` give the left image then its stereo partner);
      the first path is the target, ``image_02``/``image_00`` -> ``'l'``, ``image_03``/``image_01`` -> ``'r'``.

    Raises:
        DataError: anything else; the message names ``source`` and the line number.
    """
    where = f"{source}, line {lineno}" if lineno is not None else source
    tokens = line.split()
    if not tokens:
        return None
    match = _IMAGE_PATH.match(tokens[0].replace("\\", "/"))
    if match is not None:
        side = "l" if int(match["cam"]) % 2 == 0 else "r"
        return match["folder"], int(match["frame"]), side
    if len(tokens) != 3:
        raise DataError(f"{where}: expected '<folder> <frame> <l|r>', got {line.strip()[:80]!r}")
    folder, frame, side = tokens
    try:
        frame_index = int(frame)
    except ValueError:
        raise DataError(f"{where}: frame index {frame!r} is not an integer") from None
    if frame_index < 0:
        raise DataError(f"{where}: frame index {frame_index} is negative")
    if side not in ("l", "r"):
        raise DataError(f"{where}: side must be 'l' or 'r', got {side!r}")
    return folder, frame_index, side


def parse_split_lines(lines: Iterable[Union[str, Sequence]], source: str = "<split lines>") -> list[SplitEntry]:
    """Parse split lines (strings) or already-parsed ``(folder, frame, side)`` tuples."""
    entries: list[SplitEntry] = []
    for lineno, line in enumerate(lines, start=1):
        if isinstance(line, str):
            entry = parse_split_line(line, source, lineno)
            if entry is not None:
                entries.append(entry)
        else:
            entry = parse_split_line(" ".join(str(x) for x in line), source, lineno)
            if entry is None:
                raise DataError(f"{source}, entry {lineno}: empty entry")
            entries.append(entry)
    return entries


def read_split_file(path: PathLike) -> list[SplitEntry]:
    """Read a split file into ``[(folder, frame_index, side), ...]`` (blank lines ignored).

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataError: a malformed line; the message names the file and the line number.
    """
    path = Path(path)
    return parse_split_lines(_read_text(path, "split file").splitlines(), str(path))


def write_split_file(path: PathLike, entries: Iterable[SplitEntry], frame_digits: int = 10) -> None:
    """Write ``(folder, frame, side)`` entries as ``<folder> <frame> <side>`` lines (frame zero-padded)."""
    lines = [f"{folder} {int(frame):0{frame_digits}d} {side}" for folder, frame, side in entries]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def split_file_path(split_dir: PathLike, split: str, part: str) -> Path:
    """``<split_dir>/<split>/<part>_files.txt``, checked to exist.

    Raises:
        DataFileNotFoundError: naming the expected path.
    """
    path = Path(split_dir) / split / f"{part}_files.txt"
    if not path.is_file():
        available = sorted(p.name for p in (Path(split_dir) / split).glob("*_files*.txt")) if (Path(split_dir) / split).is_dir() else []
        raise DataFileNotFoundError(f"split file not found: {path} (files present: {available or 'none'})")
    return path


def find_split_files(split_dir: PathLike, split: str) -> dict[str, Path]:
    """The existing ``{train,val,test}_files.txt`` of ``<split_dir>/<split>/``, keyed by part.

    Raises:
        DataFileNotFoundError: the split folder does not exist or holds none of them.
    """
    folder = Path(split_dir) / split
    if not folder.is_dir():
        raise DataFileNotFoundError(f"split folder not found: {folder}")
    found = {part: folder / f"{part}_files.txt" for part in SPLIT_PARTS if (folder / f"{part}_files.txt").is_file()}
    if not found:
        raise DataFileNotFoundError(f"{folder}: none of {[f'{p}_files.txt' for p in SPLIT_PARTS]} found")
    return found
