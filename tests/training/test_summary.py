"""The start-of-training summary (`featdepth train`) and the ImageNet-weights behaviour of the own_video preset."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featdepth.training.trainer as trainer_mod
from featdepth.cli import main
from featdepth.config import load_config
from featdepth.models.encoders import ResnetEncoder, imagenet_weights_file
from featdepth.training.summary import imagenet_weights_status, training_summary


def _sequence(root: Path, name: str, n: int = 5) -> None:
    images = root / name / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(images / f"{i:06d}.png")
    (root / name / "intrinsics.txt").write_text("60 60 48 32\n")


def _cfg(root: Path, *extra: str):
    return load_config("own_video", [f"data.path={root}", "data.height=64", "data.width=96", "train.out_dir=runs/x",
                                     "model.depth_weights=null", "model.pose_weights=null", "model.feature_weights=null",
                                     *extra])


def test_one_sequence_says_there_is_no_validation(tmp_path):
    _sequence(tmp_path / "data", "drive_a")
    text = training_summary(_cfg(tmp_path / "data"))
    assert "output folder: runs/x" in text and "featurenet" in text  # the two-stage folders
    assert "sequences: 1 found" in text and "training on drive_a" in text
    assert "3 samples indexed, 2 skipped" in text  # first and last frame lack a neighbour
    assert "only one sequence" in text and "no best.pt" in text and "data.val_sequences" in text


def test_held_out_sequence_is_validated(tmp_path):
    _sequence(tmp_path / "data", "drive_a")
    _sequence(tmp_path / "data", "drive_b", n=4)
    text = training_summary(_cfg(tmp_path / "data", "data.val_sequences=[drive_b]"))
    assert "training on drive_a; validating on drive_b" in text
    assert "validation: after each epoch" in text and "no best.pt" not in text
    assert text.count("samples indexed") == 2  # the training and the validation datasets


def test_imagenet_weights_found_or_not(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cfg = load_config("own_video")
    status = imagenet_weights_status(cfg)
    assert [s["key"] for s in status] == ["model.depth_weights", "model.pose_weights", "model.feature_weights"]
    assert not any(s["found"] for s in status)
    f = imagenet_weights_file(18)
    assert f.parent == tmp_path / "hub" / "checkpoints" and f.name.startswith("resnet18-")
    f.parent.mkdir(parents=True)
    f.write_bytes(b"")
    assert all(s["found"] for s in imagenet_weights_status(cfg))


def test_offline_imagenet_is_a_clear_error(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(OSError) as info:
        ResnetEncoder(18, weights="imagenet")
    text = str(info.value)
    assert "not on this machine" in text and str(tmp_path / "hub" / "checkpoints") in text and "null" in text


def test_train_prints_the_summary_first(tmp_path, monkeypatch, capsys):
    _sequence(tmp_path / "data", "drive_a")
    monkeypatch.setattr(trainer_mod, "run_training", lambda cfg, **kw: {"checkpoint": None})
    rc = main(["train", "--config", "own_video", "--set", f"data.path={tmp_path / 'data'}", "--set", "data.height=64",
               "--set", "data.width=96", "--set", "model.depth_weights=null", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"[featdepth] output folder: {tmp_path / 'run'}" in err and "[featdepth] validation: none" in err
    assert "ImageNet weights for model.pose_weights" in err and "ImageNet weights for model.depth_weights" not in err
