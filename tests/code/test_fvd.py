"""FVD: the float64 Fréchet distance against scipy, input checks, and the I3D call with a STAND-IN detector.

The I3D here is a STAND-IN (``tests.standins.write_standin_i3d``: a small random 3-D conv net scripted with
torch.jit, saved as ``i3d_torchscript.pt`` in the test's TORCH_HOME). Its FVD values are NOT real FVD; the
tests only check what must hold for any detector (zero for a set against itself, positive for different sets,
batching and input conversion do not change features, the detector is called as StyleGAN-V calls it).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from tests.standins import write_standin_i3d
from vidpred import weights
from vidpred.errors import VidpredError
from vidpred.metrics import fvd as fvd_module
from vidpred.metrics.fvd import (FVD_FRAMES, FVD_MIN_FRAMES, I3D_KWARGS, FVDMetric, feature_stats, frechet_distance,
                                 fvd_from_features, to_uint8_clips)


@pytest.fixture
def i3d_home(monkeypatch, tmp_path):
    """Own TORCH_HOME and download cache (checksums.json), downloads off, stand-in I3D in place."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VIDPRED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    monkeypatch.delenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", raising=False)
    return write_standin_i3d()


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    """Independent reference: StyleGAN-V's formula with scipy.linalg.sqrtm of the product."""
    covmean, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
    return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)))


def _gaussian_features(rng, n, d, shift=0.0):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


@pytest.mark.parametrize("d, n", [(8, 100), (32, 300), (64, 1000)])
def test_frechet_matches_scipy_on_random_gaussians(d, n):
    rng = np.random.default_rng(d)
    m1, s1 = feature_stats(_gaussian_features(rng, n, d))
    m2, s2 = feature_stats(_gaussian_features(rng, n, d, shift=0.3))
    ours, ref = frechet_distance(m1, s1, m2, s2), _scipy_frechet(m1, s1, m2, s2)
    assert ref > 0.1
    assert ours == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(m2, s2, m1, s1) == pytest.approx(ours, rel=1e-9)  # symmetric


def test_frechet_is_zero_for_identical_sets_and_exact_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    # rank-deficient: 50 clips of 400-d features (fewer clips than features, as with small evaluations)
    m, s = feature_stats(_gaussian_features(rng, 50, 400))
    assert np.linalg.matrix_rank(s) < 400
    assert abs(frechet_distance(m, s, m, s)) <= 1e-6
    m2, s2 = feature_stats(_gaussian_features(rng, 2048, 16))
    assert abs(frechet_distance(m2, s2, m2, s2)) <= 1e-6
    # closed form for commuting (diagonal) covariances: |Δμ|² + Σ (√a − √b)²
    a, b = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_and_stats_reject_bad_inputs():
    with pytest.raises(VidpredError, match="shapes do not fit"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(VidpredError, match="square"):
        frechet_distance(np.zeros(3), np.ones((3, 2)), np.zeros(3), np.eye(3))
    with pytest.raises(VidpredError, match="NaN"):
        frechet_distance(np.zeros(2), np.array([[1.0, np.nan], [np.nan, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(VidpredError, match="at least 2"):
        fvd_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(VidpredError, match="feature sizes differ"):
        fvd_from_features(np.random.rand(3, 4), np.random.rand(3, 5))


def test_feature_stats_use_population_covariance_in_float64():
    x = np.random.default_rng(2).normal(size=(40, 6)).astype(np.float32)
    mu, sigma = feature_stats(torch.from_numpy(x))
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-10, atol=1e-14)


def test_constants_follow_stylegan_v():
    assert FVD_FRAMES == 16 and FVD_MIN_FRAMES == 10
    assert I3D_KWARGS == {"rescale": True, "resize": True, "return_features": True}


def test_short_clips_and_bad_videos_are_refused():
    with pytest.raises(VidpredError) as err:
        to_uint8_clips(torch.rand(3, 9, 3, 32, 32))
    msg = str(err.value)
    assert "9 frames" in msg and "at least 10" in msg and "\n" not in msg
    assert to_uint8_clips(torch.rand(3, 10, 3, 32, 32)).shape == (3, 3, 10, 32, 32)  # 10 is enough
    with pytest.raises(VidpredError, match=r"\[0, 1\]"):
        to_uint8_clips(torch.rand(2, 16, 3, 8, 8) * 2)
    with pytest.raises(VidpredError, match="B×T×C×H×W"):
        to_uint8_clips(torch.rand(16, 3, 8, 8))
    with pytest.raises(VidpredError, match="colour channels"):
        to_uint8_clips(torch.rand(2, 16, 4, 8, 8))


def test_float_videos_are_quantised_like_stylegan_v_and_permuted():
    u8 = torch.randint(0, 256, (2, 12, 3, 8, 10), dtype=torch.uint8)
    as_float = u8.float() / 255.0
    clips = to_uint8_clips(as_float)
    assert clips.dtype == torch.uint8 and clips.shape == (2, 3, 12, 8, 10)
    assert torch.equal(clips, u8.permute(0, 2, 1, 3, 4))  # [0, 1] floats of uint8 frames round-trip exactly
    assert to_uint8_clips(torch.full((2, 10, 3, 4, 4), 0.5)).unique().tolist() == [128]  # 127.5 rounds up
    gray = to_uint8_clips(u8[:, :, :1])
    assert gray.shape == (2, 3, 12, 8, 10) and torch.equal(gray[:, 0], gray[:, 2])


class _Recorder:
    """Wraps the detector and records how it is called."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, x, **kwargs):
        self.calls.append((x.dtype, tuple(x.shape), dict(kwargs)))
        return self.model(x, **kwargs)


def test_detector_is_called_as_stylegan_v_calls_it_and_batching_does_not_matter(i3d_home):
    metric = FVDMetric(batch_size=2)
    metric.model = recorder = _Recorder(metric.model)
    videos = torch.rand(5, 16, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    feats = metric.features(videos)
    assert feats.shape == (5, 400) and feats.dtype == np.float64
    assert [c[1][0] for c in recorder.calls] == [2, 2, 1]
    for dtype, shape, kwargs in recorder.calls:
        assert dtype == torch.uint8 and shape[1:] == (3, 16, 20, 24)  # uint8 B×C×T×H×W, not resized by us
        assert kwargs == {"rescale": True, "resize": True, "return_features": True}
    whole = FVDMetric(batch_size=8).features(videos)
    np.testing.assert_allclose(feats, whole, rtol=1e-5, atol=1e-6)
    # uint8 input and its [0, 1] float version give the same features
    u8 = (videos * 255).round().to(torch.uint8)
    np.testing.assert_array_equal(metric.features(u8), metric.features(u8.float() / 255))


def test_fvd_of_a_set_with_itself_is_zero_and_positive_for_different_sets(i3d_home):
    metric = FVDMetric(batch_size=4)
    g = torch.Generator().manual_seed(1)
    real = torch.rand(8, 16, 3, 32, 32, generator=g)
    fake = (torch.rand(8, 16, 3, 32, 32, generator=g) * 0.5).clamp(0, 1)
    same = metric.fvd(real, real)
    diff = metric.fvd(real, fake)
    assert 0.0 <= same <= 1e-6
    assert diff > 1e-3
    assert metric.fvd(metric.features(real), metric.features(fake)) == pytest.approx(diff, rel=1e-9)  # features in
    assert metric.fvd(fake, real) == pytest.approx(diff, rel=1e-6)
    with pytest.raises(VidpredError, match="at least 2"):
        metric.fvd(real[:1], fake)
    with pytest.raises(VidpredError, match="at least 2"):
        metric.fvd(real, metric.features(fake)[:1])
    with pytest.raises(VidpredError, match="5 frames"):
        metric.fvd(real[:, :5], fake[:, :5])


def test_standin_flag_follows_the_pinned_checksum(i3d_home):
    from vidpred.data.download import file_sha256, pin_checksum

    url = weights.spec("i3d").url
    assert weights.weight_status("i3d") == "unverified"  # no published hash, nothing pinned
    assert FVDMetric().stand_in is True and fvd_module.stand_in is True
    pin_checksum(url, "0" * 64)  # a pin for another file: still unverified
    assert weights.weight_status("i3d") == "unverified" and fvd_module.stand_in is True
    pin_checksum(url, file_sha256(i3d_home))  # the file is the one pinned at download: verified
    assert weights.weight_status("i3d") == "verified"
    assert FVDMetric().stand_in is False and fvd_module.stand_in is False


def test_missing_i3d_offline_names_file_and_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    with pytest.raises(VidpredError) as err:
        FVDMetric()
    msg = str(err.value)
    assert "i3d_torchscript.pt" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert weights.weight_status("i3d") == "missing"
