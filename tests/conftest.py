"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_onnx_cache(tmp_path_factory):
    """The onnxruntime backend caches exported graphs under ``$FEATDEPTH_CACHE``: keep the tests' in a temporary
    folder, never in the user's ~/.cache. Subprocesses inherit it through the environment."""
    before = os.environ.get("FEATDEPTH_CACHE")
    os.environ["FEATDEPTH_CACHE"] = str(tmp_path_factory.mktemp("featdepth_cache"))
    yield
    if before is None:
        os.environ.pop("FEATDEPTH_CACHE", None)
    else:
        os.environ["FEATDEPTH_CACHE"] = before


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a test module (use with ``pytestmark = pytest.mark.usefixtures("single_thread")``).

    These modules run tiny networks and check behaviour, not speed; on a busy shared CPU, OpenMP threads
    waiting for each other at barriers made such tests several times slower (measured: 3x the CPU time
    with 2 threads).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    """Path of the real KITTI samples beside the checkout; skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real KITTI samples not found at {SHARED_DATA} (they live beside the checkout, not in it)")
    return SHARED_DATA
