"""Official FeatDepth (mmcv) and monodepth2 checkpoints: key mapping, architecture inference, round trips.

The foreign state dicts are written here from the official key names and shapes (docs/method.md §1.3, §1.4, §1.7;
monodepth2's ``networks/depth_decoder.py`` and ``pose_decoder.py``), not derived from our modules:
the encoders are torchvision ResNet state dicts with the official prefix, the decoders are listed
layer by layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import models as tvm

import featdepth
from featdepth.cli import main
from featdepth.inference.official import (
    OfficialCheckpointError,
    convert_official_checkpoint,
    detect_checkpoint_format,
    infer_architecture,
    load_official,
    map_featdepth_state_dict,
    to_official_state_dict,
)

R18_CHANNELS = [64, 64, 128, 256, 512]


pytestmark = pytest.mark.usefixtures("single_thread")


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 0.05


def _resnet(name: str, prefix: str, in_images: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(hash(prefix) % 1000)
    sd = getattr(tvm, name)(weights=None).state_dict()
    if in_images > 1:
        sd["conv1.weight"] = _rand(64, 3 * in_images, 7, 7)
    return {prefix + k: v.clone() for k, v in sd.items()}


def official_depth_decoder(c: list[int]) -> dict[str, torch.Tensor]:
    """DepthDecoder.* of mono_fm (docs/method.md §1.3 table, bottleneck 256), written out name by name."""
    sd = {
        "DepthDecoder.reduce4.conv.weight": _rand(512, c[4], 1, 1),
        "DepthDecoder.reduce3.conv.weight": _rand(256, c[3], 1, 1),
        "DepthDecoder.reduce2.conv.weight": _rand(256, c[2], 1, 1),
        "DepthDecoder.reduce1.conv.weight": _rand(256, c[1], 1, 1),
        "DepthDecoder.iconv4.conv.weight": _rand(256, 512, 3, 3),
        "DepthDecoder.iconv4.conv.bias": _rand(256),
    }
    for k in (3, 2, 1):
        sd[f"DepthDecoder.iconv{k}.conv.weight"] = _rand(256, 513, 3, 3)
        sd[f"DepthDecoder.iconv{k}.conv.bias"] = _rand(256)
    for k in (4, 3, 2, 1):
        for i in (1, 2, 3, 4):
            sd[f"DepthDecoder.crp{k}.0.{i}_pointwise.conv.weight"] = _rand(256, 256, 1, 1)
        sd[f"DepthDecoder.merge{k}.conv.weight"] = _rand(256, 256, 3, 3)
        sd[f"DepthDecoder.merge{k}.conv.bias"] = _rand(256)
        sd[f"DepthDecoder.disp{k}.0.conv.weight"] = _rand(1, 256, 3, 3)
        sd[f"DepthDecoder.disp{k}.0.conv.bias"] = _rand(1)
    return sd


def official_pose_decoder() -> dict[str, torch.Tensor]:
    """PoseDecoder.* (docs/method.md §1.4): reduce 1x1 512->256, conv1/conv2 3x3 256->256, conv3 1x1 256->6, all with bias."""
    return {
        "PoseDecoder.reduce.weight": _rand(256, 512, 1, 1), "PoseDecoder.reduce.bias": _rand(256),
        "PoseDecoder.conv1.weight": _rand(256, 256, 3, 3), "PoseDecoder.conv1.bias": _rand(256),
        "PoseDecoder.conv2.weight": _rand(256, 256, 3, 3), "PoseDecoder.conv2.bias": _rand(256),
        "PoseDecoder.conv3.weight": _rand(6, 256, 1, 1), "PoseDecoder.conv3.bias": _rand(6),
    }  # fmt: skip


def official_mono_fm_state(depth="resnet18", extractor: bool = True) -> dict[str, torch.Tensor]:
    sd = _resnet(depth, "DepthEncoder.encoder.")
    sd.update(official_depth_decoder(R18_CHANNELS if depth == "resnet18" else [64, 256, 512, 1024, 2048]))
    sd.update(_resnet("resnet18", "PoseEncoder.encoder.", in_images=2))
    sd.update(official_pose_decoder())
    if extractor:
        sd.update(_resnet(depth, "extractor.encoder."))
    return sd


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = official_mono_fm_state()
    path = tmp_path_factory.mktemp("official") / "epoch_40.pth"
    torch.save({"meta": {"epoch": 40, "iter": 1000}, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path, sd


def _ours_name(official_key: str) -> str:
    """The mapping of docs/method.md §1.7: official prefix -> featdepth prefix, layer names unchanged."""
    table = {
        "DepthEncoder.": "depth_net.encoder.", "DepthDecoder.": "depth_net.decoder.",
        "PoseEncoder.": "pose_net.encoder.", "PoseDecoder.": "pose_net.decoder.",
        "extractor.": "feature_net.encoder.",
    }  # fmt: skip
    prefix = next(p for p in table if official_key.startswith(p))
    return table[prefix] + official_key[len(prefix):]


class TestFeatDepthOfficial:
    def test_every_official_tensor_lands(self, official):
        path, sd = official
        assert detect_checkpoint_format(path) == "featdepth-official"
        ckpt, report = load_official(path, height=64, width=192)
        assert report.ok, report.summary()
        assert len(report.mapped) == len(sd)
        model_state = ckpt["model"]
        for key, tensor in sd.items():
            assert torch.equal(model_state[_ours_name(key)], tensor), key
        assert ckpt["stage"] == "depth"
        cfg = ckpt["config"]
        assert cfg["model"]["depth_layers"] == 18 and cfg["model"]["depth_decoder"] == "featdepth"
        assert cfg["model"]["pose_layers"] == 18 and cfg["model"]["feature_layers"] == 18
        assert cfg["model"]["pose_input_size"] == [192, 640]
        assert cfg["data"]["frame_ids"] == [0, -1, 1, "s"] and cfg["data"]["stereo_baseline"] == 0.015
        assert ckpt["converted_from"]["meta"] == {"epoch": 40, "iter": 1000}

    def test_load_predict_and_round_trip(self, official, tmp_path):
        path, sd = official
        model = featdepth.load(path, device="cpu", official={"height": 64, "width": 192})
        assert model.depth_kind == "metric (×36)"  # the released model is the MS model
        assert model.conversion_report is not None and model.conversion_report.ok
        out = tmp_path / "converted.pt"
        report = convert_official_checkpoint(path, out, height=64, width=192)
        assert report.ok
        converted = featdepth.load(out, device="cpu")
        assert converted.depth_kind == model.depth_kind and converted.config.data.frame_ids == [0, -1, 1, "s"]
        for ours, theirs in ((converted.depth_net, model.depth_net), (converted.pose_net, model.pose_net)):
            a, b = ours.state_dict(), theirs.state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        x = torch.rand(1, 3, 64, 192)
        depth = model.predict_depth(x)
        assert depth.shape == (1, 64, 192) and depth.min() >= 3.6 * (1 - 1e-5)
        # ours -> official names gives back exactly the official dict
        state = torch.load(out, weights_only=False)["model"]
        back = to_official_state_dict(state, stage="depth")
        assert set(back) == set(sd)
        for key in sd:
            assert torch.equal(back[key], sd[key]), key

    def test_unknown_keys_are_reported_by_name(self, official, tmp_path):
        _, sd = official
        bad = dict(sd)
        bad["DepthDecoder.extra_head.conv.weight"] = _rand(1, 256, 3, 3)
        bad["Uncertainty.conv.weight"] = _rand(1, 1, 1, 1)
        path = tmp_path / "odd.pth"
        torch.save({"meta": {}, "state_dict": bad}, path)
        with pytest.raises(OfficialCheckpointError) as info:
            load_official(path, height=64, width=192)
        message = str(info.value)
        assert "DepthDecoder.extra_head.conv.weight" in message and "Uncertainty.conv.weight" in message
        assert "odd.pth" in message
        _, report = load_official(path, height=64, width=192, strict=False)
        assert sorted(report.unmapped) == ["DepthDecoder.extra_head.conv.weight", "Uncertainty.conv.weight"]

    def test_shape_mismatch_and_unfilled_keys_are_reported(self, official, tmp_path):
        _, sd = official
        bad = {k: v for k, v in sd.items() if not k.startswith("PoseDecoder.")}
        bad["DepthDecoder.merge2.conv.weight"] = _rand(256, 256, 1, 1)
        path = tmp_path / "bad.pth"
        torch.save({"state_dict": bad}, path)
        with pytest.raises(OfficialCheckpointError, match="merge2"):
            load_official(path, height=64, width=192)
        ckpt, report = load_official(path, height=64, width=192, strict=False)
        assert [m[0] for m in report.shape_mismatch] == ["DepthDecoder.merge2.conv.weight"]
        assert "depth_net.decoder.merge2.conv.weight" in report.missing
        assert sorted(k for k in report.missing if k.startswith("pose_net.")) == sorted(
            _ours_name(k) for k in official_pose_decoder()
        )
        assert "pose_net.decoder.conv3.weight" in report.summary()

    def test_missing_pose_only_is_fine(self, official, tmp_path):
        _, sd = official
        path = tmp_path / "nopose.pth"
        torch.save({"state_dict": {k: v for k, v in sd.items() if not k.startswith("PoseDecoder.")}}, path)
        ckpt, report = load_official(path, height=64, width=192)  # strict: only depth keys must all be filled
        assert report.missing and all(k.startswith("pose_net.decoder.") for k in report.missing)
        # the incomplete PoseNet is left out rather than kept at random init
        assert not any(k.startswith("pose_net.") for k in ckpt["model"])
        model = featdepth.load(ckpt, device="cpu")
        assert not model.has_pose
        with pytest.raises(ValueError, match="no PoseNet"):
            model.predict_pose(np.zeros((64, 192, 3), np.uint8), np.zeros((64, 192, 3), np.uint8))

    def test_architecture_from_shapes(self):
        for name, depth in (("resnet18", 18), ("resnet34", 34)):  # ResNet-50: test_r50_paper_layout
            renamed, _ = map_featdepth_state_dict(_resnet(name, "DepthEncoder.encoder."))
            assert infer_architecture(renamed)["depth_layers"] == depth

    def test_r50_paper_layout(self, tmp_path):
        sd = official_mono_fm_state("resnet50", extractor=False)  # no extractor: the Baseline model's layout
        path = tmp_path / "r50.pth"
        torch.save({"meta": {}, "state_dict": sd, "optimizer": {}}, path)
        ckpt, report = load_official(path)
        assert report.ok, report.summary()
        assert ckpt["config"]["model"]["depth_layers"] == 50 and ckpt["stage"] == "baseline"
        assert (ckpt["config"]["data"]["height"], ckpt["config"]["data"]["width"]) == (320, 1024)
        assert torch.equal(ckpt["model"]["depth_net.decoder.reduce4.conv.weight"], sd["DepthDecoder.reduce4.conv.weight"])


def monodepth2_files(folder: Path, height: int = 64, width: int = 192) -> dict[str, dict]:
    """A monodepth2 model folder: encoder.pth, depth.pth, pose_encoder.pth, pose.pth (ResNet-18)."""
    torch.manual_seed(5)
    enc = {"encoder." + k: v for k, v in tvm.resnet18(weights=None).state_dict().items()}
    enc.update(height=height, width=width, use_stereo=False)
    # networks/depth_decoder.py: convs inserted as (upconv,4,0),(upconv,4,1),(upconv,3,0),...,(upconv,0,1),
    # then (dispconv,0..3); num_ch_dec = 16,32,64,128,256; skips from f_{i-1}.
    shapes = {
        0: (256, 512), 1: (256, 256 + 256), 2: (128, 256), 3: (128, 128 + 128), 4: (64, 128), 5: (64, 64 + 64),
        6: (32, 64), 7: (32, 32 + 64), 8: (16, 32), 9: (16, 16),
    }  # fmt: skip
    depth = {}
    for n, (cout, cin) in shapes.items():
        depth[f"decoder.{n}.conv.conv.weight"] = _rand(cout, cin, 3, 3)
        depth[f"decoder.{n}.conv.conv.bias"] = _rand(cout)
    for n, cin in ((10, 16), (11, 32), (12, 64), (13, 128)):
        depth[f"decoder.{n}.conv.weight"] = _rand(1, cin, 3, 3)
        depth[f"decoder.{n}.conv.bias"] = _rand(1)
    pose_enc = {"encoder." + k: v for k, v in tvm.resnet18(weights=None).state_dict().items()}
    pose_enc["encoder.conv1.weight"] = _rand(64, 6, 7, 7)
    # networks/pose_decoder.py: squeeze, pose0, pose1, pose2 (6 x 2 frames predicted)
    pose = {
        "net.0.weight": _rand(256, 512, 1, 1), "net.0.bias": _rand(256),
        "net.1.weight": _rand(256, 256, 3, 3), "net.1.bias": _rand(256),
        "net.2.weight": _rand(256, 256, 3, 3), "net.2.bias": _rand(256),
        "net.3.weight": _rand(12, 256, 1, 1), "net.3.bias": _rand(12),
    }  # fmt: skip
    files = {"encoder.pth": enc, "depth.pth": depth, "pose_encoder.pth": pose_enc, "pose.pth": pose}
    folder.mkdir(parents=True, exist_ok=True)
    for name, sd in files.items():
        torch.save(sd, folder / name)
    return files


class TestMonodepth2:
    def test_folder_maps_completely(self, tmp_path):
        folder = tmp_path / "mono_640x192"
        files = monodepth2_files(folder)
        assert detect_checkpoint_format(folder) == "monodepth2"
        model = featdepth.load(folder, device="cpu")
        report = model.conversion_report
        assert report.ok, report.summary()
        state = {"depth_net." + k: v for k, v in model.depth_net.state_dict().items()}
        state.update({"pose_net." + k: v for k, v in model.pose_net.state_dict().items()})
        order = ["upconv4_0", "upconv4_1", "upconv3_0", "upconv3_1", "upconv2_0", "upconv2_1",
                 "upconv1_0", "upconv1_1", "upconv0_0", "upconv0_1", "dispconv0", "dispconv1", "dispconv2", "dispconv3"]
        for n, name in enumerate(order):
            inner = "conv.conv" if n < 10 else "conv"
            assert torch.equal(state[f"depth_net.decoder.{name}.{inner}.weight"], files["depth.pth"][f"decoder.{n}.{inner}.weight"])
        for n, name in enumerate(["reduce", "conv1", "conv2"]):
            assert torch.equal(state[f"pose_net.decoder.{name}.weight"], files["pose.pth"][f"net.{n}.weight"])
        assert torch.equal(state["pose_net.decoder.conv3.weight"], files["pose.pth"]["net.3.weight"][:6])
        assert torch.equal(state["pose_net.decoder.conv3.bias"], files["pose.pth"]["net.3.bias"][:6])
        assert any("first" in note for note in report.adapted)
        assert torch.equal(state["depth_net.encoder.encoder.layer3.1.conv2.weight"], files["encoder.pth"]["encoder.layer3.1.conv2.weight"])
        assert torch.equal(state["pose_net.encoder.encoder.conv1.weight"], files["pose_encoder.pth"]["encoder.conv1.weight"])
        cfg = model.config
        assert cfg.model.depth_decoder == "monodepth2" and model.stage == "baseline"
        assert (model.height, model.width) == (64, 192) and cfg.model.pose_input_size == [64, 192]
        assert model.depth_kind == "relative"
        depth = model.predict_depth(np.zeros((30, 50, 3), np.uint8))
        assert depth.shape == (30, 50) and np.isfinite(depth).all()

    def test_wrong_order_would_not_fit(self, tmp_path):
        # monodepth2 numbers its convs in insertion order; a sorted-key order would put (dispconv, 0) first.
        folder = tmp_path / "md2"
        files = monodepth2_files(folder)
        depth = files["depth.pth"]
        swapped = dict(depth)
        swapped["decoder.0.conv.conv.weight"], swapped["decoder.2.conv.conv.weight"] = (
            depth["decoder.2.conv.conv.weight"], depth["decoder.0.conv.conv.weight"])
        torch.save(swapped, folder / "depth.pth")
        with pytest.raises(OfficialCheckpointError, match=r"depth\.pth:decoder\.0\.conv\.conv\.weight"):
            load_official(folder)


class TestCommandLine:
    def test_convert_and_predict_with_an_official_checkpoint(self, official, tmp_path, capsys):
        path, _ = official
        out = tmp_path / "ours.pt"
        assert main(["export", "convert-official", "--checkpoint", str(path), "--out", str(out), "--train-size", "192x64"]) == 0
        printed = capsys.readouterr().out
        assert "every key mapped" in printed and str(out) in printed
        assert torch.load(out, weights_only=False)["config"]["data"]["height"] == 64

        image = tmp_path / "frame.png"
        from PIL import Image

        Image.fromarray(np.full((40, 70, 3), 128, np.uint8)).save(image)
        rc = main(["predict", str(image), "--checkpoint", str(path), "--train-size", "192x64", "--out",
                   str(tmp_path / "pred"), "--npy", "-q", "--device", "cpu"])
        assert rc == 0
        assert np.load(tmp_path / "pred" / "frame_depth.npy").shape == (40, 70)

    def test_not_a_checkpoint(self, tmp_path, capsys):
        bad = tmp_path / "notes.pth"
        bad.write_text("hello")
        assert main(["export", "convert-official", "--checkpoint", str(bad), "--out", str(tmp_path / "x.pt")]) != 0
        assert "notes.pth" in capsys.readouterr().err
        assert not (tmp_path / "x.pt").exists()
