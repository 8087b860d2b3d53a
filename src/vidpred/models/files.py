"""Trained-model files: one format for every stage's final model (``landmarks.pt``, ``moso_vqvae.pt``, …).

A file is a ``torch.save``d dict ``{"kind": "vidpred-<model>/<version>", "config": {...}, "state_dict": ...,
**extra}``, written atomically. Loading checks the kind, so a user who points one stage at another
stage's file gets one clear line instead of a state-dict mismatch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_file


def save_model_file(path: str | Path, kind: str, config: dict, state_dict: dict, **extra) -> Path:
    with atomic_file(path) as fh:
        torch.save({"kind": kind, "config": config, "state_dict": state_dict, **extra}, fh)
    return Path(path)


def load_model_file(path: str | Path, kind: str, what: str, hint: str) -> dict:
    """The file's dict; VidpredError naming ``what`` and the path when it is missing, corrupt or of another
    kind (``hint`` says how to make one, e.g. "train it with `vidpred train landmarks`")."""
    path = Path(path)
    if not path.is_file():
        raise VidpredError(f"{what} {path} does not exist ({hint})")
    try:  # tensors and plain values only: loading a model file never runs code from it
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on corrupt files
        text = str(exc)
        unsafe = text.partition("Unsupported global: GLOBAL ")[2].split()[:1]  # the class a safe load refused
        msg = (f"it holds a Python object ({unsafe[0]}) that a safe (weights_only) load refuses; write it "
               "again with this vidpred" if unsafe else (text.splitlines()[0] if text else type(exc).__name__))
        raise VidpredError(f"{what} {path} cannot be loaded: {msg}") from None
    if not isinstance(blob, dict) or blob.get("kind") != kind:
        raise VidpredError(f"{what} {path} is not a {kind} file")
    return blob
