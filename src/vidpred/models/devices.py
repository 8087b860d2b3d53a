"""Device and precision helpers shared by the models, losses and metrics.

Every forward path follows its inputs: new tensors take ``device=`` / ``dtype=`` from an input or a
parameter, constants are registered buffers, and nothing goes through the CPU unless a CPU-only library
(OpenCV, numpy) is used explicitly. Under mixed precision (``torch.autocast`` with bfloat16 or float16)
a few computations lose too much in 8 mantissa bits — Gaussian moments, codebook distances, SSIM's
variances, sampling grids of a warp, optical flow — so they run in float32 with autocast switched off:

* :func:`autocast_off` — a context that disables autocast for the device types of the given tensors;
* :func:`at_least_float32` — bfloat16 / float16 → float32 (float32, float64 and integer tensors unchanged);
* :func:`float32_math` — a decorator doing both for every tensor argument of a function;
* :func:`has_values` — False for ``meta`` tensors (shape-only), so value checks (NaN tests, early exits)
  can be skipped in a shape-only dry run instead of failing on ``.item()``;
* :func:`module_device` — where a module's parameters (or buffers) live.
"""

from __future__ import annotations

import functools
from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _device_type(ref) -> str | None:
    if torch.is_tensor(ref):
        return ref.device.type
    if isinstance(ref, torch.device):
        return ref.type
    if isinstance(ref, str):
        return torch.device(ref).type
    return None


@contextmanager
def autocast_off(*refs) -> Iterator[None]:
    """Disable autocast for the device types of ``refs`` (tensors, devices or device strings) inside the
    block; devices without autocast (``meta``) are skipped."""
    types = {t for t in map(_device_type, refs) if t is not None}
    with ExitStack() as stack:
        for t in sorted(types):
            if torch.amp.is_autocast_available(t):
                stack.enter_context(torch.autocast(device_type=t, enabled=False))
        yield


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is float16 / bfloat16; any other tensor unchanged."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def float32_math(fn):
    """Run ``fn`` with autocast off (for its tensor arguments' devices) and every bfloat16 / float16 tensor
    argument upcast to float32. Results are float32 (or float64 for float64 inputs)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        with autocast_off(*tensors):
            args = tuple(at_least_float32(a) if torch.is_tensor(a) else a for a in args)
            kwargs = {k: at_least_float32(v) if torch.is_tensor(v) else v for k, v in kwargs.items()}
            return fn(*args, **kwargs)

    return wrapper


def has_values(x: torch.Tensor) -> bool:
    """False for tensors on the ``meta`` device (they have a shape and dtype but no data)."""
    return x.device.type != "meta"


def module_device(module: torch.nn.Module, default: str | torch.device = "cpu") -> torch.device:
    """The device of ``module``'s first parameter (or buffer); ``default`` when it has neither."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device(default)


__all__ = ["autocast_off", "at_least_float32", "float32_math", "has_values", "module_device"]
