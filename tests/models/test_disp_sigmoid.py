"""The disparity sigmoid with a training-only gradient floor (docs/method.md, "Disparity sigmoid gradient floor")."""

import pytest
import torch

from featdepth.config import ConfigError, load_config
from featdepth.models.depth_net import DepthNet
from featdepth.models.layers import disp_sigmoid
from featdepth.models.stage import StageNetworks


def test_forward_is_the_sigmoid_and_backward_floors_its_slope():
    z = torch.tensor([-40.0, -8.0, -1.0, 0.0, 2.0, 30.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1.0, -2.0, 3.0, 0.5, -1.0, 4.0], dtype=torch.float64)
    floor = 1e-3
    s = disp_sigmoid(z, floor)
    assert torch.equal(s, torch.sigmoid(z.detach()))
    s.backward(g)
    sig = 1.0 / (1.0 + torch.exp(-z.detach()))
    slope = sig * (1 - sig)
    expected = g * torch.where(slope < floor, torch.full_like(slope, floor), slope)  # hand-written max
    torch.testing.assert_close(z.grad, expected, rtol=1e-12, atol=0)
    # where the sigmoid is not saturated the gradient is the plain one; saturated ends get the floor
    assert z.grad[3] == pytest.approx(0.5 * 0.25) and z.grad[0] == pytest.approx(floor) and z.grad[5] == pytest.approx(4 * floor)


def test_backward_is_bit_identical_to_the_sigmoid_where_the_floor_is_not_hit():
    """So a run whose disparities never saturate trains exactly as without the option."""
    z = (torch.randn(4, 1, 64, 96, generator=torch.Generator().manual_seed(0)) * 3).requires_grad_()
    g = torch.randn(4, 1, 64, 96, generator=torch.Generator().manual_seed(1))
    disp_sigmoid(z, 1e-4).backward(g)
    plain = z.detach().clone().requires_grad_()
    torch.sigmoid(plain).backward(g)
    s = torch.sigmoid(z.detach())
    hit = (1 - s) * s < 1e-4
    assert 0 < int(hit.sum()) < hit.numel()  # both cases present
    assert torch.equal(z.grad[~hit], plain.grad[~hit])
    assert torch.equal(z.grad[hit], g[hit] * 1e-4)


def test_zero_floor_and_no_grad_are_the_plain_sigmoid():
    z = torch.linspace(-50, 50, 101, requires_grad=True)
    disp_sigmoid(z, 0.0).sum().backward()
    plain = torch.linspace(-50, 50, 101, requires_grad=True)
    torch.sigmoid(plain).sum().backward()
    assert torch.equal(z.grad, plain.grad)
    with torch.no_grad():
        assert torch.equal(disp_sigmoid(z, 0.1), torch.sigmoid(z))


@pytest.mark.parametrize("decoder", ["monodepth2", "featdepth"])
def test_depth_net_outputs_unchanged_and_a_saturated_head_still_learns(decoder):
    torch.manual_seed(0)
    plain = DepthNet(18, decoder)
    floored = DepthNet(18, decoder, sigmoid_grad_floor=0.05)
    head = "dispconv0.conv" if decoder == "monodepth2" else "disp1.0.conv"
    with torch.no_grad():  # the collapse: every disparity of the finest scale at the far limit
        dict(plain.decoder.named_modules())[head].bias.fill_(-40.0)
    floored.load_state_dict(plain.state_dict())  # same keys: the floor holds no parameters
    plain.eval(), floored.eval()  # no dropout: comparable
    x = torch.rand(1, 3, 64, 64)
    a, b = plain(x), floored(x)
    for s in a:
        assert torch.equal(a[s], b[s])
    finest = min(a)
    assert a[finest].max() < 1e-15
    a[finest].sum().backward()
    b[finest].sum().backward()
    ga = dict(plain.decoder.named_modules())[head].bias.grad.abs().item()
    gb = dict(floored.decoder.named_modules())[head].bias.grad.abs().item()
    assert ga < 1e-10  # the plain sigmoid passes (almost) nothing back
    assert gb == pytest.approx(0.05 * a[finest].numel(), rel=1e-4)  # d sum / d bias = floor per pixel (float32 sum)


def test_config_key_reaches_the_network_and_is_checked():
    nets = StageNetworks(load_config("demo", ["model.disp_grad_floor=0.01", "model.depth_weights=null",
                                              "model.pose_weights=null", "model.feature_weights=null"]), stage="baseline")
    assert nets.depth_net.decoder.sigmoid_grad_floor == 0.01
    with pytest.raises(ConfigError, match=r"model\.disp_grad_floor must be in \[0, 0\.25\].*got 0\.5"):
        load_config("demo", ["model.disp_grad_floor=0.5"])


def test_floor_is_the_synthetic_presets_default_not_the_papers():
    """1e-4 in synthetic_small and what builds on it (demo, own_video); 0 (the paper's sigmoid) elsewhere."""
    for name in ("synthetic_small", "demo", "own_video", "synthetic_baseline"):
        assert load_config(name).model.disp_grad_floor == 1e-4, name
    for name in ("kitti_featdepth_m", "kitti_baseline_m", "monodepth2_baseline"):
        assert load_config(name).model.disp_grad_floor == 0.0, name
