"""The reproduction pipeline: datasets prepared and gated once, then one independent branch per track.

A profile (``configs/<profile>/pipeline.yaml``, schema in :mod:`vidpred.profile`) lists datasets and tracks.
:func:`build_pipeline` turns the checked :class:`~vidpred.profile.Profile` into a ``@dsl.pipeline``:

* per dataset ``D`` used by a selected track: ``D-prepare-data`` → ``D-validate-data`` (the GX gate), and
  ``D-preprocess-moso`` when a MOSO track uses it;
* per track ``T``, after its dataset's gate: its stages (``T-train-corrwise``, ``T-train-moso-vqvae`` →
  ``T-moso-tokens`` → ``T-train-moso-transformer``, ``T-train-landmarks`` → ``T-train-landmark-dynamics``,
  ``T-toycar-experiment``) and its evaluations (``evaluate-<name>``);
* ``make-report`` after every evaluation, also when some failed (``ignore_upstream_failure``), so the
  report shows what the other tracks produced.

Every task is its own named component (``<owner>-<kind>``), so the compiled YAML, the KFP UI and
``kfp.local``'s output folders name the track or dataset a task belongs to. Tracks share no task but their
dataset's, so a failing track skips only its own downstream tasks; under ``kfp.local`` the other tracks run
to the end and the run ends failed naming the failed track (``vidpred.orchestrate.run_local``). On a KFP
cluster Argo's DAG ``failFast`` default (kubeflow/pipelines#7330) stops scheduling *new* tasks after a
failure: running tasks finish and the report still runs.

Profile values are compiled into the tasks' arguments; only what changes per run is a pipeline parameter:
``tracking_uri`` (empty: the stage's own default, e.g. the cluster's ``MLFLOW_TRACKING_URI``) and
``parent_run_id`` (the MLflow parent run the stages nest under).

Per task, :func:`configure` applies from the profile ``resources.<kind>`` (else ``resources.default``),
``gpu`` when the task's kind is listed in ``gpu.stages`` (:func:`request_gpu`), ``pipeline.env`` and the ``cluster``
section (:func:`apply_cluster`: ConfigMap and Secret environment, the volume, image pull secrets, timeout, retries).
Resources, accelerators, tolerations, node selectors and the cluster settings are ignored by ``kfp.local`` but
compile into the YAML (the Kubernetes ones into the PlatformSpec, the YAML's second document; retries into each
task's ``retryPolicy``).

A profile with a ``cluster`` section runs on a cluster, where no local process holds the MLflow parent run open:
its pipeline opens the parent run in a first task (``open-parent-run``, unless ``parent_run_id`` is given) and
closes it in the exit task of a ``dsl.ExitHandler`` (``close-parent-run``, with the run's final state); the other
tasks sit in the handler's group ``reproduce``. Every stage finds the MLflow server through ``MLFLOW_TRACKING_URI``
from the ConfigMap (``tracking_uri`` left empty) — see :mod:`vidpred.parent_run`.

Training stages run where their ``nodes`` × ``gpus`` say (``vidpred.profile``; :func:`_placement`): one GPU or
none → the task trains in its own process; G > 1 GPUs on one node → the task's accelerator limit is G and its
``nproc`` input G, so it runs the stage under ``torchrun --nproc-per-node G``; N > 1 nodes → the task gets a
``trainjob`` input (``vidpred.trainjob.TrainJobSettings`` as JSON), ``resources.default`` and no accelerator: it
creates a Kubeflow Trainer TrainJob of N pods × G GPUs (each with the kind's resources), follows it and fails
with it. With the profile's ``checkpoints``, every training task gets ``checkpoints`` (the location) and
``run_id`` = ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``, and trains with
``train.ckpt_dir=<location>/<run id>/<track>/<stage>``, so a retried or rescheduled task resumes. The run id is
its own input because the KFP driver substitutes a placeholder only when it is a parameter's whole value
(kfp.local puts a random number per local run there); ``checkpoints.pvc`` is mounted at the location in every
training task.

Adding a stage kind: a component in ``components/``, its entry in ``vidpred.profile.STAGES``, and its
branch in :func:`_track_tasks`.
(No ``from __future__ import annotations`` here: kfp reads the pipeline's type annotations at run time.)
"""

import json
from typing import Any, Mapping

from kfp import dsl, kubernetes

from components import decide_training, preprocess_moso, prepare_data, validate_data
from components.common import vidpred_component
from components.corrwise import toycar_experiment, train_corrwise
from components.evaluate import evaluate_track, make_report
from components.landmarks import train_landmark_dynamics, train_landmarks
from components.moso import moso_tokens, train_moso_transformer, train_moso_vqvae
from components.run import close_parent_run, open_parent_run
from vidpred.config import load_config
from vidpred.errors import VidpredError
from vidpred.profile import Profile, StageSpec, TrackSpec

RESOURCE_SETTERS = {
    "cpu_request": "set_cpu_request",
    "cpu_limit": "set_cpu_limit",
    "memory_request": "set_memory_request",
    "memory_limit": "set_memory_limit",
}
COMPONENTS = {  # task kind → component
    "prepare_data": prepare_data, "validate_data": validate_data, "preprocess_moso": preprocess_moso,
    "train_moso_vqvae": train_moso_vqvae, "moso_tokens": moso_tokens, "train_moso_transformer": train_moso_transformer,
    "train_corrwise": train_corrwise, "toycar_experiment": toycar_experiment, "train_landmarks": train_landmarks,
    "train_landmark_dynamics": train_landmark_dynamics, "evaluate": evaluate_track, "make_report": make_report,
    "open_parent_run": open_parent_run, "close_parent_run": close_parent_run, "decide_training": decide_training,
}


def _plain(cfg_section: Any) -> dict:
    if cfg_section is None:
        return {}
    values = cfg_section if isinstance(cfg_section, Mapping) else getattr(cfg_section, "values", cfg_section)
    if not isinstance(values, Mapping):
        raise VidpredError(f"expected a mapping, got {type(values).__name__}: {values!r}")
    return dict(values)


def request_gpu(task: dsl.PipelineTask, gpu_cfg: Mapping | Any) -> dsl.PipelineTask:
    """Schedule ``task`` on a GPU node from config keys.

    ``type`` (e.g. ``nvidia.com/gpu``) and ``count`` → accelerator type and limit; ``toleration``
    {``key``, ``operator`` (default Equal, or Exists), ``value``, ``effect``} → a pod toleration;
    ``node_selector`` {``label``, ``value``} → a node selector. Missing optional parts are skipped.
    """
    gpu = _plain(gpu_cfg)
    gpu_type, count = gpu.get("type"), gpu.get("count", 1)
    if not gpu_type or not isinstance(gpu_type, str):
        raise VidpredError(f"gpu.type must name an accelerator (e.g. nvidia.com/gpu), got {gpu_type!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise VidpredError(f"gpu.count must be an integer ≥ 1, got {count!r}")
    task.set_accelerator_type(gpu_type)
    task.set_accelerator_limit(count)
    tol = _plain(gpu.get("toleration"))
    if tol:
        operator = tol.get("operator") or ("Equal" if tol.get("value") is not None else "Exists")
        if operator not in ("Equal", "Exists"):
            raise VidpredError(f"gpu.toleration.operator must be Equal or Exists, got {operator!r}")
        effect = tol.get("effect")
        if effect not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise VidpredError("gpu.toleration.effect must be NoSchedule, PreferNoSchedule or NoExecute, "
                               f"got {effect!r}")
        kubernetes.add_toleration(task, key=tol.get("key"), operator=operator,
                                  value=None if operator == "Exists" else str(tol.get("value")), effect=effect)
    sel = _plain(gpu.get("node_selector"))
    if sel:
        if not sel.get("label") or sel.get("value") is None:
            raise VidpredError(f"gpu.node_selector needs 'label' and 'value', got {sel!r}")
        kubernetes.add_node_selector(task, label_key=str(sel["label"]), label_value=str(sel["value"]))
    return task


def configure(task: dsl.PipelineTask, profile: Profile, kind: str, stage: StageSpec | None = None) -> dsl.PipelineTask:
    """Resources, GPU scheduling and environment of a task of ``kind`` from the profile (see the module doc);
    for a training ``stage``, its own ``gpus``. The task of a multi-node stage only follows its Trainer job, whose
    pods get the kind's resources and the GPUs: it gets ``resources.default`` and no GPU."""
    multi_node = stage is not None and stage.nodes > 1
    where = kind if profile.resources.get(kind) and not multi_node else "default"
    for key, value in _plain(profile.resources.get(where)).items():
        if key not in RESOURCE_SETTERS:
            raise VidpredError(f"resources.{where}.{key}: unknown setting (known: {', '.join(RESOURCE_SETTERS)})")
        getattr(task, RESOURCE_SETTERS[key])(str(value))
    if stage is not None:
        if stage.gpus and stage.nodes == 1:
            request_gpu(task, {**_plain(profile.gpu), "count": stage.gpus})
    elif kind in (profile.gpu.get("stages") or []):
        request_gpu(task, profile.gpu)
    for key, value in profile.env.items():
        task.set_env_variable(key, value)
    return apply_cluster(task, profile, kind)


def apply_cluster(task: dsl.PipelineTask, profile: Profile, kind: str) -> dsl.PipelineTask:
    """The profile's ``cluster`` section on a task of ``kind`` (nothing without one): environment from the
    ConfigMaps and Secrets (by reference), the volume, image pull secrets, the pod's timeout (``activeDeadlineSeconds``)
    and, unless the kind is in ``retry.skip``, ``set_retry`` with exponential backoff whose ``backoff_max_duration``
    covers every attempt: (count + 1) × timeout + the waits (Argo stops retrying after it). The service account is a
    run setting in KFP 2.17 (``vidpred.profile``), not a task's."""
    cluster = profile.cluster
    if not cluster:
        return task
    for name, keys in cluster["config_map_env"].items():
        kubernetes.use_config_map_as_env(task, name, keys)
    for name, keys in cluster["secret_env"].items():
        kubernetes.use_secret_as_env(task, name, keys)
    if cluster["volume"]:
        kubernetes.mount_pvc(task, pvc_name=cluster["volume"]["pvc"], mount_path=cluster["volume"]["mount_path"])
    if cluster["image_pull_secrets"]:
        kubernetes.set_image_pull_secrets(task, list(cluster["image_pull_secrets"]))
    hours = cluster["timeout_hours"].get(kind, cluster["timeout_hours"].get("default"))
    if hours:
        kubernetes.set_timeout(task, int(round(hours * 3600)))
    retry = cluster["retry"]
    if retry and retry["count"] and kind not in retry["skip"]:
        waits = sum(retry["backoff_seconds"] * retry["factor"] ** i for i in range(retry["count"]))
        most = (retry["count"] + 1) * int(round(hours * 3600)) + waits
        task.set_retry(retry["count"], backoff_duration=f"{int(retry['backoff_seconds'])}s",
                       backoff_factor=retry["factor"], backoff_max_duration=f"{int(most)}s")
    return task


class _Tasks:
    """Makes the named tasks of one pipeline and remembers which track or dataset each belongs to."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.owner: dict[str, tuple[str, str]] = {}  # task name → ("track" | "dataset" | "run", name)
        self._components: dict[str, Any] = {}

    def __call__(self, kind: str, owner: tuple[str, str], stage: StageSpec | None = None,
                 **arguments) -> dsl.PipelineTask:
        name = kind.replace("_", "-") if owner[0] == "run" else f"{owner[1]}-{kind.replace('_', '-')}"
        if kind == "evaluate":
            name = f"evaluate-{arguments['name']}"
        component = self._components.get(name)
        if component is None:  # one component per task name: the name shows in the YAML, the UI, kfp.local
            component = vidpred_component(COMPONENTS[kind].python_func, base_image=self.profile.base_image)
            component.component_spec.name = name
            component.name = name
            self._components[name] = component
        task = component(**arguments)
        self.owner[task.name] = owner
        configure(task, self.profile, kind, stage).set_display_name(name)
        return task


def _placement(profile: Profile, kind: str, stage: StageSpec) -> dict:
    """The inputs of a training task that say how and where it trains (see the module doc)."""
    from vidpred.trainjob import settings_for

    args: dict[str, Any] = {"nproc": max(stage.gpus, 1)}
    if profile.checkpoints:
        args.update(checkpoints=profile.checkpoints["location"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    if stage.nodes > 1:
        args["trainjob"] = settings_for(profile, kind, stage).to_json()
    return args


def _track_tasks(make: _Tasks, track: TrackSpec, data: dict | None, run: dict) -> list:
    """The tasks of one track after its dataset's gate; returns its evaluation tasks."""
    owner = ("track", track.name)
    st = track.stages
    base = dict(run, track=track.name)
    if data is not None:
        base["data_md5"] = data["md5"]
    models: dict[str, Any] = {}

    def train(kind: str, stage: str, **inputs) -> dsl.PipelineTask:
        spec = st[stage]
        task = make(kind, owner, spec, config=spec.config, overrides=list(spec.overrides),
                    **_placement(make.profile, kind, spec), **inputs, **base)
        checkpoints, volume = make.profile.checkpoints, (make.profile.cluster or {}).get("volume")
        # the checkpoints (and a Trainer job's workspace) live there; the cluster volume, if it is that PVC, is
        # already mounted at the location (vidpred.profile checks they agree)
        if checkpoints and checkpoints.get("pvc") and not (volume and volume["pvc"] == checkpoints["pvc"]):
            kubernetes.mount_pvc(task, pvc_name=checkpoints["pvc"], mount_path=checkpoints["location"])
        if data is not None:
            task.after(data["gate"])  # nothing of the track runs before its data passed the gate
        models[stage] = task.outputs["model"]
        return task

    if "moso_vqvae" in st:  # MOSO: VQVAE on the decomposed clips → tokens → Transformer
        vq = train("train_moso_vqvae", "moso_vqvae", moso=data["moso"])
        if "moso_transformer" in st:
            # the context length belongs to the VQVAE config (it fixes the pseudo clip's aligned pools)
            context = int(load_config(st["moso_vqvae"].config, list(st["moso_vqvae"].overrides))["tokens.context"])
            tok = make("moso_tokens", owner, moso=data["moso"], vqvae=vq.outputs["model"], context=context, **base)
            train("train_moso_transformer", "moso_transformer", moso=data["moso"], vqvae=vq.outputs["model"],
                  tokens=tok.outputs["tokens"])
    if "corrwise" in st:
        train("train_corrwise", "corrwise", store=data["store"])
    if "toycar" in st:  # CorrWise Fig. 2: needs no dataset
        settings = st["toycar"].settings
        make("toycar_experiment", owner, loss=str(settings.get("loss", "l1")), mode=str(settings.get("mode", "corrwise")),
             curve=bool(settings.get("curve", False)), overrides=list(st["toycar"].overrides), **run, track=track.name)
    if "landmarks" in st:  # unsupervised landmarks: autoencoder, then the LSTM dynamics on top
        lm = train("train_landmarks", "landmarks", store=data["store"])
        if "landmark_dynamics" in st:
            train("train_landmark_dynamics", "landmark_dynamics", store=data["store"], landmarks=lm.outputs["model"])
    from vidpred.registry import PromotionSpec  # the evaluation that registers the track's model (ev.promote)

    return [make("evaluate", owner, store=data["store"], model=models[ev.stage], name=ev.name, protocol=ev.protocol,
                 method=ev.method, baselines=list(ev.baselines), overrides=list(ev.overrides), device=ev.device,
                 promotion=PromotionSpec(track.name, ev.method, ev.primary_metric, ev.min_margin).to_json()
                 if ev.promote else "", **base)
            for ev in track.evaluations]


def _config_json(profile: Profile) -> str:
    """The profile's resolved config (values and provenance) as JSON, for the parent run's params."""
    cfg = profile.cfg
    return json.dumps({**dict(cfg.values), "provenance": dict(cfg.provenance)}, sort_keys=True, default=str)


def build_pipeline(profile: Profile):
    """The ``@dsl.pipeline`` function of a checked profile; ``.tasks`` maps its task names to their owners
    (filled each time the function is compiled or run); ``.service_account`` is the profile's
    ``cluster.service_account`` ('' without one), for whoever starts a run of it (a KFP run setting).

    With a ``cluster`` section the pipeline owns its MLflow parent run (``vidpred.parent_run``): ``open-parent-run``
    comes first and every task nests under the run it returns; ``close-parent-run`` is the exit task of a
    ``dsl.ExitHandler`` around all of them (in the YAML the root DAG holds ``close-parent-run`` and the handler's
    group ``exit-handler-1``, displayed as ``reproduce``, whose DAG holds every other task)."""
    from vidpred.tracking import DEFAULT_EXPERIMENT

    make = _Tasks(profile)
    experiment = str((profile.cfg.values.get("tracking") or {}).get("experiment") or DEFAULT_EXPERIMENT)

    @dsl.pipeline(name=profile.pipeline_name, description=profile.description)
    def reproduce(tracking_uri: str = "", parent_run_id: str = "", refresh_data: bool = False):
        make.owner.clear()
        if not profile.cluster:
            _run_tasks(make, {"tracking_uri": tracking_uri, "parent_run_id": parent_run_id}, refresh_data)
            return
        common = {"experiment": experiment, "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                  "tracking_uri": tracking_uri}
        # never from KFP's cache: each pipeline run has its own parent run
        close = make("close_parent_run", ("run", "close-parent-run"), **common).set_caching_options(False)
        with dsl.ExitHandler(close, name="reproduce"):
            parent = make("open_parent_run", ("run", "open-parent-run"), profile=profile.profile,
                          config_json=_config_json(profile), parent_run_id=parent_run_id,
                          **common).set_caching_options(False)
            _run_tasks(make, {"tracking_uri": tracking_uri, "parent_run_id": parent.output}, refresh_data)

    reproduce.tasks = make.owner
    reproduce.service_account = (profile.cluster or {}).get("service_account", "")
    return reproduce


def _run_tasks(make: _Tasks, run: dict, refresh_data: Any = False) -> None:
    """Every dataset's and track's tasks and the report; ``run``: the tracking inputs every task gets.

    Data preparation pulls a dataset prepared before with the same settings from the DVC remote
    (``$VIDPRED_DVC_REMOTE``, on a cluster from the ConfigMap) and pushes new ones (``vidpred.data.remote``);
    ``refresh_data`` (the pipeline parameter ``vidpred schedule`` sets) re-prepares from the source and says
    whether the data changed since the last preparation. With ``data_refresh.on_unchanged: skip`` in the profile,
    the tracks and the report are inside one ``dsl.If`` on a ``decide-training`` task (any dataset's ``train``
    output), so a run whose every dataset is unchanged trains nothing; otherwise the tracks always train."""
    profile = make.profile
    needs_moso = {t.dataset for t in profile.tracks.values() if "moso_vqvae" in t.stages}
    data: dict[str, dict] = {}
    for spec in profile.datasets.values():  # each dataset once: prepare → gate (→ MOSO decomposition)
        owner = ("dataset", spec.name)
        prep = make("prepare_data", owner, dataset=spec.dataset, source=spec.source or "", size=spec.size,
                    crop=spec.crop, clip_len=spec.clip_len, options_json=json.dumps(spec.options, sort_keys=True),
                    dataset_name=spec.name, refresh=refresh_data, on_unchanged=profile.on_unchanged, **run)
        store, md5 = prep.outputs["store"], prep.outputs["data_md5"]
        gate = make("validate_data", owner, store=store, clip_len=spec.validate["clip_len"], data_md5=md5,
                    test_fraction=spec.validate.get("test_fraction", []),
                    val_fraction=spec.validate.get("val_fraction", []), dataset_name=spec.name, **run)
        data[spec.name] = {"store": store, "md5": md5, "gate": gate, "train": prep.outputs["train"]}
        if spec.name in needs_moso:
            moso = make("preprocess_moso", owner, store=store, clip_len=spec.moso["clip_len"],
                        lower=spec.moso["lower"], upper=spec.moso["upper"], data_md5=md5,
                        dataset_name=spec.name, **run)
            data[spec.name]["moso"] = moso.after(gate).outputs["moso"]
    if profile.on_unchanged == "skip" and data:
        # one condition for every track and the report (a task outside a dsl.If cannot wait for tasks inside it);
        # the flags go as one list input: kfp.local 2.17 cannot resolve a dsl.If on a named task output
        decide = make("decide_training", ("run", "decide-training"),
                      flags=[d["train"] for d in data.values()])
        with dsl.If(decide.output == True, name="data-changed"):  # noqa: E712 (a KFP condition, not Python)
            _tracks_and_report(make, data, run)
    else:
        _tracks_and_report(make, data, run)


def _tracks_and_report(make: _Tasks, data: dict, run: dict) -> None:
    """Each track's tasks, then one report of the run after every evaluation, failed or not."""
    evaluations = []
    for track in make.profile.tracks.values():
        evaluations += _track_tasks(make, track, data.get(track.dataset), run)
    if evaluations and make.profile.report:
        make("make_report", ("run", "report"), **run).after(*evaluations).ignore_upstream_failure()
