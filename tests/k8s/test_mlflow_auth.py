"""MLflow behind its basic-auth app, run for real on loopback with the settings of the rendered k8s/ manifests.

The server gets the mlflow Deployment's command, arguments and environment, and the `basic_auth.ini` of the
generated ConfigMap; only what needs a cluster is swapped: the stores (sqlite files and a local artifact
directory instead of Postgres and MinIO), host/port (127.0.0.1, a free port) and one worker. Secret values are
test strings given per (Secret, key), as the kubelet would inject them.
"""

from __future__ import annotations

import configparser
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from k8s_render import containers, find
from tests.servers import free_port

pytestmark = pytest.mark.slow

SECRET_VALUES = {  # (Secret, key) → the value a test cluster would hold
    ("vidpred-postgres", "POSTGRES_USER"): "mlflow",
    ("vidpred-postgres", "POSTGRES_PASSWORD"): "pg-test-password-0123",
    ("vidpred-postgres", "POSTGRES_DB"): "mlflow",
    ("vidpred-minio", "MINIO_ROOT_USER"): "minio-root",
    ("vidpred-minio", "MINIO_ROOT_PASSWORD"): "minio-test-password-0123",
    ("vidpred-mlflow-admin", "MLFLOW_AUTH_ADMIN_USERNAME"): "admin",
    ("vidpred-mlflow-admin", "MLFLOW_AUTH_ADMIN_PASSWORD"): "admin-test-password-0123",
    ("vidpred-mlflow-admin", "MLFLOW_FLASK_SERVER_SECRET_KEY"): "csrf-test-key-0123456789",
    ("vidpred-mlflow-auth", "MLFLOW_TRACKING_USERNAME"): "vidpred-pipeline",
    ("vidpred-mlflow-auth", "MLFLOW_TRACKING_PASSWORD"): "pipeline-test-password-0123",
}
ADMIN = (SECRET_VALUES[("vidpred-mlflow-admin", "MLFLOW_AUTH_ADMIN_USERNAME")],
         SECRET_VALUES[("vidpred-mlflow-admin", "MLFLOW_AUTH_ADMIN_PASSWORD")])
PIPELINE = (SECRET_VALUES[("vidpred-mlflow-auth", "MLFLOW_TRACKING_USERNAME")],
            SECRET_VALUES[("vidpred-mlflow-auth", "MLFLOW_TRACKING_PASSWORD")])
START_TIMEOUT = 120  # seconds; the server starts in ~10 s on an idle 2-core machine
TIMEOUT = 60  # seconds per request: a busy shared machine makes the password-hash check slow
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def _container_env(container: dict) -> dict[str, str]:
    """The container's env as the kubelet would set it, Secret references filled from SECRET_VALUES."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = SECRET_VALUES[(ref["name"], ref["key"])]
    return env


def _base_env() -> dict[str, str]:
    """This process's environment without MLflow settings of the test session (its sqlite store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(OMP_NUM_THREADS="1", MLFLOW_ENABLE_TELEMETRY="false", DO_NOT_TRACK="1")
    return env


@pytest.fixture(scope="module")
def server(rendered, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-auth")
    container = containers(find(rendered, "Deployment", "mlflow"))[0]
    env = _container_env(container)
    ini = configparser.ConfigParser()
    ini.read_string(find(rendered, "ConfigMap", "mlflow-auth")["data"][Path(env["MLFLOW_AUTH_CONFIG_PATH"]).name])
    assert ini["mlflow"]["database_uri"].startswith("postgresql+")
    ini["mlflow"]["database_uri"] = f"sqlite:///{tmp / 'auth.db'}"  # no Postgres here; the rest as deployed
    with open(tmp / "basic_auth.ini", "w") as fh:
        ini.write(fh)
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(tmp / "basic_auth.ini")

    port = free_port()
    swapped = {"--host": "127.0.0.1", "--port": str(port), "--workers": "1",
               "--backend-store-uri": f"sqlite:///{tmp / 'mlflow.db'}",
               "--artifacts-destination": str(tmp / "artifacts")}
    given = {a.split("=", 1)[0] for a in container["args"]}
    assert set(swapped) <= given and "--app-name" in given
    args = []
    for arg in container["args"]:
        key = arg.split("=", 1)[0]
        if key in swapped:
            arg = f"{key}={swapped[key]}"
        elif key == "--allowed-hosts":
            arg += f",127.0.0.1:{port}"
        args.append(arg)
    assert container["command"][0] == "mlflow"
    command = [sys.executable, "-m", "mlflow", *container["command"][1:], *args]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(command, env={**_base_env(), **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            assert proc.poll() is None, "mlflow server exited:\n" + (tmp / "server.log").read_text()[-3000:]
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "mlflow server did not start:\n" + (tmp / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield {"url": url, "tmp": tmp}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its uvicorn worker
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # a throwaway server: no need to wait for a graceful stop
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _run_user_job(rendered, server, capsys) -> str:
    """Run the Job `mlflow-pipeline-user`: its script from the ConfigMap with its env (URI pointed at the server).

    In this process (runpy) rather than a new interpreter: importing MLflow again would cost seconds per run."""
    container = containers(find(rendered, "Job", "mlflow-pipeline-user"))[0]
    script = Path(container["command"][-1])
    path = server["tmp"] / script.name
    path.write_text(find(rendered, "ConfigMap", "mlflow-auth")["data"][script.name])
    env = {**_container_env(container), "MLFLOW_TRACKING_URI": server["url"]}
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out


def test_requests_without_valid_credentials_are_refused(server):
    url = server["url"]
    assert requests.get(url + "/health", timeout=TIMEOUT).status_code == 200  # what the probes call: open
    assert requests.get(url + SEARCH, timeout=TIMEOUT).status_code == 401
    assert requests.get(url + SEARCH, auth=(ADMIN[0], "wrong-password-0123"), timeout=TIMEOUT).status_code == 401
    assert requests.get(url + SEARCH, auth=ADMIN, timeout=TIMEOUT).status_code == 200


def test_pipeline_user_job_is_idempotent_and_creates_a_non_admin(rendered, server, capsys):
    url = server["url"]
    assert requests.get(url + SEARCH, auth=PIPELINE, timeout=TIMEOUT).status_code == 401  # no such user yet
    assert f"created MLflow user {PIPELINE[0]}" in _run_user_job(rendered, server, capsys)
    assert requests.get(url + SEARCH, auth=PIPELINE, timeout=TIMEOUT).status_code == 200
    assert f"MLflow user {PIPELINE[0]} exists" in _run_user_job(rendered, server, capsys)  # a re-run is harmless
    assert requests.get(url + SEARCH, auth=PIPELINE, timeout=TIMEOUT).status_code == 200
    # not an admin: may not create accounts
    made = requests.post(url + "/api/2.0/mlflow/users/create", auth=PIPELINE, timeout=TIMEOUT,
                         json={"username": "intruder", "password": "intruder-password-0123"})
    assert made.status_code == 403


def test_pipeline_pod_logs_runs_through_vidpred_tracking(rendered, server, tmp_path, capsys):
    """A pipeline pod's view: MLFLOW_TRACKING_URI from the ConfigMap, the login from Secret vidpred-mlflow-auth."""
    _run_user_job(rendered, server, capsys)  # the Job has run (idempotent: creates the user or keeps it)
    code = (
        "import json\n"
        "from vidpred import tracking\n"
        "cfg = {'tracking': {'experiment': 'vidpred-auth-test'}, 'lr': 0.1}\n"
        "with tracking.pipeline_run('smoke', cfg) as parent:\n"
        "    pass\n"
        "with tracking.stage_run('train', cfg, parent_run_id=parent.info.run_id) as run:\n"
        "    tracking.log_metrics({'loss': 0.5}, step=1)\n"
        "print(json.dumps({'parent': parent.info.run_id, 'stage': run.info.run_id}))\n"
    )
    env = {**_base_env(), "MLFLOW_TRACKING_URI": server["url"], "VIDPRED_HOME": str(tmp_path),
           "MLFLOW_TRACKING_USERNAME": PIPELINE[0], "MLFLOW_TRACKING_PASSWORD": PIPELINE[1]}
    env.pop("VIDPRED_ARTIFACT_ROOT", None)  # the server picks the artifact location (proxied)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    ids = json.loads(out.stdout.strip().splitlines()[-1])
    got = requests.get(server["url"] + "/api/2.0/mlflow/runs/get", params={"run_id": ids["stage"]},
                       auth=ADMIN, timeout=TIMEOUT).json()["run"]
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    metrics = {m["key"]: m["value"] for m in got["data"]["metrics"]}
    assert params["lr"] == "0.1" and metrics["loss"] == 0.5 and got["info"]["status"] == "FINISHED"
    assert tags["mlflow.parentRunId"] == ids["parent"] and tags["vidpred.stage"] == "train"
    # the config artifacts went through the server's artifact proxy, with the same login
    assert list((server["tmp"] / "artifacts").rglob("resolved.yaml"))
    # the same request without the login is refused
    assert requests.get(server["url"] + "/api/2.0/mlflow/runs/get", params={"run_id": ids["stage"]},
                        timeout=TIMEOUT).status_code == 401
