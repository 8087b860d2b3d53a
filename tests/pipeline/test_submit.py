"""`vidpred submit` and `vidpred schedule` against the Kubeflow Pipelines v2beta1 REST API.

No KFP backend can run here, so the tests serve the v2beta1 endpoints the kfp client uses (healthz, pipelines +
upload / upload_version + versions, experiments, runs, recurring runs) from a real HTTP server on loopback, in a
thread. It keeps an in-memory store and answers with the generated ``kfp_server_api`` models (serialized by the
generated ApiClient, which also deserializes the request bodies), records every request, and checks credentials
when told to. The CLI runs in subprocesses (HOME in a temp folder, so no ~/.config/kfp context leaks in)."""

import datetime as dt
import email
import json
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import kfp_server_api as api
import pytest
import yaml

from vidpred.errors import VidpredError
from vidpred.submit import normalize_cron

VIDPRED = [sys.executable, "-m", "vidpred.cli"]
PIPELINE = "vidpred-reproduce-smoke"  # <pipeline.name>-<profile> of configs/smoke/pipeline.yaml
SMALL = ["--profile", "smoke", "--only", "toycar"]  # a one-task pipeline: the quickest to compile


# ------------------------------------------------------------------------------------------ the loopback API

class KfpApi:
    """In-memory KFP v2beta1 API state plus a log of the requests."""

    def __init__(self):
        self.codec = api.ApiClient()
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.pipelines: dict[str, api.V2beta1Pipeline] = {}
        self.versions: dict[str, list[api.V2beta1PipelineVersion]] = {}
        self.experiments: dict[str, api.V2beta1Experiment] = {}
        self.runs: dict[str, api.V2beta1Run] = {}
        self.recurring: dict[str, api.V2beta1RecurringRun] = {}
        self.run_states: list[str] = ["PENDING"]  # what GET /runs/{id} answers, one per call (the last one stays)
        self.run_error = ""
        self.auth: tuple[str, str] | None = None  # (header, value) every request must carry
        self.login_page = False  # answer everything with an HTML login page, as an auth proxy does
        self.url = ""

    def of(self, kind: str, method: str = "") -> list[dict]:
        return [r for r in self.requests if r["kind"] == kind and (not method or r["method"] == method)]

    # -- helpers
    def load(self, body: bytes, klass: str):
        return self.codec.deserialize(SimpleNamespace(data=body), klass)

    @staticmethod
    def now():
        return dt.datetime.now(dt.timezone.utc)

    @staticmethod
    def named(items, query):
        """The filter the kfp client sends: display_name EQUALS <value>."""
        if "filter" not in query:
            return list(items)
        preds = json.loads(query["filter"][0]).get("predicates", [])
        for p in preds:
            # protobuf JSON: the enum by name or number (the kfp client sends 1, vidpred "EQUALS")
            assert p["key"] == "display_name" and p["operation"] in ("EQUALS", 1), p
            items = [i for i in items if i.display_name == p["stringValue"]]
        return list(items)

    @staticmethod
    def page(items, query):
        start = int((query.get("page_token") or ["0"])[0] or 0)
        size = int((query.get("page_size") or ["10"])[0] or 10)
        rest = items[start:start + size]
        token = str(start + size) if start + size < len(items) else ""
        return rest, token

    @staticmethod
    def uploaded_file(headers, body: bytes) -> bytes:
        msg = email.message_from_bytes(b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body)
        files = [p for p in msg.walk() if p.get_param("name", header="content-disposition") == "uploadfile"]
        assert len(files) == 1, "the upload carries one 'uploadfile' part"
        return files[0].get_payload(decode=True)

    # -- routes: (status, model or dict)
    def handle(self, method: str, path: str, query: dict, headers, body: bytes):
        record = {"method": method, "path": path, "query": query, "headers": {k.lower(): v for k, v in headers.items()}, "kind": "?", "body": None}
        self.requests.append(record)
        if self.login_page:
            record["kind"] = "login_page"
            return 200, "<html><body>Log in to Kubeflow</body></html>"
        if self.auth and headers.get(self.auth[0]) != self.auth[1]:
            record["kind"] = "denied"
            return 401, {"error": "unauthenticated", "code": 16, "message": "request is not authenticated"}
        p = path[len("/apis/v2beta1"):] if path.startswith("/apis/v2beta1/") else None
        if p is None:
            return 404, {"error": "not found", "code": 5, "message": f"no route {path}"}
        if p == "/healthz" and method == "GET":
            record["kind"] = "healthz"
            return 200, api.V2beta1GetHealthzResponse(multi_user=False)
        if p == "/pipelines" and method == "GET":
            record["kind"] = "list_pipelines"
            items, token = self.page(self.named(self.pipelines.values(), query), query)
            return 200, api.V2beta1ListPipelinesResponse(pipelines=items, total_size=len(items), next_page_token=token)
        if p == "/pipelines/upload" and method == "POST":
            record["kind"] = "upload"
            record["body"] = spec = self.uploaded_file(headers, body)
            name = query["name"][0]
            if any(x.display_name == name for x in self.pipelines.values()):
                return 409, {"error": "exists", "code": 6, "message": f"pipeline {name} already exists"}
            pid = str(uuid.uuid4())
            pipe = api.V2beta1Pipeline(pipeline_id=pid, display_name=name, name=name,
                                       description=(query.get("description") or [""])[0], created_at=self.now())
            self.pipelines[pid] = pipe
            self.versions[pid] = [api.V2beta1PipelineVersion(
                pipeline_id=pid, pipeline_version_id=str(uuid.uuid4()), display_name=name, name=name,
                created_at=self.now(), pipeline_spec=pipeline_doc(spec))]
            return 200, pipe
        if p == "/pipelines/upload_version" and method == "POST":
            record["kind"] = "upload_version"
            record["body"] = spec = self.uploaded_file(headers, body)
            pid = query["pipelineid"][0]
            if pid not in self.pipelines:
                return 404, {"error": "not found", "code": 5, "message": f"pipeline {pid} not found"}
            version = api.V2beta1PipelineVersion(
                pipeline_id=pid, pipeline_version_id=str(uuid.uuid4()), display_name=query["name"][0],
                name=query["name"][0], created_at=self.now(), pipeline_spec=pipeline_doc(spec))
            self.versions[pid].append(version)
            return 200, version
        m = re.fullmatch(r"/pipelines/([^/]+)/versions", p)
        if m and method == "GET":
            record["kind"] = "list_versions"
            versions = sorted(self.versions.get(m.group(1), []), key=lambda v: v.created_at,
                              reverse="desc" in (query.get("sort_by") or [""])[0])
            items, token = self.page(versions, query)
            return 200, api.V2beta1ListPipelineVersionsResponse(pipeline_versions=items, total_size=len(items),
                                                                 next_page_token=token)
        if p == "/experiments" and method == "GET":
            record["kind"] = "list_experiments"
            items, token = self.page(self.named(self.experiments.values(), query), query)
            return 200, api.V2beta1ListExperimentsResponse(experiments=items, total_size=len(items),
                                                           next_page_token=token)
        if p == "/experiments" and method == "POST":
            record["kind"] = "create_experiment"
            exp = record["body"] = self.load(body, "V2beta1Experiment")
            exp.experiment_id, exp.created_at = str(uuid.uuid4()), self.now()
            self.experiments[exp.experiment_id] = exp
            return 200, exp
        if p == "/runs" and method == "POST":
            record["kind"] = "create_run"
            run = record["body"] = self.load(body, "V2beta1Run")
            run.run_id, run.created_at, run.state = str(uuid.uuid4()), self.now(), "PENDING"
            self.runs[run.run_id] = run
            return 200, run
        m = re.fullmatch(r"/runs/([^/:]+)", p)
        if m and method == "GET":
            record["kind"] = "get_run"
            run = self.runs.get(m.group(1))
            if run is None:
                return 404, {"error": "not found", "code": 5, "message": "run not found"}
            run.state = self.run_states.pop(0) if len(self.run_states) > 1 else self.run_states[0]
            if run.state == "FAILED" and self.run_error:
                run.error = api.GoogleRpcStatus(code=2, message=self.run_error)
            return 200, run
        if p == "/recurringruns" and method == "POST":
            record["kind"] = "create_recurring_run"
            rr = record["body"] = self.load(body, "V2beta1RecurringRun")
            rr.recurring_run_id, rr.created_at = str(uuid.uuid4()), self.now()
            rr.status = "ENABLED" if rr.mode == "ENABLE" else "DISABLED"
            self.recurring[rr.recurring_run_id] = rr
            return 200, rr
        if p == "/recurringruns" and method == "GET":
            record["kind"] = "list_recurring_runs"
            items, token = self.page(self.named(self.recurring.values(), query), query)
            return 200, api.V2beta1ListRecurringRunsResponse(recurring_runs=items, total_size=len(items),
                                                             next_page_token=token)
        m = re.fullmatch(r"/recurringruns/([^/:]+)(:disable|:enable)?", p)
        if m:
            rr = self.recurring.get(m.group(1))
            if rr is None:
                return 404, {"error": "not found", "code": 5, "message": "recurring run not found"}
            if method == "DELETE" and not m.group(2):
                record["kind"] = "delete_recurring_run"
                del self.recurring[rr.recurring_run_id]
                return 200, {}
            if method == "POST" and m.group(2) == ":disable":
                record["kind"] = "disable_recurring_run"
                rr.status, rr.mode = "DISABLED", "DISABLE"
                return 200, {}
        return 404, {"error": "not found", "code": 5, "message": f"no route {method} {path}"}


def _handler(state: KfpApi):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def _serve(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with state.lock:
                try:
                    status, payload = state.handle(self.command, url.path, parse_qs(url.query), self.headers, body)
                except Exception as exc:  # a broken expectation shows up as a 500 the test then reports
                    status, payload = 500, {"error": "test server", "code": 13, "message": repr(exc)}
            html = isinstance(payload, str)
            data = payload.encode() if html else json.dumps(state.codec.sanitize_for_serialization(payload)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if html else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

    return Handler


@pytest.fixture
def kfp_api():
    state = KfpApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES_")}
    env.update(HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")

    def run(*args, extra_env=None):
        return subprocess.run([*VIDPRED, *args], capture_output=True, text=True, timeout=180,
                              env={**env, **(extra_env or {})}, cwd=tmp_path)

    return run


def one_error_line(res) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def pipeline_doc(spec_yaml: bytes) -> dict:
    """The PipelineSpec of an uploaded YAML (a cluster profile's file has a second document, its platform spec)."""
    return next(d for d in yaml.safe_load_all(spec_yaml) if d)


def caching(spec_yaml: bytes) -> set:
    doc = pipeline_doc(spec_yaml)
    return {t["cachingOptions"].get("enableCache", False) for t in doc["root"]["dag"]["tasks"].values()}


# ------------------------------------------------------------------------------------------ submit

@pytest.mark.slow
def test_submit_uploads_then_adds_a_version_reuses_the_experiment_and_waits(kfp_api, cli):
    kfp_api.auth = ("Authorization", "Bearer s3cret")
    res = cli("submit", *SMALL, "--host", kfp_api.url, "--param", "tracking_uri=http://mlflow.example:5000",
              extra_env={"KF_PIPELINES_TOKEN": "s3cret"})
    assert res.returncode == 0, res.stderr
    assert not kfp_api.of("denied")

    # the pipeline did not exist: uploaded under <pipeline.name>-<profile>, the compiled YAML of the selected track
    (up,) = kfp_api.of("upload")
    assert up["query"]["name"] == [PIPELINE]
    spec = yaml.safe_load(up["body"])
    assert spec["pipelineInfo"]["name"] == "vidpred-reproduce"
    assert set(spec["root"]["dag"]["tasks"]) == {"toycar-toycar-experiment"}
    assert caching(up["body"]) == {True}  # submit keeps KFP's default (caching on)
    (pid,) = kfp_api.pipelines
    first_version = kfp_api.versions[pid][0].pipeline_version_id

    # the experiment (the profile's tracking.experiment) was created; the run uses that version and the parameters
    (exp,) = kfp_api.of("create_experiment")
    assert exp["body"].display_name == "vidpred-smoke"
    (created,) = kfp_api.of("create_run")
    run = created["body"]
    assert run.experiment_id == next(iter(kfp_api.experiments))
    assert run.pipeline_version_reference.pipeline_id == pid
    assert run.pipeline_version_reference.pipeline_version_id == first_version
    assert run.pipeline_spec is None  # the run refers to the uploaded version, it does not inline the spec
    assert run.runtime_config.parameters == {"tracking_uri": "http://mlflow.example:5000", "parent_run_id": "",
                                             "refresh_data": False}
    run_id = next(iter(kfp_api.runs))
    assert f"run URL: {kfp_api.url}/#/runs/details/{run_id}" in res.stdout
    assert "experiment vidpred-smoke: created" in res.stdout

    # second submit: a new version of the same pipeline, the experiment reused, followed to SUCCEEDED
    kfp_api.run_states = ["RUNNING", "RUNNING", "SUCCEEDED"]
    res = cli("submit", *SMALL, "--host", kfp_api.url, "--token", "s3cret", "--wait", "--poll", "0.05",
              "--run-name", "second")
    assert res.returncode == 0, res.stderr
    assert len(kfp_api.of("upload")) == 1
    (upv,) = kfp_api.of("upload_version")
    assert upv["query"]["pipelineid"] == [pid]
    assert re.fullmatch(rf"{PIPELINE}-\d{{8}}-\d{{6}}-[0-9a-f]{{8}}", upv["query"]["name"][0])
    assert len(kfp_api.versions[pid]) == 2 and len(kfp_api.pipelines) == 1
    assert len(kfp_api.of("create_experiment")) == 1 and len(kfp_api.experiments) == 1
    run2 = kfp_api.of("create_run")[-1]["body"]
    assert run2.display_name == "second"
    assert run2.pipeline_version_reference.pipeline_version_id == kfp_api.versions[pid][1].pipeline_version_id
    assert run2.runtime_config.parameters == {"tracking_uri": "", "parent_run_id": "",  # the declared defaults
                                              "refresh_data": False}
    assert len(kfp_api.of("get_run")) == 3
    assert "RUNNING" in res.stdout and "succeeded" in res.stdout
    assert "experiment vidpred-smoke: reused" in res.stdout
    assert all(r["headers"].get("authorization") == "Bearer s3cret" for r in kfp_api.requests)


@pytest.mark.slow
def test_submit_wait_on_a_failed_run_exits_nonzero_with_one_line(kfp_api, cli):
    kfp_api.run_states = ["RUNNING", "FAILED"]
    kfp_api.run_error = "task toycar-toycar-experiment failed: out of memory"
    ui = "https://kubeflow.example.com/pipeline"  # the UI somewhere else than the API
    res = cli("submit", *SMALL, "--host", kfp_api.url, "--wait", "--poll", "0.05",
              extra_env={"KF_PIPELINES_UI_ENDPOINT": ui})
    assert res.returncode == 1
    line = one_error_line(res)
    run_id = next(iter(kfp_api.runs))
    assert f"run {run_id} ended FAILED: task toycar-toycar-experiment failed: out of memory" in line
    assert f"({ui}/#/runs/details/{run_id})" in line
    assert f"run URL: {ui}/#/runs/details/{run_id}" in res.stdout  # printed before the wait
    assert res.stdout.index("run URL:") < res.stdout.index(": RUNNING")


@pytest.mark.slow
def test_submit_errors_are_one_line(kfp_api, cli):
    # nothing listens on this port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    res = cli("submit", *SMALL, "--host", dead)
    assert res.returncode == 2
    assert f"cannot reach the Kubeflow Pipelines API at {dead}" in one_error_line(res)

    kfp_api.auth = ("Authorization", "Bearer right")
    res = cli("submit", *SMALL, "--host", kfp_api.url, "--token", "wrong")
    assert res.returncode == 2
    line = one_error_line(res)
    assert "answered 401" in line and "--token" in line
    assert len(kfp_api.requests) == 1  # one health check, no retries, nothing uploaded

    res = cli("submit", *SMALL, "--host", kfp_api.url, "--token", "right", "--param", "no_such=1")
    assert res.returncode == 2
    assert "--param 'no_such': the pipeline has no such parameter (it has: parent_run_id, refresh_data, tracking_uri)" in \
        one_error_line(res)
    assert [r["kind"] for r in kfp_api.requests] == ["denied", "healthz"]  # nothing uploaded

    kfp_api.login_page = True  # an auth proxy in front of the API answering with its login page
    res = cli("submit", *SMALL, "--host", kfp_api.url)
    assert res.returncode == 2
    assert "did not answer as the Kubeflow Pipelines API (a login page?" in one_error_line(res)

    res = cli("submit", *SMALL, "--host", "localhost:8080")
    assert res.returncode == 2 and "--host 'localhost:8080'" in one_error_line(res)


def test_wait_for_run_stops_on_cancel_and_on_timeout(kfp_api, tmp_path, monkeypatch):
    import kfp

    from vidpred.submit import connect, wait_for_run

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))  # not the user's
    client = connect(kfp_api.url)
    kfp_api.runs["r1"] = api.V2beta1Run(run_id="r1", display_name="r1")
    seen = []
    kfp_api.run_states = ["PENDING", "RUNNING", "CANCELING", "CANCELED"]
    assert wait_for_run(client, "r1", poll=0.01, echo=seen.append) == ("CANCELED", "")
    assert seen == [f"run r1: {s}" for s in ("PENDING", "RUNNING", "CANCELING", "CANCELED")]
    kfp_api.run_states = ["RUNNING"]
    state, why = wait_for_run(client, "r1", poll=0.01, timeout=0.1)
    assert state == "RUNNING" and why == "still RUNNING after 0.1 s of --wait (the run goes on)"


# ------------------------------------------------------------------------------------------ schedule

@pytest.mark.slow
def test_schedule_creates_replaces_lists_and_disables(kfp_api, cli):
    res = cli("schedule", *SMALL, "--host", kfp_api.url, "--cron", "0 3 * * *")
    assert res.returncode == 0, res.stderr
    assert "→ KFP '0 0 3 * * *'" in res.stdout
    (created,) = kfp_api.of("create_recurring_run")
    rr = created["body"]
    assert rr.display_name == f"{PIPELINE}-retrain"
    assert rr.trigger.cron_schedule.cron == "0 0 3 * * *"
    assert rr.trigger.periodic_schedule is None
    assert rr.no_catchup is True
    assert int(rr.max_concurrency) == 1
    assert rr.mode == "ENABLE"
    (pid,) = kfp_api.pipelines
    assert rr.pipeline_version_reference.pipeline_id == pid
    assert rr.pipeline_version_reference.pipeline_version_id == kfp_api.versions[pid][0].pipeline_version_id
    # a scheduled run re-prepares its data from the source (and compares its md5 with the remote's)
    assert rr.runtime_config.parameters == {"tracking_uri": "", "parent_run_id": "", "refresh_data": True}
    assert rr.experiment_id == next(iter(kfp_api.experiments))
    assert caching(kfp_api.of("upload")[0]["body"]) == {False}  # scheduled runs re-prepare their data
    first = rr.recurring_run_id
    assert f"recurring run '{PIPELINE}-retrain' created: id {first}" in res.stdout

    # same name again: a new version, a new recurring run, the old one deleted (KFP has no update call)
    res = cli("schedule", *SMALL, "--host", kfp_api.url, "--cron", "0 30 4 * * MON-FRI", "--name",
              f"{PIPELINE}-retrain", "--param", "tracking_uri=http://mlflow:5000")
    assert res.returncode == 0, res.stderr
    assert len(kfp_api.of("upload_version")) == 1
    rr2 = kfp_api.of("create_recurring_run")[-1]["body"]
    assert rr2.trigger.cron_schedule.cron == "0 30 4 * * MON-FRI"
    assert rr2.no_catchup is True and int(rr2.max_concurrency) == 1
    assert rr2.runtime_config.parameters["tracking_uri"] == "http://mlflow:5000"
    assert rr2.pipeline_version_reference.pipeline_version_id == kfp_api.versions[pid][1].pipeline_version_id
    (deleted,) = kfp_api.of("delete_recurring_run")
    assert deleted["path"].endswith(f"/recurringruns/{first}")
    assert list(kfp_api.recurring) == [rr2.recurring_run_id]
    assert f"updated (replaced {first})" in res.stdout

    res = cli("schedule", "--host", kfp_api.url, "--list")
    assert res.returncode == 0, res.stderr
    (line,) = res.stdout.strip().splitlines()
    assert line.startswith(f"{PIPELINE}-retrain") and "enabled" in line and "'0 30 4 * * MON-FRI'" in line
    assert "max concurrency 1, no catch-up" in line

    res = cli("schedule", "--host", kfp_api.url, "--disable", f"{PIPELINE}-retrain")
    assert res.returncode == 0, res.stderr
    (disabled,) = kfp_api.of("disable_recurring_run")
    assert disabled["path"].endswith(f"/recurringruns/{rr2.recurring_run_id}:disable")
    assert kfp_api.recurring[rr2.recurring_run_id].status == "DISABLED"
    res = cli("schedule", "--host", kfp_api.url, "--list")
    assert "disabled" in res.stdout

    res = cli("schedule", "--host", kfp_api.url, "--disable", "nightly")
    assert res.returncode == 2
    assert f"--disable nightly: no recurring run of that name on {kfp_api.url} (there are: {PIPELINE}-retrain)" in \
        one_error_line(res)


@pytest.mark.slow
def test_schedule_input_errors_and_other_credentials(kfp_api, cli, tmp_path):
    for cron, words in [("0 3 * *", "expected 5 fields"), ("0 0 3 L * *", "'l' in the day of month"),
                        ("@every 1h", "not @every"), ("0 0 25 * * *", "not a valid cron")]:
        res = cli("schedule", *SMALL, "--host", kfp_api.url, "--cron", cron)
        assert res.returncode == 2 and words in one_error_line(res), (cron, res.stderr)
    assert kfp_api.requests == []  # refused before anything was compiled or sent
    res = cli("schedule", "--host", kfp_api.url, "--list", "--disable", "x")
    assert res.returncode == 2 and "give one of --cron" in one_error_line(res)

    # a projected service-account token file (the kfp client's ServiceAccountTokenVolumeCredentials) ...
    token = tmp_path / "token"
    token.write_text("from-the-pod\n")
    kfp_api.auth = ("Authorization", "Bearer from-the-pod")
    res = cli("schedule", "--host", kfp_api.url, "--list", extra_env={"KF_PIPELINES_SA_TOKEN_PATH": str(token)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "no recurring runs"
    # ... and a session cookie (host and cookie from the environment this time)
    kfp_api.auth = ("Cookie", "authservice_session=abc")
    res = cli("schedule", "--list", extra_env={"KF_PIPELINES_ENDPOINT": kfp_api.url,
                                               "KF_PIPELINES_COOKIE": "authservice_session=abc"})
    assert res.returncode == 0, res.stderr
    assert not kfp_api.of("denied")


@pytest.mark.parametrize("given, expected", [
    ("0 3 * * *", "0 0 3 * * *"),  # 5-field crontab: seconds 0 prepended
    ("*/15  9-17 * * 1-5", "0 */15 9-17 * * 1-5"),
    ("0 0 9 ? * 2-6", "0 0 9 ? * 2-6"),  # KFP's own example, unchanged
    ("0 0 3 1 JAN,jul SUN", "0 0 3 1 JAN,jul SUN"),
    ("@daily", "@daily"),
])
def test_normalize_cron(given, expected):
    assert normalize_cron(given) == expected


@pytest.mark.parametrize("bad", ["", "* * * *", "0 0 0 3 * * * 2027", "0 0 3 * * 7", "0 0 3 ? * 5#2",
                                 "0 0 3 LW * *", "? 0 3 * * *", "0 61 3 * * *", "0 0 3 * * FOO", "@every 5m"])
def test_normalize_cron_refuses(bad):
    with pytest.raises(VidpredError):
        normalize_cron(bad)


@pytest.mark.slow
def test_runs_of_a_cluster_profile_carry_its_service_account(kfp_api, cli):
    """KFP takes the service account per run (the compiled YAML has no field for it): a profile's
    ``cluster.service_account`` goes on the run and the recurring run; a profile without ``cluster`` sets none."""
    paper = ["--profile", "paper", "--only", "toycar-corrwise"]
    res = cli("submit", *paper, "--host", kfp_api.url)
    assert res.returncode == 0, res.stderr
    assert kfp_api.of("create_run")[-1]["body"].service_account == "vidpred-pipeline"
    res = cli("schedule", *paper, "--host", kfp_api.url, "--cron", "0 3 * * *")
    assert res.returncode == 0, res.stderr
    assert kfp_api.of("create_recurring_run")[-1]["body"].service_account == "vidpred-pipeline"
    res = cli("submit", *SMALL, "--host", kfp_api.url)
    assert res.returncode == 0, res.stderr
    assert not kfp_api.of("create_run")[-1]["body"].service_account
