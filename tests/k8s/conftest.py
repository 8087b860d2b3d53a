"""Fixtures for the k8s/ tests: `kubectl kustomize k8s/`, rendered once per session."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from k8s_render import K8S, kubectl


@pytest.fixture(scope="session")
def rendered_text() -> str:
    out = subprocess.run([kubectl(), "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="session")
def rendered(rendered_text) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered_text) if d]
