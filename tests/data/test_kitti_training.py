"""A few training steps on the real KITTI raw sample (../shared/data/kitti_raw_tiny, read in place).

End to end through the KITTI raw loader: split files from a folder the test writes, calibrated K,
temporal neighbours and stereo partner, validation on projected-lidar GT, checkpoints; then the
checkpoint is evaluated with ``featdepth evaluate depth``'s library entry point.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from featdepth.config import load_config
from featdepth.training.checkpoints import load_checkpoint
from featdepth.training.trainer import run_training

pytestmark = pytest.mark.realdata

DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"


def _config(shared_data: Path, tmp_path: Path, out: str, extra=()):
    split = tmp_path / "splits" / "tiny"
    split.mkdir(parents=True, exist_ok=True)
    (split / "train_files.txt").write_text("".join(f"{DRIVE} {i} l\n" for i in range(1, 6)))
    (split / "val_files.txt").write_text(f"{DRIVE} 0 l\n{DRIVE} 6 l\n")
    return load_config(None, [
        "data.dataset=kitti_raw", f"data.path={shared_data / 'kitti_raw_tiny'}", f"data.split_dir={tmp_path / 'splits'}",
        "data.split=tiny", "data.height=64", "data.width=192", "data.num_workers=0", "model.depth_layers=18",
        "model.pose_layers=18", "model.feature_layers=18", "model.pose_input_size=null", "optim.batch_size=1",
        "optim.max_steps=3", "train.device=cpu", "train.progress=false", f"train.out_dir={tmp_path / out}",
        *extra,
    ])


def _collect():
    seen = []

    def on_step(step, result):
        seen.append((step, result.total, result.finite, dict(result.terms)))

    return seen, on_step


def test_baseline_steps_on_kitti_raw_tiny(shared_data, tmp_path):
    cfg = _config(shared_data, tmp_path, "baseline", ["train.stage=baseline", "data.frame_ids=[0,-1,1]"])
    seen, on_step = _collect()
    summary = run_training(cfg, on_step=on_step)
    assert summary["steps"] == 3 and summary["skipped_steps"] == 0
    assert [s for s, *_ in seen] == [1, 2, 3]
    assert all(finite and math.isfinite(total) and total > 0 for _, total, finite, _ in seen)
    assert all(math.isfinite(v) for *_, terms in seen for v in terms.values())
    ckpt = Path(summary["checkpoint"])
    assert ckpt.is_file()
    state = load_checkpoint(ckpt)
    assert state["stage"] == "baseline" and state["config"]["data"]["dataset"] == "kitti_raw"
    assert state["step"] == 3
    # validation ran on the projected-lidar GT of the val split
    assert math.isfinite(summary["val"]["abs_rel"]) and summary["val"]["abs_rel"] > 0


def test_two_stage_ms_steps_on_kitti_raw_tiny_and_evaluate(shared_data, tmp_path):
    from featdepth.tasks.evaluate import evaluate_depth_checkpoint

    cfg = _config(shared_data, tmp_path, "twostage", [
        "train.stage=depth", "train.run_feature_stage=true", "feature_stage.max_steps=1",
        "data.frame_ids=[0,-1,1,s]", "data.stereo_baseline=0.015",
    ])
    seen, on_step = _collect()
    summary = run_training(cfg, on_step=on_step)
    assert summary["featurenet"]["steps"] == 1 and Path(summary["featurenet"]["checkpoint"]).is_file()
    assert summary["stage"] == "depth" and summary["steps"] == 3
    assert len(seen) == 4 and all(finite and math.isfinite(total) for _, total, finite, _ in seen)
    depth_terms = seen[-1][3]
    assert any("feature" in k for k in depth_terms), depth_terms  # the feature-metric term is active
    ckpt = Path(summary["checkpoint"])
    assert ckpt.is_file() and load_checkpoint(ckpt)["stage"] == "depth"
    # the trained checkpoint evaluates (stereo factor 36 from the 0.015 baseline)
    split = tmp_path / "splits" / "tiny" / "val_files.txt"
    ev = evaluate_depth_checkpoint(ckpt, shared_data / "kitti_raw_tiny", split_file=split, scaling="stereo")
    assert ev.result.num_images == 2 and ev.result.scaling == "fixed x36"
    assert all(math.isfinite(v) for v in ev.result.metrics.values())
    assert torch.get_default_dtype() == torch.float32
