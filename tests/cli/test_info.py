"""`featdepth info CKPT`: what a checkpoint is, in text and JSON."""

from __future__ import annotations

import json

import pytest

from featdepth.config import load_config
from tests.inference.test_model import TINY, make_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", decoder="monodepth2",
                                overrides=["data.path=my_data/somewhere"])


def test_info_text_and_json(ckpt, capsys):
    from featdepth.cli import main

    assert main(["info", str(ckpt), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    cfg = load_config("synthetic_small", list(TINY) + ["data.path=my_data/somewhere"])
    assert info["stage"] == "depth"
    assert info["training_size"] == {"width": cfg.data.width, "height": cfg.data.height}
    assert info["training_data"]["dataset"] == cfg.data.dataset and info["training_data"]["path"] == "my_data/somewhere"
    assert info["depth_kind"] == "relative" and info["metric_factor"] == 1.0
    assert info["networks"]["depth"] == f"resnet{cfg.model.depth_layers} encoder + monodepth2 decoder"
    assert info["frame_ids"] == list(cfg.data.frame_ids) and info["intrinsics_normalized"] is None
    assert main(["info", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert f"{cfg.data.width}x{cfg.data.height}" in text and "my_data/somewhere" in text and "relative" in text
    assert "featdepth predict" in text


def test_info_missing_file_is_one_plain_line(tmp_path, capsys):
    from featdepth.cli import main

    rc = main(["info", str(tmp_path / "nope.pt")])
    err = capsys.readouterr().err
    assert rc != 0 and "nope.pt" in err and "Error:" not in err and len(err.strip().splitlines()) == 1
