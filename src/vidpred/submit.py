"""Submitting the reproduction pipeline to a Kubeflow Pipelines (KFP) endpoint and scheduling retraining there:
``vidpred submit`` and ``vidpred schedule``. Everything goes through the kfp client (``kfp.Client``, KFP v2beta1
REST API); nothing here speaks HTTP or does authentication by itself.

* :func:`submit`: compile the profile (``vidpred.orchestrate.compile_pipeline``) → upload it as the KFP pipeline
  ``<pipeline.name>-<profile>`` (a new version when a pipeline of that name exists) → create or reuse the KFP
  experiment (default: the profile's ``tracking.experiment``) → start a run of that version with the run
  parameters (the pipeline's declared inputs; ``--param`` sets them) → print the run's URL; with ``wait`` follow
  the run to a final state (:func:`wait_for_run`).
* :func:`schedule`: the same upload, then a KFP recurring run from a cron expression (:func:`normalize_cron`) with
  ``no_catchup=True`` and ``max_concurrency=1``. KFP has no update call for recurring runs, so an existing one of
  the same name is replaced: the new one is created first, then the old one deleted. The version uploaded for a
  schedule is compiled with execution caching off (KFP's own compile-time default switch), so every scheduled run
  re-prepares its data from the source instead of reusing a cached result.
* :func:`list_schedules`, :func:`disable_schedule`: ``vidpred schedule --list`` / ``--disable NAME``.

Authentication is the kfp client's (:class:`Auth`): a bearer token (``--token`` / ``KF_PIPELINES_TOKEN``, passed as
the client's ``existing_token``), a projected service-account token file read by the client's
``ServiceAccountTokenVolumeCredentials`` (used when ``KF_PIPELINES_SA_TOKEN_PATH`` is set or the client's default
path exists, i.e. in a pod), a session cookie (``--cookie`` / ``KF_PIPELINES_COOKIE``, e.g. the
``authservice_session`` / ``oauth2_proxy_kubeflow`` cookie of a Kubeflow login), and ``--namespace`` for
multi-user deployments. Whatever the client reads by itself (``~/.config/kfp/context.json``, its IAP variables)
still applies.

Errors (unreachable host, HTTP errors, a login page instead of the API, a bad cron expression or parameter) are
one :class:`~vidpred.errors.VidpredError` line. kfp is imported lazily.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import re
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from vidpred.errors import VidpredError

TOKEN_ENV = "KF_PIPELINES_TOKEN"  # vidpred's variable for --token (the kfp client reads no token variable itself)
COOKIE_ENV = "KF_PIPELINES_COOKIE"  # vidpred's variable for --cookie
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # the kfp client's variable: a projected service-account token file
SA_TOKEN_DEFAULT = "/var/run/secrets/kubeflow/pipelines/token"  # the kfp client's default path for that file
UI_ENV = "KF_PIPELINES_UI_ENDPOINT"  # the kfp client's variable: UI base URL when it differs from the API host
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")  # kfp_server_api.V2beta1RuntimeState
REQUEST_TIMEOUT_S = 60.0  # per socket operation; kfp's generated client sets none (a silent host would hang)
PAGE_SIZE = 100

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


# ------------------------------------------------------------------------------------------ cron

_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
_DAYS = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
_FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")


def normalize_cron(expr: str) -> str:
    """The cron expression KFP should get, checked.

    KFP's scheduler parses cron with robfig/cron v1: six fields, **seconds first**
    (``sec min hour day-of-month month day-of-week``, e.g. ``0 0 3 * * *`` = 03:00 UTC daily), the special
    characters ``* , - / ?`` and names (JAN–DEC, SUN–SAT), or a descriptor (``@daily`` …). A five-field
    expression is read as standard crontab (``min hour dom month dow``) and gets ``0`` seconds prepended: given
    to KFP unchanged it would be read with the fields shifted (``0 3 * * *`` would run hourly at minute 3).
    Extensions robfig v1 lacks (``L``, ``W``, ``#``, ``H``, a year field, day-of-week 7, ``@every``) are refused.
    The values are checked with croniter (seconds-first mode)."""
    from croniter import croniter

    text = " ".join(str(expr or "").split())
    if not text:
        raise VidpredError("--cron: give a cron expression, e.g. '0 3 * * *' (03:00 UTC daily)")
    if text.startswith("@"):
        if text.lower() in _DESCRIPTORS:
            return text.lower()
        raise VidpredError(f"--cron {expr!r}: KFP accepts the descriptors {', '.join(sorted(_DESCRIPTORS))} "
                           "(not @every: write a cron expression)")
    fields = text.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise VidpredError(f"--cron {expr!r}: expected 5 fields (min hour day month weekday) or 6 (KFP's, seconds "
                           f"first), got {len(fields)}")
    for name, value in zip(_FIELDS, fields):
        if not re.fullmatch(r"[0-9A-Za-z*?,/\-]+", value):
            raise VidpredError(f"--cron {expr!r}: the {name} field {value!r} uses a character KFP's cron does not "
                               "know (allowed: digits, names, * , - / ?)")
        words = {w.lower() for w in re.findall(r"[A-Za-z]+", value)}
        allowed = _MONTHS if name == "month" else _DAYS if name == "day of week" else set()
        if words - allowed:
            raise VidpredError(f"--cron {expr!r}: {sorted(words - allowed)[0]!r} in the {name} field is not "
                               "supported by KFP's cron (no L, W, H; names only for months and weekdays)")
        if "?" in value and name not in ("day of month", "day of week"):
            raise VidpredError(f"--cron {expr!r}: '?' is allowed only in the day-of-month and day-of-week fields")
        if name == "day of week" and any(int(n) > 6 for n in re.findall(r"\d+", value.split("/")[0])):
            raise VidpredError(f"--cron {expr!r}: day of week runs 0-6 (SUN-SAT) in KFP's cron")
    result = " ".join(fields)
    if not croniter.is_valid(result, second_at_beginning=True):
        raise VidpredError(f"--cron {expr!r}: not a valid cron expression (KFP form: {result!r}; fields: "
                           "second minute hour day-of-month month day-of-week)")
    return result


# ------------------------------------------------------------------------------------------ connection

@dataclass
class Auth:
    """How to authenticate to the KFP API (every way is the kfp client's own; see the module doc)."""

    token: str | None = None
    cookie: str | None = None
    namespace: str | None = None

    def describe(self) -> str:
        if self.token:
            how = "bearer token"
        elif _sa_token_path():
            how = f"service-account token file {_sa_token_path()}"
        elif self.cookie:
            how = "session cookie"
        else:
            how = "no credentials"
        return how + (f", namespace {self.namespace}" if self.namespace else "")


def _sa_token_path() -> str | None:
    path = os.environ.get(SA_TOKEN_ENV) or (SA_TOKEN_DEFAULT if os.path.isfile(SA_TOKEN_DEFAULT) else None)
    return path or None


def _check_host(host: str) -> str:
    host = (host or "").strip()
    if not re.match(r"https?://[^/\s]+", host):
        raise VidpredError(f"--host {host!r}: give the Kubeflow Pipelines API URL with its scheme, e.g. "
                           "http://localhost:8080 (kubectl port-forward svc/ml-pipeline-ui) or "
                           "https://kubeflow.example.com/pipeline")
    return host.rstrip("/")


def _api_detail(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = ""
    if body:
        try:
            data = json.loads(body)
            text = str(data.get("message") or data.get("error") or "") if isinstance(data, dict) else ""
        except ValueError:
            text = "" if "<html" in body.lower() else body
    return " ".join(text.split())[:300]


@contextlib.contextmanager
def _kfp_calls(host: str, doing: str) -> Iterator[None]:
    """Around every use of the kfp client: one VidpredError line for what can go wrong, a socket timeout
    (the generated client has none), and the client's own chatter ("Experiment details: …") kept off stdout."""
    import kfp_server_api
    import urllib3

    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(REQUEST_TIMEOUT_S)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", message=".*only works with Kubeflow Pipeline.*", category=FutureWarning)
            yield
    except kfp_server_api.ApiException as exc:
        detail = _api_detail(exc)
        hint = (" (check --token / KF_PIPELINES_TOKEN, --cookie or --namespace)"
                if exc.status in (401, 403) else "")
        raise VidpredError(f"{doing}: the Kubeflow Pipelines API at {host} answered {exc.status} {exc.reason or ''}"
                           f"{': ' + detail if detail else ''}{hint}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise VidpredError(f"{doing}: cannot reach the Kubeflow Pipelines API at {host}: {reason}") from None
    except ValueError as exc:  # the kfp client's own checks (e.g. two pipelines of one name)
        raise VidpredError(f"{doing}: {exc}") from None
    finally:
        socket.setdefaulttimeout(saved)


def connect(host: str, auth: Auth | None = None):
    """A ``kfp.Client`` for ``host`` with ``auth``, after one health check of the API (one error line when the
    host is unreachable, refuses the credentials or answers with something else, e.g. a login page)."""
    import kfp

    host = _check_host(host)
    auth = auth or Auth()

    class Client(kfp.Client):
        """kfp.Client with a single health check: the client's own retries five times, five seconds apart, and
        logs a traceback each time, which turns a wrong token into a 25-second wait."""

        def get_kfp_healthz(self, sleep_duration: int = 5):
            health, _, headers = self._healthz_api.healthz_service_get_healthz_with_http_info()
            if "json" not in str((headers or {}).get("Content-Type", "")).lower():
                raise VidpredError(f"connecting: {host} did not answer as the Kubeflow Pipelines API (a login "
                                   "page? give --token or --cookie, or the API's own URL)")
            self.vidpred_health = health
            return health

    kwargs: dict = {"host": host}
    if auth.token:
        kwargs["existing_token"] = auth.token
    elif _sa_token_path():
        kwargs["credentials"] = kfp.client.ServiceAccountTokenVolumeCredentials(_sa_token_path())
    if auth.cookie:
        kwargs["cookies"] = auth.cookie
    if auth.namespace:
        kwargs["namespace"] = auth.namespace
    with _kfp_calls(host, "connecting"):
        client = Client(**kwargs)  # checks the health itself unless a namespace is set
        if getattr(client, "vidpred_health", None) is None:
            client.get_kfp_healthz()
    client.vidpred_host = host
    return client


def _namespace(auth: Auth) -> str | None:
    return auth.namespace or None


def _ui_url(host: str, path: str) -> str:
    base = os.environ.get(UI_ENV) or host
    if not base.startswith(("http://", "https://")):
        base = "http://" + base
    return f"{base.rstrip('/')}/#/{path}"


def run_url(host: str, run_id: str) -> str:
    """The run's page in the KFP UI (``$KF_PIPELINES_UI_ENDPOINT`` when the UI is not at the API host)."""
    return _ui_url(host, f"runs/details/{run_id}")


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


# ------------------------------------------------------------------------------------------ compile + upload

@dataclass
class Compiled:
    path: Path
    pipeline_name: str  # the KFP pipeline: <pipeline.name>-<profile>
    description: str
    experiment: str  # the profile's tracking.experiment (default KFP experiment)
    parameters: dict  # declared pipeline inputs: name → {"type": …, "default": …}
    sha256: str
    service_account: str | None = None  # the profile's cluster.service_account: KFP sets it per run, not in the YAML


@contextlib.contextmanager
def _caching_default(enabled: bool) -> Iterator[None]:
    """KFP's compile-time default for execution caching, set the way ``kfp dsl compile
    --disable-execution-caching-by-default`` sets it (tasks created while compiling pick it up)."""
    from kfp.dsl import pipeline_context

    saved = pipeline_context.Pipeline._execution_caching_default
    pipeline_context.Pipeline._execution_caching_default = bool(enabled)
    try:
        yield
    finally:
        pipeline_context.Pipeline._execution_caching_default = saved


def compile_for_kfp(profile: str, workdir: str | Path, overrides: Iterable[str] = (),
                    only: Iterable[str] | None = None, cache: bool = True) -> Compiled:
    """Compile the profile into ``workdir/pipeline.yaml`` (as ``vidpred compile`` does) with execution caching on
    or off by default; return what the upload needs."""
    import yaml

    from vidpred.orchestrate import compile_pipeline
    from vidpred.profile import load_profile

    overrides = list(overrides)
    spec = load_profile(profile, overrides, only)
    with _caching_default(cache):
        path = compile_pipeline(profile=profile, out=Path(workdir) / "pipeline.yaml", overrides=overrides, only=only)
    data = path.read_bytes()
    doc = next(d for d in yaml.safe_load_all(data) if d)
    declared = (doc.get("root", {}).get("inputDefinitions", {}).get("parameters") or {})
    params = {k: {"type": v.get("parameterType", "STRING"), "default": v.get("defaultValue")} for k, v in declared.items()}
    tracking = spec.cfg.values.get("tracking") or {}
    experiment = str(tracking.get("experiment") or f"vidpred-{profile}") if isinstance(tracking, dict) else f"vidpred-{profile}"
    return Compiled(path=path, pipeline_name=f"{spec.pipeline_name}-{profile}", description=spec.description,
                    experiment=experiment, parameters=params, sha256=hashlib.sha256(data).hexdigest(),
                    service_account=(spec.cluster or {}).get("service_account") or None)


def parse_params(items: Iterable[str] | None, declared: dict) -> dict:
    """``--param name=value`` items against the pipeline's declared inputs → the run's parameters (every declared
    one, its default where not given), each converted to its declared type."""
    given: dict = {}
    for item in items or []:
        if "=" not in item:
            raise VidpredError(f"--param {item!r}: expected name=value")
        name, value = item.split("=", 1)
        name = name.strip()
        if name not in declared:
            raise VidpredError(f"--param {name!r}: the pipeline has no such parameter (it has: "
                               f"{', '.join(sorted(declared)) or 'none'})")
        kind = declared[name]["type"]
        try:
            if kind == "NUMBER_INTEGER":
                given[name] = int(value)
            elif kind == "NUMBER_DOUBLE":
                given[name] = float(value)
            elif kind == "BOOLEAN":
                if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                given[name] = value.strip().lower() in ("true", "1", "yes")
            elif kind in ("LIST", "STRUCT"):
                given[name] = json.loads(value)
            else:
                given[name] = value
        except ValueError:
            raise VidpredError(f"--param {name}={value!r}: not a valid {kind.lower()}") from None
    params = {k: v["default"] for k, v in declared.items() if v.get("default") is not None}
    params.update(given)
    return params


@dataclass
class Upload:
    pipeline_name: str
    pipeline_id: str
    version_id: str
    version_name: str
    new_pipeline: bool

    def describe(self) -> str:
        if self.new_pipeline:
            return f"pipeline {self.pipeline_name}: uploaded (id {self.pipeline_id}, version {self.version_id})"
        return (f"pipeline {self.pipeline_name}: new version {self.version_name} (id {self.version_id}; "
                f"pipeline id {self.pipeline_id})")


def upload(client, compiled: Compiled, namespace: str | None = None) -> Upload:
    """Upload ``compiled`` as the KFP pipeline of its name, or as a new version of it when it exists."""
    name = compiled.pipeline_name
    host = getattr(client, "vidpred_host", "?")
    with _kfp_calls(host, f"uploading pipeline {name}"):
        found = client.list_pipelines(filter=_name_filter(name), namespace=namespace, page_size=PAGE_SIZE)
        matches = [p for p in (found.pipelines or []) if p.display_name == name]
        if len(matches) > 1:
            raise VidpredError(f"uploading pipeline {name}: {len(matches)} pipelines have that name on {host}; "
                               "delete or rename all but one")
        if not matches:
            pipeline = client.upload_pipeline(str(compiled.path), pipeline_name=name,
                                              description=compiled.description, namespace=namespace)
            versions = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc", page_size=1)
            if not versions.pipeline_versions:
                raise VidpredError(f"uploading pipeline {name}: {host} created it without a version")
            version = versions.pipeline_versions[0]
            return Upload(name, pipeline.pipeline_id, version.pipeline_version_id,
                          version.display_name or name, True)
        pipeline_id = matches[0].pipeline_id
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        version_name = f"{name}-{stamp}-{compiled.sha256[:8]}"
        version = client.upload_pipeline_version(str(compiled.path), version_name, pipeline_id=pipeline_id,
                                                 description=compiled.description)
        return Upload(name, pipeline_id, version.pipeline_version_id, version_name, False)


def ensure_experiment(client, name: str, namespace: str | None = None) -> tuple[str, bool]:
    """The id of KFP experiment ``name`` (created if it does not exist) and whether it was created."""
    host = getattr(client, "vidpred_host", "?")
    with _kfp_calls(host, f"experiment {name}"):
        try:
            return client.get_experiment(experiment_name=name, namespace=namespace).experiment_id, False
        except ValueError as exc:
            if not str(exc).startswith("No experiment is found"):
                raise
        return client.create_experiment(name, namespace=namespace).experiment_id, True


# ------------------------------------------------------------------------------------------ submit

@dataclass
class SubmitResult:
    host: str
    upload: Upload
    experiment: str
    experiment_id: str
    experiment_created: bool
    run_id: str
    run_name: str
    url: str
    parameters: dict = field(default_factory=dict)
    state: str | None = None  # the final state when waited for
    error: str = ""  # the run's error message (a failed run) or why the wait stopped

    @property
    def ok(self) -> bool:
        return self.state in (None, "SUCCEEDED") and not self.error

    def failure(self) -> str:
        """The one line for a run that did not succeed ('' if it did or was not waited for)."""
        if self.ok:
            return ""
        return f"run {self.run_id} ended {self.state or 'unknown'}{': ' + self.error if self.error else ''} ({self.url})"


def wait_for_run(client, run_id: str, poll: float = 15.0, timeout: float | None = None, echo: Echo = _quiet):
    """Poll the run until it reaches a final state (SUCCEEDED, FAILED, SKIPPED, CANCELED); echo each state change.
    Returns (state, error message); on ``timeout`` seconds the state is the last seen one and the message says so."""
    host = getattr(client, "vidpred_host", "?")
    started = time.monotonic()
    last = None
    while True:
        with _kfp_calls(host, f"following run {run_id} (it goes on: {run_url(host, run_id)})"):
            run = client.get_run(run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        if state != last:
            echo(f"run {run_id}: {state}")
            last = state
        if state in FINAL_STATES:
            message = getattr(run.error, "message", "") if run.error else ""
            return state, " ".join(str(message or "").split())[:500]
        if timeout is not None and time.monotonic() - started > timeout:
            return state, f"still {state} after {timeout:g} s of --wait (the run goes on)"
        time.sleep(poll)


def _publish(client, auth: Auth, profile: str, overrides, only, params, cache: bool, experiment: str | None,
             echo: Echo) -> tuple:
    """What submit and schedule share: compile the profile, check the run parameters, upload the pipeline (or a
    new version), create or reuse the experiment. Returns (compiled, values, upload, experiment name, its id,
    whether it was created)."""
    with tempfile.TemporaryDirectory(prefix="vidpred-kfp-") as tmp:
        compiled = compile_for_kfp(profile, tmp, overrides, only, cache=cache)
        values = parse_params(params, compiled.parameters)
        up = upload(client, compiled, _namespace(auth))
    echo(up.describe())
    exp_name = experiment or compiled.experiment
    exp_id, created = ensure_experiment(client, exp_name, _namespace(auth))
    echo(f"experiment {exp_name}: {'created' if created else 'reused'} (id {exp_id})")
    return compiled, values, up, exp_name, exp_id, created


def submit(profile: str, host: str, experiment: str | None = None, overrides: Iterable[str] = (),
           only: Iterable[str] | None = None, params: Iterable[str] = (), run_name: str | None = None,
           wait: bool = False, poll: float = 15.0, timeout: float | None = None, cache: bool = True,
           auth: Auth | None = None, echo: Echo = _quiet) -> SubmitResult:
    """``vidpred submit`` (see the module doc); progress lines and the run URL go to ``echo`` as they happen."""
    auth = auth or Auth()
    host = _check_host(host)
    client = connect(host, auth)  # unreachable or refused: one line before the (slower) compile
    compiled, values, up, exp_name, exp_id, created = _publish(client, auth, profile, overrides, only, params,
                                                               cache, experiment, echo)
    name = run_name or f"{compiled.pipeline_name} {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    with _kfp_calls(host, f"starting a run of {compiled.pipeline_name}"):
        run = client.run_pipeline(exp_id, name, params=values, pipeline_id=up.pipeline_id,
                                  version_id=up.version_id, service_account=compiled.service_account)
    url = run_url(host, run.run_id)
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())) or "none"
    echo(f"run {name!r} started (id {run.run_id}); parameters: {shown}")
    echo(f"run URL: {url}")
    result = SubmitResult(host=host, upload=up, experiment=exp_name, experiment_id=exp_id, experiment_created=created,
                          run_id=run.run_id, run_name=name, url=url, parameters=values)
    if wait:
        result.state, result.error = wait_for_run(client, run.run_id, poll=poll, timeout=timeout, echo=echo)
        if result.state == "SUCCEEDED":
            echo(f"run {run.run_id} succeeded ({url})")
    return result


# ------------------------------------------------------------------------------------------ schedule

@dataclass
class Schedule:
    """One KFP recurring run, as listed."""

    name: str
    recurring_run_id: str
    enabled: bool
    cron: str
    max_concurrency: int | None
    no_catchup: bool | None
    experiment_id: str

    @classmethod
    def of(cls, rr) -> "Schedule":
        trigger = rr.trigger
        cron = ""
        if trigger is not None and trigger.cron_schedule is not None:
            cron = trigger.cron_schedule.cron or ""
        elif trigger is not None and trigger.periodic_schedule is not None:
            cron = f"every {trigger.periodic_schedule.interval_second} s"
        status = str(rr.status or rr.mode or "")
        enabled = status in ("ENABLED", "ENABLE")
        mc = int(rr.max_concurrency) if rr.max_concurrency not in (None, "") else None
        return cls(rr.display_name or "", rr.recurring_run_id or "", enabled, cron, mc, rr.no_catchup,
                   rr.experiment_id or "")

    def describe(self) -> str:
        catchup = "no catch-up" if self.no_catchup else "catch-up"
        return (f"{self.name:30s} {'enabled' if self.enabled else 'disabled':8s} cron '{self.cron}' "
                f"max concurrency {self.max_concurrency}, {catchup}  (id {self.recurring_run_id}, "
                f"experiment {self.experiment_id})")


def _recurring_runs(client, name: str | None = None, namespace: str | None = None) -> list:
    out, token = [], ""
    while True:
        page = client.list_recurring_runs(page_token=token, page_size=PAGE_SIZE, namespace=namespace,
                                          filter=_name_filter(name) if name else None)
        out += [r for r in (page.recurring_runs or []) if name is None or r.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return out


@dataclass
class ScheduleResult:
    name: str
    cron: str
    recurring_run_id: str
    upload: Upload
    experiment: str
    experiment_id: str
    replaced: list[str]
    url: str

    def describe(self) -> str:
        what = f"updated (replaced {', '.join(self.replaced)})" if self.replaced else "created"
        return (f"recurring run {self.name!r} {what}: id {self.recurring_run_id}, cron '{self.cron}' (UTC), "
                f"no catch-up, max concurrency 1, experiment {self.experiment} (id {self.experiment_id}), "
                f"pipeline version {self.upload.version_id}\nrecurring run URL: {self.url}")


def schedule(profile: str, host: str, cron: str, name: str | None = None, experiment: str | None = None,
             overrides: Iterable[str] = (), only: Iterable[str] | None = None, params: Iterable[str] = (),
             cache: bool = False, auth: Auth | None = None, echo: Echo = _quiet) -> ScheduleResult:
    """``vidpred schedule --cron`` (see the module doc)."""
    auth = auth or Auth()
    host = _check_host(host)
    kfp_cron = normalize_cron(cron)
    if kfp_cron != " ".join(str(cron).split()):
        echo(f"cron {cron!r} → KFP {kfp_cron!r} (seconds first; times are UTC)")
    client = connect(host, auth)
    # a scheduled run re-prepares its data from the source and compares md5s (vidpred.data.remote)
    compiled, values, up, exp_name, exp_id, created = _publish(
        client, auth, profile, overrides, only, ["refresh_data=true", *(params or [])], cache, experiment, echo)
    name = name or f"{compiled.pipeline_name}-retrain"
    with _kfp_calls(host, f"recurring run {name}"):
        old = _recurring_runs(client, name, _namespace(auth))
        description = (f"vidpred schedule: profile {profile}, cron '{kfp_cron}' (UTC), no catch-up, at most one run "
                       f"at a time; caching {'on' if cache else 'off'}")
        rr = client.create_recurring_run(exp_id, name, description=description, cron_expression=kfp_cron,
                                         max_concurrency=1, no_catchup=True, params=values,
                                         pipeline_id=up.pipeline_id, version_id=up.version_id, enabled=True,
                                         service_account=compiled.service_account)
        for r in old:  # KFP cannot update a recurring run: the new one is in place, the old ones go
            client.delete_recurring_run(r.recurring_run_id)
    return ScheduleResult(name=name, cron=kfp_cron, recurring_run_id=rr.recurring_run_id, upload=up,
                          experiment=exp_name, experiment_id=exp_id, replaced=[r.recurring_run_id for r in old],
                          url=_ui_url(host, f"recurringrun/details/{rr.recurring_run_id}"))


def list_schedules(host: str, auth: Auth | None = None) -> list[Schedule]:
    """Every recurring run on ``host`` (in ``auth.namespace`` when given)."""
    auth = auth or Auth()
    client = connect(host, auth)
    with _kfp_calls(client.vidpred_host, "listing recurring runs"):
        return [Schedule.of(r) for r in _recurring_runs(client, None, _namespace(auth))]


def disable_schedule(host: str, name: str, auth: Auth | None = None) -> list[Schedule]:
    """Disable every recurring run named ``name``; return them (as they were). None of that name → an error."""
    auth = auth or Auth()
    client = connect(host, auth)
    with _kfp_calls(client.vidpred_host, f"disabling recurring run {name}"):
        found = _recurring_runs(client, name, _namespace(auth))
        if not found:
            known = sorted({r.display_name for r in _recurring_runs(client, None, _namespace(auth))})
            raise VidpredError(f"--disable {name}: no recurring run of that name on {client.vidpred_host} "
                               f"(there are: {', '.join(known) or 'none'})")
        for r in found:
            client.disable_recurring_run(r.recurring_run_id)
    return [Schedule.of(r) for r in found]


__all__ = ["Auth", "connect", "normalize_cron", "parse_params", "compile_for_kfp", "upload", "ensure_experiment",
           "submit", "wait_for_run", "schedule", "list_schedules", "disable_schedule", "SubmitResult",
           "ScheduleResult", "Schedule", "run_url", "TOKEN_ENV", "COOKIE_ENV"]
