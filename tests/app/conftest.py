"""Fixtures of the app tests: a tiny random checkpoint, the example frames, and the app served in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO_ROOT
from tests.inference.test_model import make_tiny_checkpoint

HAS_GRADIO = all(importlib.util.find_spec(m) is not None for m in ("gradio", "gradio_client", "trimesh"))
NO_GRADIO = 'gradio, gradio_client or trimesh is not installed (pip install "featdepth[app]" gradio_client, or ".[dev]")'
SERVER_START_S = 150.0


@pytest.fixture(scope="session")
def app_ckpt(tmp_path_factory) -> Path:
    """Random ResNet-18 networks at 192x64 with the cheap monodepth2 decoder, and a PoseNet."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("app_ckpt") / "tiny.pt", decoder="monodepth2")


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app_examples")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(app_ckpt, tmp_path_factory):
    """``featdepth app`` on a free localhost port (``--max-frames 12``), its own TMPDIR; stopped at the end."""
    if not HAS_GRADIO:
        pytest.skip(NO_GRADIO)
    port = free_port()
    work = tmp_path_factory.mktemp("app_server")
    (work / "tmp").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(work / "tmp"),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    log_path = work / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "featdepth", "app", "--checkpoint", str(app_ckpt), "--port", str(port),
         "--device", "cpu", "--max-frames", "12"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"featdepth app exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"featdepth app did not serve {url} within {SERVER_START_S:.0f} s:\n"
                            f"{log_path.read_text(errors='replace')}")
            time.sleep(0.5)
        yield SimpleNamespace(url=url, port=port, proc=proc, log=log_path, work=work)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
