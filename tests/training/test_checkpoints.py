"""Checkpoint manager: atomic files, manifest digests, pruning, best by metric, verification."""

from __future__ import annotations

import os

import pytest
import torch

from featdepth.training.checkpoints import CheckpointError, CheckpointManager, load_checkpoint
from featdepth.utils.files import atomic_save, file_sha256


def state(v: float) -> dict:
    return {"model": {"w": torch.full((4,), v)}, "step": int(v)}


def test_keeps_newest_and_best(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    for step, metric in [(1, 0.5), (2, 0.2), (3, 0.4), (4, 0.3)]:
        mgr.save(state(step), step=step, epoch=0, metric=metric)
    files = sorted(p.name for p in tmp_path.glob("step_*.pt"))
    assert files == ["step_00000003.pt", "step_00000004.pt"]
    best = load_checkpoint(tmp_path / "best.pt", mgr.read_manifest()["best"]["sha256"])
    assert best["step"] == 2  # step 2 had the lowest metric and survives its file's pruning
    assert mgr.read_manifest()["best"]["metric"] == 0.2
    assert not list(tmp_path.glob(".*.tmp"))


def test_best_is_not_a_second_copy(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=3)
    mgr.save(state(1), step=1, epoch=0, metric=0.1)
    assert os.stat(tmp_path / "best.pt").st_ino == os.stat(tmp_path / "step_00000001.pt").st_ino


def test_corrupt_newest_falls_back_to_previous(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=3)
    mgr.save(state(1), step=1, epoch=0)
    mgr.save(state(2), step=2, epoch=0)
    newest = tmp_path / "step_00000002.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="step_00000002.pt.*corrupt"):
        load_checkpoint(newest, mgr.records()[-1]["sha256"])
    warnings = []
    loaded, path = mgr.load_latest_good(warn=warnings.append)
    assert path.name == "step_00000001.pt" and loaded["step"] == 1
    assert warnings and "step_00000002.pt" in warnings[0]


def test_unreadable_and_missing_files_name_the_path(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_atomic_save_digest_matches_file(tmp_path):
    digest = atomic_save(state(3), tmp_path / "x.pt")
    assert digest == file_sha256(tmp_path / "x.pt")
