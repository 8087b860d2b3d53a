"""Landmark autoencoder and LSTM dynamics: shapes, invariants, rollout stability, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidpred.errors import VidpredError
from vidpred.models.landmarks import gaussians as G
from vidpred.models.landmarks.autoencoder import (AutoencoderConfig, LandmarkAutoencoder, PatchDiscriminator,
                                                  lsgan_losses)
from vidpred.models.landmarks.dynamics import DynamicsConfig, LandmarkLSTM

TINY = dict(num_landmarks=5, image_size=32, pose_channels=4, pose_depth=3, app_channels=6,
            decoder_channels=[8, 8, 8, 4], spade_hidden=8)


@pytest.mark.parametrize("decoder", ["spade", "plain"])
def test_autoencoder_shapes_and_valid_gaussians(decoder):
    torch.manual_seed(0)
    net = LandmarkAutoencoder(AutoencoderConfig(**TINY, decoder=decoder))
    x = torch.rand(3, 3, 32, 32)
    out = net(x, x.flip(-1))
    assert out["recon"].shape == (3, 3, 32, 32)
    assert out["mu"].shape == (3, 5, 2) and out["cov"].shape == (3, 5, 2, 2) and out["app"].shape == (3, 5, 6)
    assert (out["mu"].abs() < 1).all()
    assert (torch.linalg.eigvalsh(out["cov"]) > 0).all()
    out["recon"].pow(2).mean().backward()
    for name, part in (("pose", net.pose_encoder), ("appearance", net.app_encoder)):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, name


def test_decoder_output_depends_on_landmark_position():
    torch.manual_seed(0)
    net = LandmarkAutoencoder(AutoencoderConfig(**TINY)).eval()
    x = torch.rand(1, 3, 32, 32)
    mu, cov = net.encode_pose(x)
    app = net.encode_appearance(x)
    a = net.decode(mu, cov, app)
    b = net.decode(mu + 0.3, cov, app)
    assert torch.allclose(net.decode(mu, cov, app), a)  # deterministic in eval
    assert (a - b).abs().mean() > 1e-4


def test_appearance_vectors_are_part_weighted_averages():
    # eq. 1: a_k = Σ_l p_k(l) M(l) with Σ_l p_k = 1 → constant feature map gives the constant back
    torch.manual_seed(0)
    net = LandmarkAutoencoder(AutoencoderConfig(**TINY))
    x = torch.rand(2, 3, 32, 32)
    feats = torch.full((2, 6, 16, 16), 0.7)
    net.app_encoder.forward = lambda img: feats  # observe the pooling alone
    assert torch.allclose(net.encode_appearance(x), torch.full((2, 5, 6), 0.7), atol=1e-6)


def test_bad_autoencoder_config_is_one_line_error():
    with pytest.raises(VidpredError, match="image_size"):
        AutoencoderConfig.from_dict({**TINY, "image_size": 40})
    with pytest.raises(VidpredError, match="decoder"):
        AutoencoderConfig.from_dict({**TINY, "decoder": "unet"})


def test_lsgan_losses_are_finite_and_push_apart():
    torch.manual_seed(0)
    d = PatchDiscriminator((8, 16, 16))
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32, requires_grad=True)
    d_loss, g_loss = lsgan_losses(d, real, fake)
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    g_loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def _lstm(k=4, seed=0):
    torch.manual_seed(seed)
    return LandmarkLSTM(DynamicsConfig(num_landmarks=k, hidden=16, layers=2))


def test_teacher_forcing_uses_ground_truth_for_first_n_steps():
    net = _lstm()
    states = torch.randn(2, 6, 4, 5)
    p_all = net(states, n_inputs=6)      # "6 inputs 0 future"
    assert p_all.shape == (2, 5, 4, 5)
    p_3 = net(states, n_inputs=3)        # "3 inputs 3 future"
    assert torch.allclose(p_all[:, :3], p_3[:, :3])          # same ground-truth inputs
    assert not torch.allclose(p_all[:, 3:], p_3[:, 3:])      # later steps read own outputs
    changed = states.clone()
    changed[:, 4] += 1.0
    assert torch.allclose(net(changed, n_inputs=3), p_3)     # frames after the inputs are never read
    with pytest.raises(ValueError):
        net(states, n_inputs=0)


def test_rollout_continues_teacher_forced_predictions():
    net = _lstm()
    states = torch.randn(1, 4, 4, 5)
    roll = net.rollout(states[:, :2], steps=2)
    forced = net(states, n_inputs=2)     # predicts frames 1, 2 (own), 3 (own)
    assert torch.allclose(roll[:, 0], forced[:, 1], atol=1e-6)
    assert torch.allclose(roll[:, 1], forced[:, 2], atol=1e-6)
    assert net.rollout(states[:, :2], steps=0).shape == (1, 0, 4, 5)


def test_hundred_frame_rollout_stays_finite_with_valid_covariances():
    net = _lstm(k=6)
    ctx = G.gaussians_to_state(torch.rand(3, 2, 6, 2) * 2 - 1, 0.02 * torch.eye(2).expand(3, 2, 6, 2, 2))
    roll = net.rollout(ctx, steps=100)
    assert roll.shape == (3, 100, 6, 5)
    assert torch.isfinite(roll).all()
    _, cov = G.state_to_gaussians(roll)
    assert (torch.linalg.eigvalsh(cov) > 0).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 5.0))
def test_any_lstm_output_gives_positive_definite_covariances(seed, scale):
    net = _lstm(seed=seed % 7)
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(2, 5, 4, 5, generator=g) * scale
    pred = net(states, n_inputs=2)
    _, cov = G.state_to_gaussians(pred)  # float32, as in training and rollout
    assert torch.isfinite(pred).all()
    assert (torch.linalg.eigvalsh(cov) > 0).all()


def test_every_landmark_config_builds_and_has_provenance():
    import glob

    from vidpred.config import CONFIG_DIR, load_config, missing_provenance

    files = sorted(glob.glob(str(CONFIG_DIR / "*" / "landmark*.yaml")))
    assert len(files) >= 8
    for f in files:
        cfg = load_config(f)
        assert missing_provenance(cfg) == [], f
        if "dynamics" in Path(f).name:
            DynamicsConfig.from_dict(cfg["dynamics"])
            assert int(cfg["dynamics.n_inputs"]) >= 1 and int(cfg["dynamics.n_future"]) >= 0
        else:
            AutoencoderConfig.from_dict(cfg["model"])  # raises on an impossible architecture


def test_paper_configs_hold_the_papers_numbers():
    from vidpred.config import load_config

    bbc, bair, kth = (load_config(f"paper/landmarks_{d}") for d in ("bbc", "bair", "kth"))
    assert (bbc["model.num_landmarks"], bbc["model.image_size"]) == (40, 128)
    assert (bair["model.num_landmarks"], kth["model.num_landmarks"]) == (30, 30)
    dyn = {d: load_config(f"paper/landmark_dynamics_{d}") for d in ("bbc", "bair", "kth")}
    assert [(c["dynamics.n_inputs"], c["dynamics.n_future"]) for c in dyn.values()] == [(10, 10), (10, 0), (10, 10)]
    assert (dyn["bbc"]["dynamics.hidden"], dyn["bbc"]["dynamics.layers"]) == (256, 3)
