"""Frame geometry of model configs: ``image_size`` is ``N`` (square N×N, as in every older config and model
file) or ``[H, W]`` (also accepted: ``"HxW"``, the ``--size`` spelling of ``vidpred data prepare``).

:func:`image_hw` reads either form as ``(H, W)``; :func:`normalize_image_size` is what configs store (an int
when square, so square model files are unchanged; ``[H, W]`` otherwise); :func:`check_divisible` gives the
one error a model raises when H or W does not fit its down/upsampling.
"""

from __future__ import annotations

import numbers
import re

from vidpred.errors import VidpredError


def image_hw(value, name: str = "model.image_size") -> tuple[int, int]:
    """``N`` / ``"N"`` → ``(N, N)``; ``[H, W]`` / ``(H, W)`` / ``"HxW"`` → ``(H, W)``; anything else is one
    VidpredError naming ``name``. The one size parser: ``vidpred data prepare --size`` uses it too."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*([xX×]\s*\d+\s*)?", value):
        nums = [int(p) for p in re.split(r"[xX×]", value)]
        value = nums[0] if len(nums) == 1 else nums
    is_int = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)  # noqa: E731
    if is_int(value):
        hw = (int(value), int(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value):
        hw = (int(value[0]), int(value[1]))
    else:
        raise VidpredError(f"{name} must be N or [H, W] (two positive integers; 'HxW' also works), got {value!r}")
    if min(hw) < 1:
        raise VidpredError(f"{name} must be N or [H, W] with positive sides, got {value!r}")
    return hw


def normalize_image_size(value, name: str = "model.image_size") -> int | list[int]:
    """The stored form: ``N`` when square, ``[H, W]`` otherwise."""
    h, w = image_hw(value, name)
    return h if h == w else [h, w]


def check_divisible(value, factors: dict[str, int], name: str = "model.image_size") -> tuple[int, int]:
    """``(H, W)`` of ``value``; a VidpredError naming H or W (and every factor) when either is not a multiple of
    every factor (``{"2**pose_depth": 16, …}``)."""
    h, w = image_hw(value, name)
    bad = [(axis, n, label, f) for axis, n in (("H", h), ("W", w)) for label, f in factors.items() if n % f]
    if bad:
        needs = ", ".join(f"{label}={f}" for label, f in factors.items())
        what = "; ".join(f"{axis}={n} is not a multiple of {label}={f}" for axis, n, label, f in bad)
        raise VidpredError(f"{name}={value!r} (H×W {h}×{w}): {what} — H and W must both be multiples of {needs}")
    return h, w
