"""Gaussian landmark math: fit, render, (μ, Cholesky) state, interpolation, TPS identity (pure torch)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidpred.models.landmarks import augment
from vidpred.models.landmarks import gaussians as G


def _cov(sx, sy, angle):
    c, s = math.cos(angle), math.sin(angle)
    r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return r @ torch.diag(torch.tensor([sx ** 2, sy ** 2], dtype=torch.float64)) @ r.T


def test_grid_pixel_centres_and_pixel_conversion():
    grid = G.coordinate_grid(4, 8)
    assert grid.shape == (4, 8, 2)
    assert torch.allclose(grid[0, 0], torch.tensor([-7 / 8, -3 / 4]))
    assert torch.allclose(grid[-1, -1], torch.tensor([7 / 8, 3 / 4]))
    px = G.grid_to_pixels(grid, 4, 8)
    assert torch.allclose(px[2, 5], torch.tensor([5.0, 2.0]), atol=1e-6)
    assert torch.allclose(G.pixels_to_grid(px, 4, 8), grid, atol=1e-6)


def test_spatial_softmax_sums_to_one():
    p = G.spatial_softmax(torch.randn(2, 3, 5, 7))
    assert torch.allclose(p.sum((-1, -2)), torch.ones(2, 3))
    assert (p > 0).all()


@settings(max_examples=40, deadline=None)
@given(mx=st.floats(-0.3, 0.3), my=st.floats(-0.3, 0.3), sx=st.floats(0.05, 0.15), sy=st.floats(0.05, 0.15),
       angle=st.floats(0, math.pi))
def test_fit_recovers_mean_and_covariance_of_rendered_gaussian(mx, my, sx, sy, angle):
    mu = torch.tensor([[[mx, my]]], dtype=torch.float64)
    cov = _cov(sx, sy, angle)[None, None]
    density = G.normalize_maps(G.render_heatmaps(mu, cov, 96, 96, kind="gaussian"))
    mu_fit, cov_fit = G.fit_gaussians(density, eps=0.0)
    assert torch.allclose(mu_fit, mu, atol=1e-4)
    assert torch.allclose(cov_fit, cov, atol=2e-4 + 0.01 * float(cov.abs().max()))


@settings(max_examples=25, deadline=None)
@given(mx=st.floats(-0.3, 0.3), my=st.floats(-0.3, 0.3), sx=st.floats(0.06, 0.15), sy=st.floats(0.06, 0.15),
       angle=st.floats(0, math.pi))
def test_render_fit_round_trip(mx, my, sx, sy, angle):
    # fit → render → fit reproduces the parameters (Gaussian kind), and the paper's Cauchy heatmap
    # keeps the mean and peaks at it with value 1.
    mu = torch.tensor([[[mx, my]]], dtype=torch.float64)
    cov = _cov(sx, sy, angle)[None, None]
    m1, c1 = G.fit_gaussians(G.normalize_maps(G.render_heatmaps(mu, cov, 96, 96, "gaussian")), eps=0.0)
    m2, c2 = G.fit_gaussians(G.normalize_maps(G.render_heatmaps(m1, c1, 96, 96, "gaussian")), eps=0.0)
    assert torch.allclose(m2, m1, atol=1e-4) and torch.allclose(c2, c1, atol=2e-4)
    cauchy = G.render_heatmaps(mu, cov, 96, 96, "cauchy")
    assert float(cauchy.max()) <= 1.0 and float(cauchy.max()) > 0.9
    mc, _ = G.fit_gaussians(G.normalize_maps(cauchy ** 4), eps=0.0)  # sharpened: tails inside the grid
    assert torch.allclose(mc, mu, atol=0.02)


def test_cauchy_heatmap_formula_at_one_sigma():
    mu = torch.zeros(1, 1, 2)
    cov = torch.diag(torch.tensor([0.25, 0.04]))[None, None]  # σx 0.5, σy 0.2
    m = G.mahalanobis_sq(mu, cov, 4, 4)  # x coordinates ±0.25, ±0.75
    # pixel (row 1, col 3): x = 0.75, y = -0.25 → 0.75²/0.25 + 0.25²/0.04
    assert float(m[0, 0, 1, 3]) == pytest.approx(0.75 ** 2 / 0.25 + 0.25 ** 2 / 0.04, rel=1e-5)
    s = G.render_heatmaps(mu, cov, 4, 4)
    assert float(s[0, 0, 1, 3]) == pytest.approx(1 / (1 + float(m[0, 0, 1, 3])), rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(sx=st.floats(0.01, 1.0), sy=st.floats(0.01, 1.0), angle=st.floats(0, math.pi))
def test_cholesky_round_trip(sx, sy, angle):
    cov = _cov(sx, sy, angle)
    params = G.cov_to_cholesky(cov)
    assert params[0] > 0 and params[2] > 0
    assert torch.allclose(G.cholesky_to_cov(params, eps=0.0), cov, atol=1e-9)
    assert torch.allclose(params, torch.tensor([torch.linalg.cholesky(cov)[i, j] for i, j in
                                                ((0, 0), (1, 0), (1, 1))], dtype=cov.dtype), atol=1e-9)


def _random_states(seed, n=64, k=6):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, k, 2, generator=g) * 2 - 1
    a = torch.randn(n, k, 2, 2, generator=g) * 0.3
    cov = a @ a.transpose(-1, -2) + 1e-3 * torch.eye(2)
    return G.gaussians_to_state(mu, cov)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), alpha=st.floats(-0.5, 1.5))
def test_cholesky_interpolation_is_positive_definite(seed, alpha):
    # also extrapolation (α outside [0, 1]) keeps Σ valid — the point of the Cholesky state
    s0, s1 = _random_states(seed), _random_states(seed + 1)
    path = G.interpolate_states(s0, s1, [0.0, alpha, 1.0])
    assert torch.allclose(path[0], s0) and torch.allclose(path[2], s1)
    _, cov = G.state_to_gaussians(path[1])
    assert torch.allclose(cov, cov.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(cov) > 0).all()
    if 0 <= alpha <= 1:
        assert torch.allclose(path[1, ..., :2], (1 - alpha) * s0[..., :2] + alpha * s1[..., :2], atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-20, 20, allow_nan=False), min_size=15, max_size=15))
def test_any_state_maps_to_positive_definite_covariance(values):
    state = torch.tensor(values, dtype=torch.float64).reshape(1, 3, 5)
    _, cov = G.state_to_gaussians(state)
    assert (torch.linalg.eigvalsh(cov) > 0).all()


def test_tps_with_identity_control_points_is_identity():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 24, 32, generator=g)
    pts = augment.control_grid(5, batch=2)
    out = augment.tps_warp(img, pts, pts.clone())
    assert out.shape == img.shape
    assert torch.allclose(out, img, atol=1e-4)


def test_tps_translation_moves_content():
    img = torch.zeros(1, 1, 32, 32)
    img[..., 10:14, 10:14] = 1
    src = augment.control_grid(4)
    dst = src + torch.tensor([4 * 2 / 32, 0.0])  # 4 px to the right
    out = augment.tps_warp(img, src, dst)
    ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    assert xs.float().mean().item() == pytest.approx(15.5, abs=0.3)
    assert ys.float().mean().item() == pytest.approx(11.5, abs=0.3)


def test_random_tps_and_colour_jitter_change_images_but_keep_range():
    torch.manual_seed(0)
    img = torch.rand(3, 3, 32, 32)
    warped = augment.random_tps(img, augment.TPSParams(translation_px=5))
    jit = augment.color_jitter(img)
    for out in (warped, jit):
        assert out.shape == img.shape and torch.isfinite(out).all()
        assert (out - img).abs().mean() > 0.01
    assert jit.min() >= 0 and jit.max() <= 1


def test_coarse_tps_matches_kornia_per_pixel_warp():
    torch.manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.stack([torch.sin(xx / 3), torch.cos(yy / 4), torch.sin((xx + yy) / 5)]) * 0.5 + 0.5
    img = smooth.expand(2, -1, -1, -1).contiguous()  # smooth content: interpolation differences stay small
    src = augment.control_grid(5, batch=2)
    dst = augment.random_tps_targets(src, 32, 32, augment.TPSParams(grid=5, translation_px=3, jitter_px=1))
    fast = augment.tps_warp(img, src, dst, coarse=16)
    exact = augment.tps_warp(img, src, dst, coarse=None)
    assert (fast - exact).abs().mean() < 0.01
    for out in (fast, exact):
        assert (out - img).abs().mean() > 0.05  # it did warp


def test_tps_identity_exact_path():
    img = torch.rand(1, 3, 16, 16)
    pts = augment.control_grid(4)
    assert torch.allclose(augment.tps_warp(img, pts, pts.clone(), coarse=None), img, atol=1e-4)


def test_tps_fit_interpolates_control_points_and_stays_smooth():
    # a paper-size 10×10 grid with rotation, scale, translation and jitter (the case where kornia's own
    # get_tps_transform is ill-conditioned): control points land exactly, in-between points move smoothly
    torch.manual_seed(3)
    src = augment.control_grid(10, batch=4)
    dst = augment.random_tps_targets(src, 64, 64, augment.TPSParams())
    assert torch.allclose(augment.tps_sample_points(dst, src, dst), src, atol=1e-5)
    mid = (dst[:, :-1] + dst[:, 1:]) / 2  # points between neighbouring control points (row-major)
    moved = augment.tps_sample_points(mid, src, dst)
    expected = (src[:, :-1] + src[:, 1:]) / 2
    assert (moved - expected).norm(dim=-1).max() < 0.1  # < 3.2 px at 64 px; a shredded warp is ≫ 1
