"""Nothing lost, nothing silent, nothing executed (training side): checkpoints hold only tensors and plain
data, non-finite weights are never saved, ``--resume auto`` rebuilds a lost manifest from the files that
verify and never starts again at step 0 over them, rotation never deletes a newer checkpoint, a run with
other network sizes is refused in one line, and an output folder holding an earlier run needs ``--resume``
or ``--overwrite``."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from featdepth.cli.main import main
from featdepth.config import load_config
from featdepth.training.checkpoints import MANIFEST, CheckpointError, CheckpointManager, load_checkpoint
from featdepth.training.setup import TrainingError, default_run_dir
from featdepth.training.trainer import Trainer, run_training
from featdepth.utils.checkpoint_io import plain_rng_state, restore_rng_state
from featdepth.utils.runtime import rng_state, set_rng_state

H, W = 64, 192

pytestmark = pytest.mark.usefixtures("single_thread")


def _overrides(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    # the smallest trainable model (stereo-only baseline, monodepth2 decoder), a checkpoint after every step
    return [
        f"data.path={data}", "data.synth_sequences=1", "data.synth_val_sequences=0", f"data.height={H}",
        f"data.width={W}", "data.num_workers=0", "data.frame_ids=[0,s]", "model.depth_decoder=monodepth2",
        "model.depth_layers=18", "train.stage=baseline", "train.run_feature_stage=false", "train.device=cpu",
        f"train.out_dir={out}", "train.progress=false", "train.image_every=0", "train.log_every=1",
        "train.checkpoint_every=1", "train.keep_checkpoints=50", f"optim.max_steps={steps}", "optim.batch_size=1",
        "optim.warmup_iters=0", *extra,
    ]


def _cfg(data: Path, out: Path, steps: int, *extra: str):
    return load_config("synthetic_small", _overrides(data, out, steps, *extra))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("step_*.pt"))


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    from featdepth.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_sequences=1, seed=11, num_frames=6, height=H, width=W, stereo=True)
    return root


@pytest.fixture(scope="module")
def three_step_run(synth_data, tmp_path_factory) -> Path:
    """A finished 3-step run (checkpoints at steps 1, 2, 3), copied by the tests that change it."""
    out = tmp_path_factory.mktemp("run3") / "run"
    run_training(_cfg(synth_data, out, 3))
    return out


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- 1. only tensors and plain data ----------------------------------------------------------------


def test_training_checkpoint_loads_with_weights_only_and_restores_the_rng(three_step_run):
    path = three_step_run / "checkpoints" / "step_00000003.pt"
    state = torch.load(path, weights_only=True)  # torch's own allowlist: no NumPy, nothing else
    assert state["step"] == 3 and isinstance(state["versions"]["torch"], str)
    assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)

    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    np.random.standard_normal()  # a cached Gaussian in NumPy's state
    saved = plain_rng_state(rng_state())
    expected = (random.random(), np.random.standard_normal(), torch.rand(2))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(restore_rng_state(saved))
    got = (random.random(), np.random.standard_normal(), torch.rand(2))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_checkpoint_of_an_earlier_version_with_numpy_rng_still_loads(three_step_run, tmp_path):
    state = torch.load(three_step_run / "checkpoints" / "step_00000003.pt", weights_only=True)
    state["rng"] = rng_state()  # what earlier versions stored: NumPy's tuple with an ndarray, Python's tuple
    state["versions"]["torch"] = torch.__version__  # a TorchVersion object, not a str
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with pytest.raises(Exception):
        torch.load(old, weights_only=True)  # plain weights_only refuses it: the allowlist is what makes it load
    loaded = load_checkpoint(old)
    assert isinstance(loaded["rng"]["numpy"][1], np.ndarray)
    restore = restore_rng_state(loaded["rng"])
    assert restore["numpy"][0] == "MT19937"


# -- 4. non-finite weights -------------------------------------------------------------------------


def test_weights_turning_nan_stop_training_without_saving_them(synth_data, tmp_path):
    out = tmp_path / "run"

    def poison(step, result):
        if step == 2:
            with torch.no_grad():
                next(trainer.system.depth_net.parameters()).fill_(float("nan"))

    trainer = Trainer(_cfg(synth_data, out, 5), on_step=poison)
    with pytest.raises(TrainingError, match=r"step 2: the weights are no longer finite \(first: depth_net\.") as exc:
        trainer.fit()
    assert "optim.lr" in str(exc.value) and "\n" not in str(exc.value)
    folder = out / "checkpoints"
    assert _files(folder) == ["step_00000001.pt"]  # step 2 (NaN) was not saved
    assert [r["step"] for r in CheckpointManager(folder).records()] == [1]
    assert not (folder / "best.pt").exists()


@pytest.mark.parametrize("every", [1, 0])
def test_an_exploding_learning_rate_cannot_leave_nan_checkpoints(synth_data, tmp_path, every):
    # optim.lr=.inf is refused by the config; 1e300 is finite there but inf in float32: the first Adam update
    # makes the weights non-finite. Caught before the checkpoint of step 1 (every=1) or, without step
    # checkpoints, by the non-finite loss of step 2 (every=0), before the end-of-run checkpoint.
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=rf"step {2 - every}: the weights are no longer finite"):
        run_training(_cfg(synth_data, out, 6, "optim.lr=1e300", f"train.checkpoint_every={every}"))
    assert not list((out / "checkpoints").glob("*.pt"))  # no best.pt, no step file


# -- 3. resume without a manifest, rotation ---------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_resume_auto_rebuilds_a_lost_manifest_and_keeps_every_checkpoint(three_step_run, synth_data, tmp_path,
                                                                          damage, capsys):
    out = _copy_run(three_step_run, tmp_path / "run")
    folder = out / "checkpoints"
    before = {name: (folder / name).read_bytes() for name in _files(folder)}
    if damage == "missing":
        (folder / MANIFEST).unlink()
    else:
        (folder / MANIFEST).write_text('{"checkpoints": [')
    trainer = Trainer(_cfg(synth_data, out, 5), resume="auto")
    assert trainer.step == 3  # the newest, not 0
    assert "rebuilding" in capsys.readouterr().err
    trainer.fit()
    for name, data in before.items():  # every earlier checkpoint is still there, unchanged
        assert (folder / name).read_bytes() == data
    assert [r["step"] for r in CheckpointManager(folder).records()] == [1, 2, 3, 4, 5]


def test_resume_auto_never_starts_again_over_checkpoints_it_cannot_verify(three_step_run, synth_data, tmp_path):
    out = _copy_run(three_step_run, tmp_path / "run")
    folder = out / "checkpoints"
    (folder / MANIFEST).unlink()
    for p in folder.glob("step_*.pt"):
        p.write_bytes(p.read_bytes()[:200])  # truncated
    with pytest.raises(CheckpointError, match=r"holds 3 checkpoint files .*refusing to start again at step 0"):
        Trainer(_cfg(synth_data, out, 5), resume="auto")
    assert len(_files(folder)) == 3  # nothing deleted


def test_saving_without_a_manifest_never_deletes_newer_checkpoints(tmp_path):
    folder = tmp_path / "ckpt"
    manager = CheckpointManager(folder, keep=2)
    for step in (5, 6, 7):
        manager.save({"model": {"w": torch.ones(2)}, "step": step, "epoch": 0}, step, 0)
    (folder / MANIFEST).unlink()
    manager.save({"model": {"w": torch.ones(2)}, "step": 1, "epoch": 0}, 1, 0)  # a run started over (library use)
    assert _files(folder) == ["step_00000001.pt", "step_00000006.pt", "step_00000007.pt"]


def test_resuming_an_older_checkpoint_moves_the_newer_ones_aside(three_step_run, synth_data, tmp_path, capsys):
    out = _copy_run(three_step_run, tmp_path / "run")
    folder = out / "checkpoints"
    newer = {n: (folder / n).read_bytes() for n in ("step_00000002.pt", "step_00000003.pt")}
    trainer = Trainer(_cfg(synth_data, out, 4), resume=str(folder / "step_00000001.pt"))
    assert trainer.step == 1 and "moved the 2 newer checkpoint files" in capsys.readouterr().err
    trainer.fit()
    for name, data in newer.items():
        assert (folder / "superseded" / name).read_bytes() == data  # kept, byte for byte
    assert [r["step"] for r in CheckpointManager(folder).records()] == [1, 2, 3, 4]


# -- 5. other network sizes, malformed files --------------------------------------------------------


def test_resuming_with_other_network_sizes_is_one_line_naming_the_setting(three_step_run, synth_data, tmp_path):
    out = _copy_run(three_step_run, tmp_path / "run")
    with pytest.raises(CheckpointError) as exc:
        # keep 1 checkpoint: the disk-space check before the resume would otherwise want ~14 GB for 50 ResNet-34 ones
        Trainer(_cfg(synth_data, out, 5, "model.depth_layers=34", "train.keep_checkpoints=1"), resume="auto")
    msg = str(exc.value)
    assert "step_00000003.pt" in msg and "model.depth_layers: 18 in the checkpoint, 34 in this run" in msg
    assert len(msg) < 400 and "\n" not in msg


def test_resuming_from_a_malformed_checkpoint_is_one_line(three_step_run, synth_data, tmp_path):
    out = _copy_run(three_step_run, tmp_path / "run")
    src = out / "checkpoints" / "step_00000003.pt"
    state = load_checkpoint(src)
    state["model"]["depth_net.encoder.encoder.conv1.weight"] = torch.zeros(64, 3, 3, 3)  # edited shape
    bad = tmp_path / "edited.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError) as exc:
        Trainer(_cfg(synth_data, out, 5), resume=str(bad))
    msg = str(exc.value)
    assert "edited.pt" in msg and "1 tensors of another shape (first: depth_net.encoder.encoder.conv1.weight" in msg
    assert len(msg) < 400

    slim = tmp_path / "slim.pt"
    torch.save({k: state[k] for k in ("model", "config", "stage")}, slim)
    with pytest.raises(CheckpointError, match=r"slim.pt: it is not a training checkpoint \(no optimizer, schedule"):
        Trainer(_cfg(synth_data, out, 5), resume=str(slim))


# -- 3. the output folder --------------------------------------------------------------------------


def _train_cli(data: Path, out: Path | None, steps: int, *flags: str) -> list[str]:
    argv = ["train", *flags]
    for o in _overrides(data, out or Path("unused"), steps):
        if out is None and o.startswith("train.out_dir="):
            continue
        argv += ["--set", o]
    return argv


def test_an_earlier_run_needs_resume_or_overwrite(three_step_run, synth_data, tmp_path, capsys):
    out = _copy_run(three_step_run, tmp_path / "run")
    (out / "notes.txt").write_text("mine")
    assert main(_train_cli(synth_data, out, 4)) == 1
    err = capsys.readouterr().err
    assert f"output folder {out} holds an earlier run" in err and "--resume auto" in err and "--overwrite" in err
    assert len(_files(out / "checkpoints")) == 3

    assert main(_train_cli(synth_data, out, 4, "--resume", "auto", "--overwrite")) == 1
    assert "exclude each other" in capsys.readouterr().err

    assert main(_train_cli(synth_data, out, 1, "--overwrite")) == 0
    assert _files(out / "checkpoints") == ["step_00000001.pt"]  # a new run from step 0
    assert (out / "notes.txt").read_text() == "mine"  # files the trainer did not write are left alone
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss/total" in r] == [1]  # the old log went with the old run

    assert main(_train_cli(synth_data, out, 2, "--resume", "auto")) == 0
    assert _files(out / "checkpoints") == ["step_00000001.pt", "step_00000002.pt"]


def test_default_output_folder_names_preset_data_and_time(synth_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(_train_cli(synth_data, None, 1)) == 0
    err = capsys.readouterr().err
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and re.fullmatch(rf"synthetic_small-{synth_data.name}-\d{{8}}-\d{{6}}", runs[0].name)
    assert f"output folder: {Path('runs') / runs[0].name}" in err
    assert (runs[0] / "checkpoints" / "step_00000001.pt").is_file()
    # --resume auto without --out continues the newest such folder
    assert main(_train_cli(synth_data, None, 2, "--resume", "auto")) == 0
    assert sorted((tmp_path / "runs").iterdir()) == runs
    assert _files(runs[0] / "checkpoints") == ["step_00000001.pt", "step_00000002.pt"]
    assert default_run_dir("x.yaml", "/data/kitti raw/", now=0).name.startswith("x-kitti_raw-19")


# -- SIGKILL, then resume without a manifest -------------------------------------------------------


def test_sigkill_then_resume_without_a_manifest_keeps_every_checkpoint(synth_data, tmp_path):
    out = tmp_path / "run"
    folder = out / "checkpoints"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "featdepth"] + _train_cli(synth_data, out, 40)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_files(folder)) < 4 and proc.poll() is None:
            assert time.monotonic() < deadline, "no 4 checkpoints within 120 s"
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    (folder / MANIFEST).unlink(missing_ok=True)
    before = {p.name: p.read_bytes() for p in folder.glob("step_*.pt")}
    newest = max(load_checkpoint(folder / n)["step"] for n in before)  # complete files (atomic rename)
    assert newest >= 4

    final = subprocess.run(cmd[:3] + _train_cli(synth_data, out, newest + 2, "--resume", "auto"), env=env,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"resumed from {folder / f'step_{newest:08d}.pt'} (step {newest}" in final.stderr
    summary = json.loads(final.stdout[final.stdout.index("{"):])
    assert summary["steps"] == newest + 2 and summary["steps_this_run"] == 2
    for name, data in before.items():
        assert (folder / name).read_bytes() == data, name  # every verified checkpoint kept, unchanged
    assert [r["step"] for r in CheckpointManager(folder).records()] == list(range(1, newest + 3))


def test_slim_checkpoint_keeps_a_safetensors_that_loads_to_the_same_model(three_step_run, tmp_path):
    import featdepth
    from featdepth.experiments.runs import slim_checkpoint

    out = _copy_run(three_step_run, tmp_path / "run")
    target = slim_checkpoint(out / "checkpoints" / "step_00000003.pt")
    weights = target.with_suffix(".safetensors")
    assert target.name == "model.pt" and weights.is_file()
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    a, b = featdepth.load(target, device="cpu"), featdepth.load(weights, device="cpu")
    with a.evaluating(), b.evaluating():
        assert torch.equal(a.disparity(x), b.disparity(x))
    assert b.step == 3 and not b.has_pose
