"""PoseDecoder and PoseNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featdepth.models import PoseDecoder, PoseNet

_NETS: dict[tuple, PoseNet] = {}


def _net(input_size=(64, 192), num_layers: int = 18) -> PoseNet:
    key = (input_size, num_layers)
    if key not in _NETS:
        _NETS[key] = PoseNet(num_layers=num_layers, input_size=input_size).eval()
    return _NETS[key]


def _capture_encoder_input(net: PoseNet, fn):
    seen = {}
    handle = net.encoder.encoder.conv1.register_forward_pre_hook(lambda m, inp: seen.update(x=inp[0]))
    try:
        with torch.no_grad():
            result = fn()
    finally:
        handle.remove()
    return seen["x"], result


class TestPoseDecoder:
    def test_shapes_and_scaling(self):
        dec = PoseDecoder([64, 64, 128, 256, 512])
        f4 = torch.randn(3, 512, 2, 6)
        raw = {}
        handle = dec.conv3.register_forward_hook(lambda m, inp, out: raw.update(y=out))
        with torch.no_grad():
            axis_angle, translation = dec([None, None, None, None, f4])
        handle.remove()
        assert axis_angle.shape == (3, 3) and translation.shape == (3, 3)
        expected = raw["y"].mean(dim=(2, 3)) * 0.01
        torch.testing.assert_close(torch.cat([axis_angle, translation], 1), expected)
        assert raw["y"].abs().mean() > 0

    def test_official_names_and_last_channel(self):
        sd = PoseDecoder([64, 256, 512, 1024, 2048]).state_dict()
        assert set(sd) == {f"{n}.{p}" for n in ("reduce", "conv1", "conv2", "conv3") for p in ("weight", "bias")}
        assert sd["reduce.weight"].shape == (256, 2048, 1, 1)
        assert sd["conv3.weight"].shape == (6, 256, 1, 1)


class TestPoseNet:
    def test_output_shapes(self):
        a, b = torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192)
        axis_angle, translation = _net()(a, b)
        assert axis_angle.shape == (2, 3) and translation.shape == (2, 3)
        assert torch.isfinite(axis_angle).all() and torch.isfinite(translation).all()

    def test_default_input_size_is_paper(self):
        net = PoseNet()
        assert net.input_size == (192, 640)
        assert net.encoder.encoder.conv1.weight.shape == (64, 6, 7, 7)

    def test_resizes_to_input_size(self):
        net = _net((64, 192))
        a, b = torch.rand(1, 3, 128, 384), torch.rand(1, 3, 128, 384)
        seen, (r1, t1) = _capture_encoder_input(net, lambda: net(a, b))
        assert seen.shape == (1, 6, 64, 192)
        small = [F.interpolate(x, size=(64, 192), mode="bilinear", align_corners=False) for x in (a, b)]
        with torch.no_grad():
            r2, t2 = net(*small)
        torch.testing.assert_close(r1, r2, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(t1, t2, rtol=1e-4, atol=1e-7)

    def test_stacks_in_order_and_normalises(self):
        net = _net((64, 192))
        a, b = torch.rand(1, 3, 64, 192), torch.rand(1, 3, 64, 192)
        seen, _ = _capture_encoder_input(net, lambda: net(a, b))
        torch.testing.assert_close(seen, (torch.cat([a, b], 1) - 0.45) / 0.225)

    def test_output_scaled_by_001(self):
        net = _net((64, 192))
        raw = {}
        handle = net.decoder.conv3.register_forward_hook(lambda m, inp, out: raw.update(y=out))
        with torch.no_grad():
            r, t = net(torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192))
        handle.remove()
        mean_raw = raw["y"].mean(dim=(2, 3))
        torch.testing.assert_close(torch.cat([r, t], 1), 0.01 * mean_raw)
        assert torch.cat([r, t], 1).abs().max() < 0.02 * mean_raw.abs().max()

    def test_frame_order_matters(self):
        net = _net((64, 192))
        a, b = torch.rand(1, 3, 64, 192), torch.rand(1, 3, 64, 192)
        with torch.no_grad():
            r_ab, t_ab = net(a, b)
            r_ba, t_ba = net(b, a)
        assert not torch.allclose(torch.cat([r_ab, t_ab]), torch.cat([r_ba, t_ba]))

    def test_bad_input_size(self):
        with pytest.raises(ValueError, match="height 100"):
            PoseNet(input_size=(100, 640))
        with pytest.raises(ValueError, match="width 650"):
            PoseNet(input_size=(192, 650))

    def test_no_resize_checks_each_call(self):
        net = PoseNet(input_size=None).eval()
        with torch.no_grad():
            r, _ = net(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96))
        assert r.shape == (1, 3)
        with pytest.raises(ValueError, match="width 100"):
            net(torch.rand(1, 3, 64, 100), torch.rand(1, 3, 64, 100))

    def test_frame_shape_mismatch(self):
        with pytest.raises(ValueError, match="same shape"):
            _net()(torch.rand(1, 3, 64, 192), torch.rand(1, 3, 64, 96))

    def test_resnet50_pose(self):
        net = _net((32, 64), num_layers=50)
        assert net.decoder.reduce.in_channels == 2048
        with torch.no_grad():
            r, t = net(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64))
        assert r.shape == (1, 3) and t.shape == (1, 3)

    def test_backward(self):
        net = PoseNet(input_size=(64, 64)).train()
        r, t = net(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
        (r.sum() + t.sum()).backward()
        # the unused torchvision classifier (kept for strict ImageNet loading) gets no gradient
        grads = {n: p.grad for n, p in net.named_parameters() if ".fc." not in n}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
        for name in ("encoder.encoder.conv1.weight", "decoder.reduce.weight", "decoder.conv3.weight", "decoder.conv3.bias"):
            assert grads[name].abs().sum() > 0, name


def test_output_scale_is_configurable_and_linear():
    """``model.pose_output_scale``: the same weights with 10x the factor give 10x the motion."""
    torch.manual_seed(0)
    a = PoseNet(num_layers=18, input_size=None, output_scale=0.01).eval()
    b = PoseNet(num_layers=18, input_size=None, output_scale=0.1).eval()
    b.load_state_dict(a.state_dict())
    x, y = torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192)
    with torch.no_grad():
        (ra, ta), (rb, tb) = a(x, y), b(x, y)
    torch.testing.assert_close(rb, 10 * ra)
    torch.testing.assert_close(tb, 10 * ta)


def test_rotation_scale_applies_to_the_rotation_only():
    """``model.pose_rotation_scale``: the rotation gets its own factor, the translation keeps ``output_scale``;
    ``None`` (the default) is the paper's single factor, bit for bit."""
    torch.manual_seed(0)
    a = PoseNet(num_layers=18, input_size=None, output_scale=0.1).eval()
    b = PoseNet(num_layers=18, input_size=None, output_scale=0.1, rotation_scale=0.01).eval()
    c = PoseNet(num_layers=18, input_size=None, output_scale=0.1, rotation_scale=None).eval()
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    x, y = torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192)
    with torch.no_grad():
        (ra, ta), (rb, tb), (rc, tc) = a(x, y), b(x, y), c(x, y)
    torch.testing.assert_close(rb, ra / 10)
    assert torch.equal(tb, ta) and torch.equal(rc, ra) and torch.equal(tc, ta)
    assert b.decoder.rotation_scale == 0.01 and a.decoder.rotation_scale == 0.1


def test_zero_init_starts_at_the_identity_and_learns():
    """``model.pose_zero_init``: an untrained PoseNet predicts exactly no motion for any pair, and one optimiser
    step on a pose loss moves it (the head's weights get gradients even though they start at zero)."""
    torch.manual_seed(0)
    net = PoseNet(num_layers=18, input_size=None, output_scale=0.1, zero_init=True)
    x, y = torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192)
    rot, trans = net(x, y)
    assert torch.equal(rot, torch.zeros_like(rot)) and torch.equal(trans, torch.zeros_like(trans))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    (net(x, y)[1][:, 2] - 1.0).pow(2).mean().backward()  # pull the forward translation towards 1
    assert net.decoder.conv3.weight.grad.abs().sum() > 0
    opt.step()
    assert net(x, y)[1][:, 2].mean() > 0
    default = PoseNet(num_layers=18, input_size=None)
    assert default.decoder.conv3.weight.abs().sum() > 0  # the paper's random initialisation by default
