"""MLflow tracking: one parent run per pipeline run, one nested run per stage.

Where runs go
    ``MLFLOW_TRACKING_URI`` if set (e.g. the cluster's ``http://mlflow.vidpred:5000``), else the embedded
    default ``sqlite:///<project>/mlflow.db`` with artifacts in ``<project>/mlartifacts``. The project
    directory is ``$VIDPRED_HOME`` or the current directory. ``VIDPRED_ARTIFACT_ROOT`` overrides the artifact
    location given to a *new* experiment (remote servers with ``--artifacts-destination`` pick their own).

What a run records
    params = the resolved config flattened to dotted keys (values cut to MLflow's 6000-character limit,
    logged in batches of 100); tags = ``vidpred.git_sha`` (``unknown`` outside a git checkout),
    ``vidpred.data_md5``, ``vidpred.profile``, ``vidpred.stage``; artifacts ``config/resolved.yaml`` and
    ``config/provenance.json`` (where every number came from). Training stages add MLflow system metrics
    (:func:`log_system_metrics`) and log through :mod:`vidpred.tracking_buffer` (tracking-server outages survived).
    Inputs: every store the config names (:data:`STORE_KEYS`) as an ``mlflow.data`` dataset — digest = its DVC
    md5, context = the split read (:func:`log_store_inputs`). Experiments are created with the tag
    ``mlflow.experimentKind = custom_model_development``, so MLflow's UI opens them on the training-runs view.

Models
    A training stage's model is an MLflow 3 LoggedModel of its run (``vidpred.train.loop.StepLogger``) holding the
    stage's model files (:func:`log_model_files`); ``mlflow_model.json`` beside the files names it
    (:func:`write_model_pointer`), so the evaluation can register it (``vidpred.registry``).

Stages in other processes
    kfp.local runs every stage in its own subprocess, so :func:`stage_run` takes ``parent_run_id`` (or env
    ``VIDPRED_PARENT_RUN_ID``) and starts the nested run with ``mlflow.start_run(parent_run_id=...)``, which
    sets the ``mlflow.parentRunId`` tag.

``mlflow`` is imported inside functions: importing it takes seconds, and most CLI commands never need it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

import yaml

from vidpred.errors import VidpredError

DEFAULT_EXPERIMENT = "vidpred"
MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_KEY = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
HEALTH_TIMEOUT = 3.0  # seconds
ERROR_TAG = "vidpred.error"  # a failed stage run's error, one line
OPENED_RUNS: list[str] = []  # ids of the stage runs this process opened, oldest first
# The tag MLflow's UI reads to pick an experiment's view (mlflow/server/js: ExperimentKind); without it MLflow 3
# opens the GenAI overview, with this value the training-runs table.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# config keys naming the stores a stage reads (clip store, MOSO store, token set) → logged as dataset inputs
STORE_KEYS = ("data.store", "data.moso_store", "data.tokens", "store")
MODEL_POINTER = "mlflow_model.json"  # written beside a stage's model files: which LoggedModel holds them


# ------------------------------------------------------------------------------------------ locations

def project_dir() -> Path:
    """``$VIDPRED_HOME`` or the current directory, absolute."""
    return Path(os.environ.get("VIDPRED_HOME") or os.getcwd()).expanduser().resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or ``sqlite:///<project>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return uri or f"sqlite:///{project_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    """Artifact location for new experiments: ``$VIDPRED_ARTIFACT_ROOT`` or ``<project>/mlartifacts`` (a URI)."""
    root = os.environ.get("VIDPRED_ARTIFACT_ROOT", "").strip()
    if root and "://" in root:
        return root  # s3://…, file://…, mlflow-artifacts:/…
    path = Path(root).expanduser().resolve() if root else project_dir() / "mlartifacts"
    return path.as_uri()


def preflight(uri: str | None = None) -> str:
    """Check that runs can be recorded at ``uri`` (default :func:`tracking_uri`); return the URI.

    http(s): GET ``<uri>/health`` within ~3 s. sqlite: the database's directory exists (created) and is
    writable. Other schemes are left to MLflow.
    """
    uri = uri or tracking_uri()
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        import requests

        try:
            resp = requests.get(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT)
            if resp.status_code != 200:
                raise OSError(f"/health answered HTTP {resp.status_code}")
        except (requests.RequestException, OSError) as exc:
            reason = type(exc).__name__ if isinstance(exc, requests.RequestException) else str(exc)
            raise VidpredError(f"MLflow tracking server at {uri} is unreachable ({reason}): "
                               "start it or unset MLFLOW_TRACKING_URI") from None
    elif scheme == "sqlite":
        db = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not db or db == ":memory:":
            return uri
        parent = Path(db).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VidpredError(f"MLflow database directory {parent} cannot be created ({exc.strerror})") from None
        if not os.access(parent, os.W_OK):
            raise VidpredError(f"MLflow database directory {parent} is not writable (MLFLOW_TRACKING_URI={uri})")
    return uri


# ------------------------------------------------------------------------------------------ run metadata

def git_sha(repo: str | Path | None = None) -> str:
    """HEAD commit of the checkout holding vidpred (or ``repo``), ``unknown`` when there is none."""
    from vidpred.config import REPO_ROOT

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo or REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if len(sha) == 40 else "unknown"


def _config_parts(config: Any) -> tuple[dict, dict]:
    """(values, provenance) of a vidpred Config or a plain mapping (its ``provenance`` key split off)."""
    if config is None:
        return {}, {}
    if hasattr(config, "values") and hasattr(config, "provenance") and not isinstance(config, Mapping):
        return dict(config.values), dict(config.provenance)
    if isinstance(config, Mapping):
        values = dict(config)
        return values, dict(values.pop("provenance", None) or {})
    raise TypeError(f"config must be a vidpred Config or a mapping, got {type(config).__name__}")


def flatten_params(values: Mapping) -> dict[str, str]:
    """Dotted key → string value within MLflow's limits (long values cut, marked with '…')."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and (node or not prefix):  # an empty section stays as "{}"
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
            return
        key = prefix[:-1][:MAX_KEY]
        text = json.dumps(node) if isinstance(node, (list, tuple, Mapping)) or node is None else str(node)
        out[key] = text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 1] + "…"

    walk(values, "")
    return out


def _log_config(client, run_id: str, config: Any) -> None:
    from mlflow.entities import Param

    values, provenance = _config_parts(config)
    params = [Param(k, v) for k, v in sorted(flatten_params(values).items())]
    for i in range(0, len(params), BATCH):
        client.log_batch(run_id, params=params[i:i + BATCH])
    client.log_text(run_id, yaml.safe_dump(values, sort_keys=False), "config/resolved.yaml")
    client.log_text(run_id, json.dumps(provenance, indent=2, sort_keys=True), "config/provenance.json")


def _tags(profile: str | None, data_md5: str | None, stage: str | None) -> dict[str, str]:
    sha = git_sha()
    tags = {"vidpred.git_sha": sha, "vidpred.data_md5": data_md5 or "unknown"}
    if sha != "unknown":
        tags["mlflow.source.git.commit"] = sha
    if profile:
        tags["vidpred.profile"] = profile
    if stage:
        tags["vidpred.stage"] = stage
    for key in ("track", "dataset"):  # set by pipeline components (vidpred.orchestrate.stage_env)
        if os.environ.get(f"VIDPRED_{key.upper()}"):
            tags[f"vidpred.{key}"] = os.environ[f"VIDPRED_{key.upper()}"]
    return tags


def error_text(exc: BaseException) -> str:
    """An exception as one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _run_name(stage: str) -> str:
    """``<track>/<stage>`` (or ``<dataset>/<stage>``) inside a pipeline track; names with a '/' are kept."""
    owner = os.environ.get("VIDPRED_TRACK") or os.environ.get("VIDPRED_DATASET")
    return f"{owner}/{stage}" if owner and "/" not in stage else stage


def _experiment_name(config: Any) -> str:
    """``tracking.experiment`` of the config, else ``MLFLOW_EXPERIMENT_NAME``, else ``vidpred``."""
    values, _ = _config_parts(config)
    tracking = values.get("tracking") if isinstance(values.get("tracking"), Mapping) else {}
    top = values.get("experiment") if isinstance(values.get("experiment"), str) else None  # may be a section
    return str(tracking.get("experiment") or top or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)


def ensure_experiment(name: str = DEFAULT_EXPERIMENT) -> str:
    """Set the tracking URI (after :func:`preflight`) and return the id of experiment ``name`` (created if new)."""
    import mlflow

    uri = preflight()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older vidpred: mark it; a user's own choice is kept
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    remote = urlparse(uri).scheme in ("http", "https")
    location = None if remote and not os.environ.get("VIDPRED_ARTIFACT_ROOT") else artifact_root()
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except Exception:  # created concurrently by another stage process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# ------------------------------------------------------------------------------------------ runs

@contextlib.contextmanager
def pipeline_run(profile: str, config: Any, data_md5: str | None = None, run_name: str | None = None) -> Iterator:
    """Parent run of one pipeline run; yields the active ``mlflow.ActiveRun`` (``.info.run_id``)."""
    import mlflow

    experiment_id = ensure_experiment(_experiment_name(config))
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or f"pipeline-{profile}",
                          tags=_tags(profile, data_md5, None)) as run:
        _log_config(mlflow.MlflowClient(), run.info.run_id, config)
        yield run


@contextlib.contextmanager
def stage_run(stage: str, config: Any = None, parent_run_id: str | None = None, data_md5: str | None = None,
              profile: str | None = None, system_metrics: bool = False) -> Iterator:
    """Nested run of one stage under ``parent_run_id`` (default: env ``VIDPRED_PARENT_RUN_ID``, else the
    active run in this process, else a top-level run). Works in a different process than the parent.
    ``data_md5`` defaults to env ``VIDPRED_DATA_MD5``, else the parent's tag. ``system_metrics`` (training
    stages): MLflow system metrics, see :func:`log_system_metrics`."""
    import mlflow

    parent_run_id = parent_run_id or os.environ.get("VIDPRED_PARENT_RUN_ID") or None
    data_md5 = data_md5 or os.environ.get("VIDPRED_DATA_MD5") or None  # set by pipeline components
    active = mlflow.active_run()
    if parent_run_id is None and active is not None:
        parent_run_id = active.info.run_id
    if parent_run_id:  # the stage goes into its parent's experiment
        mlflow.set_tracking_uri(preflight())
        try:
            parent = mlflow.MlflowClient().get_run(parent_run_id)
        except Exception:
            raise VidpredError(f"parent MLflow run '{parent_run_id}' was not found at {tracking_uri()}") from None
        experiment_id = parent.info.experiment_id
        profile = profile or parent.data.tags.get("vidpred.profile")
        data_md5 = data_md5 or parent.data.tags.get("vidpred.data_md5")
    else:
        experiment_id = ensure_experiment(_experiment_name(config))
    nested = active is not None
    with mlflow.start_run(experiment_id=experiment_id, run_name=_run_name(stage), nested=nested,
                          parent_run_id=parent_run_id, tags=_tags(profile, data_md5, stage),
                          log_system_metrics=log_system_metrics(system_metrics)) as run:
        OPENED_RUNS.append(run.info.run_id)
        try:
            if config is not None:
                _log_config(mlflow.MlflowClient(), run.info.run_id, config)
                log_store_inputs(config)
            yield run
        except BaseException as exc:  # the run ends FAILED; its error tag is what `vidpred run` reports
            with contextlib.suppress(Exception):
                mlflow.MlflowClient().set_tag(run.info.run_id, ERROR_TAG, error_text(exc)[:5000])
            raise


def log_system_metrics(wanted: bool) -> bool | None:
    """``log_system_metrics`` for ``mlflow.start_run``: for a training stage (``wanted``) True unless
    ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` is false; otherwise None (MLflow's env default, off).

    MLflow's monitor thread then logs ``system/cpu_utilization_percentage``, ``system/system_memory_usage_*``,
    disk and network, and ``system/gpu_*`` where ``nvidia-ml-py`` finds an NVIDIA GPU (without one it skips the GPU
    quietly), every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (MLflow's default 10 s: a few hundred
    points over an hour of training; a stage shorter than one interval records none) averaged over
    ``MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING`` samples (default 1)."""
    if not wanted:
        return None
    env = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower()
    return env not in ("false", "0", "no", "off")


def record_failure(stage: str, exc: BaseException) -> None:
    """A FAILED run of ``stage`` carrying the error, for a stage that failed before it opened its own run (e.g.
    while reading its data), so the pipeline's parent run still shows which stage failed and why."""
    with contextlib.suppress(BaseException):
        with stage_run(stage):
            raise exc


# ------------------------------------------------------------------------------------------ logging helpers

def log_metrics(metrics: Mapping[str, float], step: int | None = None, model_id: str | None = None,
                dataset=None) -> None:
    """Log a dict of scalar metrics at ``step`` to the active run (non-finite values are rejected); with
    ``model_id`` / ``dataset`` (an ``mlflow.data`` dataset) they are also the LoggedModel's metrics on that data."""
    import math

    import mlflow

    clean = {}
    for key, value in metrics.items():
        value = float(value)
        if not math.isfinite(value):
            raise VidpredError(f"metric '{key}' is {value}: refusing to log a non-finite value")
        clean[key] = value
    mlflow.log_metrics(clean, step=step, model_id=model_id, dataset=dataset)


def _to_uint8_image(image) -> "Any":
    import numpy as np

    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.transpose(arr, (1, 2, 0))  # C×H×W → H×W×C
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        if not np.isfinite(arr).all():
            raise VidpredError("image to log contains NaN or infinite values")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return arr


def log_image(image, artifact_file: str) -> None:
    """Log a numpy/torch image (H×W, H×W×C or C×H×W; float in [0, 1] or uint8) or a matplotlib figure as PNG."""
    if hasattr(image, "savefig"):  # matplotlib figure
        buf = io.BytesIO()
        image.savefig(buf, format="png", bbox_inches="tight")
        _log_bytes(buf.getvalue(), artifact_file)
        return
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_to_uint8_image(image)).save(buf, format="PNG")
    _log_bytes(buf.getvalue(), artifact_file)


def log_gif(frames, artifact_file: str, fps: float = 4.0) -> None:
    """Log a T×H×W×C / T×C×H×W clip (float in [0, 1] or uint8) as an endlessly looping GIF."""
    from PIL import Image

    images = [Image.fromarray(_to_uint8_image(f)) for f in frames]
    if not images:
        raise VidpredError(f"cannot log GIF {artifact_file}: the clip has no frames")
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    _log_bytes(buf.getvalue(), artifact_file)


def _log_bytes(data: bytes, artifact_file: str) -> None:
    import tempfile

    import mlflow

    path = Path(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / path.name
        local.write_bytes(data)
        mlflow.log_artifact(str(local), artifact_path=str(path.parent) if str(path.parent) != "." else None)


# ------------------------------------------------------------------------------------------ datasets and models

_STORE_KINDS = (("clips", "store.json"), ("moso", "moso.json"), ("tokens", "tokens.json"))
_DATASETS: dict[tuple, Any] = {}  # (path, mtimes) → dataset: a store is hashed once per process
LOGGED_DATASETS: dict[str, list] = {}  # run id → the datasets logged as its inputs (this process)
_StoreDataset = None


def _dataset_class():
    """``mlflow.data.meta_dataset.MetaDataset`` plus a profile (MetaDataset has none): metadata only, the
    shards are never read or copied."""
    global _StoreDataset
    if _StoreDataset is None:
        from mlflow.data.meta_dataset import MetaDataset

        class StoreDataset(MetaDataset):
            def __init__(self, source, name, digest, schema, profile):
                self._profile = profile
                super().__init__(source, name=name, digest=digest, schema=schema)

            @property
            def profile(self):
                return self._profile

            def to_dict(self):
                out = super().to_dict()
                out["profile"] = json.dumps(self._profile, sort_keys=True)
                return out

        _StoreDataset = StoreDataset
    return _StoreDataset


def _store_name(kind: str, meta: dict, root: Path) -> str:
    """``shapes-64x64`` (clip store), ``shapes-64x64-moso`` (its MOSO store), ``shapes-64x64-moso-tokens``."""
    if kind == "tokens":
        with contextlib.suppress(OSError, ValueError, TypeError):
            moso_dir = Path(meta.get("moso_store", ""))
            return _store_name("moso", json.loads((moso_dir / "moso.json").read_text()), moso_dir) + "-tokens"
        return "moso-tokens"
    if kind == "moso":
        src = meta.get("source_meta") or {}
        h = meta.get("height")
        return f"{src.get('dataset', root.name)}-{h}x{meta.get('width', h)}-moso"
    h, w = (meta.get("frame_shape") or [meta.get("size"), meta.get("size")])[:2]
    return f"{meta.get('dataset', root.name)}-{h}x{w}"


def store_dataset(path: str | Path):
    """The clip store (or MOSO store / token set) at ``path`` as an ``mlflow.data`` dataset: name from its
    metadata, source = its ``file://`` URI, digest = its DVC md5 (``vidpred.data.versioning.dir_md5``), schema =
    the manifest's columns, profile = rows, split counts, frame shape, clip length. None if ``path`` is not a store."""
    import warnings

    root = Path(path).expanduser()
    found = next(((k, root / f) for k, f in _STORE_KINDS if (root / f).is_file()), None)
    manifest = root / "manifest.parquet"
    if found is None or not manifest.is_file():
        return None
    kind, meta_path = found
    key = (str(root.resolve()), meta_path.stat().st_mtime_ns, manifest.stat().st_mtime_ns)
    if key in _DATASETS:
        return _DATASETS[key]
    import pandas as pd
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.models import infer_signature

    from vidpred.data.versioning import dir_md5

    meta = json.loads(meta_path.read_text())
    table = pd.read_parquet(manifest)
    profile = {"kind": kind, "format": meta.get("format"), "rows": int(len(table)),
               "splits": {str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()}
               if "split" in table else {},
               "clip_len": meta.get("clip_len"), "frame_shape": meta.get("frame_shape")
               or [meta.get("height"), meta.get("width", meta.get("height"))]}
    with warnings.catch_warnings():  # integer-column hints, "source can be interpreted in multiple ways"
        warnings.simplefilter("ignore")
        schema = infer_signature(table).inputs
        source = resolve_dataset_source(root.resolve().as_uri())
    dataset = _dataset_class()(source, _store_name(kind, meta, root), dir_md5(root), schema, profile)
    _DATASETS[key] = dataset
    return dataset


def _lookup(values: Mapping, dotted: str):
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def log_store_inputs(config: Any) -> list:
    """Log every store the stage's ``config`` names (:data:`STORE_KEYS`) as a dataset input of the active run,
    with its split as the context (``data.split``, an evaluation's ``protocol.split``, default ``train``)."""
    import mlflow

    values, _ = _config_parts(config)
    split = str(_lookup(values, "data.split") or _lookup(values, "protocol.split") or "train")
    logged = []
    for key in STORE_KEYS:
        path = _lookup(values, key)
        dataset = store_dataset(path) if isinstance(path, str) and path else None
        if dataset is not None:
            mlflow.log_input(dataset, context=split)
            logged.append(dataset)
    run = mlflow.active_run()
    if run is not None and logged:
        LOGGED_DATASETS.setdefault(run.info.run_id, []).extend(logged)
    return logged


def model_tags() -> dict[str, str]:
    """Tags of a LoggedModel made in the active run: its stage, track and data md5 (from the run's tags)."""
    import mlflow

    run = mlflow.active_run()
    tags = mlflow.MlflowClient().get_run(run.info.run_id).data.tags if run is not None else {}
    return {k: tags[k] for k in ("vidpred.stage", "vidpred.track", "vidpred.data_md5") if k in tags}


def write_model_pointer(out_dir: str | Path, model_id: str, run_id: str) -> Path:
    """``<out_dir>/mlflow_model.json``: the LoggedModel (and run) that holds the model files of ``out_dir``, so the
    evaluation stage, which gets only the folder, can register and link that model."""
    from vidpred.fsutil import atomic_file

    path = Path(out_dir) / MODEL_POINTER
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"model_id": model_id, "model_uri": f"models:/{model_id}", "run_id": run_id, "tracking_uri": tracking_uri()}
    with atomic_file(path) as fh:
        fh.write(json.dumps(doc, indent=1).encode())
    return path


def read_model_pointer(model_dir: str | Path) -> dict | None:
    """The :func:`write_model_pointer` document of a model folder (or of the folder holding a model file)."""
    root = Path(model_dir)
    path = (root if root.is_dir() else root.parent) / MODEL_POINTER
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise VidpredError(f"{path} is not valid JSON") from None
    if not isinstance(doc, dict) or not doc.get("model_id"):
        raise VidpredError(f"{path} names no model_id")
    return doc


def logged_model_id(model: str | Path) -> str | None:
    """The LoggedModel id behind ``--model``: a model folder's pointer file, ``models:/<model id>``,
    ``models:/<name>/<version>`` or ``models:/<name>@<alias>``; None when there is none (a plain file, runs:/…)."""
    text = str(model)
    if text.startswith("models:/"):
        import mlflow

        ref = text[len("models:/"):].strip("/")
        if ref.startswith("m-") and "/" not in ref and "@" not in ref:
            return ref
        with contextlib.suppress(Exception):
            client = mlflow.MlflowClient(tracking_uri(), registry_uri=tracking_uri())
            if "@" in ref:
                name, alias = ref.rsplit("@", 1)
                return client.get_model_version_by_alias(name, alias).model_id
            name, version = ref.rsplit("/", 1)
            return client.get_model_version(name, version).model_id
        return None
    if ":/" in text:
        return None
    path = Path(text).expanduser()
    doc = read_model_pointer(path) if path.exists() else None
    return doc["model_id"] if doc else None


def log_model_files(paths, model_id: str | None = None, name: str = "model") -> str:
    """Put model files into LoggedModel ``model_id`` (a new one named ``name`` of the active run when None:
    ``mlflow.initialize_logged_model`` → artifacts → READY); return its id. ``models:/<id>`` (and
    ``runs:/<run>/<name>``) then downloads a folder ``vidpred evaluate --model`` loads."""
    import mlflow

    client = mlflow.MlflowClient()
    created = model_id is None
    if created:
        run = mlflow.active_run()
        model_id = mlflow.initialize_logged_model(name=name, source_run_id=run.info.run_id if run else None,
                                                  tags=model_tags(), model_type="vidpred").model_id
    try:
        for path in paths:
            client.log_model_artifact(model_id, str(path))
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                mlflow.finalize_logged_model(model_id, "FAILED")
        raise
    if created:
        mlflow.finalize_logged_model(model_id, "READY")
    return model_id


__all__ = ["project_dir", "tracking_uri", "artifact_root", "preflight", "git_sha", "flatten_params",
           "ensure_experiment", "pipeline_run", "stage_run", "log_metrics", "log_image", "log_gif", "store_dataset",
           "log_store_inputs", "log_model_files", "write_model_pointer", "read_model_pointer", "model_tags",
           "logged_model_id"]
