"""Nothing executed (inference side): every loader unpickles with ``weights_only=True`` and refuses a file
that would run code unless trusted explicitly; non-finite and malformed weights are refused in one line
naming the file; ``.safetensors`` weights exports load back to the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import featdepth
from featdepth.cli.common import official_options
from featdepth.cli.main import build_parser, main
from featdepth.inference.loading import export_weights, load
from featdepth.inference.model import Model, ModelLoadError
from featdepth.utils.checkpoint_io import CheckpointError, load_checkpoint, trusted_checkpoints
from tests.inference.test_model import make_tiny_checkpoint
from tests.inference.test_official import official_mono_fm_state


def _run_on_unpickle(marker: str) -> str:
    Path(marker).write_text("code ran")
    return "payload"


class _Payload:
    """Unpickling this calls :func:`_run_on_unpickle`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return _run_on_unpickle, (self.marker,)


def _disparity(model: Model) -> torch.Tensor:
    x = torch.rand(1, 3, model.height, model.width, generator=torch.Generator().manual_seed(0))
    with model.evaluating():
        return model.disparity(x)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", decoder="monodepth2")


def test_a_checkpoint_that_would_run_code_is_refused_unless_trusted(tiny, tmp_path):
    state = torch.load(tiny, weights_only=True)
    marker = tmp_path / "ran.txt"
    state["extra"] = _Payload(marker)
    evil = tmp_path / "evil.pt"
    torch.save(state, evil)

    with pytest.raises(ModelLoadError) as exc:
        featdepth.load(evil, device="cpu")
    msg = str(exc.value)
    assert str(evil) in msg and "--trust-checkpoint" in msg and "_run_on_unpickle" in msg
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()  # nothing ran

    with pytest.warns(UserWarning, match="full unpickling"):
        model = featdepth.load(evil, device="cpu", trust_checkpoint=True)
    assert marker.read_text() == "code ran" and isinstance(model, Model)
    marker.unlink()
    with trusted_checkpoints(), pytest.warns(UserWarning):  # what `featdepth evaluate --trust-checkpoint` uses
        assert load_checkpoint(evil)["extra"] == "payload"
    with pytest.raises(CheckpointError):  # the trust ends with the block
        load_checkpoint(evil)


def test_official_checkpoint_with_an_object_in_meta_needs_trust(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "official.pth"
    torch.save({"state_dict": official_mono_fm_state(), "meta": {"hook": _Payload(marker)}}, path)
    with pytest.raises(ModelLoadError, match=r"official.pth holds Python objects .*--trust-checkpoint"):
        load(path, device="cpu", official={"height": 64, "width": 192})
    assert not marker.exists()
    with pytest.warns(UserWarning, match="full unpickling"):
        model = load(path, device="cpu", official={"height": 64, "width": 192, "trust_checkpoint": True})
    assert model.conversion_report.ok and marker.exists()

    plain = tmp_path / "plain.pth"  # mmcv's usual meta (numbers and text) needs no trust
    torch.save({"state_dict": official_mono_fm_state(), "meta": {"epoch": 40, "mmcv_version": "0.4.4"}}, plain)
    assert load(plain, device="cpu", official={"height": 64, "width": 192}).conversion_report.ok


def test_trust_flag_is_on_predict_evaluate_and_export():
    parser = build_parser()
    for argv in (["predict", "a.png", "--checkpoint", "c.pt"], ["export", "weights", "-k", "c.pt", "-o", "w.safetensors"],
                 ["export", "onnx", "-k", "c.pt", "-o", "d.onnx"], ["evaluate", "depth", "--checkpoint", "c.pt"],
                 ["evaluate", "pose", "--checkpoint", "c.pt"]):
        assert parser.parse_args(argv).trust_checkpoint is False
        args = parser.parse_args(argv + ["--trust-checkpoint"])
        assert args.trust_checkpoint is True
    assert official_options(args)["trust_checkpoint"] is True


def test_non_finite_weights_are_refused_naming_the_file_and_tensor(tiny, tmp_path):
    state = torch.load(tiny, weights_only=True)
    name = sorted(k for k in state["model"] if k.startswith("depth_net.decoder."))[0]
    state["model"][name] = state["model"][name].clone()
    state["model"][name].view(-1)[0] = float("inf")
    bad = tmp_path / "inf.pt"
    torch.save(state, bad)
    with pytest.raises(ModelLoadError, match=rf"inf.pt has non-finite weights \(NaN or inf; first: {name}\)"):
        featdepth.load(bad, device="cpu")


def test_malformed_weights_are_one_line(tiny, tmp_path):
    state = torch.load(tiny, weights_only=True)
    state["model"]["depth_net.encoder.encoder.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    del state["model"]["depth_net.encoder.encoder.bn1.weight"]
    bad = tmp_path / "edited.pt"
    torch.save(state, bad)
    with pytest.raises(ModelLoadError) as exc:
        featdepth.load(bad, device="cpu")
    msg = str(exc.value)
    assert "edited.pt" in msg and "model.depth_layers=18" in msg and "\n" not in msg and len(msg) < 500
    assert "1 tensors of another shape (first: encoder.encoder.conv1.weight: [64, 3, 3, 3] in the file" in msg
    assert "1 missing (first: encoder.encoder.bn1.weight)" in msg


def test_export_weights_cli_writes_safetensors_that_load_to_the_same_model(tiny, tmp_path):
    state = torch.load(tiny, weights_only=True)
    state["intrinsics_normalized"] = [[0.58, 0, 0.5], [0, 1.92, 0.5], [0, 0, 1]]
    state["step"] = 7
    state["optimizer"] = {"state": {}, "param_groups": []}
    full = tmp_path / "full.pt"
    torch.save(state, full)
    out = tmp_path / "model.safetensors"
    assert main(["export", "weights", "--checkpoint", str(full), "--out", str(out)]) == 0

    with safe_open(str(out), framework="pt") as fh:
        meta, keys = fh.metadata(), list(fh.keys())
    assert {k.split(".")[0] for k in keys} == {"depth_net", "pose_net"}  # no optimizer, no FeatureNet
    assert json.loads(meta["config"])["model"]["depth_layers"] == 18 and meta["stage"] == "depth"
    a, b = featdepth.load(full, device="cpu"), featdepth.load(out, device="cpu")
    assert torch.equal(_disparity(a), _disparity(b)) and b.has_pose and b.step == 7
    assert b.K is not None and abs(b.K[1, 1] - 1.92) < 1e-9

    assert main(["export", "weights", "--checkpoint", str(full), "--out", str(tmp_path / "w.pt")]) == 2


def test_safetensors_without_featdepth_metadata_is_named(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelLoadError, match=r"other.safetensors is a .safetensors file without featdepth metadata"):
        featdepth.load(path, device="cpu")


def test_export_refuses_non_finite_weights(tiny, tmp_path):
    state = torch.load(tiny, weights_only=True)
    with pytest.raises(ModelLoadError, match="non-finite"):
        state["model"]["pose_net.decoder.conv1.weight"] = torch.full_like(state["model"]["pose_net.decoder.conv1.weight"], float("nan"))
        export_weights_from = tmp_path / "nan.pt"
        torch.save(state, export_weights_from)
        export_weights(export_weights_from, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
