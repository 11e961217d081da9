"""``loss.automask_start_step``: auto-masking starts at a later training step (docs/method.md §2.2). Before it
the objective is exactly the one without auto-masking, from it on exactly the one with it; the trainer
switches at the configured step; outside the trainer (refinement, load_system) the system auto-masks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featdepth.config import ConfigError, load_config
from featdepth.training.system import FeatDepthSystem
from featdepth.training.trainer import Trainer

H, W = 64, 192

pytestmark = pytest.mark.usefixtures("single_thread")

_NET = ["model.depth_layers=18", "model.pose_layers=18", "model.depth_decoder=monodepth2",
        "model.pose_input_size=null", "data.frame_ids=[0,-1,1]", f"data.height={H}", f"data.width={W}",
        "train.stage=baseline"]


def _batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(b, 3, H, W, generator=g)
    # sources = the target shifted by a pixel or two, so that warped and identity errors compete
    color = {0: base, -1: torch.roll(base, 1, dims=-1), 1: torch.roll(base, -2, dims=-1)}
    K = torch.tensor([[0.58 * W, 0.0, 0.5 * W], [0.0, 1.92 * H, 0.5 * H], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    return {"color": color, "color_aug": {f: c.clone() for f, c in color.items()}, "K": K, "inv_K": torch.linalg.inv(K)}


def _loss(system: FeatDepthSystem, batch: dict) -> tuple[float, dict]:
    torch.manual_seed(1)  # the identity errors' tie-breaking noise
    with torch.no_grad():
        out, outputs = system(batch)
    return float(out.total), outputs


def test_before_the_start_step_the_objective_is_the_unmasked_one_and_from_it_the_masked_one():
    torch.manual_seed(0)
    late = FeatDepthSystem(load_config(None, _NET + ["loss.automask_start_step=3"])).eval()
    off = FeatDepthSystem(load_config(None, _NET + ["loss.automask=false"])).eval()
    on = FeatDepthSystem(load_config(None, _NET)).eval()
    off.load_state_dict(late.state_dict())
    on.load_state_dict(late.state_dict())
    batch = _batch()
    loss_off, _ = _loss(off, batch)
    loss_on, out_on = _loss(on, batch)
    assert "automask" in out_on
    assert loss_on != pytest.approx(loss_off, rel=1e-4)  # the two objectives differ on this batch

    assert late.automask_active()  # outside the trainer: as at the end of training
    for step, want, masked in ((0, loss_off, False), (2, loss_off, False), (3, loss_on, True), (50, loss_on, True)):
        late.set_training_step(step)
        assert late.automask_active() is masked
        got, outputs = _loss(late, batch)
        assert got == pytest.approx(want, rel=1e-6), step
        assert ("automask" in outputs) is masked

    on.set_training_step(0)  # start step 0 (the default, the paper): auto-masked from the first step
    assert on.automask_active()
    off.set_training_step(10)  # auto-masking off stays off
    assert not off.automask_active()


def test_the_trainer_switches_at_the_configured_step(tmp_path: Path, monkeypatch):
    from featdepth.data.synthetic import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, num_sequences=1, seed=3, num_frames=6, height=H, width=W, stereo=False)
    cfg = load_config(None, _NET + [
        f"data.path={data}", "data.dataset=synthetic", "data.synth_sequences=1", "data.synth_val_sequences=0",
        "data.num_workers=0", "train.run_feature_stage=false", "train.device=cpu", f"train.out_dir={tmp_path / 'run'}",
        "train.progress=false", "train.image_every=0", "train.log_every=1", "optim.batch_size=1", "optim.max_steps=4",
        "optim.warmup_iters=0", "loss.automask_start_step=2"])
    seen = []
    original = FeatDepthSystem.set_training_step

    def spy(self, step):
        original(self, step)
        seen.append((step, self.automask_active()))

    monkeypatch.setattr(FeatDepthSystem, "set_training_step", spy)
    Trainer(cfg).fit()
    assert seen == [(0, False), (1, False), (2, True), (3, True)]


@pytest.mark.parametrize("value", ["-1", "1.5", "true"])
def test_a_bad_start_step_names_the_key(value):
    with pytest.raises(ConfigError, match=r"loss\.automask_start_step"):
        load_config("synthetic_small", [f"loss.automask_start_step={value}"])
