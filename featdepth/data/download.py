"""Download the KITTI raw archives named in a list file, with resume, retries and unpacking.

``featdepth data kitti-download --out DIR --list kitti_archives_to_download.txt [--unpack]``

The list file is the user's: one archive per line, either a full URL (the format of monodepth2's
``splits/kitti_archives_to_download.txt``) or a name relative to ``--base-url``. Blank lines and lines
starting with ``#`` are ignored. The project ships no copy of the list.

Each archive is downloaded to ``DIR/<name>.part`` and renamed to ``DIR/<name>`` once its size matches
the server's ``Content-Length`` (or the total of ``Content-Range``). An interrupted download resumes
from the size of the ``.part`` file with an HTTP ``Range: bytes=<size>-`` request; a server that
ignores ranges (status 200) restarts the file from zero. Network errors, time-outs, 5xx answers and
short reads are retried with a growing pause; other HTTP errors (404, 403, ...) stop at once with an
error naming the URL.

Unpacking (``.zip`` only, :mod:`zipfile`) extracts into ``DIR`` itself: the KITTI raw archives hold
``<date>/<date>_drive_XXXX_sync/...`` and ``<date>/calib_*.txt``, so ``DIR`` becomes the KITTI raw
root expected by :class:`featdepth.data.KittiRawDataset`. A marker ``DIR/.<name>.unpacked`` records a
finished extraction so that a rerun skips it. Members with absolute paths or ``..`` are refused.

Standard library only (``urllib``); nothing is downloaded unless the user runs the command.
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Sequence, TextIO, Union
from featdepth.utils.files import PathLike

__all__ = [
    "DownloadError",
    "ArchiveResult",
    "read_archive_list",
    "archive_name",
    "download_file",
    "unpack_zip",
    "download_archives",
]


#: HTTP statuses worth retrying (besides network errors and time-outs).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class DownloadError(RuntimeError):
    """A download or unpacking failure; the message names the URL or the file."""


class _Retryable(Exception):
    """Internal: a failure worth another attempt."""


@dataclass
class ArchiveResult:
    """What happened to one archive."""

    url: str
    path: Path
    size: Optional[int] = None  # bytes on disk (None in a dry run)
    downloaded: bool = False  # False: already complete on disk (or dry run)
    resumed_from: int = 0  # bytes of a .part file that were kept
    unpacked: bool = False
    dry_run: bool = False


# --------------------------------------------------------------------------------------------------
# The list file
# --------------------------------------------------------------------------------------------------


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "ftp", "file")


def read_archive_list(path: PathLike, base_url: Optional[str] = None) -> list[str]:
    """Read an archive list: one full URL, or one name relative to ``base_url``, per line.

    Args:
        path: the list file (e.g. monodepth2's ``kitti_archives_to_download.txt``).
        base_url: prefix for relative names (``https://host/raw_data/`` + ``2011_09_26_calib.zip``).

    Returns:
        the full URLs, in file order, duplicates removed.

    Raises:
        FileNotFoundError: missing list file. ValueError: a relative name without ``base_url``, or a
        list without any entry (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"archive list not found: {path}")
    urls: list[str] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line.split()) != 1:
            raise ValueError(f"{path}, line {lineno}: expected one URL or archive name, got {line[:80]!r}")
        if _is_url(line):
            url = line
        elif base_url:
            url = urllib.parse.urljoin(base_url if base_url.endswith("/") else base_url + "/", line.lstrip("/"))
        else:
            raise ValueError(f"{path}, line {lineno}: {line!r} is not a URL; pass --base-url to resolve relative names")
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ValueError(f"{path}: the archive list holds no entry")
    return urls


def archive_name(url: str) -> str:
    """The file name of an archive URL (last path component, URL-decoded).

    Raises:
        ValueError: the URL has no file name, or a name that is unsafe on disk.
    """
    name = urllib.parse.unquote(PurePosixPath(urllib.parse.urlparse(url).path).name)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"cannot derive a file name from the URL {url!r}")
    return name


# --------------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------------


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class _Progress:
    """A one-line text progress bar on a stream (``\\r`` updates, at most ~5 per second)."""

    def __init__(self, label: str, total: Optional[int], start: int, stream: Optional[TextIO]) -> None:
        self.label, self.total, self.done, self.stream = label, total, start, stream
        self.t0 = time.monotonic()
        self.start = start
        self.last = 0.0

    def update(self, n: int, force: bool = False) -> None:
        self.done += n
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        rate = (self.done - self.start) / max(now - self.t0, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 24)
            text = f"{self.label} [{bar:<24}] {frac * 100:5.1f}% {_fmt_bytes(self.done)}/{_fmt_bytes(self.total)} {_fmt_bytes(rate)}/s"
        else:
            text = f"{self.label} {_fmt_bytes(self.done)} {_fmt_bytes(rate)}/s"
        self.stream.write("\r" + text)
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.update(0, force=True)
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------------


def _total_from_headers(status: int, headers, offset: int, url: str) -> tuple[Optional[int], int]:
    """``(total size or None, start offset of the body)`` from a 200/206 response."""
    if status == 206:
        cr = headers.get("Content-Range", "")
        # "bytes START-END/TOTAL" (TOTAL may be "*")
        try:
            unit, rest = cr.split(" ", 1)
            span, total_text = rest.split("/", 1)
            start = int(span.split("-", 1)[0])
            total = None if total_text.strip() == "*" else int(total_text)
        except ValueError as exc:
            raise DownloadError(f"{url}: malformed Content-Range header {cr!r}") from exc
        if unit.strip().lower() != "bytes":
            raise DownloadError(f"{url}: unsupported Content-Range unit {cr!r}")
        if start != offset:
            raise DownloadError(f"{url}: asked for bytes from {offset} but the server sent from {start}")
        return total, start
    length = headers.get("Content-Length")
    return (int(length) if length is not None and length.isdigit() else None), 0


def _remote_size(url: str, timeout: float) -> Optional[int]:
    """``Content-Length`` of a HEAD request (None when unknown or when HEAD fails)."""
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None and length.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _attempt(url: str, part: Path, timeout: float, chunk_size: int, progress_stream: Optional[TextIO],
             label: str) -> tuple[Optional[int], int]:
    """One download attempt appending to ``part``. Returns ``(expected total or None, resumed_from)``."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "featdepth-kitti-download", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing left to send: the .part may already be complete (or longer than the file).
            total = _remote_size(url, timeout)
            if total is not None and total == offset:
                return total, offset
            part.unlink()
            raise _Retryable(f"{url}: range request refused (HTTP 416) for a {offset}-byte partial file; restarting") from exc
        if exc.code in RETRY_STATUSES:
            raise _Retryable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"{url}: {reason}") from exc
    with resp:
        status = resp.status or 200  # file:// responses carry no status
        if status not in (200, 206):
            raise DownloadError(f"{url}: unexpected HTTP status {status}")
        total, start = _total_from_headers(status, resp.headers, offset, url)
        mode = "ab" if status == 206 else "wb"  # 200: the server ignored the range, start over
        resumed = start
        bar = _Progress(label, total, start, progress_stream)
        try:
            with part.open(mode) as fh:
                while True:
                    try:
                        chunk = resp.read(chunk_size)
                    except (http.client.HTTPException, TimeoutError, ConnectionError, OSError) as exc:
                        raise _Retryable(f"{url}: connection lost after {part.stat().st_size} bytes ({exc})") from exc
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    return total, resumed


def download_file(
    url: str,
    dest: PathLike,
    *,
    retries: int = 5,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    backoff: float = 2.0,
    progress: Union[bool, TextIO] = True,
    sleep: Callable[[float], None] = time.sleep,
) -> ArchiveResult:
    """Download ``url`` to ``dest`` with resume (``dest.part`` + HTTP Range) and retries.

    Args:
        url: the file to fetch (http, https or file URL).
        dest: final path; an existing ``dest`` is taken as complete and not fetched again.
        retries: further attempts after the first for retryable failures (network errors, time-outs,
            5xx, 408, 429, a body shorter than announced). Each attempt resumes where the previous stopped.
        timeout: socket time-out in seconds.
        backoff: pause before retry ``k`` is ``backoff * k`` seconds.
        progress: ``True`` (bar on stderr), ``False`` (silent) or a text stream.

    Returns:
        an :class:`ArchiveResult` (``downloaded=False`` when ``dest`` was already there).

    Raises:
        DownloadError: a non-retryable HTTP error (404, 403, ...), a size mismatch that persists,
            or retries exhausted; the message names the URL.
    """
    dest = Path(dest)
    if dest.is_file():
        return ArchiveResult(url, dest, size=dest.stat().st_size, downloaded=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    stream: Optional[TextIO] = sys.stderr if progress is True else (None if progress is False else progress)
    first_offset = part.stat().st_size if part.is_file() else 0
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * attempt)
        try:
            total, _ = _attempt(url, part, timeout, chunk_size, stream, dest.name)
        except _Retryable as exc:
            last_error = str(exc)
            if stream is not None:
                stream.write(f"[download] {exc}; retry {attempt + 1}/{retries}\n" if attempt < retries else f"[download] {exc}\n")
            continue
        size = part.stat().st_size if part.is_file() else 0
        if total is not None and size != total:
            if size > total:
                part.unlink()
                last_error = f"{url}: partial file larger than the announced size ({size} > {total} bytes); restarting"
            else:
                last_error = f"{url}: incomplete download ({size} of {total} bytes)"
            if stream is not None:
                stream.write(f"[download] {last_error}\n")
            continue
        os.replace(part, dest)
        return ArchiveResult(url, dest, size=size, downloaded=True, resumed_from=first_offset)
    raise DownloadError(f"{url}: giving up after {retries + 1} attempts ({last_error}); "
                        f"the partial file {part} is kept and the next run resumes from it")


# --------------------------------------------------------------------------------------------------
# Unpacking
# --------------------------------------------------------------------------------------------------


def _safe_target(root: Path, member: str, archive: Path) -> Path:
    p = PurePosixPath(member.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DownloadError(f"{archive}: refusing to extract the unsafe member {member!r}")
    return root.joinpath(*p.parts)


def unpack_zip(archive: PathLike, out_dir: PathLike, *, force: bool = False) -> bool:
    """Extract a ``.zip`` into ``out_dir`` (KITTI archives hold ``<date>/...``, so ``out_dir`` is the raw root).

    Skips the work when the marker ``out_dir/.<archive name>.unpacked`` exists (unless ``force``).
    Files are written through a temporary name and renamed, so an interrupted run never leaves a
    truncated image under its final name.

    Returns:
        ``True`` if it extracted, ``False`` if skipped.

    Raises:
        DownloadError: not a zip archive, a corrupt archive, or an unsafe member path (names the file).
    """
    archive, out_dir = Path(archive), Path(out_dir)
    marker = out_dir / f".{archive.name}.unpacked"
    if marker.is_file() and not force:
        return False
    if not zipfile.is_zipfile(archive):
        raise DownloadError(f"{archive}: not a zip archive")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DownloadError(f"{archive}: corrupt member {bad!r} (CRC mismatch); delete the file and download again")
            for info in zf.infolist():
                target = _safe_target(out_dir, info.filename, archive)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp")
                with zf.open(info) as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, target)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: corrupt zip archive ({exc})") from exc
    marker.write_text("ok\n")
    return True


# --------------------------------------------------------------------------------------------------
# The whole list
# --------------------------------------------------------------------------------------------------


def download_archives(
    urls: Sequence[str],
    out_dir: PathLike,
    *,
    only: Optional[int] = None,
    unpack: bool = False,
    remove_archives: bool = False,
    dry_run: bool = False,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: Union[bool, TextIO] = True,
    log: Optional[Callable[[str], None]] = None,
) -> list[ArchiveResult]:
    """Download (and optionally unpack) the archives ``urls`` into ``out_dir``.

    Args:
        only: process the first ``only`` archives only (``None``: all).
        unpack: extract ``.zip`` archives into ``out_dir`` after downloading them.
        remove_archives: delete each archive after a successful extraction.
        dry_run: list the URLs and destinations (and whether they are complete or partial), fetch nothing.
        log: receives one line per archive (default: print to stdout).

    Returns:
        one :class:`ArchiveResult` per processed archive.
    """
    out_dir = Path(out_dir)
    say = log if log is not None else print
    if only is not None:
        if only < 0:
            raise ValueError(f"only must be >= 0, got {only}")
        urls = list(urls)[:only]
    results: list[ArchiveResult] = []
    for k, url in enumerate(urls, start=1):
        dest = out_dir / archive_name(url)
        head = f"[{k}/{len(urls)}]"
        if dry_run:
            part = dest.with_name(dest.name + ".part")
            state = "complete" if dest.is_file() else (f"partial {part.stat().st_size} bytes" if part.is_file() else "missing")
            say(f"{head} {url} -> {dest} ({state})")
            results.append(ArchiveResult(url, dest, size=dest.stat().st_size if dest.is_file() else None, dry_run=True))
            continue
        marker = out_dir / f".{dest.name}.unpacked"
        if unpack and marker.is_file() and not dest.is_file():
            say(f"{head} {dest.name}: already unpacked")
            results.append(ArchiveResult(url, dest, unpacked=False))
            continue
        result = download_file(url, dest, retries=retries, timeout=timeout, backoff=backoff, progress=progress)
        what = "downloaded" if result.downloaded else "already complete"
        if result.resumed_from:
            what += f" (resumed from {result.resumed_from} bytes)"
        say(f"{head} {dest.name}: {what}, {result.size} bytes")
        if unpack:
            if dest.suffix.lower() == ".zip":
                result.unpacked = unpack_zip(dest, out_dir)
                say(f"{head} {dest.name}: {'unpacked into ' + str(out_dir) if result.unpacked else 'already unpacked'}")
                if remove_archives:
                    dest.unlink()
            else:
                say(f"{head} {dest.name}: not a .zip, left packed")
        results.append(result)
    return results
