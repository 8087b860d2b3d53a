"""Create (or re-password) the MLflow user the pipeline pods log as, with the admin account.

Run by the Job `mlflow-pipeline-user` (k8s/mlflow-user-job.yaml) from ConfigMap `mlflow-auth`; idempotent, so
re-running it after rotating Secret `vidpred-mlflow-auth` sets the new password.

Environment:
    MLFLOW_TRACKING_URI                                  the MLflow server
    MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD   the admin account (Secret vidpred-mlflow-admin)
    PIPELINE_USERNAME, PIPELINE_PASSWORD                 the pipeline account (Secret vidpred-mlflow-auth)
"""

from __future__ import annotations

import os
import sys
import time

import requests
from mlflow.exceptions import RestException
from mlflow.server.auth.client import AuthServiceClient

WAIT_SECONDS = 300  # the server may still be starting (migrations on first start)


def wait_for_server(uri: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            if requests.get(uri.rstrip("/") + "/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"error: MLflow at {uri} did not answer /health within {WAIT_SECONDS} s")
        time.sleep(3)


def main() -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    username, password = os.environ["PIPELINE_USERNAME"], os.environ["PIPELINE_PASSWORD"]
    wait_for_server(uri)
    client = AuthServiceClient(uri)
    try:
        client.get_user(username)
    except RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_user(username, password)
        print(f"created MLflow user {username}")
    else:
        client.update_user_password(username, password)
        print(f"MLflow user {username} exists: password set from the Secret")


if __name__ == "__main__":
    main()
