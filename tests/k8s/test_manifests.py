"""The kustomize manifests in k8s/, checked on what `kubectl kustomize k8s/` renders: valid Kubernetes objects,
confined non-root containers with resources and probes, NetworkPolicies that let in only the intended clients,
secrets by reference only (and the README's commands create exactly the Secrets the manifests use)."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity

from k8s_render import K8S, WORKLOAD_KINDS, containers, find, kubectl, pod_labels, pod_spec

REPO = K8S.parent
K8S_VERSION = "1.33.0"  # a recent release the bundled schemas cover (also checked against the newest below)
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.I)
# Secret name → the prefixes of its keys in secrets.example.env (README.md creates each one from its prefixes)
SECRETS = {
    "vidpred-postgres": ("POSTGRES_",),
    "vidpred-minio": ("MINIO_",),
    "vidpred-mlflow-admin": ("MLFLOW_AUTH_ADMIN_", "MLFLOW_FLASK_SERVER_"),
    "vidpred-mlflow-auth": ("MLFLOW_TRACKING_",),
    "vidpred-dvc": ("AWS_",),
}
NAMESPACE = "vidpred"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _example() -> dict[str, str]:
    lines = (K8S / "secrets.example.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


# ------------------------------------------------------------------------------------------ structure

def test_manifests_exist_and_parse():
    names = {p.name for p in MANIFESTS}
    assert {"namespace.yaml", "mlflow.yaml", "postgres.yaml", "minio.yaml", "rbac.yaml", "networkpolicy.yaml"} <= names
    for path in MANIFESTS:
        for doc in _docs(path):
            assert doc.get("apiVersion") and doc.get("metadata", {}).get("name"), (path.name, doc)


def test_kustomization_lists_every_manifest_and_nothing_else():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization" and kust["namespace"] == NAMESPACE
    assert sorted(kust["resources"]) == sorted(p.name for p in MANIFESTS)
    assert {i["name"] for i in kust.get("images", [])} == {"vidpred-mlflow"}


def test_kustomize_build_sets_namespace_image_and_generated_config(rendered):
    kinds = {d["kind"] for d in rendered}
    assert {"Namespace", "Deployment", "Service", "StatefulSet", "PersistentVolumeClaim", "Job", "ServiceAccount",
            "Role", "RoleBinding", "NetworkPolicy", "ConfigMap"} <= kinds
    assert len(rendered) == sum(len(_docs(p)) for p in MANIFESTS) + 1  # + the generated mlflow-auth ConfigMap
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
    images = {c["image"] for d in _workloads(rendered) for c in containers(d)}
    assert "registry.example.com/vidpred/mlflow:3.17.2" in images and "vidpred-mlflow" not in images
    assert all(":" in i and not i.endswith(":latest") for i in images), images  # every image pinned
    # the generated ConfigMap carries a content hash and every pod mounting it uses that name
    auth = find(rendered, "ConfigMap", "mlflow-auth")
    assert re.fullmatch(r"mlflow-auth-[a-z0-9]{10}", auth["metadata"]["name"])
    mounts = [v["configMap"]["name"] for d in _workloads(rendered) for v in pod_spec(d).get("volumes", [])
              if "configMap" in v]
    assert mounts and set(mounts) == {auth["metadata"]["name"]}


@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.latest_version()])
def test_every_rendered_document_validates_against_kubernetes_schema(rendered, version):
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError on any problem


def test_validator_rejects_a_broken_document():
    doc = _docs(K8S / "pipeline-data-pvc.yaml")[0]
    doc["spec"]["accessModes"] = "ReadWriteMany"  # must be a list
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    policy = _docs(K8S / "networkpolicy.yaml")[0]
    policy["spec"]["ingress"][0]["from"][0]["podSelektor"] = {}  # unknown field: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_services_select_pods_and_named_ports_exist(rendered):
    workloads = [d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")]
    for svc in (d for d in rendered if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        targets = [w for w in workloads if selector.items() <= pod_labels(w).items()]
        assert targets, f"service {svc['metadata']['name']} selects no pods"
        ports = {p["name"] for w in targets for c in containers(w) for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports
    for w in workloads:
        assert w["spec"]["selector"]["matchLabels"].items() <= pod_labels(w).items()


# ------------------------------------------------------------------------------------------ containers

def test_every_container_is_non_root_and_confined(rendered):
    checked = 0
    for doc in _workloads(rendered):
        pod = pod_spec(doc)
        where = f"{doc['kind']} {doc['metadata']['name']}"
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert pod.get("automountServiceAccountToken") is False, f"{where}: no API token for these pods"
        psc = pod.get("securityContext", {})
        for c in containers(doc):
            csc = c.get("securityContext", {})
            name = f"{where}/{c['name']}"
            assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, name
            uid = csc.get("runAsUser", psc.get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, f"{name}: runAsUser {uid}"
            assert csc.get("allowPrivilegeEscalation") is False, name
            assert csc.get("privileged") is not True, name
            caps = csc.get("capabilities", {})
            assert caps.get("drop") == ["ALL"] and not caps.get("add"), name
            seccomp = csc.get("seccompProfile") or psc.get("seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", name
            checked += 1
    assert checked >= 5  # mlflow, postgres, minio, the two Jobs


def test_mlflow_image_user_matches_the_manifests(rendered):
    dockerfile = (K8S / "mlflow" / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+)(?::(\d+))?$", dockerfile, re.M)
    assert user, "k8s/mlflow/Dockerfile must switch to a numeric non-root USER"
    assert 'mlflow[auth]==3.17.2' in dockerfile  # the basic-auth app needs the `auth` extra (Flask-WTF)
    # the Postgres driver the URIs name is the one the image installs (psycopg 3: `postgresql+psycopg://`)
    args = containers(find(rendered, "Deployment", "mlflow"))[0]["args"]
    uri = next(a for a in args if a.startswith("--backend-store-uri=")).split("=", 1)[1]
    driver = re.match(r"postgresql\+(\w+)://", uri).group(1)
    assert f'"{driver}[binary]' in dockerfile, driver
    lock = (REPO / "requirements.lock").read_text()
    assert "mlflow==3.17.2" in lock.splitlines()  # the server runs the clients' MLflow version
    for name in ("mlflow", "mlflow-pipeline-user"):
        doc = find(rendered, "Deployment" if name == "mlflow" else "Job", name)
        for c in containers(doc):
            assert c["securityContext"]["runAsUser"] == int(user.group(1)), name


def _cpu_mem(section: dict) -> tuple:
    return parse_quantity(section["cpu"]), parse_quantity(section["memory"])


def test_every_container_has_requests_limits_and_probes(rendered):
    for doc in _workloads(rendered):
        long_running = doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
        for c in containers(doc):
            name = f"{doc['kind']} {doc['metadata']['name']}/{c['name']}"
            res = c.get("resources", {})
            assert set(res.get("requests", {})) >= {"cpu", "memory"}, name
            assert set(res.get("limits", {})) >= {"cpu", "memory"}, name
            (req_cpu, req_mem), (lim_cpu, lim_mem) = _cpu_mem(res["requests"]), _cpu_mem(res["limits"])
            assert 0 < req_cpu <= lim_cpu and 0 < req_mem <= lim_mem, name
            if not long_running:
                continue  # a Job's container runs to completion: nothing to probe
            ports = {p["name"] for p in c.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                assert probe, f"{name}: no {kind}"
                handler = probe.get("httpGet") or probe.get("tcpSocket")
                if handler and isinstance(handler["port"], str):
                    assert handler["port"] in ports, f"{name}: {kind} names unknown port {handler['port']}"
                assert handler or probe.get("exec"), name
            live = c["livenessProbe"]
            # liveness must not kill a slow-starting server before readiness could succeed
            assert live.get("initialDelaySeconds", 0) >= c["readinessProbe"].get("initialDelaySeconds", 0), name


# ------------------------------------------------------------------------------------------ secrets

def test_no_secret_values_in_the_repo_or_rendered_output(rendered, rendered_text):
    assert all(d["kind"] != "Secret" for d in rendered), "secrets must be created out of band, not committed"
    for doc in _workloads(rendered):
        for c in containers(doc):
            for env in c.get("env", []):
                if SECRET_WORDS.search(env["name"]) or env["name"] in ("PGUSER", "PGPASSWORD"):
                    assert "valueFrom" in env and "value" not in env, f"{env['name']} in {doc['metadata']['name']}"
    # no credentials inside a URI anywhere (user:password@host), nor as literal key = value lines
    assert not re.search(r"[a-z+]+://[^\s/@:$]+:[^\s@$]+@", rendered_text, re.I)
    for cm in (d for d in rendered if d["kind"] == "ConfigMap"):
        for key, text in cm.get("data", {}).items():
            for line in text.splitlines():
                assert not re.match(r"\s*\w*(password|secret|token)\w*\s*[=:]\s*\S", line, re.I), (key, line)
    ini = configparser.ConfigParser()
    ini.read_string(find(rendered, "ConfigMap", "mlflow-auth")["data"]["basic_auth.ini"])
    assert "admin_password" not in ini["mlflow"]  # the admin password comes from the Secret only
    # the example file: placeholders only for every secret-like key, and git keeps the real copy out
    for key, value in _example().items():
        if SECRET_WORDS.search(key):
            assert value == "<set-me>", key
    ignored = subprocess.run(["git", "check-ignore", "-q", "k8s/secrets.env"], cwd=REPO)
    assert ignored.returncode == 0, "k8s/secrets.env (the real values) must be git-ignored"


def _secret_refs(rendered: list[dict]) -> dict[str, set[str]]:
    """Secret name → the keys the workloads read from it (envFrom: every key of the example's prefixes)."""
    refs: dict[str, set[str]] = {}
    for doc in _workloads(rendered):
        for c in containers(doc):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    name = src["secretRef"]["name"]
                    keys = {k for k in _example() if k.startswith(SECRETS.get(name, ("?",)))}
                    refs.setdefault(name, set()).update(keys)
    return refs


def test_secret_references_match_the_example_file(rendered):
    refs = _secret_refs(rendered)
    assert set(refs) == set(SECRETS)  # each Secret is used, and only these
    example = _example()
    for name, keys in refs.items():
        assert name in SECRETS, f"unknown Secret {name}"
        for key in keys:
            assert key in example and key.startswith(SECRETS[name]), f"{name}/{key} is not in secrets.example.env"
    # every example key belongs to exactly one Secret
    for key in example:
        assert sum(key.startswith(p) for prefixes in SECRETS.values() for p in prefixes) == 1, key


def test_readme_commands_create_every_secret_the_manifests_read(rendered, tmp_path):
    """Run k8s/README.md's `kubectl create secret` lines (client-side dry run) on a filled-in example file."""
    readme = (K8S / "README.md").read_text()
    commands = re.findall(r"^kubectl -n vidpred create secret generic .+$", readme, re.M)
    assert commands, "README.md lists no `kubectl -n vidpred create secret generic` commands"
    filled = (K8S / "secrets.example.env").read_text().replace("<set-me>", "canary-value-0123456789")
    (tmp_path / "secrets.env").write_text(filled)
    created: dict[str, set[str]] = {}
    for command in commands:
        script = command.replace("kubectl", shlex.quote(kubectl()), 1) + " --dry-run=client -o yaml"
        out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert out.returncode == 0, (command, out.stderr)
        secret = yaml.safe_load(out.stdout)
        assert secret["metadata"]["namespace"] == NAMESPACE
        created[secret["metadata"]["name"]] = set(secret["data"])
    for name, keys in _secret_refs(rendered).items():
        assert name in created, f"README.md does not create Secret {name}"
        assert keys <= created[name], f"{name} lacks {keys - created[name]}"
    # the pipeline pods' Secrets (read through envFrom by the compiled pipeline) carry exactly their keys
    assert created["vidpred-mlflow-auth"] == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert created["vidpred-dvc"] == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


# ------------------------------------------------------------------------------------------ MLflow + auth

def test_mlflow_server_runs_basic_auth_on_postgres_and_minio(rendered):
    deploy = find(rendered, "Deployment", "mlflow")
    c = containers(deploy)[0]
    args = c["command"] + c["args"]
    assert args[:2] == ["mlflow", "server"] and "--app-name=basic-auth" in args
    assert "--backend-store-uri=postgresql+psycopg://postgres:5432" in args  # credentials from PG* env, not the URI
    assert "--artifacts-destination=s3://mlflow/artifacts" in args and "--serve-artifacts" in args
    hosts = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "mlflow.vidpred.svc.cluster.local:5000" in hosts and "mlflow:5000" in hosts
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    for var, key in (("PGUSER", "POSTGRES_USER"), ("PGPASSWORD", "POSTGRES_PASSWORD"), ("PGDATABASE", "POSTGRES_DB")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "vidpred-postgres", "key": key}
    for var in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "vidpred-mlflow-admin", "key": var}
    # the auth settings file is where MLFLOW_AUTH_CONFIG_PATH says, from the generated ConfigMap
    config_path = Path(env["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    mount = next(m for m in c["volumeMounts"] if config_path.parent == Path(m["mountPath"]))
    volume = next(v for v in pod_spec(deploy)["volumes"] if v["name"] == mount["name"])
    data = find(rendered, "ConfigMap", "mlflow-auth")
    assert volume["configMap"]["name"] == data["metadata"]["name"] and config_path.name in data["data"]
    ini = configparser.ConfigParser()
    ini.read_string(data["data"][config_path.name])
    assert ini["mlflow"]["database_uri"] == "postgresql+psycopg://postgres:5432"  # MLflow's Postgres, PG* env credentials
    assert ini["mlflow"]["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    for kind in ("readinessProbe", "livenessProbe"):  # /health is the one route the auth app leaves open
        assert c[kind]["httpGet"]["path"] == "/health"
    # the bucket job creates the buckets the server and DVC write to
    job_args = " ".join(containers(find(rendered, "Job", "minio-create-bucket"))[0]["args"])
    assert "store/mlflow" in job_args and "store/dvc" in job_args


def test_pipeline_user_job_runs_the_shipped_script_as_admin(rendered):
    job = find(rendered, "Job", "mlflow-pipeline-user")
    c = containers(job)[0]
    script = Path(c["command"][-1])
    data = find(rendered, "ConfigMap", "mlflow-auth")["data"]
    assert script.name in data and "AuthServiceClient" in data[script.name]
    mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == script.parent)
    assert next(v for v in pod_spec(job)["volumes"] if v["name"] == mount["name"])["configMap"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in c["env"]}
    assert env["MLFLOW_TRACKING_USERNAME"] == {"name": "vidpred-mlflow-admin", "key": "MLFLOW_AUTH_ADMIN_USERNAME"}
    assert env["PIPELINE_USERNAME"] == {"name": "vidpred-mlflow-auth", "key": "MLFLOW_TRACKING_USERNAME"}
    assert env["PIPELINE_PASSWORD"] == {"name": "vidpred-mlflow-auth", "key": "MLFLOW_TRACKING_PASSWORD"}


def test_tracking_configmap_and_rbac_for_pipeline_pods(rendered):
    cm = find(rendered, "ConfigMap", "vidpred-tracking")
    assert cm["data"]["MLFLOW_TRACKING_URI"] == "http://mlflow.vidpred.svc.cluster.local:5000"
    # the DVC remote: a bucket the bucket Job makes, on MinIO's S3 service port
    bucket = re.fullmatch(r"s3://([a-z0-9-]+)/\S+", cm["data"]["VIDPRED_DVC_REMOTE"]).group(1)
    assert f"store/{bucket}" in " ".join(containers(find(rendered, "Job", "minio-create-bucket"))[0]["args"])
    assert f"arn:aws:s3:::{bucket}/*" in " ".join(containers(find(rendered, "Job", "minio-create-bucket"))[0]["args"])
    s3 = next(p for p in find(rendered, "Service", "minio")["spec"]["ports"] if p["name"] == "s3")
    assert cm["data"]["VIDPRED_DVC_ENDPOINT_URL"] == f"http://minio.{NAMESPACE}.svc.cluster.local:{s3['port']}"
    sa = find(rendered, "ServiceAccount", "vidpred-pipeline")
    role = find(rendered, "Role", "vidpred-pipeline")
    binding = find(rendered, "RoleBinding", "vidpred-pipeline")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == sa["metadata"]["name"]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])  # least privilege
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    # the pipeline's own credentials only: never MinIO's root keys, Postgres or the MLflow admin
    assert [set(r["resourceNames"]) for r in secrets] == [{"vidpred-mlflow-auth", "vidpred-dvc"}]
    assert all(r["verbs"] == ["get"] for r in secrets)


# ------------------------------------------------------------------------------------------ NetworkPolicies

def _matches(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"evaluator handles matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_admits(peer: dict, client: dict) -> bool:
    assert set(peer) <= {"podSelector", "namespaceSelector"}, f"evaluator handles pod/namespace peers: {peer}"
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], client["ns_labels"]):
            return False
    elif client["ns"] != NAMESPACE:  # a podSelector alone means this namespace
        return False
    return _matches(peer.get("podSelector", {}), client["labels"])


def _admitted(policies: list[dict], target: dict, port_name: str, client: dict) -> bool:
    """Kubernetes' ingress rule for one connection to ``target``'s named container port (policies of NAMESPACE)."""
    ports = {p["name"]: p["containerPort"] for c in containers(target) for p in c.get("ports", [])}
    selecting = [p for p in policies if _matches(p["spec"]["podSelector"], pod_labels(target))
                 and "Ingress" in p["spec"]["policyTypes"]]
    assert selecting, f"{target['metadata']['name']} is selected by no ingress policy: open to every pod"
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            rule_ports = [p["port"] if isinstance(p["port"], int) else ports.get(p["port"])
                          for p in rule.get("ports", [])]
            assert None not in rule_ports, f"{policy['metadata']['name']} names a port {target['metadata']['name']} lacks"
            if rule_ports and ports[port_name] not in rule_ports:
                continue
            if not rule.get("from") or any(_peer_admits(peer, client) for peer in rule["from"]):
                return True
    return False


def test_network_policies_admit_only_the_intended_clients(rendered):
    policies = [d for d in rendered if d["kind"] == "NetworkPolicy"]
    ns_here = {"kubernetes.io/metadata.name": NAMESPACE, **find(rendered, "Namespace", NAMESPACE)["metadata"]["labels"]}
    profile_ns = {"kubernetes.io/metadata.name": "kubeflow-user-a", "app.kubernetes.io/part-of": "kubeflow-profile",
                  "pipelines.kubeflow.org/enabled": "true"}
    kfp = {"pipelines.kubeflow.org/v2_component": "true", "workflows.argoproj.io/workflow": "vidpred-abc"}
    clients = {  # name → namespace, its labels, pod labels (the services' own pods: from the rendered templates)
        d["metadata"]["name"]: {"ns": NAMESPACE, "ns_labels": ns_here, "labels": pod_labels(d)}
        for d in _workloads(rendered)}
    clients.update({
        "pipeline-pod-here": {"ns": NAMESPACE, "ns_labels": ns_here, "labels": kfp},
        "other-pod-here": {"ns": NAMESPACE, "ns_labels": ns_here, "labels": {"app": "notebook"}},
        "pipeline-pod-kubeflow-profile": {"ns": "kubeflow-user-a", "ns_labels": profile_ns, "labels": kfp},
        "other-pod-kubeflow-profile": {"ns": "kubeflow-user-a", "ns_labels": profile_ns, "labels": {"app": "nb"}},
        "pipeline-pod-unlabelled-ns": {"ns": "default", "ns_labels": {"kubernetes.io/metadata.name": "default"},
                                       "labels": kfp},
        "mlflow-impostor-elsewhere": {"ns": "default", "ns_labels": {"kubernetes.io/metadata.name": "default"},
                                      "labels": {"app.kubernetes.io/name": "mlflow"}},
    })
    here = {n for n, c in clients.items() if c["ns"] == NAMESPACE}
    expected = {
        ("mlflow", "http"): here | {"pipeline-pod-kubeflow-profile"},
        ("postgres", "postgres"): {"mlflow"},
        ("minio", "s3"): {"mlflow", "minio-create-bucket", "pipeline-pod-here", "pipeline-pod-kubeflow-profile"},
        ("minio", "console"): set(),
    }
    for (service, port), allowed in expected.items():
        target = next(d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")
                      and d["metadata"]["name"] == service)
        admitted = {name for name, client in clients.items() if _admitted(policies, target, port, client)}
        assert admitted == allowed, f"{service}:{port} admits {sorted(admitted)}, expected {sorted(allowed)}"


def test_network_policy_evaluator_sees_an_open_policy():
    """The evaluator above is not vacuous: a rule without `from` admits everyone, a missing policy is reported."""
    target = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {
        "metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "ports": [
            {"name": "http", "containerPort": 80}]}]}}}}
    stranger = {"ns": "elsewhere", "ns_labels": {}, "labels": {}}
    open_policy = {"metadata": {"name": "open"}, "spec": {"podSelector": {"matchLabels": {"app": "x"}},
                                                          "policyTypes": ["Ingress"], "ingress": [{}]}}
    assert _admitted([open_policy], target, "http", stranger)
    closed = {**open_policy, "spec": {**open_policy["spec"], "ingress": []}}
    assert not _admitted([closed], target, "http", stranger)
    with pytest.raises(AssertionError, match="selected by no ingress policy"):
        _admitted([], target, "http", stranger)
