"""Image quality metrics for the trainer: the runtime's one PSNR/SSIM (:mod:`trt_engine.metrics`)."""

from trt_engine.metrics import psnr, ssim

__all__ = ["psnr", "ssim"]
