"""Pipeline profiles: what one reproduction run does — its datasets and its tracks.

A profile is ``configs/<profile>/pipeline.yaml``; :func:`load_profile` reads it (with ``--set`` overrides),
checks every key before anything runs (one :class:`~vidpred.errors.VidpredError` naming the key) and keeps
only the tracks asked for (``--only``) and the datasets they use. The pipeline (``pipelines/reproduce.py``)
is built from the resulting :class:`Profile`.

Top-level keys::

    pipeline:   {name, description, base_image, env}       # env: variables for every task
    tracking:   {experiment}
    default_dataset: NAME                                  # the dataset `make data` versions as data/ (optional)
    datasets:   {NAME: DATASET, …}                         # each prepared and validated once per run
    tracks:     {NAME: TRACK, …}                           # one per paper experiment; independent of each other
    resources:  {default | TASK: {cpu_request, cpu_limit, memory_request, memory_limit}}
    gpu:        {stages: [TASK, …], type, count, toleration, node_selector}
    checkpoints: LOCATION | {location, pvc}                # optional: persistent checkpoints (see below)
    trainjob:   {runtime, timeout_hours, poll_seconds, namespace}   # optional: multi-node stages (see below)
    cluster:    {config_map_env, secret_env, volume, service_account, image_pull_secrets, timeout_hours, retry}
                                                           # optional: how every task runs on Kubernetes (below)
    report:     {enabled}
    data_refresh: {on_unchanged: train | skip}             # optional: what a run with refresh_data does when
                                                           # every dataset is unchanged (below)
    provenance: {dotted.key: "paper: … | code: … | assumed: …"}

DATASET (``vidpred data prepare`` arguments)::

    dataset: kth               # the source (vidpred.data.sources)
    source: null               # URL / folder; null: the source's default
    size: 64                   # N (square) or "HxW"
    crop: center               # center | aspect | full | bbox
    clip_len: 20
    options: {…}               # source options (splits, counts, seeds)
    validate: {clip_len, test_fraction, val_fraction}   # the GX gate: clip length (0: the store's), [low, high]
                               # share bounds for a published split outside the defaults (vidpred.data.validate)
    moso: {clip_len, lower, upper}   # MOSO decomposition of this dataset, needed by tracks with MOSO stages

TRACK::

    description: "…"
    enabled: true              # false: left out unless named in --only
    dataset: kth               # a key of datasets (not needed when every stage is dataset-free: toycar)
    stages:                    # any of these; a stage needs the one it builds on
      moso_vqvae:        {config, overrides, nodes, gpus}
      moso_transformer:  {config, overrides, nodes, gpus}       # needs moso_vqvae
      corrwise:          {config, overrides, nodes, gpus}
      toycar:            {loss, mode, curve, overrides}
      landmarks:         {config, overrides, nodes, gpus}
      landmark_dynamics: {config, overrides, nodes, gpus}       # needs landmarks
    evaluate:                  # one mapping or a list of them
      - {protocol, stage, name, baselines, overrides, device, primary_metric, min_margin}
        # stage: default the track's last evaluated stage; name: default the track's name (names are unique
        # in a profile: they name the MLflow runs evaluate/<name>/<method> and the report's sections)
    primary_metric: psnr       # promotion (vidpred.registry): the metric a challenger must win on; per track or
    min_margin: 0.0            # per evaluation (which wins); default psnr if the protocol has it, else its first
                               # metric, and margin 0 (assumed); a margin ≥ 0 in the metric's unit

The first evaluation of a track's model (its last evaluated stage, a frame-prediction protocol) registers that
model as a version of ``vidpred-<track>-<method>`` and moves the alias ``champion`` only when it beats the current
champion on ``primary_metric`` by at least ``min_margin`` (:mod:`vidpred.registry`).

TASK names (``resources``, ``gpu.stages``, ``cluster.timeout_hours``, ``cluster.retry.skip``) are the component
kinds of :data:`TASK_KINDS`; ``evaluate`` covers every evaluation; ``open_parent_run`` / ``close_parent_run`` are
the MLflow parent run's first and exit tasks of a profile with ``cluster``. Track and dataset names are lower-case DNS labels (they become Kubernetes task names).

Where a training stage runs (``nodes`` × ``gpus``; the config's batch size is the global batch, split over
all processes by ``vidpred.train.distributed``)::

    gpus: G        # GPUs per node, one training process each; default: gpu.count when the stage's task kind is
                   # in gpu.stages, else 0 (CPU). G > 0 needs gpu.type.
    nodes: N       # default 1
    N = 1, G ≤ 1   the task trains in its own process (as before)
    N = 1, G > 1   the task requests G GPUs and runs the stage under torchrun --nproc-per-node G (DDP)
    N > 1          the task creates a Kubeflow Trainer TrainJob of N pods × G GPUs, follows it and fails with it
                   (vidpred.trainjob); needs checkpoints.pvc: the job's pods read the inputs from and write the
                   model to that shared volume

``gpu.count`` is the accelerator limit of every other task kind listed in ``gpu.stages`` (tokens, evaluation).

``checkpoints``: where training stages keep their checkpoints, so a retried or rescheduled task resumes. Each
training task gets ``train.ckpt_dir=<location>/<KFP run id>/<track>/<stage>``. ``LOCATION`` alone is a path
every task already sees or an fsspec URI (``s3://bucket/prefix``); ``{location: /mnt/checkpoints, pvc: NAME}``
mounts the PersistentVolumeClaim ``NAME`` at ``location`` in every training task (and in Trainer job pods).

``trainjob`` (all optional): ``runtime`` the Trainer ClusterTrainingRuntime (default ``torch-distributed``),
``timeout_hours`` (default 168; the job is deleted and the task fails after it), ``poll_seconds`` (default 30),
``namespace`` (default: the pipeline pod's).

``cluster`` (optional) is applied to every task at compile time (``pipelines/reproduce.py``, kfp-kubernetes);
``kfp.local`` ignores it::

    config_map_env: {CONFIGMAP: [KEY, …] | {KEY: ENV}}   # environment from ConfigMaps (a list: same names)
    secret_env:     {SECRET: {KEY: ENV}}                 # environment from Secrets: references, never values
    volume:         {pvc: NAME, mount_path: /data}       # a PersistentVolumeClaim mounted in every task
    service_account: NAME                                # the pods' identity (a run setting in KFP: see below)
    image_pull_secrets: [NAME, …]
    timeout_hours:  {default | TASK: H}                  # each pod's activeDeadlineSeconds
    retry:          {count, backoff_seconds, factor, skip: [TASK, …]}   # set_retry with exponential backoff

Environment variable names are upper case (``[A-Z_][A-Z0-9_]*``); a value where a name belongs is an error, and
so is a ``pipeline.env`` variable whose name says it holds a credential (``*PASSWORD*``, ``*SECRET*``,
``*TOKEN*``, ``*ACCESS_KEY*``, …): credentials come from Secrets (errors never echo such values). An environment
variable is set by one source only. ``checkpoints`` must agree with ``volume``: on the same PVC its location is
the mount path (the Trainer job pods mount it there too); a checkpoint path without a PVC of its own must be on
the volume (else a retried pod would not find it); another PVC must not be mounted inside the volume or around
it. ``retry`` needs ``timeout_hours.default``: Argo stops retrying once ``backoff.maxDuration`` has passed since
the first attempt, so the pipeline sets it to (count + 1) × the task's timeout + the backoff waits. A multi-node
stage's task must outlive its Trainer job (its timeout > ``trainjob.timeout_hours``). ``service_account`` has no
place in a compiled KFP 2.17 pipeline (neither kfp-kubernetes nor the PipelineSpec carries one): it is the run's
``service_account`` (``kfp.Client().create_run_from_pipeline_package(…, service_account=…)``, the UI's run form),
which KFP gives every pod of the run. A profile with ``cluster`` also opens its own MLflow parent run in the
pipeline (``components/run.py``), so stages on a cluster nest under it.

``data_refresh.on_unchanged`` (default ``train``) is for runs with the pipeline parameter ``refresh_data`` (what
``vidpred schedule`` sets): every dataset is prepared again from its source and its DVC md5 compared with the one
the DVC remote recorded for the same settings (``vidpred.data.remote``). With ``skip`` the tracks, their
evaluations and the report sit in one ``dsl.If`` after a ``decide-training`` task and run only when some dataset
changed; with ``train`` they always run (the data tasks still say whether the data changed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from vidpred.errors import VidpredError

TASK_KINDS = ("prepare_data", "validate_data", "preprocess_moso", "train_moso_vqvae", "moso_tokens",
              "train_moso_transformer", "train_corrwise", "toycar_experiment", "train_landmarks",
              "train_landmark_dynamics", "evaluate", "make_report", "open_parent_run", "close_parent_run",
              "decide_training")
TOP_KEYS = ("pipeline", "tracking", "default_dataset", "datasets", "tracks", "resources", "gpu", "checkpoints",
            "trainjob", "cluster", "report", "data_refresh",
            "provenance")
CLUSTER_KEYS = ("config_map_env", "secret_env", "volume", "service_account", "image_pull_secrets", "timeout_hours",
                "retry")
RETRY_KEYS = ("count", "backoff_seconds", "factor", "skip")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # a key of a ConfigMap's or Secret's data
CREDENTIAL = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|API_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
DATASET_KEYS = ("dataset", "source", "size", "crop", "clip_len", "options", "validate", "moso")
TRACK_KEYS = ("description", "enabled", "dataset", "stages", "evaluate", "primary_metric", "min_margin")
EVALUATE_KEYS = ("protocol", "stage", "name", "baselines", "overrides", "device", "primary_metric", "min_margin")
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
GPU_KEYS = ("stages", "type", "count", "toleration", "node_selector")
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a Kubernetes object name (DNS subdomain)
URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


@dataclass(frozen=True)
class StageKind:
    keys: tuple[str, ...] = ("config", "overrides", "nodes", "gpus")
    needs: str | None = None  # the stage whose model this one builds on
    method: str | None = None  # the vidpred.evaluate method that scores its model
    reads_dataset: bool = True
    task: str = ""  # its task kind


STAGES = {
    "moso_vqvae": StageKind(task="train_moso_vqvae"),
    "moso_transformer": StageKind(needs="moso_vqvae", method="moso", task="train_moso_transformer"),
    "corrwise": StageKind(method="corrwise", task="train_corrwise"),
    "toycar": StageKind(keys=("loss", "mode", "curve", "overrides"), reads_dataset=False, task="toycar_experiment"),
    "landmarks": StageKind(method="landmarks", task="train_landmarks"),
    "landmark_dynamics": StageKind(needs="landmarks", method="landmarks", task="train_landmark_dynamics"),
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    dataset: str
    source: str | None
    size: str  # "N" or "HxW"
    hw: tuple[int, int]
    crop: str
    clip_len: int
    options: dict
    validate: dict = field(default_factory=dict)  # {clip_len, test_fraction, val_fraction}
    moso: dict | None = None  # {clip_len, lower, upper}


@dataclass(frozen=True)
class StageSpec:
    name: str
    config: str | None
    overrides: tuple[str, ...]
    settings: dict = field(default_factory=dict)  # toycar: loss, mode, curve
    nodes: int = 1  # training stages: nodes × gpus (see the module doc)
    gpus: int | None = 0  # per node; None (not set) only until parse_profile resolves it against the gpu section


@dataclass(frozen=True)
class EvaluationSpec:
    name: str
    stage: str
    method: str
    protocol: str
    baselines: tuple[str, ...]
    overrides: tuple[str, ...]
    device: str
    promote: bool = False  # registers the track's model and decides champion/challenger (vidpred.registry)
    primary_metric: str = ""
    min_margin: float = 0.0


@dataclass(frozen=True)
class TrackSpec:
    name: str
    dataset: str | None
    description: str
    stages: dict[str, StageSpec]
    evaluations: tuple[EvaluationSpec, ...]


@dataclass
class Profile:
    profile: str
    cfg: Any  # the vidpred.config.Config it was read from (logged as the parent run's params)
    pipeline_name: str
    description: str
    base_image: str
    env: dict
    datasets: dict[str, DatasetSpec]  # only those the selected tracks use, in file order
    tracks: dict[str, TrackSpec]  # the selected tracks, in file order
    resources: dict
    gpu: dict
    report: bool
    default_dataset: str | None = None
    all_datasets: dict[str, DatasetSpec] = field(default_factory=dict)  # every dataset of the file
    checkpoints: dict | None = None  # {location, pvc (or None)}
    trainjob: dict = field(default_factory=dict)  # {runtime, timeout_hours, poll_seconds, namespace}
    cluster: dict | None = None  # the checked `cluster` section (see the module doc); None: not a cluster profile
    on_unchanged: str = "train"  # data_refresh.on_unchanged: "skip" → tracks run only when some dataset changed

    def describe(self) -> str:
        lines = [f"profile {self.profile}: {len(self.datasets)} dataset(s), {len(self.tracks)} track(s)"]
        for d in self.datasets.values():
            lines.append(f"  dataset {d.name}: {d.dataset} {d.hw[0]}×{d.hw[1]} ({d.crop}), clips of {d.clip_len}")
        for t in self.tracks.values():
            evals = ", ".join(f"{e.name} ({e.protocol})" for e in t.evaluations) or "no evaluation"
            lines.append(f"  track {t.name} on {t.dataset or 'no dataset'}: {', '.join(t.stages)} → {evals}")
        return "\n".join(lines)


class _Checker:
    """One-line errors that name the profile file and the key."""

    def __init__(self, path):
        self.path = path

    def fail(self, key: str, message: str):
        raise VidpredError(f"profile {self.path}: '{key}' {message}")

    def mapping(self, key: str, value, allowed: Iterable[str] | None = None, optional: bool = False) -> dict:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {value!r}")
        if allowed is not None:
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                import difflib

                near = difflib.get_close_matches(str(unknown[0]), [str(a) for a in allowed], n=1, cutoff=0.6)
                hint = f"did you mean '{key + '.' if key else ''}{near[0]}'?; " if near else ""
                self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                          f"is not a known key ({hint}known: {', '.join(allowed)})")
        return value

    def value(self, key: str, value, kind, minimum: float | None = None, optional: bool = False, default=None):
        if value is None and optional:
            return default
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and minimum is not None:
            ok = value >= minimum
        if not ok:
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            self.fail(key, f"must be {names}{f' ≥ {minimum}' if minimum is not None else ''}, got {value!r}")
        return value

    def strings(self, key: str, value, optional: bool = True) -> tuple[str, ...]:
        if value is None and optional:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            self.fail(key, f"must be a list of strings, got {value!r}")
        return tuple(str(v) for v in value)

    def name(self, key: str, value: str) -> str:
        if not isinstance(value, str) or not NAME.match(value):
            self.fail(key, "must be a lower-case name of letters, digits and '-' (at most 40; it becomes a "
                           f"Kubernetes task name), got {value!r}")
        return value


def _validate(c: _Checker, key: str, raw) -> dict:
    raw = c.mapping(key, raw, ("clip_len", "test_fraction", "val_fraction"), optional=True)
    out = {"clip_len": c.value(f"{key}.clip_len", raw.get("clip_len"), int, 0, True, 0)}
    for name in ("test_fraction", "val_fraction"):
        value = raw.get(name)
        if value is None:
            continue
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
              and 0 <= value[0] <= value[1] <= 1)
        if not ok:
            c.fail(f"{key}.{name}", f"must be [low, high] with 0 ≤ low ≤ high ≤ 1, got {value!r}")
        out[name] = [float(v) for v in value]
    return out


def _dataset(c: _Checker, name: str, raw) -> DatasetSpec:
    from vidpred.data.frames import CROP_MODES, parse_size

    key = f"datasets.{name}"
    c.name(key, name)
    raw = c.mapping(key, raw, DATASET_KEYS)
    size = raw.get("size")
    try:
        hw = parse_size(size)
    except VidpredError:
        c.fail(f"{key}.size", f"must be N or \"HxW\", got {size!r}")
    if min(hw) < 16:
        c.fail(f"{key}.size", f"must be at least 16 px per side, got {size!r}")
    crop = raw.get("crop", "center")
    if crop not in CROP_MODES:
        c.fail(f"{key}.crop", f"must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    moso = raw.get("moso")
    if moso is not None:
        moso = c.mapping(f"{key}.moso", moso, ("clip_len", "lower", "upper"))
        moso = {"clip_len": c.value(f"{key}.moso.clip_len", moso.get("clip_len", 0), int, 0),
                "lower": float(c.value(f"{key}.moso.lower", moso.get("lower"), (int, float), 0)),
                "upper": float(c.value(f"{key}.moso.upper", moso.get("upper"), (int, float), 0))}
    source = raw.get("source")
    return DatasetSpec(
        name=name, dataset=c.value(f"{key}.dataset", raw.get("dataset"), str),
        source=None if source in (None, "") else str(source),
        size=str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}", hw=hw, crop=crop,
        clip_len=c.value(f"{key}.clip_len", raw.get("clip_len"), int, 1),
        options=dict(c.mapping(f"{key}.options", raw.get("options"), optional=True)),
        validate=_validate(c, f"{key}.validate", raw.get("validate")),
        moso=moso)


def _stage(c: _Checker, key: str, name: str, raw) -> StageSpec:
    import importlib

    from vidpred.config import load_config

    kind = STAGES.get(name)
    if kind is None:
        c.fail(key, f"is not a stage (stages: {', '.join(STAGES)})")
    raw = c.mapping(key, raw, kind.keys)
    overrides = c.strings(f"{key}.overrides", raw.get("overrides"))
    config = None
    if "config" in kind.keys:
        config = c.value(f"{key}.config", raw.get("config"), str)
        try:  # a missing file, an unknown key or a bad override is an error now, not hours into the run
            schema = importlib.import_module(f"vidpred.train.{name}").CONFIG_SCHEMA
            # partial: the pipeline fills in its own keys (data.store, train.out_dir, …) at run time
            schema.check(load_config(config, list(overrides)), partial=True)
        except VidpredError as exc:
            c.fail(key, f"does not load: {exc}")
    settings = {k: raw[k] for k in kind.keys if k not in ("config", "overrides", "nodes", "gpus") and k in raw}
    nodes, gpus = 1, 0
    if "nodes" in kind.keys:
        nodes = c.value(f"{key}.nodes", raw.get("nodes"), int, 1, optional=True, default=1)
        gpus = c.value(f"{key}.gpus", raw.get("gpus"), int, 0, optional=True, default=None)
    return StageSpec(name, config, overrides, settings, nodes=nodes, gpus=gpus)


def _promotion(c: _Checker, where: str, item: dict, defaults: dict, spec) -> tuple[str, float]:
    """(primary_metric, min_margin) of an evaluation: its own, else the track's (``defaults``, keyed by their
    profile key), else psnr (or the protocol's first metric) and 0."""
    track_key = where.split(".evaluate")[0]
    own = {k: (f"{where}.{k}", item[k]) for k in ("primary_metric", "min_margin") if k in item}
    key, metric = own.get("primary_metric") or (f"{track_key}.primary_metric", defaults.get("primary_metric"))
    if metric is None:
        metric = "psnr" if "psnr" in spec.metrics else spec.metrics[0]
    elif not isinstance(metric, str) or metric.split("_first")[0] not in spec.metrics:
        c.fail(key, f"must be one of protocol {spec.name}'s metrics ({', '.join(spec.metrics)}), got {metric!r}")
    key, margin = own.get("min_margin") or (f"{track_key}.min_margin", defaults.get("min_margin", 0.0))
    c.value(key, margin, (int, float), 0)
    return metric, float(margin)


def _evaluations(c: _Checker, key: str, track: str, stages: dict, dataset: DatasetSpec | None, raw,
                 defaults: dict | None = None) -> list:
    from vidpred.evaluate.predictors import BASELINES
    from vidpred.evaluate.protocols import get_protocol, known_protocols

    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(raw, list) else key
        item = c.mapping(where, item, EVALUATE_KEYS)
        evaluated = [s for s in stages if STAGES[s].method]
        stage = item.get("stage", evaluated[-1] if evaluated else None)
        if stage not in stages or not STAGES[stage].method:
            c.fail(f"{where}.stage", f"must name an evaluated stage of the track ({', '.join(evaluated) or 'none'}), "
                                     f"got {stage!r}")
        overrides = c.strings(f"{where}.overrides", item.get("overrides"))
        protocol = c.value(f"{where}.protocol", item.get("protocol"), str)
        if protocol not in known_protocols():  # checked first: with overrides get_protocol would see a new, empty entry
            c.fail(f"{where}.protocol", f"names an unknown protocol {protocol!r} (known: {', '.join(known_protocols())})")
        try:
            spec = get_protocol(protocol, list(overrides))
        except VidpredError as exc:
            c.fail(f"{where}.protocol", f"does not load: {exc}")
        if spec.size is not None and dataset is not None and tuple(spec.size) != tuple(dataset.hw):
            c.fail(f"{where}.protocol", f"{protocol} scores {spec.size[0]}×{spec.size[1]} frames but dataset "
                                        f"{dataset.name} has {dataset.hw[0]}×{dataset.hw[1]}")
        baselines = c.strings(f"{where}.baselines", item.get("baselines"))
        bad = [b for b in baselines if b not in BASELINES]
        if bad:
            c.fail(f"{where}.baselines", f"has unknown {bad[0]!r} (known: {', '.join(BASELINES)})")
        name = c.name(f"{where}.name", item.get("name", track))
        promote = stage == evaluated[-1] and spec.kind != "keypoints" and not any(e.promote for e in out)
        # the track's settings are for the evaluation that promotes (a keypoint evaluation has other metrics)
        metric, margin = _promotion(c, where, item, (defaults or {}) if promote else {}, spec)
        out.append(EvaluationSpec(name=name, stage=stage, method=STAGES[stage].method, protocol=protocol,
                                  baselines=baselines, overrides=overrides,
                                  device=str(c.value(f"{where}.device", item.get("device"), str, optional=True,
                                                     default="auto")),
                                  promote=promote, primary_metric=metric, min_margin=margin))
    return out


def _track(c: _Checker, name: str, raw, datasets: dict[str, DatasetSpec]) -> TrackSpec:
    key = f"tracks.{name}"
    c.name(key, name)
    raw = c.mapping(key, raw, TRACK_KEYS)
    stages_raw = c.mapping(f"{key}.stages", raw.get("stages"))
    if not stages_raw:
        c.fail(f"{key}.stages", "must list at least one stage")
    stages = {s: _stage(c, f"{key}.stages.{s}", s, v) for s, v in stages_raw.items()}
    for s in stages:
        needs = STAGES[s].needs
        if needs and needs not in stages:
            c.fail(f"{key}.stages.{s}", f"builds on {needs}, which the track does not have")
    dataset_name = raw.get("dataset")
    dataset = None
    if any(STAGES[s].reads_dataset for s in stages):
        if dataset_name not in datasets:
            c.fail(f"{key}.dataset", f"must name one of the profile's datasets ({', '.join(datasets) or 'none'}), "
                                     f"got {dataset_name!r}")
        dataset = datasets[dataset_name]
        if "moso_vqvae" in stages and dataset.moso is None:
            c.fail(f"datasets.{dataset_name}.moso", f"is needed by track {name} (MOSO stages): "
                                                    "{clip_len, lower, upper}")
    elif dataset_name is not None:
        c.fail(f"{key}.dataset", "is set, but none of the track's stages reads a dataset")
    evaluations = _evaluations(c, f"{key}.evaluate", name, stages, dataset, raw["evaluate"],
                               {k: raw[k] for k in ("primary_metric", "min_margin") if k in raw}) \
        if raw.get("evaluate") is not None else []
    return TrackSpec(name=name, dataset=dataset.name if dataset else None,
                     description=str(raw.get("description", "")), stages=stages, evaluations=tuple(evaluations))


def _gpu(c: _Checker, raw) -> dict:
    gpu = c.mapping("gpu", raw, GPU_KEYS, optional=True)
    stages = c.strings("gpu.stages", gpu.get("stages"))
    bad = [s for s in stages if s not in TASK_KINDS]
    if bad:
        c.fail("gpu.stages", f"has unknown task {bad[0]!r} (tasks: {', '.join(TASK_KINDS)})")
    if stages:
        gpu_type, count = gpu.get("type"), gpu.get("count", 1)
        if not gpu_type or not isinstance(gpu_type, str):
            c.fail("gpu.type", f"must name an accelerator (e.g. nvidia.com/gpu), got {gpu_type!r}")
        c.value("gpu.count", count, int, 1)
    return dict(gpu)


def _checkpoints(c: _Checker, raw) -> dict | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"location": raw}
    raw = c.mapping("checkpoints", raw, ("location", "pvc"))
    location, pvc = raw.get("location"), raw.get("pvc")
    if not isinstance(location, str) or not (location.startswith("/") or URI.match(location)):
        c.fail("checkpoints.location", f"must be an absolute path or a URI such as s3://bucket/prefix, "
                                       f"got {location!r}")
    if pvc is not None:
        if not isinstance(pvc, str) or not K8S_NAME.match(pvc):
            c.fail("checkpoints.pvc", f"must name a PersistentVolumeClaim, got {pvc!r}")
        if not location.startswith("/"):
            c.fail("checkpoints.location", f"must be the absolute path the PVC {pvc} is mounted at, got {location!r}")
    return {"location": location.rstrip("/") or "/", "pvc": pvc}


def _trainjob(c: _Checker, raw) -> dict:
    raw = c.mapping("trainjob", raw, ("runtime", "timeout_hours", "poll_seconds", "namespace"), optional=True)
    out = {"runtime": c.value("trainjob.runtime", raw.get("runtime"), str, optional=True,
                              default="torch-distributed"),
           "timeout_hours": float(c.value("trainjob.timeout_hours", raw.get("timeout_hours"), (int, float), 0.01,
                                          optional=True, default=168)),
           "poll_seconds": c.value("trainjob.poll_seconds", raw.get("poll_seconds"), int, 1, optional=True,
                                   default=30),
           "namespace": c.value("trainjob.namespace", raw.get("namespace"), str, optional=True, default="")}
    if not K8S_NAME.match(out["runtime"]):
        c.fail("trainjob.runtime", f"must name a Trainer runtime, got {out['runtime']!r}")
    return out


def _env_refs(c: _Checker, key: str, raw, what: str) -> dict[str, dict[str, str]]:
    """``{OBJECT: {KEY: ENV}}`` of ``cluster.config_map_env`` / ``cluster.secret_env`` (a ConfigMap may list its
    keys, each setting the variable of the same name). A Secret's values are never echoed in an error."""
    secret = what == "Secret"
    out: dict[str, dict[str, str]] = {}
    for name, keys in c.mapping(key, raw, optional=True).items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not K8S_NAME.match(name):
            c.fail(where, f"must name a {what} (a Kubernetes object name)")
        if isinstance(keys, list) and not secret:
            keys = {k: k for k in keys}
        if not isinstance(keys, dict) or not keys:
            shown = "a value that is not a mapping (not shown)" if secret else repr(keys)
            c.fail(where, f"must map the {what}'s keys to environment variable names ({{KEY: ENV_NAME}}), got "
                          f"{shown}" + ("; a profile references a Secret, it never holds its values" if secret else ""))
        for data_key, env in keys.items():
            if not isinstance(data_key, str) or not DATA_KEY.match(data_key):
                c.fail(f"{where}.{data_key}", f"is not a key of a {what}'s data")
            if not isinstance(env, str) or not ENV_NAME.match(env):
                shown = "something else (not shown)" if secret else repr(env)
                c.fail(f"{where}.{data_key}", f"must be the name of the environment variable it sets (upper case, "
                                              f"e.g. AWS_SECRET_ACCESS_KEY), got {shown}"
                       + ("; a secret value never goes in a profile: create the Secret with kubectl "
                          "(k8s/README.md) and name its key here" if secret else ""))
        out[name] = dict(keys)
    return out


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _cluster(c: _Checker, raw, env: dict, checkpoints: dict | None, trainjob: dict,
             tracks: dict[str, TrackSpec]) -> dict | None:
    """The checked ``cluster`` section (see the module doc), or None when the profile has none."""
    if raw is None:
        return None
    raw = c.mapping("cluster", raw, CLUSTER_KEYS)
    out = {"config_map_env": _env_refs(c, "cluster.config_map_env", raw.get("config_map_env"), "ConfigMap"),
           "secret_env": _env_refs(c, "cluster.secret_env", raw.get("secret_env"), "Secret")}
    sources: dict[str, str] = {name: "pipeline.env" for name in env}
    for section in ("config_map_env", "secret_env"):
        for obj, keys in out[section].items():
            for env_name in keys.values():
                if env_name in sources:
                    c.fail(f"cluster.{section}.{obj}", f"sets {env_name}, which {sources[env_name]} sets too")
                sources[env_name] = f"cluster.{section}.{obj}"
    volume = None
    if raw.get("volume") is not None:
        volume = c.mapping("cluster.volume", raw["volume"], ("pvc", "mount_path"))
        pvc, mount = volume.get("pvc"), volume.get("mount_path")
        if not isinstance(pvc, str) or not K8S_NAME.match(pvc):
            c.fail("cluster.volume.pvc", f"must name a PersistentVolumeClaim, got {pvc!r}")
        if not isinstance(mount, str) or not mount.startswith("/") or mount.rstrip("/") == "":
            c.fail("cluster.volume.mount_path", f"must be an absolute path other than /, got {mount!r}")
        volume = {"pvc": pvc, "mount_path": mount.rstrip("/")}
        location = (checkpoints or {}).get("location", "")
        if checkpoints and checkpoints.get("pvc") == pvc and location != volume["mount_path"]:
            c.fail("checkpoints.location", f"is {location} but its PVC {pvc} is mounted at "
                                           f"cluster.volume.mount_path {volume['mount_path']} in every task (and in "
                                           "Trainer job pods): use that path")
        if checkpoints and checkpoints.get("pvc") not in (None, pvc) and (
                _inside(location, volume["mount_path"]) or _inside(volume["mount_path"], location)):
            c.fail("checkpoints.location", f"{location} (PVC {checkpoints['pvc']}) overlaps cluster.volume.mount_path "
                                           f"{volume['mount_path']} (PVC {pvc}): mount them at separate paths")
        if checkpoints and checkpoints.get("pvc") is None and location.startswith("/") and \
                not _inside(location, volume["mount_path"]):
            c.fail("checkpoints.location", f"{location} is on no volume, so a retried pod would not find its "
                                           f"checkpoints: put it under cluster.volume.mount_path "
                                           f"{volume['mount_path']} or give checkpoints.pvc")
    out["volume"] = volume
    account = raw.get("service_account")
    if account is not None and (not isinstance(account, str) or not K8S_NAME.match(account)):
        c.fail("cluster.service_account", f"must name a ServiceAccount, got {account!r}")
    out["service_account"] = account or ""
    pull = c.strings("cluster.image_pull_secrets", raw.get("image_pull_secrets"))
    bad = [p for p in pull if not K8S_NAME.match(p)]
    if bad:
        c.fail("cluster.image_pull_secrets", f"must list Secret names, got {bad[0]!r}")
    out["image_pull_secrets"] = list(pull)
    hours = c.mapping("cluster.timeout_hours", raw.get("timeout_hours"), ("default",) + TASK_KINDS, optional=True)
    out["timeout_hours"] = {kind: float(c.value(f"cluster.timeout_hours.{kind}", h, (int, float), 0.01))
                            for kind, h in hours.items()}
    for track in tracks.values():
        for name, spec in track.stages.items():
            kind = STAGES[name].task
            limit = out["timeout_hours"].get(kind, out["timeout_hours"].get("default"))
            if spec.nodes > 1 and limit is not None and limit <= trainjob["timeout_hours"]:
                c.fail(f"cluster.timeout_hours.{kind}", f"is {limit:g} h, but the task of the multi-node stage "
                                                        f"tracks.{track.name}.stages.{name} follows its Trainer job for "
                                                        f"up to trainjob.timeout_hours ({trainjob['timeout_hours']:g} h):"
                                                        " it must be longer")
    retry = c.mapping("cluster.retry", raw.get("retry"), RETRY_KEYS, optional=True)
    out["retry"] = None
    if retry:
        skip = c.strings("cluster.retry.skip", retry.get("skip"))
        bad = [s for s in skip if s not in TASK_KINDS]
        if bad:
            c.fail("cluster.retry.skip", f"has unknown task {bad[0]!r} (tasks: {', '.join(TASK_KINDS)})")
        out["retry"] = {
            "count": c.value("cluster.retry.count", retry.get("count"), int, 0),
            "backoff_seconds": float(c.value("cluster.retry.backoff_seconds", retry.get("backoff_seconds"),
                                             (int, float), 0, optional=True, default=60)),
            "factor": float(c.value("cluster.retry.factor", retry.get("factor"), (int, float), 1, optional=True,
                                    default=2)),
            "skip": list(skip)}
        if out["retry"]["count"] and "default" not in out["timeout_hours"]:
            c.fail("cluster.retry", "needs cluster.timeout_hours.default: Argo stops retrying once backoff.maxDuration "
                                    "has passed since the first attempt, and the pipeline derives it from the timeout")
    return out


def _placement(c: _Checker, tracks: dict[str, TrackSpec], gpu: dict, checkpoints: dict | None) -> None:
    """Resolve each training stage's ``gpus`` against ``gpu`` (in place) and check nodes × gpus."""
    from dataclasses import replace

    gpu_kinds = set(gpu.get("stages") or [])
    for track in tracks.values():
        for name, spec in list(track.stages.items()):
            if "gpus" not in STAGES[name].keys:
                continue
            key = f"tracks.{track.name}.stages.{name}"
            gpus = spec.gpus
            if gpus is None:
                gpus = int(gpu.get("count", 1)) if STAGES[name].task in gpu_kinds else 0
            elif gpus > 0 and not (isinstance(gpu.get("type"), str) and gpu.get("type")):
                c.fail(f"{key}.gpus", f"is {gpus} but gpu.type names no accelerator (set it, e.g. nvidia.com/gpu)")
            if spec.nodes > 1 and not (checkpoints and checkpoints.get("pvc")):
                c.fail(f"{key}.nodes", f"is {spec.nodes}: a multi-node stage runs as a Kubeflow Trainer job whose "
                                       "pods share inputs and outputs through the checkpoints volume; set "
                                       "checkpoints: {location: /mnt/checkpoints, pvc: NAME}")
            track.stages[name] = replace(spec, gpus=gpus)


def parse_profile(cfg, profile: str = "", only: Iterable[str] | None = None) -> Profile:
    """Check a profile config (a ``vidpred.config.Config``) and select its tracks (see the module doc)."""
    c = _Checker(cfg.path)
    values = c.mapping("", cfg.values, TOP_KEYS)
    pipeline = c.mapping("pipeline", values.get("pipeline"), ("name", "description", "base_image", "env"))
    c.value("pipeline.name", pipeline.get("name"), str)
    c.value("pipeline.base_image", pipeline.get("base_image"), str)
    env = c.mapping("pipeline.env", pipeline.get("env"), optional=True)
    for name in env:
        if CREDENTIAL.search(str(name)):  # the value is not echoed
            c.fail(f"pipeline.env.{name}", "looks like a credential: reference a Secret in cluster.secret_env "
                                           "instead of writing its value in the profile")
    c.mapping("tracking", values.get("tracking"), ("experiment",), optional=True)
    datasets_raw = c.mapping("datasets", values.get("datasets"))
    datasets = {name: _dataset(c, name, raw) for name, raw in datasets_raw.items()}
    tracks_raw = c.mapping("tracks", values.get("tracks"))
    if not tracks_raw:
        c.fail("tracks", "must list at least one track")
    tracks = {name: _track(c, name, raw, datasets) for name, raw in tracks_raw.items()}
    enabled = set()
    for name, raw in tracks_raw.items():
        flag = raw.get("enabled", True)
        if not isinstance(flag, bool):
            c.fail(f"tracks.{name}.enabled", f"must be true or false, got {flag!r}")
        if flag:
            enabled.add(name)
    names = [e.name for t in tracks.values() for e in t.evaluations]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        c.fail("tracks", f"evaluation name {dup[0]!r} is used twice (set evaluate.name)")
    default = values.get("default_dataset")
    if default is not None and default not in datasets:
        c.fail("default_dataset", f"must name one of the profile's datasets, got {default!r}")
    resources = c.mapping("resources", values.get("resources"), ("default",) + TASK_KINDS, optional=True)
    for task, section in resources.items():
        c.mapping(f"resources.{task}", section, RESOURCE_KEYS)
    gpu = _gpu(c, values.get("gpu"))
    checkpoints = _checkpoints(c, values.get("checkpoints"))
    trainjob = _trainjob(c, values.get("trainjob"))
    _placement(c, tracks, gpu, checkpoints)
    cluster = _cluster(c, values.get("cluster"), env, checkpoints, trainjob, tracks)
    report = c.mapping("report", values.get("report"), ("enabled",), optional=True)
    refresh = c.mapping("data_refresh", values.get("data_refresh"), ("on_unchanged",), optional=True)
    on_unchanged = str(refresh.get("on_unchanged", "train"))
    if on_unchanged not in ("train", "skip"):
        c.fail("data_refresh.on_unchanged", f"must be train or skip, got {on_unchanged!r}")

    if only:
        wanted = [t.strip() for t in only if t.strip()]
        unknown = [t for t in wanted if t not in tracks]
        if unknown:
            raise VidpredError(f"--only: unknown track {unknown[0]!r} (tracks of profile {profile or cfg.path}: "
                               f"{', '.join(tracks)})")
        selected = {name: t for name, t in tracks.items() if name in wanted}
    else:
        selected = {name: t for name, t in tracks.items() if name in enabled}
    if not selected:
        c.fail("tracks", "has no enabled track (enable one, or name tracks with --only)")
    used = {t.dataset for t in selected.values() if t.dataset}
    return Profile(profile=profile, cfg=cfg, pipeline_name=pipeline["name"],
                   description=str(pipeline.get("description", "")), base_image=pipeline["base_image"],
                   env={str(k): str(v) for k, v in env.items()},
                   datasets={n: d for n, d in datasets.items() if n in used}, tracks=selected,
                   resources=resources, gpu=gpu, report=bool(report.get("enabled", True)), default_dataset=default,
                   all_datasets=datasets, checkpoints=checkpoints, trainjob=trainjob, cluster=cluster,
                   on_unchanged=on_unchanged)


def load_profile(profile: str, overrides: Iterable[str] = (), only: Iterable[str] | None = None) -> Profile:
    """``configs/<profile>/pipeline.yaml`` with ``--set`` overrides, checked, tracks selected by ``only``."""
    from vidpred.config import profile_config

    return parse_profile(profile_config(profile, list(overrides)), profile, only)


def split_only(text: str | None) -> list[str] | None:
    """``--only a,b`` → ["a", "b"]; None/empty → None (every enabled track)."""
    if not text:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


__all__ = ["Profile", "DatasetSpec", "TrackSpec", "StageSpec", "EvaluationSpec", "STAGES", "TASK_KINDS",
           "parse_profile", "load_profile", "split_only"]
