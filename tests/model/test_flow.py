"""Flow backends and the warp. Images are made here (smooth random textures); RAFT runs with randomly
initialised weights (no real checkpoint is available offline), so only its resizing/mapping is tested."""

import numpy as np
import pytest
import torch

from vidpred.errors import VidpredError
from vidpred.models.flow import DisFlow, RaftFlow, make_flow, warp


def texture(h=64, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 8, w // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    return (x - x.min()) / (x.max() - x.min()) * 2 - 1


def test_zero_flow_warps_to_identity():
    x = texture()
    out = warp(x, torch.zeros(1, 2, 64, 80))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_integer_flow_is_a_shift():
    x = texture()
    flow = torch.zeros(1, 2, 64, 80)
    flow[:, 0] = 3.0  # out[p] = x[p + (3, 0)]
    out = warp(x, flow)
    torch.testing.assert_close(out[..., :-3], x[..., 3:], atol=1e-5, rtol=0)


def test_dis_recovers_translation_and_warp_undoes_it():
    x1 = texture()
    x2 = torch.roll(x1, shifts=(2, 3), dims=(2, 3))  # x1[p] = x2[p + (3, 2)]
    flow = DisFlow("medium")(x1, x2)
    assert flow.shape == (1, 2, 64, 80)
    inner = flow[0, :, 12:-12, 12:-12].mean(dim=(1, 2))
    assert abs(float(inner[0]) - 3) < 0.3 and abs(float(inner[1]) - 2) < 0.3
    err_before = (x2 - x1)[..., 8:-8, 8:-8].abs().mean()
    err_after = (warp(x2, flow) - x1)[..., 8:-8, 8:-8].abs().mean()
    assert err_after < 0.1 * err_before


def test_raft_maps_flow_back_to_input_size(monkeypatch):
    raft = RaftFlow("small", iters=2, weights=None)  # random init: shapes and scaling only
    seen = {}

    class FakeRaft(torch.nn.Module):  # RAFT is a submodule of RaftFlow, so its stand-in is a module too
        def forward(self, a, b, num_flow_updates):
            seen["size"] = tuple(a.shape[2:])
            seen["iters"] = num_flow_updates
            flow = torch.zeros(a.shape[0], 2, *a.shape[2:])
            flow[:, 0], flow[:, 1] = 4.0, 2.0  # in the resized image's pixels
            return [flow]

    monkeypatch.setattr(raft, "model", FakeRaft())
    out = raft(texture(64, 80), texture(64, 80, 1))
    assert seen == {"size": (128, 160), "iters": 2}  # ≥128 px and multiples of 8
    assert out.shape == (1, 2, 64, 80)
    torch.testing.assert_close(out[:, 0], torch.full((1, 64, 80), 2.0))  # 4 px at 160 wide = 2 px at 80
    torch.testing.assert_close(out[:, 1], torch.full((1, 64, 80), 1.0))


def test_raft_real_network_runs_and_keeps_gradient_when_asked():
    raft = RaftFlow("small", iters=1, weights=None)  # random weights, labelled: not a quality test
    x1 = texture(32, 40).requires_grad_(True)
    out = raft(x1, texture(32, 40, 1), keep_grad=True)
    assert out.shape == (1, 2, 32, 40) and torch.isfinite(out).all()
    out.abs().sum().backward()
    assert x1.grad is not None
    assert not raft(x1, texture(32, 40, 1)).requires_grad  # no gradient by default


def test_bad_inputs_are_clear_errors():
    dis = DisFlow()
    with pytest.raises(VidpredError, match="B×3×H×W"):
        dis(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))
    bad = texture()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(VidpredError, match="NaN"):
        dis(bad, texture())
    with pytest.raises(VidpredError, match="does not fit"):
        warp(texture(), torch.zeros(1, 2, 10, 10))
    with pytest.raises(VidpredError, match="unknown flow backend"):
        make_flow("pwc")
    with pytest.raises(VidpredError, match="no gradient"):
        dis(texture(), texture(), keep_grad=True)


def test_auto_falls_back_to_dis_without_raft_weights():
    # conftest points TORCH_HOME at an empty temp dir, so no RAFT checkpoint exists
    assert make_flow("auto").name == "dis"


def test_raft_missing_weights_named(monkeypatch):
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    with pytest.raises(VidpredError, match="raft_large"):
        make_flow("raft")


def test_dis_upscaled_recovers_the_toy_cars_displacement_and_warp_undoes_it():
    # the toy-car scene of the CorrWise experiment (procedural, made here): the car moves 7.2 px to the right;
    # DIS upscaled to 192 px finds it (at 64 px it does not — the car vanishes in DIS's coarse levels)
    from vidpred.data.sources.toycar import background, car_sprite, render, sprite_size

    bg, sprite = background(64, 96, seed=0), car_sprite(*sprite_size(64, 96, 0.25))
    a, b = render(bg, sprite, 0.5), render(bg, sprite, 0.6)  # a[p] = b[p + (7.2, 0)] on the car
    to_t = lambda im: torch.from_numpy(im).permute(2, 0, 1)[None].float() * 2 - 1  # noqa: E731
    x1, x2 = to_t(a), to_t(b)
    flow = DisFlow("medium", min_side=192)(x1, x2)
    assert flow.shape == (1, 2, 64, 96)
    car = torch.from_numpy(np.abs(a - bg).sum(axis=2) > 0.3)  # the car's pixels in x1
    u, v = flow[0, 0][car], flow[0, 1][car]
    assert abs(float(u.median()) - 7.2) < 1.0 and abs(float(v.median())) < 0.5
    err_before = (x2 - x1).abs().mean()
    err_after = (warp(x2, flow) - x1).abs().mean()
    assert err_after < 0.4 * err_before  # what is left is mostly disocclusion


def test_dis_upscaling_keeps_flow_in_input_pixels():
    x1 = texture()
    x2 = torch.roll(x1, shifts=(0, 2), dims=(2, 3))
    flow = DisFlow("medium", min_side=128)(x1, x2)  # matched at 128×160, returned at 64×80 in input pixels
    assert flow.shape == (1, 2, 64, 80)
    inner = flow[0, :, 12:-12, 12:-12].mean(dim=(1, 2))
    assert abs(float(inner[0]) - 2) < 0.3 and abs(float(inner[1])) < 0.3
