"""ResnetEncoder / build_encoder: registry, pyramid shapes, weight loading (never downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
import torchvision.models._api as tv_api

from featdepth.models import ENCODER_CHOICES, ResnetEncoder, build_encoder, resolve_num_layers

CHANNELS = {
    18: [64, 64, 128, 256, 512],
    34: [64, 64, 128, 256, 512],
    50: [64, 256, 512, 1024, 2048],
    101: [64, 256, 512, 1024, 2048],
}

_CACHE: dict[tuple[int, int], ResnetEncoder] = {}


def _encoder(num_layers: int, num_input_images: int = 1) -> ResnetEncoder:
    """Random-init encoders are expensive to build (R101), so build each once per session."""
    key = (num_layers, num_input_images)
    if key not in _CACHE:
        _CACHE[key] = build_encoder(num_layers, num_input_images=num_input_images).eval()
    return _CACHE[key]


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    def _refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to download weights: {args[:1]}")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", _refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _refuse)


def _assert_pyramid(features, batch: int, height: int, width: int, channels: list[int]) -> None:
    assert len(features) == 5
    for level, (f, c) in enumerate(zip(features, channels)):
        stride = 2 ** (level + 1)
        assert tuple(f.shape) == (batch, c, height // stride, width // stride), f"level {level}"
        assert torch.isfinite(f).all()


class TestRegistry:
    def test_choices(self):
        assert ENCODER_CHOICES == (18, 34, 50, 101)

    @pytest.mark.parametrize("name,expected", [(18, 18), ("resnet34", 34), ("ResNet50", 50), ("101", 101)])
    def test_names_accepted(self, name, expected):
        assert resolve_num_layers(name) == expected

    @pytest.mark.parametrize("bad", [20, "resnet152", "vgg16", 50.0, True])
    def test_unknown_raises_listing_choices(self, bad):
        with pytest.raises(ValueError) as err:
            build_encoder(bad)
        msg = str(err.value)
        for n in ENCODER_CHOICES:
            assert str(n) in msg

    def test_bad_num_input_images(self):
        with pytest.raises(ValueError, match="num_input_images"):
            build_encoder(18, num_input_images=0)


class TestShapes:
    @pytest.mark.parametrize("num_layers", ENCODER_CHOICES)
    @pytest.mark.parametrize("size", [(64, 192), (192, 640)])
    def test_every_encoder_pyramid(self, num_layers, size):
        enc = _encoder(num_layers)
        assert enc.num_ch_enc == CHANNELS[num_layers]
        h, w = size
        with torch.no_grad():
            feats = enc(torch.rand(1, 3, h, w))
        _assert_pyramid(feats, 1, h, w, CHANNELS[num_layers])

    @pytest.mark.parametrize("num_layers", [18, 50])
    def test_paper_resolution(self, num_layers):
        with torch.no_grad():
            feats = _encoder(num_layers)(torch.rand(1, 3, 320, 1024))
        _assert_pyramid(feats, 1, 320, 1024, CHANNELS[num_layers])

    def test_f0_is_conv1_bn_relu(self):
        enc = _encoder(18)
        x = torch.rand(2, 3, 64, 64)
        with torch.no_grad():
            f0 = enc(x)[0]
            ref = torch.relu(enc.encoder.bn1(enc.encoder.conv1(x)))
        torch.testing.assert_close(f0, ref)

    def test_no_normalisation_inside(self):
        enc = _encoder(18)
        seen = {}
        handle = enc.encoder.conv1.register_forward_pre_hook(lambda m, inp: seen.update(x=inp[0]))
        x = torch.rand(1, 3, 32, 32)
        with torch.no_grad():
            enc(x)
        handle.remove()
        assert torch.equal(seen["x"], x)

    def test_multi_image_encoder(self):
        enc = _encoder(18, 2)
        assert enc.encoder.conv1.weight.shape == (64, 6, 7, 7)
        with torch.no_grad():
            feats = enc(torch.rand(2, 6, 64, 96))
        _assert_pyramid(feats, 2, 64, 96, CHANNELS[18])
        with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
            enc(torch.rand(2, 3, 64, 96))

    def test_state_dict_layout(self):
        keys = set(_encoder(18).state_dict())
        assert "encoder.conv1.weight" in keys
        assert "encoder.layer4.1.bn2.running_var" in keys
        assert "encoder.fc.weight" in keys  # kept so torchvision state dicts load strictly


def _random_resnet18_state(seed: int = 123) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = tvm.resnet18(weights=None)
    with torch.no_grad():  # make BN parameters/buffers non-trivial too
        for name, t in model.state_dict().items():
            if t.is_floating_point() and "bn" in name:
                t.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


class TestWeights:
    def test_local_file_reproduces_weights(self, tmp_path: Path):
        state = _random_resnet18_state()
        path = tmp_path / "resnet18_random.pth"
        torch.save(state, path)
        enc = build_encoder(18, weights=str(path))
        loaded = enc.encoder.state_dict()
        assert loaded.keys() == state.keys()
        for k in state:
            assert torch.equal(loaded[k], state[k]), k
        # pathlib paths and checkpoint-style wrapping work too
        torch.save({"state_dict": state}, tmp_path / "wrapped.pt")
        enc2 = build_encoder("resnet18", weights=tmp_path / "wrapped.pt")
        assert torch.equal(enc2.encoder.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])

    def test_local_file_two_images_conv1(self, tmp_path: Path):
        state = _random_resnet18_state()
        path = tmp_path / "r18.pth"
        torch.save(state, path)
        enc = build_encoder(18, num_input_images=2, weights=path)
        w = state["conv1.weight"]
        torch.testing.assert_close(enc.encoder.conv1.weight.detach(), torch.cat([w, w], dim=1) / 2, rtol=0, atol=0)
        assert torch.equal(enc.encoder.layer1[0].conv2.weight, state["layer1.0.conv2.weight"])
        # Stacking two copies of one image gives the same f0 as the 1-image encoder on that image.
        single = build_encoder(18, weights=path).eval()
        enc.eval()
        x = torch.rand(1, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(enc(torch.cat([x, x], 1))[0], single(x)[0], rtol=1e-5, atol=1e-5)

    def test_missing_file_names_path(self, tmp_path: Path):
        path = tmp_path / "does_not_exist.pth"
        with pytest.raises(FileNotFoundError, match="does_not_exist.pth"):
            build_encoder(18, weights=str(path))

    def test_corrupt_file_names_path(self, tmp_path: Path):
        path = tmp_path / "corrupt.pth"
        path.write_bytes(b"this is not a torch checkpoint" * 10)
        with pytest.raises(ValueError, match="corrupt.pth"):
            build_encoder(18, weights=path)

    def test_mismatched_file_names_path(self, tmp_path: Path):
        path = tmp_path / "r18_for_r34.pth"
        torch.save(_random_resnet18_state(), path)
        with pytest.raises(ValueError, match="r18_for_r34.pth"):
            build_encoder(34, weights=path)
        partial = _random_resnet18_state()
        del partial["fc.bias"]
        torch.save(partial, tmp_path / "partial.pth")
        with pytest.raises(ValueError, match="partial.pth"):
            build_encoder(18, weights=tmp_path / "partial.pth")

    def test_imagenet_uses_classic_torchvision_weights(self, monkeypatch):
        """The download function is replaced: checks the URL asked for and the 2-image conv1."""
        state = _random_resnet18_state(seed=7)
        urls = []

        def fake_download(url, *args, **kwargs):
            urls.append(url)
            return {k: v.clone() for k, v in state.items()}

        monkeypatch.setattr(tv_api, "load_state_dict_from_url", fake_download)
        enc = build_encoder(18, num_input_images=2, weights="imagenet")
        assert urls == [tvm.ResNet18_Weights.IMAGENET1K_V1.url]
        w = state["conv1.weight"]
        torch.testing.assert_close(enc.encoder.conv1.weight.detach(), torch.cat([w, w], 1) / 2, rtol=0, atol=0)
        assert torch.equal(enc.encoder.bn1.running_mean, state["bn1.running_mean"])

    def test_bad_weights_type(self):
        with pytest.raises(TypeError):
            build_encoder(18, weights=3)  # type: ignore[arg-type]
