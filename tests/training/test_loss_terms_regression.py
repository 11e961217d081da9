"""Speed work must not change the numbers: every loss term of the training step on a fixed batch equals the
values recorded before the step's speed changes (tests/training/data/loss_terms_fixed_batch.json) to 1e-5
relative, for the baseline, two-stage (frozen FeatureNet) and joint stages, in NCHW and channels_last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from featdepth.config import load_config
from featdepth.training.system import FeatDepthSystem
from featdepth.utils.runtime import move_batch

RECORD = json.loads((Path(__file__).parent / "data" / "loss_terms_fixed_batch.json").read_text())


def _terms(stage: str, channels_last: bool) -> dict[str, float]:
    cfg = load_config(None, [f"train.stage={stage}", "data.height=64", "data.width=192", "model.depth_layers=18",
                             "model.pose_layers=18", "model.feature_layers=18", "model.pose_input_size=null",
                             "model.depth_decoder=monodepth2", "data.frame_ids=[0,-1,1]", "optim.batch_size=2"])
    torch.manual_seed(0)
    system = FeatDepthSystem(cfg, stage=stage).train()
    if channels_last:
        system = system.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    b, h, w = 2, 64, 192
    color = {f: torch.rand(b, 3, h, w, generator=g) for f in (0, -1, 1)}
    K = torch.tensor([[0.58 * w, 0.0, 0.5 * w], [0.0, 1.92 * h, 0.5 * h], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    batch = move_batch({"color": color, "color_aug": {f: c.clone() for f, c in color.items()}, "K": K,
                        "inv_K": torch.linalg.inv(K)}, torch.device("cpu"), channels_last)
    with torch.no_grad():
        out, _ = system(batch)
    return {"total": float(out.total), **{k: float(v) for k, v in out.terms.items()}}


@pytest.mark.skipif(torch.__version__.split("+")[0] != RECORD["torch"].split("+")[0],
                    reason=f"values recorded with torch {RECORD['torch']} (random initialisation differs between versions)")
@pytest.mark.parametrize("key", sorted(RECORD["values"]))
def test_loss_terms_equal_the_recorded_ones(key):
    stage, cl = key.removesuffix("_cl"), key.endswith("_cl")
    got = _terms(stage, cl)
    want = RECORD["values"][key]
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-7), (key, name)
