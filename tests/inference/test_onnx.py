"""ONNX export: depth and pose graphs, dynamic batch, onnxruntime parity with PyTorch to 1e-4, loud failures."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import featdepth
from featdepth.cli import main
from featdepth.inference.onnx import DepthExportWrapper, ExportError, export_depth_onnx, verify_onnx
from featdepth.geometry import pose_from_axis_angle_translation
from featdepth.models.layers import disp_to_depth
from tests.inference.test_model import make_tiny_checkpoint

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export a FeatDepth-decoder checkpoint (MS convention, ×36) through the CLI once."""
    folder = tmp_path_factory.mktemp("export")
    # 64x96 (not square, so swapped axes would show) keeps the FeatDepth-decoder forward passes cheap
    ckpt = make_tiny_checkpoint(folder / "ms.pt", ["data.frame_ids=[0,-1,1,s]", "data.stereo_baseline=0.015",
                                                   "data.width=96"])
    depth_path, pose_path = folder / "depth.onnx", folder / "pose.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", "onnx", "--checkpoint", str(ckpt), "--out", str(depth_path), "--pose-out", str(pose_path)])
    assert rc == 0
    return ckpt, depth_path, pose_path, buf.getvalue()


@pytest.fixture(scope="module")
def model(exported):
    return featdepth.load(exported[0], device="cpu")


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_depth_graph_matches_pytorch_at_batch_1_and_3(exported, model):
    _, depth_path, _, _ = exported
    session = _session(depth_path)
    (inp,) = session.get_inputs()
    assert inp.name == "image" and not isinstance(inp.shape[0], int)  # dynamic batch axis
    assert list(inp.shape[1:]) == [3, 64, 96]
    meta = onnx.load(str(depth_path)).metadata_props
    props = {p.key: p.value for p in meta}
    assert props["depth_kind"] == "metric (×36)" and float(props["depth_factor"]) == pytest.approx(36.0)
    assert (props["input_height"], props["input_width"]) == ("64", "96")
    for batch in (1, 3):
        x = torch.rand(batch, 3, 64, 96, generator=torch.Generator().manual_seed(batch))
        disp, depth = session.run(["disparity", "depth"], {"image": x.numpy()})
        with torch.no_grad():
            ref_disp = model.depth_net(x)[0]  # eval mode: dropout off
        ref_depth = 36.0 * disp_to_depth(ref_disp, 0.1, 100.0)[1]
        assert disp.shape == (batch, 1, 32, 48)
        assert np.abs(disp - ref_disp.numpy()).max() <= 1e-4
        assert (np.abs(depth - ref_depth.numpy()) / ref_depth.numpy()).max() <= 1e-4
        assert depth.min() >= 3.6 * (1 - 1e-5)


def test_pose_graph_matches_pytorch_at_batch_1_and_3(exported, model):
    _, _, pose_path, _ = exported
    session = _session(pose_path)
    assert [i.name for i in session.get_inputs()] == ["frame_a", "frame_b"]
    for batch in (1, 3):
        g = torch.Generator().manual_seed(10 + batch)
        a, b = torch.rand(batch, 3, 64, 96, generator=g), torch.rand(batch, 3, 64, 96, generator=g)
        axis_angle, translation, T = session.run(["axis_angle", "translation", "T"], {"frame_a": a.numpy(), "frame_b": b.numpy()})
        with torch.no_grad():
            ref_aa, ref_t = model.pose_net(a, b)
        ref_T = pose_from_axis_angle_translation(ref_aa, 36.0 * ref_t)
        assert T.shape == (batch, 4, 4)
        assert np.abs(axis_angle - ref_aa.numpy()).max() <= 1e-4
        assert np.abs(translation - 36.0 * ref_t.numpy()).max() <= 1e-4
        assert np.abs(T - ref_T.numpy()).max() <= 1e-4
        # and it agrees with the Python API's convention (T_{b<-a})
        np.testing.assert_allclose(T[0], model.predict_pose(a[0], b[0]), atol=1e-4)


def test_cli_printed_the_differences(exported):
    _, depth_path, pose_path, printed = exported
    assert depth_path.is_file() and pose_path.is_file()
    lines = printed.strip().splitlines()
    assert len(lines) == 2 and str(depth_path) in lines[0] and str(pose_path) in lines[1]
    assert "batch [1, 3]" in lines[0] and "disparity: max abs" in lines[0] and "T: max abs" in lines[1]
    assert "dynamo exporter" in lines[0]  # the default exporter works with this torch
    assert not [p for p in depth_path.parent.iterdir() if ".tmp" in p.name]


def test_mismatch_fails_loudly(exported, model):
    _, depth_path, _, _ = exported
    wrong = DepthExportWrapper(model.depth_net, 0.1, 100.0, factor=1.0)  # the file has ×36 inside
    with pytest.raises(ExportError, match="depth"):
        verify_onnx(depth_path, wrong, lambda b: (torch.rand(b, 3, 64, 96),), ["image"], ["disparity", "depth"],
                    batches=(1,), rtol_names=("depth",))


def test_failed_verification_leaves_no_file(model, tmp_path, monkeypatch):
    import featdepth.inference.backends as export  # where the export machinery lives (onnx.py re-exports it)


    def fake_export(module, args, path, *a, **k):
        Path(path).write_bytes(b"not really onnx")
        return "fake"

    def failing_verify(*a, **k):
        raise ExportError("simulated mismatch")

    monkeypatch.setattr(export, "onnx_export_module", fake_export)
    monkeypatch.setattr(export, "verify_onnx", failing_verify)
    with pytest.raises(ExportError, match="simulated"):
        export_depth_onnx(model, tmp_path / "depth.onnx")
    assert list(tmp_path.iterdir()) == []
