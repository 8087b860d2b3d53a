"""PSNR / SSIM against scikit-image (also on frames decoded from a real encoded video), the PSNR cap, MSE / L1
against numpy, and LPIPS with a stand-in AlexNet trunk.

The LPIPS tests use a STAND-IN AlexNet trunk (``tests.standins.write_standin_alexnet``: a randomly initialised
torchvision AlexNet state dict saved under the real file name in the test's TORCH_HOME). Its scores are NOT
real LPIPS values; the tests only check properties every LPIPS must have (zero on identical images, positive
otherwise, symmetric, batched shape).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.standins import write_standin_alexnet
from vidpred.errors import VidpredError
from vidpred.metrics import PSNR_CAP_DB, l1, mse, psnr, ssim


def _sk_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy(),
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
                                 channel_axis=2)


def _structured(n: int, size: int = 48) -> torch.Tensor:
    """Smooth gradients, a bright square and stripes: images with real structure (not only noise)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for i in range(n):
        img = torch.stack([xx, yy, 0.5 + 0.5 * torch.sin(xx * (6 + i) * 3.14)])
        img[:, 10 + i:25 + i, 12:30] = 0.9
        out.append(img)
    return torch.stack(out).clamp(0, 1)


def test_ssim_matches_skimage_on_random_and_structured_images():
    g = torch.Generator().manual_seed(0)
    target = torch.cat([torch.rand(3, 3, 40, 52, generator=g), _structured(3, 52)[..., :40, :]])
    noise = 0.15 * torch.randn(target.shape, generator=g)
    pred = (target + noise).clamp(0, 1)
    ours = ssim(pred, target)
    assert ours.shape == (6,)
    ref = torch.tensor([_sk_ssim(p, t) for p, t in zip(pred, target)])
    assert torch.allclose(ours.double(), ref, atol=1e-3), (ours, ref)
    assert torch.allclose(ssim(pred, target, dtype=torch.float32), ours, atol=1e-5)  # the training-loss precision
    # a blurred structured image too (large, smooth errors rather than noise)
    blurred = torch.nn.functional.avg_pool2d(target[3:], 5, stride=1, padding=2, count_include_pad=False)
    assert torch.allclose(ssim(blurred, target[3:]).double(),
                          torch.tensor([_sk_ssim(p, t) for p, t in zip(blurred, target[3:])]), atol=1e-3)


def test_ssim_grayscale_matches_skimage():
    g = torch.Generator().manual_seed(1)
    t = torch.rand(2, 1, 32, 32, generator=g)
    p = (t + 0.1 * torch.randn(t.shape, generator=g)).clamp(0, 1)
    ref = [structural_similarity(a[0].double().numpy(), b[0].double().numpy(), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0) for a, b in zip(p, t)]
    assert torch.allclose(ssim(p, t).double(), torch.tensor(ref), atol=1e-3)


def test_identical_images_give_ssim_one_and_psnr_capped_at_80():
    x = _structured(2, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    assert PSNR_CAP_DB == 80.0 == pytest.approx(10 * math.log10(1.0 / 1e-8))  # piqa's limit with eps 1e-8
    assert (psnr(x, x) == 80.0).all()
    assert (psnr(x.double(), x.double()) == 80.0).all()
    # near-perfect (MSE 1e-12 → 120 dB uncapped) is capped too; values below the cap are NOT touched
    assert (psnr(x.double() + 1e-6, x.double()) == 80.0).all()
    below = psnr(torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64) + 10 ** -3.5, torch.full((1, 3, 8, 8), 0.5,
                 dtype=torch.float64))  # MSE 1e-7 → exactly 70 dB
    assert below.item() == pytest.approx(70.0, abs=1e-9)


def test_a_perfect_frame_stays_in_the_mean():
    g = torch.Generator().manual_seed(5)
    t = torch.rand(1, 4, 3, 16, 16, generator=g)
    p = (t + 0.05 * torch.randn(t.shape, generator=g)).clamp(0, 1)
    p[0, 0] = t[0, 0]  # the first predicted frame is perfect (copy-last on a static frame)
    q = psnr(p, t)
    assert torch.isfinite(q).all() and q[0, 0] == 80.0
    assert q.mean() > q[0, 1:].mean()  # the perfect frame counts (it would be dropped if it were inf)


def test_psnr_matches_formula_and_skimage():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(4, 3, 16, 16, generator=g)
    p = (t + 0.05 * torch.randn(t.shape, generator=g)).clamp(0, 1)
    ours = psnr(p, t)
    ref = torch.tensor([peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0) for a, b in zip(t, p)])
    assert torch.allclose(ours.double(), ref.double(), atol=1e-4)
    # a constant offset of 0.1 → MSE 0.01 → exactly 20 dB
    assert torch.allclose(psnr(torch.full((1, 3, 8, 8), 0.6), torch.full((1, 3, 8, 8), 0.5)), torch.tensor([20.0]),
                          atol=1e-4)
    # data_range scales the peak: [0, 255] images with the same relative error give the same PSNR
    assert torch.allclose(psnr(p * 255, t * 255, data_range=255.0), ours, atol=1e-3)


def test_video_inputs_give_per_frame_values():
    g = torch.Generator().manual_seed(3)
    t = torch.rand(2, 5, 3, 24, 24, generator=g)
    p = (t + 0.1 * torch.randn(t.shape, generator=g)).clamp(0, 1)
    s, q = ssim(p, t), psnr(p, t)
    assert s.shape == (2, 5) and q.shape == (2, 5)
    assert torch.allclose(s[1, 3], ssim(p[1:2, 3], t[1:2, 3])[0])
    assert torch.allclose(q[0, 2], psnr(p[:1, 2], t[:1, 2])[0])


def test_mse_and_l1_match_numpy_per_image():
    g = torch.Generator().manual_seed(6)
    t = torch.rand(2, 3, 3, 20, 24, generator=g)
    p = (t + 0.1 * torch.randn(t.shape, generator=g)).clamp(0, 1)
    pn, tn = p.double().numpy(), t.double().numpy()
    m, a = mse(p, t), l1(p, t)
    assert m.shape == (2, 3) and a.shape == (2, 3)
    assert m.dtype == torch.float32 and a.dtype == torch.float32  # returned in the prediction's dtype
    np.testing.assert_allclose(m.numpy(), ((pn - tn) ** 2).mean(axis=(2, 3, 4)), rtol=1e-6)
    np.testing.assert_allclose(a.numpy(), np.abs(pn - tn).mean(axis=(2, 3, 4)), rtol=1e-6)
    assert mse(p.double(), t.double()).dtype == torch.float64
    np.testing.assert_allclose(mse(p.double(), t.double()).numpy(), ((pn - tn) ** 2).mean(axis=(2, 3, 4)),
                               rtol=1e-12)
    # PSNR is 10·log10(1 / MSE) below the cap
    np.testing.assert_allclose(psnr(p, t).numpy(), 10 * np.log10(1 / ((pn - tn) ** 2).mean(axis=(2, 3, 4))),
                               rtol=1e-6)
    assert (mse(t, t) == 0).all() and (l1(t, t) == 0).all()
    # a constant offset of 0.1 → L1 0.1, MSE 0.01
    off = torch.full((1, 3, 8, 8), 0.6, dtype=torch.float64)
    base = torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64)
    assert l1(off, base).item() == pytest.approx(0.1) and mse(off, base).item() == pytest.approx(0.01)


def _decoded_video(tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a synthetic textured video, and the same frames after a REAL encode (MPEG-4 part 2 via
    PyAV/FFmpeg) and decode: real codec artefacts (blocking, ringing), uint8 RGB T×H×W×3."""
    import av

    from vidpred.data.synthetic import render_video, write_video

    original = render_video(7, size=64, num_frames=8, num_objects=2, pan=True).frames
    path = tmp_path / "clip.mp4"
    write_video(path, original, fps=25, codec="mpeg4")
    with av.open(str(path)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return original, decoded


def test_psnr_ssim_mse_match_references_on_real_decoded_frames(tmp_path):
    original, decoded = _decoded_video(tmp_path)
    assert decoded.shape == original.shape
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    dec, orig = to_t(decoded), to_t(original)
    assert 0 < float(mse(dec, orig).max())  # the codec really changed the frames
    # (a) decoded vs original: compression artefacts; (b) next decoded frame vs this one: copy-last errors
    for pred, target in ((dec, orig), (dec[1:], dec[:-1])):
        ours_p, ours_s = psnr(pred, target), ssim(pred, target)
        ref_p, ref_s = [], []
        for a, b in zip(pred, target):
            an, bn = a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy()
            ref_p.append(peak_signal_noise_ratio(bn, an, data_range=1.0))
            ref_s.append(structural_similarity(an, bn, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                               data_range=1.0, channel_axis=2))
        np.testing.assert_allclose(ours_p.double().numpy(), ref_p, atol=1e-3)
        np.testing.assert_allclose(ours_s.double().numpy(), ref_s, atol=1e-3)
        assert (ours_p < PSNR_CAP_DB).all() and (ours_s < 1).all()  # real errors, not the cap
    # the copy-last comparison is worse than the codec's error (sanity of the two cases)
    assert psnr(dec[1:], dec[:-1]).mean() < psnr(dec, orig).mean()


@pytest.mark.parametrize("fn", [psnr, ssim, mse, l1])
def test_bad_inputs_raise_one_line_errors(fn):
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(VidpredError, match="shape mismatch"):
        fn(x, torch.rand(2, 3, 16, 12))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(VidpredError, match="NaN"):
        fn(bad, x)
    with pytest.raises(VidpredError, match="N×C×H×W"):
        fn(x[0], x[0])
    with pytest.raises(VidpredError, match="float"):
        fn((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(VidpredError, match="at least 11"):
        ssim(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))


# ---------------------------------------------------------------- LPIPS (stand-in trunk: scores NOT real)

@pytest.fixture(scope="module")
def _standin_state(tmp_path_factory):
    """A STAND-IN AlexNet trunk (tests.standins): random torchvision AlexNet `features.*` tensors, written once."""
    return write_standin_alexnet(tmp_path_factory.mktemp("standin"))


@pytest.fixture
def standin_alexnet(monkeypatch, tmp_path, _standin_state):
    """Put the stand-in trunk where torch.hub looks for it, with stand-ins allowed and downloads off."""
    import shutil

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", "1")
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    shutil.copy(_standin_state, ckpt / _standin_state.name)
    return ckpt


@pytest.mark.slow  # torchvision import + AlexNet init: ~4 s on the shared 2-core machine
@pytest.mark.filterwarnings("ignore:.*STAND-IN")
def test_lpips_properties_with_standin_trunk(standin_alexnet):
    from vidpred.metrics.lpips import LPIPSMetric

    metric = LPIPSMetric()
    assert metric.stand_in is True  # the file does not match torchvision's hash: flagged
    g = torch.Generator().manual_seed(4)
    a = torch.rand(2, 3, 3, 32, 32, generator=g)
    b = torch.rand(2, 3, 3, 32, 32, generator=g)
    same = metric(a, a)
    diff = metric(a, b)
    assert same.shape == (2, 3) and diff.shape == (2, 3)
    assert same.abs().max() < 1e-6
    assert (diff > 1e-4).all()
    assert torch.allclose(diff, metric(b, a), atol=1e-6)
    # a small perturbation is closer than an unrelated image
    near = metric(a, (a + 0.02 * torch.randn(a.shape, generator=g)).clamp(0, 1))
    assert (near < diff).all()


def test_lpips_missing_trunk_names_file_and_directory(monkeypatch, tmp_path):
    from vidpred.metrics.lpips import LPIPSMetric

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    with pytest.raises(VidpredError) as err:
        LPIPSMetric()
    msg = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "\n" not in msg


@pytest.mark.filterwarnings("ignore:.*STAND-IN")
def test_lpips_rejects_wrong_trunk_shapes(standin_alexnet):
    from vidpred.metrics.lpips import LPIPSMetric

    state = torch.load(standin_alexnet / "alexnet-owt-7be5be79.pth", weights_only=True)
    state["features.0.weight"] = torch.zeros(8, 3, 11, 11)  # wrong shape (stand-in, deliberately broken)
    torch.save(state, standin_alexnet / "alexnet-owt-7be5be79.pth")
    with pytest.raises(VidpredError, match="do not fit"):
        LPIPSMetric()
