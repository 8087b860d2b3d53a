"""Correspondence-wise loss and the VGG19 perceptual loss. Scenes come from the procedural toy car; the
VGG19 trunk is a randomly initialised STAND-IN written to a temp file (no real weights offline)."""

import numpy as np
import pytest
import torch

from vidpred.data.sources.toycar import background, car_sprite, render, sprite_size
from vidpred.errors import VidpredError
from vidpred.losses.corrwise import CorrWiseLoss, make_base_loss
from vidpred.losses.perceptual import PerceptualLoss, vgg19_layer_index
from vidpred.models.flow import DisFlow


def scene(x_frac, seed=0, h=64, w=96):
    img = render(background(h, w, seed), car_sprite(*sprite_size(h, w)), x_frac)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() * 2 - 1


@pytest.fixture(scope="module")
def l1_corr():
    return CorrWiseLoss(make_base_loss("l1"), DisFlow("medium"), epsilon=0.1)


def test_identical_images_have_zero_loss(l1_corr):
    x = scene(0.5)
    assert float(l1_corr(x, x)) < 1e-4


def test_loss_is_symmetric(l1_corr):
    a, b = scene(0.45), scene(0.55)
    assert float(l1_corr(a, b)) == pytest.approx(float(l1_corr(b, a)), rel=0.05)


def test_corrwise_is_below_pixelwise_for_a_shifted_object(l1_corr):
    a, b = scene(0.5), scene(0.56)
    assert float(l1_corr(a, b)) < float(make_base_loss("l1")(a, b)) * 2  # pixel-wise, both directions


def test_gradients_reach_the_prediction(l1_corr):
    pred = scene(0.48).clone().requires_grad_(True)
    l1_corr(pred, scene(0.5)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_loss_grows_with_positional_offset_and_stays_finite(l1_corr):
    # Fig. 2b: averaged over backgrounds, the loss increases with the car's offset
    offsets = [0.0, 0.1, 0.2, 0.3]
    values = []
    for d in offsets:
        vals = [float(l1_corr(scene(0.5 + d / 2, s), scene(0.5, s))) for s in range(4)]
        values.append(np.mean(vals))
    assert all(np.isfinite(values))
    assert values[0] < values[1] < values[3]


def test_bad_shapes_and_nan_are_clear_errors(l1_corr):
    with pytest.raises(VidpredError, match="differ in shape"):
        l1_corr(scene(0.5), scene(0.5, h=32, w=48))
    bad = scene(0.5)
    bad[..., 3, 3] = float("nan")
    with pytest.raises(VidpredError, match="prediction contains NaN"):
        l1_corr(bad, scene(0.5))
    with pytest.raises(VidpredError, match="epsilon"):
        CorrWiseLoss(make_base_loss("l1"), DisFlow(), epsilon=1.5)
    with pytest.raises(VidpredError, match="differentiable flow"):
        CorrWiseLoss(make_base_loss("l1"), DisFlow(), magnitude_weight=0.1)
    with pytest.raises(VidpredError, match="unknown base loss"):
        make_base_loss("ssim")


def test_pixelwise_warm_start_returns_the_base_loss(l1_corr):
    a, b = scene(0.45), scene(0.55)
    assert float(l1_corr(a, b, pixelwise=True)) == pytest.approx(float((a - b).abs().mean()), rel=1e-6)


@pytest.fixture(scope="module")
def standin_vgg(tmp_path_factory):
    from torchvision.models import vgg19

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg19-standin.pth"  # STAND-IN: random weights
    torch.save(vgg19(weights=None).state_dict(), path)
    return path


@pytest.mark.slow  # builds a 548 MB VGG19 stand-in
def test_perceptual_layers_weights_and_distance(standin_vgg):
    idx = vgg19_layer_index()
    assert idx["relu1_1"] == 1 and idx["relu2_1"] == 6 and idx["relu4_2"] == 22 and idx["relu5_1"] == 29
    loss = PerceptualLoss(trunk_weights=standin_vgg)  # CorrWise defaults
    a, b = scene(0.45, h=32, w=48), scene(0.55, h=32, w=48)
    assert float(loss(a, a)) == 0.0
    v = loss(a, b)
    # by hand: weighted per-layer L1 over the same features
    feats = loss.feature_maps(torch.cat([a, b]))
    manual = sum(w * (f[:1] - f[1:]).abs().mean() for w, f in zip([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1], feats))
    assert float(v) == pytest.approx(float(manual), rel=1e-5)
    mse = PerceptualLoss(["relu1_2", "relu2_2", "relu3_2", "relu4_2"], [1 / 32, 1 / 16, 1 / 8, 1 / 4],
                         distance="mse", trunk_weights=standin_vgg)
    assert len(mse.features) == 23 and float(mse(a, b)) > 0
    with pytest.raises(VidpredError, match="unknown VGG19 layer"):
        PerceptualLoss(["relu9_9"], [1.0], trunk_weights=standin_vgg)


@pytest.mark.slow  # builds a 548 MB VGG19 stand-in
def test_corrwise_perceptual_sum_gets_gradients(standin_vgg):
    base = make_base_loss("l1+perceptual", {"trunk_weights": str(standin_vgg)})
    loss = CorrWiseLoss(base, DisFlow())
    pred = scene(0.48, h=32, w=48).requires_grad_(True)
    value = loss(pred, scene(0.5, h=32, w=48))
    value.backward()
    assert torch.isfinite(value) and pred.grad.abs().sum() > 0
    assert base.weights == {"l1": 0.5, "perceptual": 0.5}


def test_missing_vgg_weights_are_named(monkeypatch):
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    with pytest.raises(VidpredError, match="vgg19"):
        PerceptualLoss()
