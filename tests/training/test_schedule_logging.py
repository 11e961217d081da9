"""The learning-rate schedule and the run logger, tested directly."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from featdepth.training.logging import RunLogger
from featdepth.training.schedule import WarmupStepSchedule, lr_factor


def test_lr_factor_warmup_then_step_decay():
    kw = dict(warmup_iters=4, warmup_ratio=0.25, milestones=(2, 4), gamma=0.5)
    # linear warm-up from 0.25 to 1 over 4 iterations, in epoch 0
    assert [lr_factor(s, 0, **kw) for s in range(5)] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0])
    # halved at epoch 2 and again at 4 (milestones are 0-based epochs reached)
    assert lr_factor(100, 1, **kw) == 1.0
    assert lr_factor(100, 2, **kw) == 0.5 and lr_factor(100, 3, **kw) == 0.5
    assert lr_factor(100, 4, **kw) == 0.25 and lr_factor(100, 9, **kw) == 0.25
    assert lr_factor(0, 0, warmup_iters=0, warmup_ratio=0.1, milestones=(), gamma=0.5) == 1.0


def test_schedule_sets_every_group_and_survives_a_state_round_trip():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 1e-3}, {"params": [params[1]], "lr": 2e-3}])
    sched = WarmupStepSchedule(opt, warmup_iters=10, warmup_ratio=0.5, milestones=[1], gamma=0.1)
    assert sched.set(0, 0) == pytest.approx(5e-4)
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3)
    assert sched.set(50, 1) == pytest.approx(1e-4)
    state = sched.state_dict()
    opt2 = torch.optim.SGD([{"params": [params[0]], "lr": 9.0}, {"params": [params[1]], "lr": 9.0}])
    # the settings come from the config again; the state restores the base learning rates
    sched2 = WarmupStepSchedule(opt2, warmup_iters=10, warmup_ratio=0.5, milestones=[1], gamma=0.1)
    sched2.load_state_dict(state)
    assert sched2.set(50, 1) == pytest.approx(1e-4) and opt2.param_groups[1]["lr"] == pytest.approx(2e-4)


def test_run_logger_writes_json_lines_and_tensorboard(tmp_path):
    log = RunLogger(tmp_path, tensorboard=True)
    result = SimpleNamespace(grad_norm=1.5, terms={"photometric": 0.2}, weighted={"photometric": 0.2})
    log.log_step(3, result, total=0.25, lr=1e-4, step_time=0.5, data_time=0.5, images=8, skipped_steps=1)
    log.scalars(3, {"abs_rel": 0.1}, prefix="val/")
    log.text("hello")
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines() if line.startswith("{")]
    step = next(r for r in rows if "loss/total" in r)
    assert step["step"] == 3 and step["loss/total"] == 0.25 and step["loss/photometric"] == 0.2
    assert step["throughput/images_per_s"] == pytest.approx(8.0) and step["skipped_steps"] == 1
    assert any(r.get("val/abs_rel") == 0.1 for r in rows)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())


def test_disabled_logger_writes_nothing(tmp_path):
    log = RunLogger(tmp_path / "off", enabled=False)
    log.scalars(1, {"a": 1.0})
    log.close()
    assert not (tmp_path / "off").exists()


def test_a_failing_tensorboard_writer_stops_tensorboard_not_the_run(tmp_path, capsys):
    """TensorBoard's writer fails when its folder is deleted or the disk is full: the run must go on (it once ended
    two training runs at their last steps), with one warning, and log.jsonl keeps every scalar."""
    from featdepth.training.logging import RunLogger

    class Broken:
        closed = False

        def add_scalar(self, *a, **k):
            raise FileNotFoundError("events.out.tfevents: No such file or directory")

        add_image = add_scalar

        def flush(self):
            raise FileNotFoundError("gone")

        def close(self):
            Broken.closed = True

    logger = RunLogger(tmp_path, tensorboard=False)
    logger.writer = Broken()
    logger.scalars(1, {"loss": 0.5})
    assert logger.writer is None and Broken.closed
    logger.scalars(2, {"loss": 0.4})  # no writer any more: JSON lines only
    logger.image("train/input", 2, torch.rand(3, 4, 4))
    logger.writer = Broken()
    logger.close()  # a writer that fails on flush at the end does not raise either
    err = capsys.readouterr().err
    assert err.count("TensorBoard logging stopped") == 2 and "log.jsonl keeps the scalars" in err
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines if "loss" in x] == [0.5, 0.4]
    assert any("TensorBoard logging stopped" in x.get("message", "") for x in lines)
