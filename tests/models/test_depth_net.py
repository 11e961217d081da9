"""Layers, depth decoders and DepthNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featdepth.models import (
    DECODERS,
    CRPBlock,
    Conv1x1,
    Conv3x3,
    ConvBlock,
    DepthNet,
    FeatDepthDecoder,
    MonoDepth2Decoder,
    check_input_size,
    depth_to_disp,
    disp_to_depth,
    normalize_image,
    upsample,
)

R18_CH = [64, 64, 128, 256, 512]
R50_CH = [64, 256, 512, 1024, 2048]


def _fake_features(channels, batch: int, height: int, width: int) -> list[torch.Tensor]:
    return [torch.randn(batch, c, height // 2 ** (i + 1), width // 2 ** (i + 1)) for i, c in enumerate(channels)]


# ----------------------------------------------------------------------------- layers


class TestDispDepth:
    def test_endpoints(self):
        disp = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
        scaled, depth = disp_to_depth(disp, 0.1, 100.0)
        torch.testing.assert_close(scaled[:2], torch.tensor([0.01, 10.0], dtype=torch.float64))
        torch.testing.assert_close(depth[:2], torch.tensor([100.0, 0.1], dtype=torch.float64))
        torch.testing.assert_close(scaled[2], torch.tensor(0.01 + 9.99 * 0.5, dtype=torch.float64))
        torch.testing.assert_close(depth * scaled, torch.ones_like(depth))

    def test_round_trip(self):
        disp = torch.rand(2, 1, 4, 5, dtype=torch.float64)
        _, depth = disp_to_depth(disp, 0.1, 50.0)
        torch.testing.assert_close(depth_to_disp(depth, 0.1, 50.0), disp)

    @pytest.mark.parametrize("lo,hi", [(0.0, 100.0), (10.0, 1.0), (-1.0, 5.0)])
    def test_bad_range(self, lo, hi):
        with pytest.raises(ValueError, match="min_depth"):
            disp_to_depth(torch.rand(3), lo, hi)

    def test_normalize_image(self):
        x = torch.tensor([0.45, 0.675, 0.225])
        torch.testing.assert_close(normalize_image(x), torch.tensor([0.0, 1.0, -1.0]))


class TestCheckInputSize:
    @pytest.mark.parametrize("h,w", [(32, 32), (192, 640), (320, 1024)])
    def test_ok(self, h, w):
        check_input_size(h, w)

    def test_both_bad_named(self):
        with pytest.raises(ValueError) as err:
            check_input_size(100, 200)
        msg = str(err.value)
        assert "height 100" in msg and "width 200" in msg and "multiple" in msg and "32" in msg

    def test_one_bad_named(self):
        with pytest.raises(ValueError) as err:
            check_input_size(64, 190, what="DepthNet input")
        msg = str(err.value)
        assert "width 190" in msg and "height 64 is" not in msg and "DepthNet input" in msg
        assert "160 or 192" in msg  # nearest valid sizes

    def test_zero_and_custom_multiple(self):
        with pytest.raises(ValueError, match="height 0"):
            check_input_size(0, 64)
        check_input_size(24, 40, multiple=8)

    def test_min_size(self):
        check_input_size(64, 96, min_size=64)
        with pytest.raises(ValueError, match="height 32 is smaller than the minimum 64"):
            check_input_size(32, 96, min_size=64)


class TestBlocks:
    def test_conv3x3_reflection(self):
        conv = Conv3x3(2, 3)
        x = torch.randn(1, 2, 5, 7)
        expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), conv.conv.weight, conv.conv.bias)
        torch.testing.assert_close(conv(x), expected)
        assert conv.conv.bias is not None

    def test_conv1x1_no_bias(self):
        assert Conv1x1(4, 2).conv.bias is None
        assert Conv1x1(4, 2)(torch.randn(1, 4, 3, 3)).shape == (1, 2, 3, 3)

    def test_convblock_elu(self):
        block = ConvBlock(3, 4)
        x = torch.randn(1, 3, 6, 6)
        torch.testing.assert_close(block(x), F.elu(block.conv(x)))

    def test_crp_matches_definition(self):
        crp = CRPBlock(4, 4, n_stages=3)
        x = torch.randn(2, 4, 6, 7)
        top, out = x, x
        for i in range(3):
            w = getattr(crp, f"{i + 1}_pointwise").conv.weight
            top = F.conv2d(F.max_pool2d(top, 5, stride=1, padding=2), w)
            out = out + top
        torch.testing.assert_close(crp(x), out)
        assert set(dict(crp.named_parameters())) == {f"{i}_pointwise.conv.weight" for i in (1, 2, 3)}

    def test_crp_needs_equal_planes(self):
        with pytest.raises(ValueError):
            CRPBlock(4, 8)

    def test_upsample_nearest(self):
        x = torch.arange(4.0).view(1, 1, 2, 2)
        y = upsample(x)
        assert y.shape == (1, 1, 4, 4)
        torch.testing.assert_close(y[0, 0, :2, :2], torch.zeros(2, 2))
        torch.testing.assert_close(y[0, 0, 2:, 2:], torch.full((2, 2), 3.0))


# ----------------------------------------------------------------------------- decoders


class TestFeatDepthDecoder:
    @pytest.mark.parametrize("channels", [R18_CH, R50_CH])
    def test_scales_and_range(self, channels):
        dec = FeatDepthDecoder(channels).eval()
        with torch.no_grad():
            out = dec(_fake_features(channels, 2, 64, 96))
        assert list(out) == [0, 1, 2, 3]
        assert dec.scale_strides == {0: 2, 1: 4, 2: 8, 3: 16}
        for s, disp in out.items():
            stride = dec.scale_strides[s]
            assert disp.shape == (2, 1, 64 // stride, 96 // stride)
            assert (disp > 0).all() and (disp < 1).all()

    def test_reduce_convs_take_encoder_channels(self):
        sd = FeatDepthDecoder(R18_CH).state_dict()
        assert sd["reduce4.conv.weight"].shape == (512, 512, 1, 1)
        assert sd["reduce1.conv.weight"].shape == (256, 64, 1, 1)
        sd50 = FeatDepthDecoder(R50_CH).state_dict()
        assert sd50["reduce4.conv.weight"].shape == (512, 2048, 1, 1)
        assert sd50["reduce3.conv.weight"].shape == (256, 1024, 1, 1)

    def test_official_names(self):
        sd = FeatDepthDecoder(R18_CH).state_dict()
        assert sd["iconv4.conv.weight"].shape == (256, 512, 3, 3)
        assert sd["iconv3.conv.weight"].shape == (256, 513, 3, 3)
        assert sd["merge1.conv.bias"].shape == (256,)
        assert sd["disp1.0.conv.weight"].shape == (1, 256, 3, 3)
        assert "crp2.0.4_pointwise.conv.weight" in sd
        assert not any(k.startswith("disp0") or k.startswith("crp0") for k in sd)

    def test_dropout_train_vs_eval(self):
        dec = FeatDepthDecoder(R18_CH)
        feats = _fake_features(R18_CH, 1, 64, 64)
        with torch.no_grad():
            dec.train()
            a, b = dec(feats), dec(feats)
            assert not torch.equal(a[0], b[0])
            dec.eval()
            c, d = dec(feats), dec(feats)
            assert torch.equal(c[0], d[0])

    def test_f0_unused(self):
        dec = FeatDepthDecoder(R18_CH).eval()
        feats = _fake_features(R18_CH, 1, 64, 64)
        other = [torch.zeros_like(feats[0])] + feats[1:]
        with torch.no_grad():
            torch.testing.assert_close(dec(feats)[0], dec(other)[0])

    def test_wrong_feature_channels(self):
        dec = FeatDepthDecoder(R18_CH)
        with pytest.raises(ValueError, match="f4"):
            dec(_fake_features(R18_CH[:4] + [256], 1, 64, 64))


class TestMonoDepth2Decoder:
    @pytest.mark.parametrize("channels", [R18_CH, R50_CH])
    def test_scales_and_range(self, channels):
        dec = MonoDepth2Decoder(channels).eval()
        with torch.no_grad():
            out = dec(_fake_features(channels, 2, 64, 96))
        assert dec.scale_strides == {0: 1, 1: 2, 2: 4, 3: 8}
        assert list(out) == [0, 1, 2, 3]
        for s, disp in out.items():
            assert disp.shape == (2, 1, 64 // 2**s, 96 // 2**s)
            assert (disp > 0).all() and (disp < 1).all()

    def test_subset_no_skips(self):
        dec = MonoDepth2Decoder(R18_CH, scales=(0, 2), use_skips=False).eval()
        with torch.no_grad():
            out = dec(_fake_features(R18_CH, 1, 64, 128))
        assert list(out) == [0, 2] and out[2].shape == (1, 1, 16, 32)
        with pytest.raises(ValueError):
            MonoDepth2Decoder(R18_CH, scales=(4,))


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_every_registered_decoder(name):
    dec = DECODERS[name](R18_CH).eval()
    with torch.no_grad():
        out = dec(_fake_features(R18_CH, 1, 64, 64))
    assert set(out) == set(dec.scale_strides)
    for s, disp in out.items():
        assert disp.shape[-2:] == (64 // dec.scale_strides[s], 64 // dec.scale_strides[s])


# ----------------------------------------------------------------------------- DepthNet

_NETS: dict[tuple[int, str], DepthNet] = {}


def _net(num_layers: int, decoder: str = "featdepth") -> DepthNet:
    key = (num_layers, decoder)
    if key not in _NETS:
        _NETS[key] = DepthNet(num_layers, decoder=decoder).eval()
    return _NETS[key]


class TestDepthNet:
    @pytest.mark.parametrize("num_layers", [18, 50])
    @pytest.mark.parametrize("size", [(64, 192), (192, 640)])
    def test_shapes(self, num_layers, size):
        net = _net(num_layers)
        h, w = size
        with torch.no_grad():
            out = net(torch.rand(1, 3, h, w))
        assert net.num_scales == 4 and net.scale_strides == {0: 2, 1: 4, 2: 8, 3: 16}
        for s, stride in net.scale_strides.items():
            assert out[s].shape == (1, 1, h // stride, w // stride)
            assert (out[s] > 0).all() and (out[s] < 1).all()

    def test_monodepth2_decoder(self):
        net = _net(18, "monodepth2")
        with torch.no_grad():
            out = net(torch.rand(2, 3, 64, 96))
        assert net.scale_strides == {0: 1, 1: 2, 2: 4, 3: 8}
        assert out[0].shape == (2, 1, 64, 96) and out[3].shape == (2, 1, 8, 12)

    @pytest.mark.parametrize(
        "size,named",
        [((100, 200), ("height 100", "width 200")), ((64, 190), ("width 190",)), ((32, 64), ("height 32",))],
    )
    def test_bad_sizes(self, size, named):
        with pytest.raises(ValueError) as err:
            _net(18)(torch.rand(1, 3, *size))
        for text in named:
            assert text in str(err.value)
        assert "multiple" in str(err.value)

    def test_bad_channels_and_decoder(self):
        with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
            _net(18)(torch.rand(1, 1, 64, 64))
        with pytest.raises(ValueError, match="featdepth"):
            DepthNet(18, decoder="unet")

    def test_normalises_input(self):
        net = _net(18)
        seen = {}
        handle = net.encoder.encoder.conv1.register_forward_pre_hook(lambda m, inp: seen.update(x=inp[0]))
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            net(x)
        handle.remove()
        torch.testing.assert_close(seen["x"], (x - 0.45) / 0.225)

    def test_state_dict_layout(self):
        keys = set(_net(18).state_dict())
        assert {"encoder.encoder.conv1.weight", "decoder.reduce4.conv.weight", "decoder.disp1.0.conv.bias"} <= keys

    def test_backward(self):
        net = DepthNet(18).train()
        out = net(torch.rand(2, 3, 64, 64))
        sum(d.mean() for d in out.values()).backward()
        # the unused torchvision classifier (kept for strict ImageNet loading) gets no gradient
        grads = {n: p.grad for n, p in net.named_parameters() if ".fc." not in n}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
        for name in ("encoder.encoder.conv1.weight", "decoder.reduce4.conv.weight", "decoder.disp1.0.conv.weight",
                     "decoder.disp4.0.conv.weight", "decoder.crp1.0.1_pointwise.conv.weight"):
            assert grads[name].abs().sum() > 0, name
