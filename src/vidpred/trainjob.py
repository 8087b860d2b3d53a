"""Training stages on several nodes as Kubeflow Trainer jobs (``TrainJob``, ``trainer.kubeflow.org/v1alpha1``).

A profile stage with ``nodes: N > 1`` (``vidpred.profile``) compiles into a pipeline task that does not train
itself: it runs on a small pod, hands the stage to the Kubeflow Trainer as a ``TrainJob`` of N pods with G GPUs
each (``torchrun`` on every pod, DDP across all N×G processes), follows the job and fails with it. In order
(:func:`run_stage`):

1. **Inputs onto the shared volume.** The task's input artifacts are local files of its own pod, which the
   Trainer's pods cannot see; each is copied once to ``<location>/<run id>/<track>/<stage>.trainjob/inputs/<key>``
   on the profile's checkpoints volume (``checkpoints: {location, pvc}``), which both the task's pod and every
   Trainer pod mount at ``location``. A copy is written under a temporary name and renamed when complete, so a
   retried task reuses finished copies.
2. **The job object** (:func:`build_trainjob`), built from the SDK's own models
   (``kubeflow_trainer_api.models``): ``runtimeRef`` the profile's runtime (default ``torch-distributed``);
   ``trainer`` {image = ``pipeline.base_image``, command = ``python -m torch.distributed.run … -m vidpred.cli
   train STAGE …`` (:func:`stage_command`), ``numNodes`` N, ``numProcPerNode`` G, ``resourcesPerNode`` (the
   task kind's ``resources`` plus G accelerators), env}; ``runtimePatches`` for the ``node`` pods: the volume
   and its mount, the GPU toleration and node selector of the profile's ``gpu`` section;
   ``activeDeadlineSeconds`` = the timeout, so the cluster stops the job even if the following task is gone.
   The Trainer's torch runtime gives each pod its rank and the master's address (``PET_*`` variables); the
   command refers to them as ``$(PET_…)``, which Kubernetes expands. The job's name is derived from (run id,
   track, stage): a retried task finds its job again.
3. **Submit and follow** (:func:`submit_and_wait`): create the TrainJob (if one of that name exists — a
   retried task — it is followed; a failed one is deleted and created again, the stage resuming from its
   checkpoints), poll its conditions, print each change of state, return on ``Complete``, raise a one-line
   :class:`~vidpred.errors.VidpredError` on ``Failed`` (after printing the last log lines of node 0) or when
   the timeout passes (the job is deleted then).
4. **The model back.** ``train.out_dir`` of the job is ``…/<stage>.trainjob/out`` on the volume; it is copied
   into the task's model artifact, so downstream tasks see the same artifact as from a single-pod stage.

MLflow: the job's pods get ``MLFLOW_TRACKING_URI`` and the ``VIDPRED_*`` nesting variables of the task
(:data:`FORWARDED_ENV`) plus the profile's ``pipeline.env``, so rank 0's stage run nests under the pipeline's
parent run. Secrets are never copied into the job object (it is stored in the cluster): credentials the
training pods need must come from the runtime's pod template.

**SDK.** ``kubeflow`` (0.5, the Kubeflow SDK for Kubeflow Trainer v2), not ``kubeflow-training`` (1.9, the
Training Operator v1's ``PyTorchJob`` client). Trainer v2 is the maintained line: the Training Operator v1 was
superseded by it (Kubeflow 1.10) and receives only fixes, and its SDK generates ``PyTorchJob`` objects for a
controller new clusters no longer install. The Kubeflow SDK's ``TrainerClient.train`` builds a TrainJob only
from its own trainer types and looks the runtime up on the cluster (reading ``ClusterTrainingRuntimes`` needs
cluster-wide RBAC), so the job is built here with the same models it uses — renderable and checkable offline
— and created, read and deleted through the client's Kubernetes API handle, as ``TrainerClient`` does. Its
``get_job`` / ``wait_for_job_status`` are not used: they also resolve the runtime and drop the failure
message, which the condition carries.

RBAC (``k8s/rbac.yaml``): the pipeline's service account needs ``create``, ``get``, ``list``, ``watch``,
``delete`` on ``trainjobs.trainer.kubeflow.org`` in its namespace, and ``get``/``list`` on ``pods`` and
``pods/log`` for the failure log tail.

Tested here: the job object (built, serialised, validated by the SDK's models), the command, the status
interpretation and the polling loop (with an injected clock). The path against a live Kubernetes API
(:func:`submit_and_wait`'s create/get/delete calls) is not tested here: there is no cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from vidpred.errors import VidpredError

RUNTIME = "torch-distributed"  # the Trainer's default torch ClusterTrainingRuntime (kubeflow SDK constants)
NODE = "node"  # the runtime's replicated job and container that run the trainer
MANAGER = "vidpred.dev/pipeline"  # owner of our runtime patch (runtimePatches are keyed by manager)
VOLUME = "vidpred-checkpoints"
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "VIDPRED_PARENT_RUN_ID", "VIDPRED_DATA_MD5", "VIDPRED_TRACK",
                 "VIDPRED_DATASET", "VIDPRED_HOME", "VIDPRED_ARTIFACT_ROOT", "MLFLOW_S3_ENDPOINT_URL")
RESOURCE_FIELDS = {"cpu_request": ("requests", "cpu"), "cpu_limit": ("limits", "cpu"),
                   "memory_request": ("requests", "memory"), "memory_limit": ("limits", "memory")}
CREATED, RUNNING, COMPLETE, FAILED, SUSPENDED = "Created", "Running", "Complete", "Failed", "Suspended"


# ------------------------------------------------------------------------------------------ settings

@dataclass(frozen=True)
class TrainJobSettings:
    """Everything about a multi-node stage that comes from the profile (compiled into the task as JSON)."""

    image: str
    nodes: int
    gpus: int  # per node; 0: CPU pods, one process each
    mount_path: str  # checkpoints.location: where the shared volume is mounted in every pod
    pvc: str  # checkpoints.pvc
    runtime: str = RUNTIME
    gpu_type: str = "nvidia.com/gpu"
    resources: dict = field(default_factory=dict)  # {cpu_request, cpu_limit, memory_request, memory_limit}
    tolerations: list = field(default_factory=list)  # Kubernetes tolerations (dicts)
    node_selector: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # pipeline.env
    # the profile's cluster.config_map_env / cluster.secret_env, {OBJECT: {KEY: ENV}}: references the job's pods
    # resolve themselves (e.g. the MLflow login rank 0 needs), never values
    config_map_env: dict = field(default_factory=dict)
    secret_env: dict = field(default_factory=dict)
    timeout_s: int = 7 * 24 * 3600
    poll_s: int = 30
    namespace: str = ""  # empty: the namespace of the task's pod

    @property
    def nproc(self) -> int:
        return max(self.gpus, 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | Mapping) -> "TrainJobSettings":
        raw = json.loads(text) if isinstance(text, str) else dict(text)
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise VidpredError(f"trainjob settings: unknown key {unknown[0]!r}")
        settings = cls(**raw)
        counts = (settings.nodes, settings.gpus, settings.timeout_s, settings.poll_s)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts) or \
                settings.nodes < 1 or settings.gpus < 0 or settings.timeout_s < 1 or settings.poll_s < 1:
            raise VidpredError("trainjob settings: integers nodes ≥ 1, gpus ≥ 0, timeout_s and poll_s ≥ 1, "
                               f"got {raw}")
        if not settings.pvc or not settings.mount_path.startswith("/"):
            raise VidpredError("trainjob settings: a multi-node stage needs a PVC mounted at an absolute path, "
                               f"got pvc={settings.pvc!r} mount_path={settings.mount_path!r}")
        return settings


def settings_for(profile, kind: str, stage) -> TrainJobSettings:
    """The :class:`TrainJobSettings` of training stage ``stage`` (a ``vidpred.profile.StageSpec``) of task kind
    ``kind`` from a checked profile: image, resources of the kind, the ``gpu`` toleration / node selector,
    ``pipeline.env``, the checkpoints volume and the ``trainjob`` section."""
    gpu = dict(profile.gpu or {})
    tolerations, selector = [], {}
    if stage.gpus > 0:
        tol = dict(gpu.get("toleration") or {})
        if tol:
            operator = tol.get("operator") or ("Equal" if tol.get("value") is not None else "Exists")
            item = {"key": tol.get("key"), "operator": operator, "effect": tol.get("effect")}
            if operator == "Equal":
                item["value"] = str(tol.get("value"))
            tolerations.append({k: v for k, v in item.items() if v is not None})
        sel = dict(gpu.get("node_selector") or {})
        if sel:
            selector = {str(sel["label"]): str(sel["value"])}
    resources = dict(profile.resources.get(kind) or profile.resources.get("default") or {})
    job = dict(profile.trainjob or {})
    return TrainJobSettings(
        image=profile.base_image, nodes=stage.nodes, gpus=stage.gpus, mount_path=profile.checkpoints["location"],
        pvc=profile.checkpoints["pvc"], runtime=job.get("runtime", RUNTIME),
        gpu_type=str(gpu.get("type") or "nvidia.com/gpu"), resources={k: str(v) for k, v in resources.items()},
        tolerations=tolerations, node_selector=selector, env=dict(profile.env),
        config_map_env=dict((profile.cluster or {}).get("config_map_env") or {}),
        secret_env=dict((profile.cluster or {}).get("secret_env") or {}),
        timeout_s=int(float(job.get("timeout_hours", 168)) * 3600), poll_s=int(job.get("poll_seconds", 30)),
        namespace=str(job.get("namespace") or ""))


# ------------------------------------------------------------------------------------------ the job object

def job_name(run_id: str, track: str, stage: str) -> str:
    """A DNS-1035 name (≤ 40 characters) that is the same for the same (run, track, stage): readable prefix +
    hash, so a retried task finds the job its first attempt created."""
    digest = hashlib.sha1(f"{run_id}/{track}/{stage}".encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]+", "-", f"{track}-{stage}".lower().replace("_", "-"))[:30].strip("-")
    name = f"{base}-{digest}" if base else f"vidpred-{digest}"
    return name if name[0].isalpha() else f"v{name}"[:40]


def _label(value: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", str(value))[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


RENDEZVOUS = {"--node-rank": "$(PET_NODE_RANK)", "--master-addr": "$(PET_MASTER_ADDR)",
              "--master-port": "$(PET_MASTER_PORT)"}


def stage_command(stage: str, config: str, overrides: Iterable[str], nproc: int, nnodes: int) -> list[str]:
    """The command of every pod of the job: ``vidpred.train.distributed.torchrun_command`` for ``nnodes`` ×
    ``nproc`` processes, with this pod's rank and the master's address and port as ``$(PET_…)`` references
    (:data:`RENDEZVOUS`): the Trainer's torch runtime sets ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and
    ``PET_MASTER_PORT`` in each pod and Kubernetes expands such references in a container's command."""
    from vidpred.train.distributed import torchrun_command

    cmd = [str(part) for part in torchrun_command(stage, config, list(overrides), nproc, nnodes=nnodes,
                                                  master_addr="$(PET_MASTER_ADDR)")]
    for flag, value in RENDEZVOUS.items():
        if flag in cmd:
            cmd[cmd.index(flag) + 1] = value
    return cmd


def _env_refs(m, settings: TrainJobSettings, taken: set) -> list:
    """Env vars of the job's pods from the profile's ConfigMap and Secret references (the same the pipeline's own
    pods get, vidpred.profile ``cluster``), except names ``taken`` by plain values (forwarded from the task)."""
    out = []
    for kind, refs in (("config_map", settings.config_map_env), ("secret", settings.secret_env)):
        for obj, keys in sorted(refs.items()):
            for key, name in sorted(keys.items()):
                if name in taken:
                    continue
                if kind == "secret":
                    source = m.IoK8sApiCoreV1EnvVarSource(secret_key_ref=m.IoK8sApiCoreV1SecretKeySelector(
                        name=obj, key=key))
                else:
                    source = m.IoK8sApiCoreV1EnvVarSource(config_map_key_ref=m.IoK8sApiCoreV1ConfigMapKeySelector(
                        name=obj, key=key))
                out.append(m.IoK8sApiCoreV1EnvVar(name=name, value_from=source))
    return out


def build_trainjob(name: str, settings: TrainJobSettings, command: list[str], env: Mapping[str, str],
                   labels: Mapping[str, str] | None = None):
    """The TrainJob object (``kubeflow_trainer_api.models.TrainerV1alpha1TrainJob``) for ``command`` on
    ``settings.nodes`` pods (see the module doc); ``.to_dict()`` is what is sent to the API server."""
    from kubeflow.trainer.constants import constants as c
    from kubeflow_trainer_api import models as m

    def quantity(value) -> Any:
        return m.IoK8sApimachineryPkgApiResourceQuantity(str(value))

    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for key, value in settings.resources.items():
        if key not in RESOURCE_FIELDS:
            raise VidpredError(f"trainjob resources: unknown setting {key!r} (known: {', '.join(RESOURCE_FIELDS)})")
        side, resource = RESOURCE_FIELDS[key]
        (requests if side == "requests" else limits)[resource] = quantity(value)
    if settings.gpus > 0:  # extended resources: request = limit
        requests[settings.gpu_type] = limits[settings.gpu_type] = quantity(settings.gpus)
    trainer = m.TrainerV1alpha1Trainer(
        image=settings.image, command=list(command), numNodes=settings.nodes, numProcPerNode=settings.nproc,
        resourcesPerNode=m.IoK8sApiCoreV1ResourceRequirements(requests=requests or None, limits=limits or None),
        env=[m.IoK8sApiCoreV1EnvVar(name=k, value=str(v)) for k, v in sorted(env.items())]
        + _env_refs(m, settings, set(env)) or None)
    claim = m.IoK8sApiCoreV1PersistentVolumeClaimVolumeSource(claimName=settings.pvc)
    pod = m.TrainerV1alpha1PodSpecPatch(
        volumes=[m.IoK8sApiCoreV1Volume(name=VOLUME, persistentVolumeClaim=claim)],
        containers=[m.TrainerV1alpha1ContainerPatch(name=NODE, volumeMounts=[
            m.IoK8sApiCoreV1VolumeMount(name=VOLUME, mountPath=settings.mount_path)])],
        tolerations=[m.IoK8sApiCoreV1Toleration.from_dict(t) for t in settings.tolerations] or None,
        nodeSelector=dict(settings.node_selector) or None)
    node = m.TrainerV1alpha1ReplicatedJobPatch(name=NODE, template=m.TrainerV1alpha1JobTemplatePatch(
        spec=m.TrainerV1alpha1JobSpecPatch(template=m.TrainerV1alpha1PodTemplatePatch(spec=pod))))
    jobset = m.TrainerV1alpha1JobSetTemplatePatch(spec=m.TrainerV1alpha1JobSetSpecPatch(replicatedJobs=[node]))
    runtime_spec = m.TrainerV1alpha1TrainingRuntimeSpecPatch(template=jobset)
    patch = m.TrainerV1alpha1RuntimePatch(manager=MANAGER, trainingRuntimeSpec=runtime_spec)
    return m.TrainerV1alpha1TrainJob(
        apiVersion=c.API_VERSION, kind=c.TRAINJOB_KIND,
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name, namespace=settings.namespace or None,
            labels={k: _label(v) for k, v in {"app.kubernetes.io/part-of": "vidpred", **(labels or {})}.items()}),
        spec=m.TrainerV1alpha1TrainJobSpec(
            runtimeRef=m.TrainerV1alpha1RuntimeRef(name=settings.runtime, kind="ClusterTrainingRuntime",
                                                   apiGroup=c.GROUP),
            trainer=trainer, runtimePatches=[patch], activeDeadlineSeconds=settings.timeout_s))


def trainer_env(extra: Mapping[str, str] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's environment: :data:`FORWARDED_ENV` from this process (when set) and ``extra`` (pipeline.env)."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in FORWARDED_ENV if environ.get(k)}
    env.update({str(k): str(v) for k, v in dict(extra).items()})
    return env


# ------------------------------------------------------------------------------------------ status

@dataclass(frozen=True)
class JobState:
    phase: str  # Created | Running | Complete | Failed | Suspended
    text: str  # one line for the task log
    message: str = ""  # the reason of a failure


def job_state(job) -> JobState:
    """Interpret a TrainJob (``TrainerV1alpha1TrainJob``, as read from the cluster): a ``Complete`` or ``Failed``
    condition that is ``True`` ends it; ``Suspended`` (e.g. queued by Kueue) waits; otherwise it is
    ``Running`` once every node pod is ready and ``Created`` before."""
    status = job.status
    nodes = (job.spec.trainer.num_nodes if job.spec and job.spec.trainer and job.spec.trainer.num_nodes else None)
    conditions = {c.type: c for c in (status.conditions or [])} if status else {}
    for kind in (FAILED, COMPLETE):
        cond = conditions.get(kind)
        if cond is not None and cond.status == "True":
            why = ": ".join(p for p in (cond.reason, " ".join((cond.message or "").split())) if p)
            return JobState(kind, f"{kind}{' (' + why + ')' if why else ''}", why)
    cond = conditions.get(SUSPENDED)
    if cond is not None and cond.status == "True":
        return JobState(SUSPENDED, f"Suspended ({cond.reason or 'waiting'})")
    jobs = {j.name: j for j in (status.jobs_status or [])} if status else {}
    node = jobs.get(NODE)
    ready = (node.ready + node.succeeded) if node is not None else 0
    want = nodes or (node.active + node.succeeded if node is not None else 0) or 1
    progress = ""
    trainer = status.trainer_status if status else None
    if trainer is not None and trainer.progress_percentage is not None:
        progress = f", {trainer.progress_percentage} %"
        if trainer.estimated_remaining_seconds is not None:
            progress += f", ~{trainer.estimated_remaining_seconds / 3600:.1f} h left"
    if node is not None and node.failed:
        progress += f", {node.failed} node pod(s) failed"
    if node is not None and ready >= want:
        return JobState(RUNNING, f"Running: {ready}/{want} node pod(s) ready{progress}")
    return JobState(CREATED, f"Created: {ready}/{want} node pod(s) ready{progress}")


class TrainJobTimeout(VidpredError):
    pass


def follow(fetch: Callable[[], Any], name: str, timeout: float, poll: float, *,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
           echo: Callable[[str], None] = print, heartbeat: float = 600.0) -> JobState:
    """Poll ``fetch()`` (→ a TrainJob model, or None when the API did not answer) every ``poll`` seconds until the
    job completes (→ its state), fails (→ VidpredError) or ``timeout`` seconds pass (→ TrainJobTimeout). A
    line is printed whenever the state changes, and every ``heartbeat`` seconds otherwise."""
    start = clock()
    last_text, last_echo, misses = None, start, 0
    while True:
        job = fetch()
        now = clock()
        elapsed = now - start
        if job is None:
            misses += 1
            if misses == 1:
                echo(f"TrainJob {name}: the Kubernetes API did not answer; retrying every {poll:g} s")
        else:
            misses = 0
            state = job_state(job)
            if state.text != last_text or now - last_echo >= heartbeat:
                echo(f"TrainJob {name}: {state.text} [{_duration(elapsed)}]")
                last_text, last_echo = state.text, now
            if state.phase == COMPLETE:
                return state
            if state.phase == FAILED:
                raise VidpredError(f"TrainJob {name} failed: {state.message or 'no reason given'}")
        if elapsed >= timeout:
            where = f"last state: {last_text}" if last_text else "no answer from the Kubernetes API"
            raise TrainJobTimeout(f"TrainJob {name} did not finish within {_duration(timeout)} ({where})")
        sleep(max(0.0, min(poll, timeout - elapsed)))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------------------------------ the cluster

def _client(namespace: str | None):
    """The Kubeflow SDK's TrainerClient (in-cluster config or kubeconfig, namespace of the pod by default)."""
    import logging

    from kubeflow.trainer import KubernetesBackendConfig, TrainerClient

    # the client reads the Trainer's version ConfigMap in kubeflow-system and only warns when it may not; the
    # pipeline's service account has no business there, so that warning is silenced
    log = logging.getLogger("kubeflow.trainer.backends.kubernetes.backend")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return TrainerClient(KubernetesBackendConfig(namespace=namespace or None))
    except Exception as exc:  # no kubeconfig / not in a pod
        raise VidpredError(f"cannot reach the Kubernetes API for the Trainer job: {exc}") from None
    finally:
        log.setLevel(level)


def submit_and_wait(job, timeout: float, poll: float, *, namespace: str | None = None,
                    echo: Callable[[str], None] = print) -> JobState:
    """Create ``job`` (a TrainJob model) and follow it to the end (see the module doc). Untested here: needs a
    cluster with Kubeflow Trainer."""
    from kubeflow.trainer.constants import constants as c
    from kubernetes.client import ApiException
    from kubeflow_trainer_api import models as m

    client = _client(namespace or job.metadata.namespace)
    api, ns = client.backend.custom_api, client.backend.namespace
    name = job.metadata.name
    body = job.to_dict()
    body["metadata"]["namespace"] = ns
    where = f"{ns}/{name}"

    def fetch(missing_ok: bool = False):
        try:
            return m.TrainerV1alpha1TrainJob.from_dict(api.get_namespaced_custom_object(
                c.GROUP, c.VERSION, ns, c.TRAINJOB_PLURAL, name))
        except ApiException as exc:
            if exc.status == 404:
                if missing_ok:
                    return "missing"
                raise VidpredError(f"TrainJob {where} was deleted while the pipeline followed it") from None
            return None  # transient: the loop retries until the timeout
        except Exception:
            return None

    def create():
        api.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.TRAINJOB_PLURAL, body)

    try:
        create()
        echo(f"created TrainJob {where}: {job.spec.trainer.num_nodes} node(s) × {job.spec.trainer.num_proc_per_node} "
             f"process(es), runtime {job.spec.runtime_ref.name}, image {job.spec.trainer.image}")
    except ApiException as exc:
        if exc.status != 409:
            raise VidpredError(f"cannot create TrainJob {where}: {exc.status} {exc.reason}") from None
        existing = fetch()
        if existing is not None and job_state(existing).phase == FAILED:  # a retried task: start it again
            echo(f"TrainJob {where} exists and failed earlier ({job_state(existing).message}); replacing it "
                 "(the stage resumes from its checkpoints)")
            client.delete_job(name)
            gone = follow_deletion(lambda: fetch(missing_ok=True), clock=time.monotonic, sleep=time.sleep)
            if not gone:
                raise VidpredError(f"TrainJob {where} could not be deleted to start it again") from None
            create()
        else:
            echo(f"TrainJob {where} exists (a retried task): following it")
    try:
        return follow(fetch, where, timeout, poll, echo=echo)
    except TrainJobTimeout:
        try:
            client.delete_job(name)
            echo(f"deleted TrainJob {where} after the timeout")
        except Exception:
            pass
        raise
    except VidpredError:
        for line in _node_log_tail(client, ns, name):
            echo(f"  node-0 | {line}")
        raise


def follow_deletion(fetch: Callable[[], Any], timeout: float = 300, poll: float = 2, *,
                    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait until ``fetch()`` answers ``"missing"``; False after ``timeout`` seconds."""
    start = clock()
    while clock() - start < timeout:
        if fetch() == "missing":
            return True
        sleep(poll)
    return False


def _node_log_tail(client, namespace: str, name: str, lines: int = 20) -> list[str]:
    """The last log lines of the job's node-0 pod (best effort: empty when they cannot be read)."""
    from kubeflow.trainer.constants import constants as c

    try:
        pods = client.backend.core_api.list_namespaced_pod(
            namespace, label_selector=f"{c.JOBSET_NAME_LABEL}={name},{c.JOBSET_RJOB_NAME_LABEL}={NODE}").items
        pods = [p for p in pods if (p.metadata.labels or {}).get(c.JOB_INDEX_LABEL, "0") == "0"] or pods
        if not pods:
            return []
        text = client.backend.core_api.read_namespaced_pod_log(pods[0].metadata.name, namespace, container=NODE,
                                                               tail_lines=lines)
        return text.splitlines()[-lines:]
    except Exception:
        return []


# ------------------------------------------------------------------------------------------ one stage

def workspace(settings: TrainJobSettings, run_id: str, track: str, stage: str) -> Path:
    """``<location>/<run id>/<track>/<stage>.trainjob`` on the shared volume (beside the stage's checkpoints)."""
    return Path(settings.mount_path) / run_id / (track or "track") / f"{stage}.trainjob"


def stage_inputs(inputs: Mapping[str, str], where: Path, echo: Callable[[str], None] = print) -> dict[str, str]:
    """Copy each input (config key → a local file or folder) to ``where/<key>/<name>`` unless a finished copy is
    there; return config key → the copy's path."""
    from vidpred.fsutil import atomic_dir

    staged = {}
    for key, path in inputs.items():
        src = Path(path)
        if not src.exists():
            raise VidpredError(f"input {key}={src} does not exist: nothing to hand to the Trainer job")
        target = where / re.sub(r"[^A-Za-z0-9._-]+", "_", key)
        copy = target / src.name
        if not target.is_dir():
            with atomic_dir(target) as tmp:
                if src.is_dir():
                    shutil.copytree(src, tmp / src.name)
                else:
                    shutil.copy2(src, tmp / src.name)
            echo(f"staged {key}: {src} → {copy}")
        staged[key] = str(copy)
    return staged


def run_stage(stage: str, config: str, overrides: Iterable[str], *, inputs: Mapping[str, str], out_dir: str,
              settings: TrainJobSettings | str, run_id: str, track: str, ckpt_dir: str = "",
              echo: Callable[[str], None] = print) -> str:
    """Run training stage ``stage`` (a ``vidpred.train`` module name) as a TrainJob and copy its output into
    ``out_dir`` (see the module doc); return a one-line description of the job."""
    if isinstance(settings, str):
        settings = TrainJobSettings.from_json(settings)
    if not run_id:
        raise VidpredError(f"stage {stage}: a Trainer job needs the pipeline run id (its data and checkpoints are "
                           "kept per run)")
    space = workspace(settings, run_id, track, stage)
    staged = stage_inputs(inputs, space / "inputs", echo=echo)
    remote_out = space / "out"
    args = list(overrides) + [f"{k}={v}" for k, v in staged.items()] + [f"train.out_dir={remote_out}"]
    if ckpt_dir:
        args.append(f"train.ckpt_dir={ckpt_dir}")
    command = stage_command(stage, config, args, settings.nproc, settings.nodes)
    name = job_name(run_id, track, stage)
    job = build_trainjob(name, settings, command, trainer_env(settings.env),
                         labels={"vidpred.dev/track": track, "vidpred.dev/stage": stage, "vidpred.dev/run-id": run_id})
    submit_and_wait(job, settings.timeout_s, settings.poll_s, namespace=settings.namespace or None, echo=echo)
    if not remote_out.is_dir():
        raise VidpredError(f"TrainJob {name} completed but wrote nothing to {remote_out}")
    shutil.copytree(remote_out, out_dir, dirs_exist_ok=True)
    return (f"TrainJob {name}: {settings.nodes} node(s) × {settings.nproc} process(es)"
            f"{f' on {settings.gpus} GPU(s) each' if settings.gpus else ''}")


__all__ = ["TrainJobSettings", "settings_for", "job_name", "stage_command", "build_trainjob", "trainer_env",
           "JobState", "job_state", "follow", "TrainJobTimeout", "submit_and_wait", "stage_inputs", "run_stage",
           "workspace"]
