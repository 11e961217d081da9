"""Online refinement (featdepth.training.refinement) on a tiny synthetic folder dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from featdepth.config import config_to_dict, load_config
from featdepth.data import FolderDataset
from featdepth.data.synthetic import generate_dataset
from featdepth.tasks.evaluate import RefineOptions, evaluate_depth_checkpoint
from featdepth.training.refinement import (
    predict_scaled_disparity,
    refine_per_sample,
    refine_whole_split,
    refinement_label,
)
from featdepth.training.system import FeatDepthSystem, load_system

H, W = 64, 192
TINY = [
    f"data.height={H}", f"data.width={W}", "model.depth_layers=18", "model.pose_layers=18", "model.feature_layers=18",
    "model.pose_input_size=null", "data.frame_ids=[0,-1,1]", "optim.lr=1e-3", "train.device=cpu",
]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_sequences=1, seed=3, num_frames=5, height=H, width=W, stereo=False)
    return root


def _system(stage: str = "baseline") -> FeatDepthSystem:
    cfg = load_config(None, TINY + [f"train.stage={stage}"])
    torch.manual_seed(0)
    return FeatDepthSystem(cfg, stage=stage)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_state(module: torch.nn.Module, snap: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    assert state.keys() == snap.keys()
    for k, v in state.items():
        assert torch.equal(v, snap[k]), f"{k} changed"


def test_per_sample_changes_predictions_restores_weights_and_is_labelled(synth_root):
    system = _system()
    system.train()  # the caller's mode must come back too
    train_ds = FolderDataset(synth_root, [0, -1, 1], H, W)  # frames 1..3 have both neighbours
    eval_ds = FolderDataset(synth_root, [0], H, W)  # frames 0..4
    assert len(train_ds) == 3 and len(eval_ds) == 5
    images = torch.stack([eval_ds[i]["color"][0] for i in range(5)])
    before = predict_scaled_disparity(system, images)
    snap = _snapshot(system)

    losses_seen = []
    res = refine_per_sample(system, train_ds, eval_dataset=eval_ds, steps=2, on_sample=lambda k, l: losses_seen.append(l))

    _assert_same_state(system, snap)  # parameters and BatchNorm buffers restored
    assert system.training
    np.testing.assert_array_equal(predict_scaled_disparity(system, images), before)
    assert res.protocol == "per-sample" and "per-sample" in res.label and "2 iterations" in res.label
    assert res.disparities.shape == before.shape and res.num_refined == 3
    assert [frame for _, frame in res.unrefined] == [0, 4]  # no neighbour: predicted as is
    for i in (0, 4):
        np.testing.assert_allclose(res.disparities[i], before[i], rtol=1e-6)
    for i in (1, 2, 3):
        assert np.abs(res.disparities[i] - before[i]).max() > 1e-4, f"frame {i} not refined"
    assert len(losses_seen) == 3 and all(len(l) == 2 and all(math.isfinite(x) for x in l) for l in losses_seen)
    d = res.as_dict()
    assert d["protocol"] == "per-sample" and d["num_unrefined"] == 2 and json.dumps(d)


def test_per_sample_restores_weights_on_error(synth_root):
    system = _system()
    snap = _snapshot(system)

    class Broken(torch.utils.data.Dataset):
        def __init__(self):
            self.inner = FolderDataset(synth_root, [0, -1, 1], H, W)
            self.calls = 0

        def __len__(self):
            return 2

        def __getitem__(self, i):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("disk vanished")
            return self.inner[i]

    with pytest.raises(RuntimeError, match="disk vanished"):
        refine_per_sample(system, Broken(), steps=1)
    _assert_same_state(system, snap)
    with pytest.raises(ValueError, match="steps"):
        refine_per_sample(system, Broken(), steps=0)
    with pytest.raises(ValueError, match="FeatureNet"):
        refine_per_sample(_system("featurenet"), Broken(), steps=1)


def test_whole_split_trains_in_place_and_is_labelled(synth_root):
    system = _system()
    snap = _snapshot(system)
    ds = FolderDataset(synth_root, [0, -1, 1], H, W, is_train=True)
    res = refine_whole_split(system, ds, epochs=2, batch_size=2, max_steps=2)
    assert res.protocol == "whole-split" and "whole-split" in res.label and "2 epoch" in res.label
    assert res.steps == 2 and res.disparities is None and math.isfinite(res.loss_first)
    assert any(not torch.equal(v, snap[k]) for k, v in system.state_dict().items())
    assert not system.training
    assert refinement_label(None) == "no online refinement"
    with pytest.raises(ValueError, match="refinement protocol"):
        refinement_label("sometimes")


def test_checkpoint_evaluation_with_refinement_on_folder_data(synth_root, tmp_path):
    cfg = load_config(None, TINY + ["train.stage=baseline"])
    torch.manual_seed(0)
    system = FeatDepthSystem(cfg, stage="baseline")
    ckpt = tmp_path / "model.pt"
    torch.save({"model": system.state_dict(), "config": config_to_dict(cfg), "stage": "baseline"}, ckpt)
    loaded = load_system(ckpt)
    snap = _snapshot(loaded)
    common = dict(dataset="folder", protocol="eigen_benchmark", scaling="median", model=loaded.as_model())
    plain = evaluate_depth_checkpoint(ckpt, synth_root, **common)
    refined = evaluate_depth_checkpoint(ckpt, synth_root, refine=RefineOptions("per-sample", steps=1), **common)
    _assert_same_state(loaded, snap)
    assert plain.result.num_images == refined.result.num_images == 5
    assert refined.result.metrics != plain.result.metrics
    assert "per-sample" in refined.summary() and "no online refinement" in plain.summary()
    d = refined.as_dict()
    assert d["refinement"]["protocol"] == "per-sample" and d["refinement"]["steps"] == 1
    opts = RefineOptions("whole-split", epochs=1, max_steps=1, batch_size=2, save_refined=tmp_path / "refined.pt")
    whole = evaluate_depth_checkpoint(ckpt, synth_root, refine=opts, dataset="folder", protocol="eigen_benchmark")
    assert whole.as_dict()["refinement"]["protocol"] == "whole-split" and "whole-split" in whole.summary()
    reloaded = load_system(tmp_path / "refined.pt")  # the refined model is a usable checkpoint
    assert any(not torch.equal(v, snap[k]) for k, v in reloaded.state_dict().items())
    with pytest.raises(ValueError, match="refine must be one of"):
        evaluate_depth_checkpoint(ckpt, synth_root, refine="always", **common)
