"""Evaluation metrics, one convention for every method.

* :mod:`vidpred.metrics.image` — PSNR and SSIM per image (torch, batched; SSIM matches skimage's Gaussian SSIM);
* :mod:`vidpred.metrics.lpips` — LPIPS v0.1 AlexNet with the trunk from :mod:`vidpred.weights`;
* :mod:`vidpred.metrics.keypoints` — landmark metrics.

Only the cheap image metrics are imported here; import the LPIPS module where it is needed.
"""

from vidpred.metrics.image import psnr, ssim

__all__ = ["psnr", "ssim"]
