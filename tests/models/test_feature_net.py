"""FeatureDecoder and FeatureNet."""

from __future__ import annotations

import pytest
import torch

from featdepth.models import FeatureDecoder, FeatureNet

_NETS: dict[tuple[int, int], FeatureNet] = {}


def _net(num_layers: int = 18, level: int = 0) -> FeatureNet:
    key = (num_layers, level)
    if key not in _NETS:
        _NETS[key] = FeatureNet(num_layers=num_layers, feature_level=level).eval()
    return _NETS[key]


class TestFeatureDecoder:
    def test_shapes_from_f4_only(self):
        dec = FeatureDecoder([64, 256, 512, 1024, 2048]).eval()
        f4 = torch.randn(2, 2048, 2, 3)
        with torch.no_grad():
            out = dec([None, None, None, None, f4])
        assert list(out) == [0, 1, 2, 3]
        for s, rec in out.items():
            assert rec.shape == (2, 3, 64 // 2**s, 96 // 2**s)
            assert (rec >= 0).all() and (rec <= 1).all()

    def test_official_names(self):
        sd = FeatureDecoder([64, 64, 128, 256, 512]).state_dict()
        assert sd["upconv5.conv.conv.weight"].shape == (256, 512, 3, 3)
        assert sd["iconv5.conv.conv.weight"].shape == (256, 256, 3, 3)
        assert sd["upconv1.conv.conv.weight"].shape == (16, 32, 3, 3)
        assert sd["disp4.conv.weight"].shape == (3, 128, 3, 3)
        assert sd["disp1.conv.weight"].shape == (3, 16, 3, 3)
        assert not any(k.startswith("disp5") or k.startswith("disp0") for k in sd)


class TestFeatureNet:
    @pytest.mark.parametrize("num_layers", [18, 50])
    def test_reconstructions(self, num_layers):
        net = _net(num_layers)
        with torch.no_grad():
            feats, rec = net(torch.rand(1, 3, 64, 96))
        assert len(feats) == 5 and feats[4].shape == (1, net.encoder.num_ch_enc[4], 2, 3)
        assert list(rec) == [0, 1, 2, 3]
        for s, r in rec.items():
            assert r.shape == (1, 3, 64 // 2**s, 96 // 2**s)
            assert (r >= 0).all() and (r <= 1).all()

    def test_encode_decode_equals_forward(self):
        net = _net(18)
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            feats, rec = net(x)
            rec2 = net.decode(net.encode(x))
        for s in rec:
            torch.testing.assert_close(rec[s], rec2[s])

    def test_extract_level0_is_conv1(self):
        net = _net(50)
        assert net.feature_channels == 64 and net.feature_stride == 2
        x = torch.rand(2, 3, 64, 96)
        with torch.no_grad():
            f = net.extract(x)
            ref = net.encode(x)[0]
        assert f.shape == (2, 64, 32, 48)
        torch.testing.assert_close(f, ref)

    @pytest.mark.parametrize("level", [1, 2, 4])
    def test_extract_other_levels(self, level):
        net = _net(18, level)
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            f = net.extract(x)
            ref = net.encode(x)[level]
        stride = net.feature_stride
        assert stride == 2 ** (level + 1)
        assert f.shape == (1, net.feature_channels, 64 // stride, 64 // stride)
        assert net.feature_channels == [64, 64, 128, 256, 512][level]
        torch.testing.assert_close(f, ref)

    def test_raw_input_no_normalisation(self):
        net = _net(18)
        seen = {}
        handle = net.encoder.encoder.conv1.register_forward_pre_hook(lambda m, inp: seen.update(x=inp[0]))
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            net.extract(x)
            assert torch.equal(seen.pop("x"), x)
            net(x)
            assert torch.equal(seen.pop("x"), x)
        handle.remove()

    def test_errors(self):
        with pytest.raises(ValueError, match="feature_level"):
            FeatureNet(18, feature_level=5)
        with pytest.raises(ValueError, match="width 100"):
            _net(18)(torch.rand(1, 3, 64, 100))
        with pytest.raises(ValueError, match="height 32"):
            _net(18)(torch.rand(1, 3, 32, 64))
        with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
            _net(18).extract(torch.rand(1, 4, 32, 32))

    def test_state_dict_layout(self):
        keys = set(_net(18).state_dict())
        assert {"encoder.encoder.conv1.weight", "decoder.upconv5.conv.conv.weight", "decoder.disp1.conv.bias"} <= keys

    def test_backward(self):
        net = FeatureNet(18).train()
        feats, rec = net(torch.rand(2, 3, 64, 64))
        (sum(r.mean() for r in rec.values()) + feats[0].mean()).backward()
        for name, p in net.named_parameters():
            if name.startswith("encoder.encoder.fc"):
                continue  # the classifier head is kept only so ImageNet weights load strictly
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert net.encoder.encoder.conv1.weight.grad.abs().sum() > 0
