"""Per-image PSNR, SSIM, MSE and L1 in torch, batched over any leading dimensions.

One convention for every method we evaluate (see IMPLEMENTATION-NOTES: SSIM differs between libraries;
the whole convention is written down in ``docs/METRICS.md``):

* inputs are float tensors N×C×H×W or N×T×C×H×W with values in ``[0, data_range]``;
* results are one value per image: shape N or N×T, in the prediction's dtype (computed in float64);
* PSNR is ``10·log10(data_range² / MSE)`` capped at :data:`PSNR_CAP_DB` = 80 dB. A perfect (or
  near-perfect) frame therefore scores 80 dB instead of ``inf``: it stays in every mean instead of being
  dropped, which would bias the mean against exactly the methods (copy-last on static scenes) that get
  frames right. 80 dB is the limit of piqa's ``psnr`` (MOSO's metric library) with its ``epsilon=1e-8``
  on ``[0, 1]`` images: ``10·log10(1 / 1e-8)``. We apply the cap as a hard ``min`` rather than adding the
  epsilon to the MSE, so every value below the cap is exactly scikit-image's
  ``peak_signal_noise_ratio`` (a test checks both);
* MSE and L1 are the mean squared / absolute error over the pixels and channels of each image, in the
  units of the input (``[0, 1]`` for every reported number);
* SSIM is Wang et al. (2004) with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, population
  (not sample) covariances, averaged over the "valid" region (pixels whose window fits in the image) and
  over channels — the same numbers as ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=...)``, which a test checks.

torchmetrics/piqa are not installed here; skimage is, but works on numpy one image at a time, so this
module keeps the small convolution in torch (a test pins it to skimage).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidpred.errors import VidpredError
from vidpred.models.devices import autocast_off, has_values

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
PSNR_CAP_DB = 80.0  # = piqa's psnr limit with epsilon 1e-8 on [0, 1]: 10·log10(1 / 1e-8); see the module docstring


def check_pair(pred: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if not (torch.is_tensor(pred) and torch.is_tensor(target)):
        raise VidpredError(f"{what}: expected torch tensors, got {type(pred).__name__} and {type(target).__name__}")
    if pred.shape != target.shape:
        raise VidpredError(f"{what}: shape mismatch, prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if pred.ndim not in (4, 5):
        raise VidpredError(f"{what}: expected N×C×H×W or N×T×C×H×W, got shape {tuple(pred.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise VidpredError(f"{what}: expected float tensors, got {pred.dtype} and {target.dtype}")
    if not (has_values(pred) and has_values(target)):  # meta tensors (shape-only dry runs): no values to check
        return
    if not bool(torch.isfinite(pred).all()) or not bool(torch.isfinite(target).all()):
        bad = "prediction" if not bool(torch.isfinite(pred).all()) else "target"
        raise VidpredError(f"{what}: the {bad} contains NaN or infinite values")


def _per_image_mean(err: torch.Tensor) -> torch.Tensor:
    """Mean over the last three dimensions (C, H, W): one value per image."""
    return err.flatten(-3).mean(-1)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image (over channels and pixels), computed in float64."""
    check_pair(pred, target, "mse")
    return _per_image_mean((pred.double() - target.double()).pow(2)).to(pred.dtype)


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image (over channels and pixels), computed in float64."""
    check_pair(pred, target, "l1")
    return _per_image_mean((pred.double() - target.double()).abs()).to(pred.dtype)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, capped at :data:`PSNR_CAP_DB` (identical images → 80 dB).

    Below the cap this is exactly ``10·log10(data_range² / MSE)`` (scikit-image's value)."""
    check_pair(pred, target, "psnr")
    err = _per_image_mean((pred.double() - target.double()).pow(2))
    value = 10.0 * torch.log10(data_range**2 / err)  # inf where err == 0: the cap (a hard min) replaces it
    return value.clamp(max=PSNR_CAP_DB).to(pred.dtype)


def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(WINDOW, dtype=dtype, device=device) - (WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0,
         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Structural similarity per image (mean over channels and valid pixels), computed in ``dtype``
    (float64 for reported metrics; float32 is enough for a training loss and much faster on CPU) on the
    inputs' device, with autocast off (variances as E[x²] − E[x]² cancel badly in bfloat16)."""
    check_pair(pred, target, "ssim")
    lead = pred.shape[:-3]
    c, h, w = pred.shape[-3:]
    if h < WINDOW or w < WINDOW:
        raise VidpredError(f"ssim: images must be at least {WINDOW}×{WINDOW} pixels, got {h}×{w}")
    x = pred.reshape(-1, c, h, w).to(dtype)
    y = target.reshape(-1, c, h, w).to(dtype)
    g = _gaussian_1d(dtype, x.device)
    gy, gx = g.view(1, 1, WINDOW, 1).expand(c, 1, WINDOW, 1), g.view(1, 1, 1, WINDOW).expand(c, 1, 1, WINDOW)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, "valid" windows only (no padding)
        return F.conv2d(F.conv2d(t, gy, groups=c), gx, groups=c)

    with autocast_off(x):
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x**2
        var_y = blur(y * y) - mu_y**2
        cov = blur(x * y) - mu_x * mu_y
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).reshape(lead).to(pred.dtype)


__all__ = ["PSNR_CAP_DB", "psnr", "ssim", "mse", "l1", "check_pair"]
