"""Models of the three papers (``moso``, ``landmarks``, the corr-wise ``predictor``) and shared helpers."""

from __future__ import annotations

import torch
from torch import nn


def compile_model(module: nn.Module, enabled: bool = True, **options) -> nn.Module:
    """``torch.compile`` ``module`` in place when ``enabled`` (``nn.Module.compile``: the module object, its
    parameters and its state-dict keys stay as they are, so checkpoints, DDP wrapping and model files are not
    affected); return it. ``options`` go to ``torch.compile`` (e.g. ``mode="max-autotune"``). Compilation
    happens lazily, at the first call; on the CPU inductor needs a C++ compiler. With ``enabled=False`` a no-op,
    so a config flag can be passed straight through."""
    if enabled:
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"torch.compile is not available in torch {torch.__version__}")
        module.compile(**options)
    return module


__all__ = ["compile_model"]
