"""Crash safety: SIGKILL at random moments (also inside checkpoint writing) never leaves an unreadable
checkpoint, ``--resume auto`` goes on from the newest good one, and a corrupt checkpoint is named and
skipped."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from featdepth.training.checkpoints import MANIFEST, CheckpointError, CheckpointManager, load_checkpoint

H, W = 64, 192


pytestmark = pytest.mark.usefixtures("single_thread")


def _overrides(data: Path, out: Path, steps: int) -> list[str]:
    # Stereo-only baseline with the monodepth2 decoder: the smallest trainable model (one ResNet-18 network),
    # so checkpoints are small and steps fast; a checkpoint after every step.
    return [
        f"data.path={data}", "data.synth_sequences=1", "data.synth_val_sequences=0", f"data.height={H}",
        f"data.width={W}", "data.num_workers=0", "data.frame_ids=[0,s]", "model.depth_decoder=monodepth2",
        "train.stage=baseline", "train.run_feature_stage=false", "train.device=cpu", f"train.out_dir={out}",
        "train.progress=false", "train.image_every=0", "train.log_every=1", "train.checkpoint_every=1",
        "train.keep_checkpoints=2", f"optim.max_steps={steps}", "optim.batch_size=1", "optim.warmup_iters=0",
    ]


def _train_cmd(data: Path, out: Path, steps: int) -> list[str]:
    cmd = [sys.executable, "-m", "featdepth", "train", "--resume", "auto"]
    for o in _overrides(data, out, steps):
        cmd += ["--set", o]
    return cmd


def _log_records(out: Path) -> list[dict]:
    records = []
    try:
        lines = (out / "log.jsonl").read_text().splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pass  # a line cut by a kill
    return records


def _logged_steps(out: Path) -> int:
    return sum(1 for r in _log_records(out) if "loss/total" in r)


def _manifest_steps(folder: Path) -> list[int]:
    try:
        return [r["step"] for r in json.loads((folder / MANIFEST).read_text())["checkpoints"]]
    except (OSError, ValueError, KeyError):
        return []


def _verify_manifest(folder: Path) -> list[int]:
    """Every checkpoint the manifest names loads and matches its digest; returns their steps."""
    if not (folder / MANIFEST).is_file():
        return []
    manifest = json.loads((folder / MANIFEST).read_text())  # written atomically: always parseable
    steps = []
    for rec in manifest["checkpoints"]:
        state = load_checkpoint(folder / rec["file"], rec["sha256"])
        assert state["step"] == rec["step"]
        steps.append(rec["step"])
    return steps


def _unlisted_steps(folder: Path) -> list[int]:
    """Steps of complete checkpoint files the manifest does not name yet (a kill between a checkpoint's
    rename and the manifest update): ``--resume auto`` verifies and adopts them."""
    named = set()
    if (folder / MANIFEST).is_file():
        named = {r["file"] for r in json.loads((folder / MANIFEST).read_text())["checkpoints"]}
    steps = []
    for p in folder.glob("step_*.pt") if folder.is_dir() else []:
        if p.name not in named:
            steps.append(load_checkpoint(p)["step"])  # atomic rename: never a half-written file
    return steps


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    from featdepth.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_sequences=1, seed=5, num_frames=6, height=H, width=W, stereo=True)
    return root


def test_sigkill_at_random_moments_never_leaves_an_unreadable_checkpoint(synth_data, tmp_path):
    out = tmp_path / "run"
    folder = out / "checkpoints"
    steps, kills = 30, 10
    rng = random.Random(0)
    # Test-only hook: every checkpoint write sleeps 0.3 s (half inside the temporary file, half before the
    # rename), so that kills land inside checkpoint writing.
    env = dict(os.environ, FEATDEPTH_TEST_SLOW_CHECKPOINT="0.3", OMP_NUM_THREADS="1")
    newest_seen: list[int] = []
    mid_write_kills = 0
    for i in range(kills):
        logged_before = _logged_steps(out)
        newest_before = max(_manifest_steps(folder), default=0)
        stale = set(folder.glob(".*.tmp"))  # left by the previous kill; removed by the next completed save
        proc = subprocess.Popen(_train_cmd(synth_data, out, steps), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            # wait until this process is inside the training loop (it logged a step) ...
            while _logged_steps(out) == logged_before and proc.poll() is None:
                assert time.monotonic() < deadline, "no training step within 60 s"
                time.sleep(0.02)
            # ... then kill it: on even kills as soon as a checkpoint's temporary file exists (inside its
            # first checkpoint write); on odd kills at a random moment after it completed a checkpoint (so
            # that the run makes progress), anywhere in the step / checkpoint cycle
            if i % 2 == 0:
                while not set(folder.glob(".*.tmp")) - stale and proc.poll() is None:
                    assert time.monotonic() < deadline, "no checkpoint write within 60 s"
                    time.sleep(0.005)
            else:
                while max(_manifest_steps(folder), default=0) <= newest_before and proc.poll() is None:
                    assert time.monotonic() < deadline, "no checkpoint within 60 s"
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 1.0))
            assert proc.poll() is None, f"the run ended before kill {i}: {proc.stderr.read().decode()[-2000:]}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, f"kill {i}: the run was not running any more"
        mid_write_kills += bool(set(folder.glob(".*.tmp")) - stale)
        present = _verify_manifest(folder)  # never an unreadable checkpoint
        newest_seen.append(max(present + _unlisted_steps(folder), default=0))

    assert mid_write_kills >= kills // 2, mid_write_kills  # kills inside checkpoint writes did happen
    # the run goes on from the newest good checkpoint every time: the step count never goes back
    assert newest_seen == sorted(newest_seen) and newest_seen[-1] >= kills // 2, newest_seen
    resumed = [r["message"] for r in _log_records(out) if str(r.get("message", "")).startswith("resumed from")]
    resumed_steps = [int(m.rsplit(" ", 1)[-1]) for m in resumed]
    # every restart resumed from the newest complete checkpoint (named by the manifest, or written just before
    # the kill and adopted); a restart with none started fresh
    assert resumed_steps == [s for s in newest_seen[:-1] if s > 0], (resumed_steps, newest_seen)

    # and the run finishes (two more steps: the kill loop's target of 30 steps is only a bound)
    last = newest_seen[-1] + 2
    final = subprocess.run(_train_cmd(synth_data, out, last), env=dict(os.environ, OMP_NUM_THREADS="1"),
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-3000:]
    summary = json.loads(final.stdout[final.stdout.index("{"):])
    assert summary["steps"] == last and summary["steps_this_run"] == 2
    assert _verify_manifest(folder)[-1] == last
    # nothing left behind: no temporaries, no checkpoint the manifest does not name
    named = {r["file"] for r in CheckpointManager(folder).records()}
    assert {p.name for p in folder.iterdir()} == named | {MANIFEST}


# ------------------------------------------------------------------------------------------------
# corrupt checkpoints


def _small_state(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"model": {"w": torch.randn(256, 256, generator=g)}, "step": step, "epoch": 0}


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)  # overwrite bytes inside the tensor data: torch.load alone would not notice
    path.write_bytes(bytes(data))


def test_corrupt_newest_checkpoint_is_named_and_the_previous_one_used(tmp_path):
    manager = CheckpointManager(tmp_path / "ckpt", keep=3)
    for step in (1, 2, 3):
        manager.save(_small_state(step), step, 0)
    newest = tmp_path / "ckpt" / "step_00000003.pt"
    _corrupt(newest)

    # direct load, with the digest from the manifest beside the file or given explicitly
    with pytest.raises(CheckpointError, match="step_00000003.pt.*corrupt"):
        load_checkpoint(newest)
    digest = manager.records()[-1]["sha256"]
    with pytest.raises(CheckpointError, match="step_00000003.pt"):
        load_checkpoint(newest, digest)

    warnings: list[str] = []
    state, path = manager.load_latest_good(warn=warnings.append)
    assert path.name == "step_00000002.pt" and state["step"] == 2
    assert torch.equal(state["model"]["w"], _small_state(2)["model"]["w"])
    assert len(warnings) == 1 and "step_00000003.pt" in warnings[0]


def test_unreadable_checkpoint_without_manifest_is_named(tmp_path):
    path = tmp_path / "elsewhere.pt"
    torch.save(_small_state(1), path)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="elsewhere.pt.*cannot be read"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found: .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_auto_skips_a_corrupt_newest_checkpoint(synth_data, tmp_path, capsys):
    from featdepth.config import load_config
    from featdepth.training.trainer import Trainer, run_training

    out = tmp_path / "run"
    cfg = load_config("synthetic_small", _overrides(synth_data, out, 2))
    run_training(cfg)
    _corrupt(out / "checkpoints" / "step_00000002.pt")
    capsys.readouterr()
    trainer = Trainer(load_config("synthetic_small", _overrides(synth_data, out, 3)), resume="auto")
    assert trainer.step == 1
    err = capsys.readouterr().err
    assert "step_00000002.pt" in err and "corrupt" in err and "resumed from" in err
