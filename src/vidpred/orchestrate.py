"""Orchestration: run the reproduction pipeline through ``kfp.local``, compile it for a cluster, and the
per-stage MLflow context the components use.

* :func:`run_local` (``vidpred run --profile P``): profile config → tracking preflight → MLflow parent run
  (params = resolved config; tags = git sha, profile) → ``kfp.local`` with ``SubprocessRunner(use_venv=False)``
  → the parent run is tagged with the data md5 and ended (FAILED, and a VidpredError "stage X failed: …",
  when a task fails) → a :class:`LocalRunResult` whose ``describe()`` says where everything is.
* :func:`compile_pipeline` (``vidpred compile --profile P --out X.yaml``): the same pipeline as KFP v2 YAML.
* :func:`stage`: a component's nested MLflow run under the pipeline's parent run (runs in the task's
  process; a failure is recorded as the run's ``vidpred.error`` tag, which :func:`run_local` reports).

The pipeline itself (DAG, resources, GPUs) is ``pipelines/reproduce.py``; the components are in
``components/`` — top-level packages installed with vidpred (editable or from the wheel). kfp is imported
lazily (it is slow to import and most commands never need it).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from vidpred.config import profile_config
from vidpred.errors import VidpredError
from vidpred.tracking import ERROR_TAG

DATA_MD5_TAG = "vidpred.data_md5"  # vidpred.tracking's tag key

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ------------------------------------------------------------------------------------------ stage context

class StageRun:
    """The nested MLflow run of one stage, with the few calls a component needs."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def set_data_md5(self, md5: str) -> None:
        import mlflow

        mlflow.set_tag(DATA_MD5_TAG, md5)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from vidpred.tracking import log_metrics

        log_metrics(metrics)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifacts(str(directory), artifact_path=artifact_path)


@contextlib.contextmanager
def stage(name: str, params: dict | None = None, tracking_uri: str = "", parent_run_id: str = "",
          data_md5: str = "", track: str = "", dataset: str = "") -> Iterator[StageRun]:
    """Nested MLflow run ``name`` under ``parent_run_id`` (empty: a top-level run) at ``tracking_uri``
    (empty: ``vidpred.tracking.tracking_uri()``), tagged with ``data_md5``; params = ``params``.

    An exception inside is recorded as the run's ``vidpred.error`` tag (one line, by
    ``vidpred.tracking.stage_run``) and re-raised, so the run ends FAILED and the task exits non-zero."""
    from vidpred import tracking

    with stage_env(tracking_uri, track=track, dataset=dataset), tracking.stage_run(
            name, config=params or {}, parent_run_id=parent_run_id or None, data_md5=data_md5 or None) as run:
        yield StageRun(run.info.run_id)


@contextlib.contextmanager
def stage_env(tracking_uri: str = "", parent_run_id: str = "", data_md5: str = "", track: str = "",
              dataset: str = "") -> Iterator[None]:
    """Point the code inside at the pipeline's MLflow parent run: stage modules read these variables in
    ``vidpred.tracking.stage_run`` (``track`` / ``dataset``: the profile track or dataset the task belongs to,
    a tag and the run name's prefix). Empty values keep the defaults; the environment is restored after."""
    values = {"MLFLOW_TRACKING_URI": tracking_uri, "VIDPRED_PARENT_RUN_ID": parent_run_id,
              "VIDPRED_DATA_MD5": data_md5, "VIDPRED_TRACK": track, "VIDPRED_DATASET": dataset}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: value for key, value in values.items() if value})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class LaunchedStage:
    """What :func:`run_training_stage` returns for a stage that ran in other processes (torchrun, a Trainer
    job): the last value of each metric and the last step from ``out_dir/metrics.jsonl`` (written by rank 0).
    It answers the attributes the components read from in-process results (``step``, ``metrics``, ``train``,
    ``keypoints``, ``describe()``)."""

    stage: str
    out_dir: Path
    how: str  # e.g. "torchrun, 4 processes"
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    keypoints: None = None

    @property
    def train(self) -> "LaunchedStage":
        return self

    @classmethod
    def read(cls, stage: str, out_dir: str | Path, how: str) -> "LaunchedStage":
        import json
        import math

        result = cls(stage, Path(out_dir), how)
        log = Path(out_dir) / "metrics.jsonl"
        for line in log.read_text().splitlines() if log.is_file() else []:
            with contextlib.suppress(ValueError, TypeError):
                row = json.loads(line)
                result.step = max(result.step, int(row.pop("step", 0)))
                result.metrics.update({k: float(v) for k, v in row.items() if isinstance(v, (int, float))
                                       and not isinstance(v, bool) and math.isfinite(float(v))})
        return result

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        return f"{self.stage}: trained to step {self.step} ({self.how}): {shown}; outputs in {self.out_dir}"


def checkpoint_dir(checkpoints: str, run_id: str, track: str, stage: str) -> str:
    """``<checkpoints>/<run id>/<track>/<stage>`` (a path or an fsspec URI): a retried or rescheduled task of
    the same pipeline run finds its checkpoints there; another run never does."""
    if not run_id or "{{" in run_id:
        raise VidpredError(f"stage {stage}: the pipeline run id was not filled in ({run_id!r}); checkpoints "
                           f"under {checkpoints} are kept per run")
    return "/".join([checkpoints.rstrip("/"), run_id, track or "track", stage])


def _failure_recorded(module: str, parent_run_id: str, since_ms: int) -> bool:
    """Whether a process started by this one opened the MLflow run of ``module`` (which then holds the error)."""
    with contextlib.suppress(Exception):
        import mlflow

        from vidpred import tracking

        if not parent_run_id:
            return False
        client = mlflow.MlflowClient(tracking.tracking_uri())
        parent = client.get_run(parent_run_id)
        return bool(client.search_runs(
            [parent.info.experiment_id], max_results=1,
            filter_string=(f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`vidpred.stage` = '{module}' "
                           f"and attributes.start_time >= {since_ms}")))
    return False


def run_training_stage(module: str, config: str, overrides: Iterable[str] = (), *, tracking_uri: str = "",
                       parent_run_id: str = "", data_md5: str = "", track: str = "",
                       inputs: Mapping[str, str] | None = None, out_dir: str = "", nproc: int = 1,
                       checkpoints: str = "", run_id: str = "", trainjob: str = ""):
    """``vidpred.train.<module>.main(config, overrides)`` as a pipeline stage of ``track``, nested under the
    parent run.

    ``inputs`` (config key → local path of an input artifact) and ``out_dir`` (``train.out_dir``) are added to
    the overrides; with ``checkpoints`` (the profile's location) ``train.ckpt_dir`` is
    :func:`checkpoint_dir` (``<checkpoints>/<run_id>/<track>/<module>``), so a retried task resumes. How it runs:

    * ``trainjob`` (JSON :class:`vidpred.trainjob.TrainJobSettings`): on several nodes as a Kubeflow Trainer
      job (:func:`vidpred.trainjob.run_stage`: inputs staged on the shared volume, the job followed, its
      output copied into ``out_dir``);
    * ``nproc > 1``: ``nproc`` processes under torchrun on this pod (``vidpred.train.distributed.launch``,
      DDP; the MLflow nesting variables of :func:`stage_env` are in the children's environment);
    * otherwise in this process.

    Returns the stage's result in-process, a :class:`LaunchedStage` otherwise."""
    import importlib
    import time

    from vidpred import tracking

    inputs = dict(inputs or {})
    args = list(overrides) + [f"{k}={v}" for k, v in inputs.items()]
    ckpt_dir = checkpoint_dir(checkpoints, run_id, track, module) if checkpoints else ""
    opened = len(tracking.OPENED_RUNS)
    started_ms = int(time.time() * 1000) - 1000
    launched = bool(trainjob) or int(nproc) > 1
    with stage_env(tracking_uri, parent_run_id, data_md5, track=track):
        try:
            if trainjob:
                from vidpred.trainjob import run_stage

                how = run_stage(module, config, list(overrides), inputs=inputs, out_dir=out_dir, settings=trainjob,
                                run_id=run_id, track=track, ckpt_dir=ckpt_dir)
                return LaunchedStage.read(module, out_dir, how)
            args += [f"train.out_dir={out_dir}"] if out_dir else []
            args += [f"train.ckpt_dir={ckpt_dir}"] if ckpt_dir else []
            if int(nproc) > 1:
                from vidpred.train.distributed import launch

                launch(module, config, args, int(nproc))  # the children inherit os.environ (stage_env above)
                return LaunchedStage.read(module, out_dir, f"torchrun, {int(nproc)} processes")
            return importlib.import_module(f"vidpred.train.{module}").main(config, args)
        except Exception as exc:
            if launched:  # the stage's own run (opened by a child) holds the error, if it got that far
                if not _failure_recorded(module, parent_run_id, started_ms):
                    tracking.record_failure(module, exc)
            elif len(tracking.OPENED_RUNS) == opened:  # it failed before opening its MLflow run (e.g. reading data)
                tracking.record_failure(module, exc)
            raise


# ------------------------------------------------------------------------------------------ pipeline

def load_pipeline_module():
    """``pipelines.reproduce``: the top-level ``pipelines`` and ``components`` packages are installed with
    vidpred (pyproject.toml ``[tool.setuptools.packages.find]``), editable or from the wheel."""
    try:
        from pipelines import reproduce
    except ModuleNotFoundError as exc:
        if exc.name in ("pipelines", "components"):
            raise VidpredError(f"the '{exc.name}' package is not installed: reinstall vidpred "
                               "(`make install`, or `pip install .`)") from None
        raise
    return reproduce


def _build(profile: str, overrides: Iterable[str], only: Iterable[str] | None = None):
    """The checked profile (``vidpred.profile``) and its pipeline function; nothing runs before the check."""
    from vidpred.profile import load_profile

    spec = load_profile(profile, list(overrides), only)
    return spec, load_pipeline_module().build_pipeline(spec)


def compile_pipeline(profile: str, out: str | Path, overrides: Iterable[str] = (),
                     only: Iterable[str] | None = None) -> Path:
    """Compile the profile's pipeline (its ``only`` tracks, default every enabled one) to KFP v2 YAML at
    ``out`` (written atomically); return the path."""
    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise VidpredError(f"--out {out}: the pipeline file must end in .yaml or .yml")
    _, pipeline_func = _build(profile, overrides, only)
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    # not fsutil.atomic_file: kfp picks the output format from the file name, so the temp file needs .yaml
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.tmp-", suffix=".yaml", dir=out.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline_func, package_path=tmp)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out.resolve()


def tag_dataset_md5s(parent_run_id: str) -> dict[str, str]:
    """Tag the pipeline's parent run with the md5 of every dataset its finished ``prepare_data`` stages made
    (``vidpred.data_md5.<dataset>``; also ``vidpred.data_md5`` when there is one); return {dataset: md5}."""
    import mlflow

    from vidpred.tracking import preflight

    mlflow.set_tracking_uri(preflight())
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], max_results=1000, filter_string=(
        f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`vidpred.stage` = 'prepare_data'"))
    md5s = {r.data.tags.get("vidpred.dataset", "data"): r.data.tags[DATA_MD5_TAG] for r in runs
            if r.info.status == "FINISHED" and r.data.tags.get(DATA_MD5_TAG, "unknown") != "unknown"}
    if runs and all(r.data.tags.get("vidpred.train") == "false" for r in runs):
        # every dataset unchanged and data_refresh.on_unchanged=skip: the tracks did not run (vidpred.data.remote)
        client.set_tag(parent_run_id, "vidpred.training_skipped", "true")
    for name, md5 in md5s.items():
        client.set_tag(parent_run_id, f"{DATA_MD5_TAG}.{name}", md5)
    if len(md5s) == 1:
        client.set_tag(parent_run_id, DATA_MD5_TAG, next(iter(md5s.values())))
    _link_child_datasets(client, parent, [r for r in client.search_runs(
        [parent.info.experiment_id], max_results=1000, filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")])
    return md5s


def _link_child_datasets(client, parent, children) -> None:
    """Log on the parent run every dataset its stage runs read (their MLflow dataset inputs, each once), so the
    runs table's Dataset column and the compare view of two pipeline runs show which data each used."""
    have = {(d.dataset.name, d.dataset.digest) for d in parent.inputs.dataset_inputs}
    new = []
    for child in children:
        for item in child.inputs.dataset_inputs:
            key = (item.dataset.name, item.dataset.digest)
            if key not in have:
                have.add(key)
                new.append(item)
    if new:
        client.log_inputs(parent.info.run_id, datasets=new)


# ------------------------------------------------------------------------------------------ local runs

@dataclass
class LocalRunResult:
    """Where a local pipeline run put everything; :meth:`describe` prints it."""

    profile: str
    pipeline: str
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    artifact_uri: str
    pipeline_root: Path
    run_dir: Path | None
    datasets: dict[str, str] = field(default_factory=dict)  # dataset → data md5
    tracks: list[str] = field(default_factory=list)
    outputs: dict[str, list[Path]] = field(default_factory=dict)  # task → output paths
    training_skipped: bool = False  # every dataset unchanged since its last preparation (data_refresh.on_unchanged)

    @property
    def data_md5(self) -> str:
        """The md5 of the run's dataset when it prepared exactly one, else ''."""
        return next(iter(self.datasets.values())) if len(self.datasets) == 1 else ""

    def describe(self) -> str:
        lines = [
            f"pipeline {self.pipeline} (profile {self.profile}) finished: {len(self.tracks)} track(s) "
            f"({', '.join(self.tracks)}), {len(self.outputs)} task(s)"
            + ("; training skipped: every dataset is unchanged since its last preparation" if self.training_skipped
               else ""),
            *[f"{f'data md5 {name}:':<20}{md5}" for name, md5 in self.datasets.items()],
            f"MLflow tracking:    {self.tracking_uri}",
            f"experiment:         {self.experiment} (id {self.experiment_id})",
            f"parent run:         {self.parent_run_id}",
            f"run artifacts:      {self.artifact_uri}",
            f"pipeline root:      {self.run_dir or self.pipeline_root}",
        ]
        for task, paths in sorted(self.outputs.items()):
            for p in paths:
                lines.append(f"  {task}: {p}")
        lines.append("browse runs:        " + browse_command(self.tracking_uri))
        lines.append("runs table:         " + runs_view_url(self.tracking_uri, self.experiment_id))
        return "\n".join(lines)


def browse_command(uri: str) -> str:
    """How to look at the runs: ``mlflow ui --backend-store-uri …`` for a local store, else the server URL."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


def runs_view_url(uri: str, experiment_id: str) -> str:
    """The experiment's training-runs table in the MLflow UI (at ``uri``, or ``mlflow ui``'s default address for a
    local store). MLflow 3.17's UI opens an experiment on its GenAI overview whatever the experiment's
    ``mlflow.experimentKind`` tag says (the view follows a per-browser "workflow type"), so the link names the runs
    view and the model-training workflow explicitly."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _use_this_python() -> None:
    """kfp.local's SubprocessRunner(use_venv=False) runs tasks with ``sys.executable`` (it swaps 'python3' in
    the task command for it); put this interpreter's directory first on PATH too, so anything a task starts
    by name (``python3``, ``dvc``, ``mlflow``) comes from the same virtualenv."""
    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if not parts or parts[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir, *[p for p in parts if p != bindir]])


def _task_outputs(run_dir: Path | None) -> dict[str, list[Path]]:
    if run_dir is None or not run_dir.is_dir():
        return {}
    skip = ("executor_output.json",)  # kfp.local's own bookkeeping
    return {task.name: sorted(p for p in task.iterdir() if not p.name.startswith(".") and p.name not in skip)
            for task in sorted(run_dir.iterdir()) if task.is_dir()}


def _failed_tasks(message: str) -> list[str]:
    """The failed task names of kfp.local's failure message ("Inner task failed: 'a' inside 'b'.")."""
    text = _ANSI.sub("", message).strip()
    match = re.search(r"Inner task failed: (.+?)\.?$", text)
    if not match:
        return []
    return [t.strip().strip("'\"") for t in match.group(1).split(" inside ")]


def _failure_message(message: str, parent_run_id: str, profile, owners: dict) -> tuple[str, list[str]]:
    """One line naming every failed track / dataset with the failed stage and its reason (the ``vidpred.error``
    tag of the stage's MLflow run), the tracks that could not run and those that finished; and the failed
    track names (a failed dataset fails every track on it)."""
    import mlflow

    errors: dict[tuple[str, str], str] = {}
    with contextlib.suppress(Exception):
        client = mlflow.MlflowClient()
        parent = client.get_run(parent_run_id)
        for r in client.search_runs([parent.info.experiment_id], max_results=1000,
                                    filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"):
            if ERROR_TAG in r.data.tags:
                kind = "track" if "vidpred.track" in r.data.tags else "dataset"
                errors.setdefault((kind, r.data.tags.get(f"vidpred.{kind}", "")), r.data.tags[ERROR_TAG])
    parts, failed_tracks, failed_datasets = [], [], set()
    for task in _failed_tasks(message) or ["unknown"]:
        kind, name = owners.get(task, ("run", "pipeline"))
        reason = errors.get((kind, name), "see the task log above")
        parts.append(f"stage {task} ({kind} {name}) failed: {reason}" if kind != "run" else
                     f"stage {task} failed: {reason}")
        if kind == "track":
            failed_tracks.append(name)
        elif kind == "dataset":
            failed_datasets.add(name)
    blocked = [t for t, spec in profile.tracks.items() if spec.dataset in failed_datasets and t not in failed_tracks]
    finished = [t for t in profile.tracks if t not in failed_tracks and t not in blocked]
    text = "; ".join(parts)
    if blocked:
        text += f"; not run (their dataset failed): {', '.join(blocked)}"
    text += f"; finished tracks: {', '.join(finished) or 'none'}"
    return text, failed_tracks + blocked


def run_local(profile: str = "smoke", overrides: Iterable[str] = (), workdir: str | Path | None = None,
              only: Iterable[str] | None = None, refresh_data: bool = False) -> LocalRunResult:
    """Run the profile's pipeline (its ``only`` tracks, default every enabled one) with ``kfp.local`` (see the
    module docstring). A failed track does not stop the others; the run then ends with a VidpredError naming
    every failed track and stage, after the others finished. ``refresh_data``: the pipeline parameter of that name
    (re-prepare the data from its source and compare md5s with the DVC remote's)."""
    spec, pipeline_func = _build(profile, overrides, only)
    from vidpred import tracking

    uri = tracking.preflight(tracking.tracking_uri())
    root = Path(workdir or "runs").resolve()
    root.mkdir(parents=True, exist_ok=True)
    _use_this_python()

    import mlflow
    from kfp import local

    # kfp.local ignores the image, resources and accelerators by design (they are for the cluster)
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*", category=UserWarning)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    name = spec.pipeline_name
    before = {p.name for p in root.iterdir()}

    def run_dir() -> Path | None:
        new = sorted(p for p in root.iterdir() if p.name not in before and p.name.startswith(name) and p.is_dir())
        return new[-1] if new else None

    with tracking.pipeline_run(profile, spec.cfg) as parent:
        run_id = parent.info.run_id
        mlflow.set_tags({"vidpred.tracks": ",".join(spec.tracks), "vidpred.datasets": ",".join(spec.datasets)})
        # task processes inherit the environment, so every stage nests under the parent run
        # (vidpred.tracking.stage_run reads MLFLOW_TRACKING_URI and VIDPRED_PARENT_RUN_ID)
        with stage_env(uri, run_id):
            try:
                pipeline_func(tracking_uri=uri, parent_run_id=run_id, refresh_data=refresh_data)
                failure = None
            except RuntimeError as exc:
                failure = str(exc)
        found = tag_dataset_md5s(run_id)
        md5s = {n: found[n] for n in spec.datasets if n in found}  # in the profile's order
        if failure is not None:
            text, failed = _failure_message(failure, run_id, spec, pipeline_func.tasks)
            mlflow.set_tags({"vidpred.failed_tracks": ",".join(failed), ERROR_TAG: text[:5000]})
            raise VidpredError(f"{text} (MLflow parent run {run_id}; task outputs under {run_dir() or root})")
        experiment = mlflow.MlflowClient().get_experiment(parent.info.experiment_id)
        result = LocalRunResult(
            profile=profile, pipeline=name, tracking_uri=uri, experiment=experiment.name,
            experiment_id=experiment.experiment_id, parent_run_id=run_id, artifact_uri=parent.info.artifact_uri,
            pipeline_root=root, run_dir=run_dir(), datasets=md5s, tracks=list(spec.tracks),
            training_skipped=mlflow.MlflowClient().get_run(run_id).data.tags.get("vidpred.training_skipped") == "true")
    result.outputs = _task_outputs(result.run_dir)
    return result


__all__ = ["stage", "StageRun", "stage_env", "run_training_stage", "LaunchedStage", "checkpoint_dir",
           "compile_pipeline", "run_local", "LocalRunResult", "load_pipeline_module", "browse_command", "runs_view_url", "tag_dataset_md5s"]
