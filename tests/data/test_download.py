"""``featdepth data kitti-download``: resume, retries, unpacking, errors, against a loopback HTTP server.

All traffic goes to a ``http.server`` on 127.0.0.1 started by the test (proxies disabled); nothing
leaves the machine.
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from featdepth.cli import main
from featdepth.data.download import (
    DownloadError,
    archive_name,
    download_archives,
    download_file,
    read_archive_list,
    unpack_zip,
)

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


DRIVE_MEMBERS = {
    f"{DRIVE}/image_02/data/0000000000.png": bytes(range(256)) * 40,
    f"{DRIVE}/image_03/data/0000000000.png": bytes(reversed(range(256))) * 40,
    f"{DRIVE}/velodyne_points/data/0000000000.bin": b"\x00\x01\x02\x03" * 500,
}
CALIB_MEMBERS = {"2011_09_26/calib_cam_to_cam.txt": b"calib_time: 09-Jan-2012 13:57:47\n"}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.command, self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        if srv.fail_next > 0 and not head:
            srv.fail_next -= 1
            self.send_error(503, "Service Unavailable")
            return
        start = 0
        if rng and srv.honour_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            assert m, rng
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/zip")
        self.end_headers()
        if head:
            return
        if srv.truncate_next > 0:  # announce the full length, send half, hang up
            srv.truncate_next -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(monkeypatch):
    """A loopback HTTP server with Range support; ``server.url(path)`` builds URLs."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {
        "/raw_data/2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip": _zip_bytes(DRIVE_MEMBERS),
        "/raw_data/2011_09_26_calib.zip": _zip_bytes(CALIB_MEMBERS),
    }
    srv.requests = []
    srv.honour_range = True
    srv.fail_next = 0
    srv.truncate_next = 0
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


DRIVE_PATH = "/raw_data/2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip"


def _write_list(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "archives.txt"
    path.write_text("# KITTI raw archives\n\n" + "\n".join(lines) + "\n")
    return path


def test_full_download_and_unpack_via_cli(server, tmp_path, capsys):
    lst = _write_list(tmp_path, [server.url("/raw_data/2011_09_26_calib.zip"), server.url(DRIVE_PATH)])
    out = tmp_path / "kitti_raw"
    rc = main(["data", "kitti-download", "--out", str(out), "--list", str(lst), "--unpack", "--quiet"])
    assert rc == 0
    # the KITTI raw layout: <date>/calib_*.txt and <date>/<drive>/image_0X/data/...
    assert (out / "2011_09_26" / "calib_cam_to_cam.txt").read_bytes() == CALIB_MEMBERS["2011_09_26/calib_cam_to_cam.txt"]
    for name, data in DRIVE_MEMBERS.items():
        assert (out / name).read_bytes() == data
    assert (out / "2011_09_26_drive_0001_sync.zip").read_bytes() == server.files[DRIVE_PATH]
    assert not list(out.glob("*.part")) and not list(out.rglob(".*.tmp"))
    assert "2 archive(s) complete" in capsys.readouterr().out
    # a rerun fetches nothing and does not unpack again
    n_requests = len(server.requests)
    (out / DRIVE / "image_02" / "data" / "0000000000.png").write_bytes(b"edited")
    assert main(["data", "kitti-download", "--out", str(out), "--list", str(lst), "--unpack", "--quiet"]) == 0
    assert len(server.requests) == n_requests
    assert (out / DRIVE / "image_02" / "data" / "0000000000.png").read_bytes() == b"edited"


def test_resume_from_partial_file(server, tmp_path):
    data = server.files[DRIVE_PATH]
    dest = tmp_path / "drive.zip"
    part = tmp_path / "drive.zip.part"
    part.write_bytes(data[:1000])  # an interrupted earlier run
    result = download_file(server.url(DRIVE_PATH), dest, progress=False, backoff=0)
    assert result.downloaded and result.resumed_from == 1000 and result.size == len(data)
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("GET", DRIVE_PATH, "bytes=1000-")


def test_retry_after_truncated_response_resumes(server, tmp_path):
    data = server.files[DRIVE_PATH]
    server.truncate_next = 1  # first answer stops half-way
    server.fail_next = 0
    dest = tmp_path / "drive.zip"
    result = download_file(server.url(DRIVE_PATH), dest, progress=False, backoff=0, retries=2)
    assert dest.read_bytes() == data
    gets = [r for r in server.requests if r[0] == "GET"]
    assert len(gets) == 2 and gets[0][2] is None
    assert gets[1][2] == f"bytes={len(data) // 2}-"  # the retry asked only for the missing bytes
    assert result.size == len(data)


def test_retry_after_server_error_and_give_up(server, tmp_path):
    server.fail_next = 1
    dest = tmp_path / "drive.zip"
    download_file(server.url(DRIVE_PATH), dest, progress=False, backoff=0, retries=1)
    assert dest.read_bytes() == server.files[DRIVE_PATH]
    server.fail_next = 10
    with pytest.raises(DownloadError, match=r"giving up after 2 attempts.*503"):
        download_file(server.url(DRIVE_PATH), tmp_path / "again.zip", progress=False, backoff=0, retries=1)


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.honour_range = False
    data = server.files[DRIVE_PATH]
    dest = tmp_path / "drive.zip"
    (tmp_path / "drive.zip.part").write_bytes(b"garbage that must not stay at the front")
    download_file(server.url(DRIVE_PATH), dest, progress=False, backoff=0)
    assert dest.read_bytes() == data


def test_complete_part_file_is_finished_without_body(server, tmp_path):
    data = server.files[DRIVE_PATH]
    dest = tmp_path / "drive.zip"
    (tmp_path / "drive.zip.part").write_bytes(data)  # killed between the last byte and the rename
    download_file(server.url(DRIVE_PATH), dest, progress=False, backoff=0)
    assert dest.read_bytes() == data


def test_404_names_the_url(server, tmp_path, capsys):
    url = server.url("/raw_data/no_such_drive_sync.zip")
    with pytest.raises(DownloadError, match=re.escape(url) + ".*404"):
        download_file(url, tmp_path / "x.zip", progress=False, backoff=0)
    assert [r for r in server.requests if r[1] == "/raw_data/no_such_drive_sync.zip"] == [("GET", "/raw_data/no_such_drive_sync.zip", None)]  # not retried
    lst = _write_list(tmp_path, [url])
    rc = main(["data", "kitti-download", "--out", str(tmp_path / "out"), "--list", str(lst), "--quiet"])
    assert rc != 0
    err = capsys.readouterr().err
    assert url in err and "404" in err


def test_dry_run_relative_names_and_only(server, tmp_path, capsys):
    base = server.url("/raw_data/")
    lst = _write_list(tmp_path, ["2011_09_26_calib.zip", "2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip"])
    assert read_archive_list(lst, base_url=base) == [server.url("/raw_data/2011_09_26_calib.zip"), server.url(DRIVE_PATH)]
    with pytest.raises(ValueError, match=r"archives.txt, line 3.*--base-url"):
        read_archive_list(lst)
    out = tmp_path / "out"
    rc = main(["data", "kitti-download", "--out", str(out), "--list", str(lst), "--base-url", base, "--dry-run"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "2011_09_26_calib.zip" in text and "missing" in text and "nothing downloaded" in text
    assert server.requests == [] and not out.exists()
    # --only 1 fetches just the first archive
    results = download_archives(read_archive_list(lst, base_url=base), out, only=1, progress=False, log=lambda s: None)
    assert [r.path.name for r in results] == ["2011_09_26_calib.zip"] and (out / "2011_09_26_calib.zip").is_file()
    assert not (out / "2011_09_26_drive_0001_sync.zip").exists()


def test_missing_list_explains_where_to_get_it(tmp_path, capsys):
    rc = main(["data", "kitti-download", "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "kitti_archives_to_download.txt" in err and "--list" in err


def test_unpack_refuses_unsafe_members_and_non_zip(tmp_path):
    evil = tmp_path / "evil.zip"
    evil.write_bytes(_zip_bytes({"../outside.txt": b"x"}))
    with pytest.raises(DownloadError, match="unsafe member"):
        unpack_zip(evil, tmp_path / "root")
    assert not (tmp_path / "outside.txt").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="bad.zip: not a zip archive"):
        unpack_zip(bad, tmp_path / "root")


def test_archive_name():
    assert archive_name("https://host/raw_data/2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip") == "2011_09_26_drive_0001_sync.zip"
    with pytest.raises(ValueError, match="file name"):
        archive_name("https://host/")
