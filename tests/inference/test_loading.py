"""The one loader: every checkpoint kind becomes the one model type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import featdepth
from featdepth.inference.loading import load
from featdepth.inference.model import Model, ModelLoadError
from featdepth.utils.files import atomic_save
from tests.inference.test_model import make_tiny_checkpoint
from tests.inference.test_official import monodepth2_files, official_mono_fm_state


def _disparity(model: Model, seed: int = 0) -> torch.Tensor:
    x = torch.rand(1, 3, model.height, model.width, generator=torch.Generator().manual_seed(seed))
    with model.evaluating():
        return model.disparity(x)


def test_featdepth_checkpoint_and_weights_only_export_give_the_same_model(tmp_path):
    full = make_tiny_checkpoint(tmp_path / "full.pt", decoder="monodepth2")
    state = torch.load(full, weights_only=False)
    state["optimizer"] = {"state": {}, "param_groups": []}  # what a training checkpoint also holds
    atomic_save(state, full)
    slim = tmp_path / "slim.pt"
    atomic_save({k: state[k] for k in ("model", "config", "stage")}, slim)
    a, b = load(full, device="cpu"), featdepth.load(slim, device="cpu")
    assert isinstance(a, Model) and isinstance(b, Model) and a.stage == b.stage == "depth"
    assert torch.equal(_disparity(a), _disparity(b))
    assert a.has_pose and b.has_pose


def test_official_featdepth_pth(tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"state_dict": official_mono_fm_state(), "meta": {}}, path)
    model = load(path, device="cpu", official={"height": 64, "width": 192})
    assert isinstance(model, Model) and model.conversion_report is not None and model.conversion_report.ok
    assert model.config.model.depth_layers == 18 and _disparity(model).shape == (1, 1, 32, 96)


def test_monodepth2_folder(tmp_path):
    monodepth2_files(tmp_path / "md2")
    model = load(tmp_path / "md2", device="cpu")
    assert isinstance(model, Model) and model.stage == "baseline" and model.has_pose
    assert _disparity(model).shape == (1, 1, 64, 192)


def test_from_networks_shares_modules_and_restores_modes(tmp_path):
    model = load(make_tiny_checkpoint(tmp_path / "m.pt", decoder="monodepth2"), device="cpu", backend="eager")
    shared = Model.from_networks(model.depth_net, model.pose_net, model.config, stage=model.stage)
    assert shared.depth_net is model.depth_net
    model.depth_net.train()
    with shared.evaluating():
        assert not model.depth_net.training
    assert model.depth_net.training  # restored
    model.depth_net.eval()
    np.testing.assert_array_equal(_disparity(shared).numpy(), _disparity(model).numpy())


def test_unknown_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ModelLoadError, match="other.pt is not a featdepth checkpoint"):
        load(path, device="cpu")
