"""Training end to end on tiny synthetic data: every mode, learning on a fixed batch, exact resume,
bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from featdepth.config import ConfigError, load_config
from featdepth.training.checkpoints import load_checkpoint
from featdepth.training.trainer import Trainer, run_training, train_step

H, W = 64, 192


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from featdepth.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_sequences=2, seed=3, num_frames=8, height=H, width=W, stereo=True)
    return root


def tiny_cfg(root: Path, out: Path, stage: str = "depth", frame_ids="[0,-1,1]", *extra: str):
    return load_config(
        "synthetic_small",
        [
            f"data.path={root}",
            "data.synth_sequences=1",
            "data.synth_val_sequences=1",
            f"data.height={H}",
            f"data.width={W}",
            f"data.frame_ids={frame_ids}",
            "data.num_workers=0",
            f"train.stage={stage}",
            f"train.out_dir={out}",
            "train.progress=false",
            "train.image_every=0",
            "train.val_max_images=2",
            "optim.batch_size=2",
            "optim.warmup_iters=0",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    "stage, frame_ids",
    [("featurenet", "[0,-1,1]"), ("depth", "[0,-1,1]"), ("depth", "[0,s]"), ("depth", "[0,-1,1,s]"),
     ("joint", "[0,-1,1]"), ("baseline", "[0,-1,1]")],
)
def test_every_mode_trains_a_few_steps(synth_root, tmp_path, stage, frame_ids):
    extra = ["optim.max_steps=2"]
    if stage == "depth":
        extra += ["train.run_feature_stage=true", "feature_stage.max_steps=1"]
    cfg = tiny_cfg(synth_root, tmp_path / "run", stage, frame_ids, *extra)
    losses = []
    summary = run_training(cfg, on_step=lambda step, r: losses.append(r.total))
    assert summary["steps"] == 2
    assert summary["skipped_steps"] == 0
    assert all(np.isfinite(losses))
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt["stage"] == stage and ckpt["config"]["train"]["stage"] == stage
    run_dir = Path(summary["out_dir"])
    assert (run_dir / "config.yaml").is_file() and (run_dir / "log.jsonl").is_file()
    logged = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert any("loss/total" in rec for rec in logged)
    if stage != "featurenet":
        assert "abs_rel" in summary["val"]  # validation on held-out sequences with GT depth


@pytest.mark.parametrize("stage", ["featurenet", "depth", "baseline"])
def test_loss_falls_on_a_fixed_batch(synth_root, tmp_path, stage):
    cfg = tiny_cfg(synth_root, tmp_path / "run", "depth" if stage == "depth" else stage, "[0,-1,1]",
                   "optim.lr=1e-4", "optim.batch_size=4", "train.feature_checkpoint=null")
    if stage == "depth":
        # A random frozen FeatureNet is enough to exercise the feature-metric path.
        cfg.train.run_feature_stage = False
        from featdepth.training.checkpoints import atomic_save
        from featdepth.training.system import FeatDepthSystem

        fn = FeatDepthSystem(cfg, stage="featurenet")
        atomic_save({"model": fn.state_dict(), "stage": "featurenet"}, tmp_path / "fn.pt")
        cfg.train.feature_checkpoint = str(tmp_path / "fn.pt")
    trainer = Trainer(cfg, out_dir=tmp_path / "run")
    batch = next(iter(trainer.train_loader))
    trainer.system.train()
    losses = [train_step(trainer.system, batch, trainer.optimizer, device=torch.device("cpu"),
                         grad_clip=35.0).total for _ in range(40)]
    # The paper's learning rate; much higher rates saturate the sigmoid disparity early on.
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.85 * first, (first, last)


def test_resume_reproduces_the_uninterrupted_run(synth_root, tmp_path):
    common = ["train.checkpoint_every=3", "data.num_workers=0", "train.keep_checkpoints=5"]
    full: list[float] = []
    cfg = tiny_cfg(synth_root, tmp_path / "full", "baseline", "[0,-1,1]", "optim.max_steps=6", *common)
    run_training(cfg, on_step=lambda s, r: full.append(r.total))

    part: list[float] = []
    cfg1 = tiny_cfg(synth_root, tmp_path / "part", "baseline", "[0,-1,1]", "optim.max_steps=3", *common)
    run_training(cfg1, on_step=lambda s, r: part.append(r.total))
    cfg2 = tiny_cfg(synth_root, tmp_path / "part", "baseline", "[0,-1,1]", "optim.max_steps=6", *common)
    run_training(cfg2, resume="auto", on_step=lambda s, r: part.append(r.total))
    assert len(full) == 6 and len(part) == 6
    np.testing.assert_allclose(part, full, rtol=1e-5, atol=1e-7)


def test_checkpoint_frequency_settings(synth_root, tmp_path):
    # 2 frames per epoch at batch 1 -> epochs end at steps 2, 4, 6, 8 (the tiny split has more frames;
    # read the epoch length from the trainer rather than assume it)
    import json

    def saved_steps(run: Path) -> list[int]:
        records = json.loads((run / "checkpoints" / "checkpoints.json").read_text())["checkpoints"]
        return sorted(r["step"] for r in records)

    base = ["data.num_workers=0", "train.keep_checkpoints=6", "optim.max_steps=5"]
    cfg = tiny_cfg(synth_root, tmp_path / "none", "baseline", "[0,-1,1]", *base, "train.checkpoint_every_epochs=0")
    trainer = Trainer(cfg)
    per_epoch = trainer.sampler.batches_per_epoch
    trainer.fit()
    assert saved_steps(tmp_path / "none") == [5]  # only the final state

    cfg = tiny_cfg(synth_root, tmp_path / "steps", "baseline", "[0,-1,1]", *base, "train.checkpoint_every_epochs=0",
                   "train.checkpoint_every=2")
    run_training(cfg)
    assert saved_steps(tmp_path / "steps") == [2, 4, 5]

    cfg = tiny_cfg(synth_root, tmp_path / "epochs", "baseline", "[0,-1,1]", *base)
    run_training(cfg)
    expected = sorted({k for k in range(per_epoch, 6, per_epoch)} | {5})
    assert saved_steps(tmp_path / "epochs") == expected


def test_depth_stage_without_feature_checkpoint_is_a_clear_error(synth_root, tmp_path):
    cfg = tiny_cfg(synth_root, tmp_path / "run", "depth", "[0,-1,1]", "train.run_feature_stage=false")
    with pytest.raises(ConfigError, match="feature_checkpoint"):
        Trainer(cfg)


def test_corrupt_frame_is_reported_with_its_path(tmp_path):
    from featdepth.data.io import DataError
    from featdepth.data.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, num_sequences=2, seed=1, num_frames=5, height=H, width=W, stereo=False)
    bad = root / "seq_000" / "images" / "000002.png"
    bad.write_bytes(b"not a png")
    cfg = tiny_cfg(root, tmp_path / "run", "baseline", "[0,-1,1]", "optim.max_steps=3")
    with pytest.raises(DataError, match="000002.png"):
        run_training(cfg)


def test_malformed_intrinsics_are_reported(tmp_path):
    from featdepth.data.io import DataError
    from featdepth.data.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, num_sequences=2, seed=1, num_frames=4, height=H, width=W, stereo=False)
    (root / "seq_000" / "intrinsics.txt").write_text("1 2\n3 x 5\n")
    cfg = tiny_cfg(root, tmp_path / "run", "baseline", "[0,-1,1]", "optim.max_steps=1")
    with pytest.raises(DataError, match="intrinsics.txt"):
        run_training(cfg)
