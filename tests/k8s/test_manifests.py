"""The kustomize manifests in k8s/: valid Kubernetes objects, complete kustomization, secrets by reference only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"
K8S_VERSION = "1.33.0"  # a recent release the bundled schemas cover (also checked against the newest below)
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.I)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_docs() -> list[dict]:
    return [d for p in MANIFESTS for d in _docs(p)]


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
    return pod.get("containers", []) + pod.get("initContainers", [])


def test_manifests_exist_and_parse():
    names = {p.name for p in MANIFESTS}
    assert {"namespace.yaml", "mlflow.yaml", "postgres.yaml", "minio.yaml", "rbac.yaml"} <= names
    kinds = {d["kind"] for d in _all_docs()}
    assert {"Namespace", "Deployment", "Service", "StatefulSet", "PersistentVolumeClaim", "Job", "ServiceAccount",
            "Role", "RoleBinding"} <= kinds
    for doc in _all_docs():
        assert doc.get("apiVersion") and doc.get("metadata", {}).get("name"), doc


@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_document_validates_against_kubernetes_schema(path, version):
    for doc in _docs(path):
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError on any problem


def test_validator_rejects_a_broken_document():
    doc = _docs(K8S / "pipeline-data-pvc.yaml")[0]
    doc["spec"]["accessModes"] = "ReadWriteMany"  # must be a list
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_nothing_else():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization" and kust["namespace"] == "vidpred"
    assert sorted(kust["resources"]) == sorted(p.name for p in MANIFESTS)
    images = {i["name"] for i in kust.get("images", [])}
    used = {c["image"].split(":")[0] for d in _all_docs() for c in _containers(d)}
    assert "vidpred-mlflow" in images and "vidpred-mlflow" in used


def test_no_plaintext_secrets():
    for doc in _all_docs():
        assert doc["kind"] != "Secret", "secrets must be created out of band, not committed"
        for c in _containers(doc):
            for env in c.get("env", []):
                if SECRET_WORDS.search(env["name"]):
                    assert "valueFrom" in env and "value" not in env, f"{env['name']} in {doc['metadata']['name']}"
            for arg in c.get("args", []) + c.get("command", []):
                # credentials only as $(VAR) references filled in from Secrets
                assert not re.search(r"://[^$/\s:]+:[^$@\s]+@", arg), arg
    example = (K8S / "secrets.example.env").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in example if line and not line.startswith("#"))
    for key, value in pairs.items():
        if SECRET_WORDS.search(key):
            assert value == "<set-me>", key


def test_secret_references_match_the_example_file():
    example = (K8S / "secrets.example.env").read_text()
    keys = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    for doc in _all_docs():
        for c in _containers(doc):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in {"vidpred-postgres", "vidpred-minio"} and ref["key"] in keys
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    assert src["secretRef"]["name"] in {"vidpred-postgres", "vidpred-minio"}


def test_services_select_pods_and_named_ports_exist():
    docs = _all_docs()
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        targets = [w for w in workloads
                   if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert targets, f"service {svc['metadata']['name']} selects no pods"
        ports = {p["name"] for w in targets for c in _containers(w) for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports
    for w in workloads:
        assert w["spec"]["selector"]["matchLabels"].items() <= w["spec"]["template"]["metadata"]["labels"].items()


def test_mlflow_server_uses_postgres_minio_and_allowed_hosts():
    deploy = next(d for d in _docs(K8S / "mlflow.yaml") if d["kind"] == "Deployment")
    c = _containers(deploy)[0]
    args = " ".join(c["command"] + c["args"])
    assert "--backend-store-uri=postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@postgres:5432/" in args
    assert "--artifacts-destination=s3://mlflow/" in args
    assert "mlflow.vidpred.svc.cluster.local:5000" in args.split("--allowed-hosts=")[1]
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    # the bucket job creates the bucket the server writes to
    job = _docs(K8S / "minio-bucket-job.yaml")[0]
    assert "store/mlflow" in " ".join(_containers(job)[0]["args"])


def test_rbac_binds_the_pipeline_service_account():
    docs = _docs(K8S / "rbac.yaml")
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == sa["metadata"]["name"]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])  # least privilege


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) is not installed")
def test_kustomize_build_sets_namespace_and_image():
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(built) == len(_all_docs())
    for doc in built:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "vidpred"
    mlflow = next(d for d in built if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    assert _containers(mlflow)[0]["image"] == "registry.example.com/vidpred/mlflow:3.17.2"
