"""Bad states: non-finite losses and gradients are skipped and counted, too many in a row stop training
with the names of the terms; an unwritable output folder or a full disk is reported before training."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from featdepth.config import load_config
from featdepth.training.setup import freeze_unused_heads
from featdepth.training.step import train_step
from featdepth.training.trainer import Trainer, TrainingError
from featdepth.training.system import FeatDepthSystem

H, W = 64, 192


pytestmark = pytest.mark.usefixtures("single_thread")


def _overrides(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.path={data}", "data.synth_sequences=1", "data.synth_val_sequences=0", f"data.height={H}",
        f"data.width={W}", "data.num_workers=0", "data.frame_ids=[0,s]", "model.depth_decoder=monodepth2",
        "train.stage=baseline", "train.run_feature_stage=false", "train.device=cpu", f"train.out_dir={out}",
        "train.progress=false", "train.image_every=0", "train.log_every=1", "optim.batch_size=1",
        "optim.warmup_iters=0", *extra,
    ]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    from featdepth.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_sequences=1, seed=7, num_frames=6, height=H, width=W, stereo=True)
    return root


def _batch(b: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    color = {f: torch.rand(b, 3, H, W, generator=g) for f in (0, "s")}
    K = torch.tensor([[0.58 * W, 0, 0.5 * W], [0, 1.92 * H, 0.5 * H], [0, 0, 1.0]]).expand(b, 3, 3).clone()
    T = torch.eye(4).expand(b, 4, 4).clone()
    T[:, 0, 3] = -0.1
    return {"color": color, "color_aug": {f: c.clone() for f, c in color.items()}, "K": K,
            "inv_K": torch.linalg.inv(K), "stereo_T": T}


@pytest.fixture(scope="module")
def system() -> FeatDepthSystem:
    cfg = load_config("synthetic_small", ["data.frame_ids=[0,s]", "model.depth_decoder=monodepth2",
                                          "train.stage=baseline", f"data.height={H}", f"data.width={W}"])
    s = FeatDepthSystem(cfg)
    freeze_unused_heads(s)
    return s


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    for k, v in module.named_parameters():
        assert torch.equal(v.detach(), before[k]), f"{k} changed"


def test_nan_pixels_skip_the_step(system):
    params = system.trainable_parameters()
    opt = torch.optim.Adam(params, lr=1e-3)
    before = _snapshot(system)
    batch = _batch()
    batch["color"][0][0, :, 10:20, 10:20] = float("nan")
    res = train_step(system, batch, opt, device=torch.device("cpu"), params=params)
    assert not res.finite
    assert "photometric" in res.nonfinite_terms
    _assert_unchanged(system, before)
    assert not opt.state  # Adam took no step: no moments were created
    assert all(p.grad is None for p in params)


def test_nonfinite_gradients_skip_the_step(system):
    params = system.trainable_parameters()
    opt = torch.optim.Adam(params, lr=1e-3)
    before = _snapshot(system)
    victim = params[0]
    handle = victim.register_hook(lambda g: torch.full_like(g, float("inf")))
    try:
        res = train_step(system, _batch(), opt, device=torch.device("cpu"), params=params)
    finally:
        handle.remove()
    assert not res.finite and res.nonfinite_terms == ["gradients"]
    assert all(torch.isfinite(torch.tensor(v)) for v in res.terms.values())  # the loss itself was finite
    _assert_unchanged(system, before)
    assert not opt.state
    # the next, healthy step updates normally
    res = train_step(system, _batch(), opt, device=torch.device("cpu"), params=params)
    assert res.finite and opt.state


def _poison(monkeypatch, term: str, bad_calls: set[int] | None = None) -> None:
    """Make the depth objective report ``term`` (and so the total) as NaN, on the given calls (1-based)
    or on every call."""
    import featdepth.training.system as system_module

    original = system_module.depth_objective
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if bad_calls is None or calls["n"] in bad_calls:
            nan = out.terms[term] * float("nan")
            out.terms[term] = nan
            out.total = out.total + nan
        return out

    monkeypatch.setattr(system_module, "depth_objective", poisoned)


def test_nonfinite_steps_are_skipped_and_too_many_in_a_row_stop_training(synth_data, tmp_path, monkeypatch):
    cfg = load_config("synthetic_small", _overrides(synth_data, tmp_path / "run", "optim.max_steps=20",
                                                    "train.max_nonfinite_steps=3"))
    trainer = Trainer(cfg)
    # steps 2-3: two non-finite steps in a row (fewer than the limit), skipped; step 4 trains again;
    # steps 5-7: three in a row, and training stops
    _poison(monkeypatch, "smoothness", bad_calls={2, 3, 5, 6, 7})
    updated: dict[int, dict[str, torch.Tensor]] = {}
    trainer.on_step = lambda step, result: updated.__setitem__(step, _snapshot(trainer.system))
    with pytest.raises(TrainingError, match=r"3 consecutive steps had non-finite values \(terms: smoothness\)"):
        trainer.fit()
    assert trainer.step == 7 and trainer.skipped_steps == 5
    for step in (2, 3):  # skipped: the parameters stayed those after step 1
        _assert_unchanged_from(updated[step], updated[1])
    assert any(not torch.equal(updated[4][k], updated[3][k]) for k, _ in trainer.system.named_parameters())
    for step in (5, 6):  # (step 7 raised before on_step)
        _assert_unchanged_from(updated[step], updated[4])
    _assert_unchanged(trainer.system, updated[4])
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert log.count("non-finite ['smoothness']; update skipped") == 5


def _assert_unchanged_from(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor]) -> None:
    for k, v in after.items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, before[k]), f"{k} changed"


# ------------------------------------------------------------------------------------------------
# the output folder, before training


def test_full_disk_is_reported_before_training(synth_data, tmp_path, monkeypatch, capsys):
    from featdepth.cli import main

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - 50 * 2**20, 50 * 2**20))
    fresh_data = tmp_path / "not_generated"
    args = ["train"] + [a for o in _overrides(fresh_data, tmp_path / "run", "optim.max_steps=1") for a in ("--set", o)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "50 MiB free" in err and str(tmp_path / "run") in err  # one plain line, no exception class name
    assert not fresh_data.exists()  # reported before any data was generated, let alone a step trained


def test_disk_too_small_for_the_checkpoints_is_reported_before_training(synth_data, tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 0, 300 * 2**20))
    cfg = load_config("synthetic_small", _overrides(synth_data, tmp_path / "run", "optim.max_steps=1"))
    with pytest.raises(TrainingError, match="checkpoints of this run need about .* MiB"):
        Trainer(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_output_folder_that_cannot_be_created_is_reported(synth_data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cfg = load_config("synthetic_small", _overrides(synth_data, blocker / "run", "optim.max_steps=1"))
    with pytest.raises(TrainingError, match="output folder .*a_file/run is not writable"):
        Trainer(cfg)


# ------------------------------------------------------------------------------------------------
# mixed precision: where non-finite values would come from


def test_bf16_autocast_runs_every_loss_path_on_cpu():
    """Stage joint with temporal and stereo sources exercises every loss term (photometric with auto-masking
    off in stereo mode, smoothness, feature-metric, FeatureNet reconstruction / discriminative /
    convergent): one bf16-autocast step is finite and its terms match float32 closely (geometry stays in
    float32; networks run in bf16)."""
    cfg = load_config("synthetic_small", ["train.stage=joint", "data.frame_ids=[0,-1,1,s]", f"data.height={H}",
                                          f"data.width={W}", "loss.noise_std=0"])
    torch.manual_seed(0)
    base = FeatDepthSystem(cfg)
    freeze_unused_heads(base)
    base.eval()  # no dropout: both precisions see the same network
    batch = _batch(1)
    batch["color"] = {**batch["color"], -1: batch["color"][0].roll(2, -1), 1: batch["color"][0].roll(-2, -1)}
    batch["color_aug"] = {f: c.clone() for f, c in batch["color"].items()}
    with torch.no_grad():
        fp32_terms = {k: float(v) for k, v in base(batch)[0].terms.items()}
    params = base.trainable_parameters()
    opt = torch.optim.Adam(params, lr=1e-4)
    bf16 = train_step(base, batch, opt, device=torch.device("cpu"), amp="bf16", params=params)
    assert bf16.finite and torch.isfinite(torch.tensor(bf16.grad_norm)) and opt.state
    assert set(bf16.terms) == {"photometric", "smoothness", "feature_metric", "reconstruction", "discriminative",
                               "convergent"}
    for k, v in fp32_terms.items():
        assert abs(bf16.terms[k] - v) <= 0.02 * abs(v) + 1e-6, (k, v, bf16.terms[k])


def test_failing_torch_compile_falls_back_to_eager(synth_data, tmp_path, monkeypatch):
    """train.compile=true where compilation does not work: a warning, and training goes on in eager mode."""

    def broken_call(*args, **kwargs):
        raise RuntimeError("no C++ compiler (simulated)")

    def fake_compile(self, *args, **kwargs):  # nn.Module.compile: the compiled call fails at the first use
        self._compiled_call_impl = broken_call

    monkeypatch.setattr(torch.nn.Module, "compile", fake_compile)
    cfg = load_config("synthetic_small", _overrides(synth_data, tmp_path / "run", "optim.max_steps=2",
                                                    "train.compile=true"))
    trainer = Trainer(cfg)
    assert trainer.compiled == ["depth_net"]  # stereo-only baseline: no pose network
    with pytest.warns(UserWarning, match="falling back to eager mode"):
        summary = trainer.fit()
    assert summary["steps"] == 2 and summary["skipped_steps"] == 0
    assert trainer.compiled == [] and trainer.system.depth_net._compiled_call_impl is None
