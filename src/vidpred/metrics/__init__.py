"""Evaluation metrics, one convention for every method (written down in ``docs/METRICS.md``).

* :mod:`vidpred.metrics.image` — PSNR (capped at 80 dB), SSIM, MSE and L1 per image (torch, batched; PSNR and
  SSIM match scikit-image);
* :mod:`vidpred.metrics.lpips` — LPIPS v0.1 AlexNet with the trunk from :mod:`vidpred.weights`;
* :mod:`vidpred.metrics.fvd` — FVD as StyleGAN-V's ``fvd2048_16f`` (I3D Kinetics-400 torchscript, float64
  Fréchet distance without scipy);
* :mod:`vidpred.metrics.stats` — percentile bootstrap intervals over clips;
* :mod:`vidpred.metrics.keypoints` — landmark metrics.

Only the cheap image metrics and the bootstrap are imported here; import the LPIPS and FVD modules where
they are needed (they load pretrained networks).
"""

from vidpred.metrics.image import PSNR_CAP_DB, l1, mse, psnr, ssim
from vidpred.metrics.stats import bootstrap_ci

__all__ = ["PSNR_CAP_DB", "psnr", "ssim", "mse", "l1", "bootstrap_ci"]
