"""Shared test setup: keep every test offline, quiet and out of the user's project state.

* MLflow: each test session gets its own sqlite store under a temp dir (``MLFLOW_TRACKING_URI``),
  so tests never touch ./mlflow.db.
* DVC / GX analytics off; DVC's site cache in the temp dir.
* ``VIDPRED_CACHE`` (downloads, extraction) and ``TORCH_HOME`` (weights) point at the temp dir, so
  tests see no real pretrained weights unless they create stand-in files themselves.
* torch uses at most 2 threads (this machine has 2 cores).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="vidpred-tests-"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_TMP / 'mlflow.db'}"
os.environ["VIDPRED_ARTIFACT_ROOT"] = str(_SESSION_TMP / "mlartifacts")
os.environ["VIDPRED_CACHE"] = str(_SESSION_TMP / "cache")
os.environ["TORCH_HOME"] = str(_SESSION_TMP / "torch")
os.environ["DVC_SITE_CACHE_DIR"] = str(_SESSION_TMP / "dvc-site")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture(autouse=True)
def _restore_tracking_uri():
    """``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in this process's environment (MLflow 3), which
    subprocesses (torchrun ranks, kfp.local tasks) of later tests would inherit: put both back after each test."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    import sys

    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved
        if "mlflow" in sys.modules:
            sys.modules["mlflow"].set_tracking_uri(saved)
