"""Multi-node training stages as Kubeflow Trainer TrainJobs (vidpred.trainjob) and the launch side of
vidpred.orchestrate.run_training_stage.

What is tested: the TrainJob object the pipeline task would create (built with the Kubeflow SDK's models,
serialised, parsed back and compared; nodes, processes and GPUs per node, image, command, env, volume, scheduling),
the settings taken from the paper profile, the interpretation of TrainJob status objects built with the SDK's
models, the polling loop with an injected clock, input staging, the environment handed to the job, the per-run
checkpoint directory and the summary of a stage trained in other processes.
Not tested here (no cluster): submit_and_wait's create / get / delete calls against a live Kubernetes API with
Kubeflow Trainer installed.
"""

import json
import re

import pytest

from vidpred.errors import VidpredError
from vidpred.trainjob import (COMPLETE, CREATED, FAILED, RUNNING, SUSPENDED, TrainJobSettings, TrainJobTimeout,
                              build_trainjob, follow, job_name, job_state, settings_for, stage_command, stage_inputs,
                              trainer_env)

SETTINGS = TrainJobSettings(
    image="registry.example.com/vidpred:0.1.0", nodes=2, gpus=4, mount_path="/mnt/checkpoints",
    pvc="vidpred-pipeline-data", resources={"cpu_request": "8", "cpu_limit": "16", "memory_request": "32G",
                                            "memory_limit": "64G"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}, env={"VIDPRED_HOME": "/data"},
    timeout_s=3600, poll_s=10)


def models():
    from kubeflow_trainer_api import models as m

    return m


def paper_job(settings=SETTINGS, overrides=("data.moso_store=/mnt/checkpoints/r/moso-kth/in",)):
    command = stage_command("moso_vqvae", "paper/moso-vqvae-kth64", list(overrides), settings.nproc, settings.nodes)
    env = trainer_env(settings.env, environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000",
                                             "VIDPRED_PARENT_RUN_ID": "abc123", "VIDPRED_TRACK": "moso-kth"})
    name = job_name("5f0c9a4e-run", "moso-kth", "moso_vqvae")
    return build_trainjob(name, settings, command, env, labels={"vidpred.dev/track": "moso-kth"}), command


# ------------------------------------------------------------------------------------------ the job object

def test_trainjob_round_trips_through_the_sdk_models():
    m = models()
    job, command = paper_job()
    assert isinstance(job, m.TrainerV1alpha1TrainJob)
    body = job.to_dict()  # what submit_and_wait sends
    again = m.TrainerV1alpha1TrainJob.from_dict(json.loads(json.dumps(body)))  # through JSON, as the API server
    assert again.to_dict() == body
    assert m.TrainerV1alpha1TrainJob.from_json(job.to_json()).to_dict() == body

    assert (body["apiVersion"], body["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert body["spec"]["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                          "apiGroup": "trainer.kubeflow.org"}
    trainer = body["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["image"] == "registry.example.com/vidpred:0.1.0"
    res = trainer["resourcesPerNode"]
    assert res["requests"] == {"cpu": "8", "memory": "32G", "nvidia.com/gpu": "4"}  # GPUs per node, not in total
    assert res["limits"] == {"cpu": "16", "memory": "64G", "nvidia.com/gpu": "4"}
    assert trainer["command"] == command
    assert body["spec"]["activeDeadlineSeconds"] == 3600  # the cluster ends the job even without the task


def test_trainjob_command_is_torchrun_of_the_stage_with_the_runtimes_rendezvous():
    job, _ = paper_job()
    cmd = job.spec.trainer.command
    text = " ".join(cmd)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc-per-node") + 1] == "4" and cmd[cmd.index("--nnodes") + 1] == "2"
    # rank, master address and port are per pod: Kubernetes expands the Trainer's PET_* variables in the command
    assert cmd[cmd.index("--node-rank") + 1] == "$(PET_NODE_RANK)"
    assert cmd[cmd.index("--master-addr") + 1] == "$(PET_MASTER_ADDR)"
    assert cmd[cmd.index("--master-port") + 1] == "$(PET_MASTER_PORT)"
    assert "--standalone" not in cmd
    assert "-m vidpred.cli train moso-vqvae --config paper/moso-vqvae-kth64" in text
    assert "--set data.moso_store=/mnt/checkpoints/r/moso-kth/in" in text


def test_trainjob_env_volume_and_scheduling():
    job, _ = paper_job()
    body = job.to_dict()
    env = {e["name"]: e["value"] for e in body["spec"]["trainer"]["env"]}
    assert env == {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "VIDPRED_PARENT_RUN_ID": "abc123",
                   "VIDPRED_TRACK": "moso-kth", "VIDPRED_HOME": "/data"}  # rank 0 nests its run under the parent
    [patch] = body["spec"]["runtimePatches"]
    assert patch["manager"]
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    pod = node["template"]["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    assert volume["persistentVolumeClaim"] == {"claimName": "vidpred-pipeline-data"}
    [container] = pod["containers"]
    assert container["name"] == "node"
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/mnt/checkpoints"}]
    assert pod["tolerations"] == SETTINGS.tolerations
    assert pod["nodeSelector"] == SETTINGS.node_selector
    meta = body["metadata"]
    assert meta["labels"] == {"app.kubernetes.io/part-of": "vidpred", "vidpred.dev/track": "moso-kth"}


def test_cpu_trainjob_requests_no_accelerator():
    settings = TrainJobSettings(image="vidpred:0.1.0", nodes=3, gpus=0, mount_path="/mnt/c", pvc="data")
    job, _ = paper_job(settings)
    trainer = job.to_dict()["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 1)
    assert "resourcesPerNode" not in trainer or not trainer["resourcesPerNode"]
    pod = job.to_dict()["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert "tolerations" not in pod["template"]["spec"]["template"]["spec"]


def test_sdk_models_reject_a_malformed_job():
    from pydantic import ValidationError

    m = models()
    body = paper_job()[0].to_dict()
    body["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(ValidationError):
        m.TrainerV1alpha1TrainJob.from_dict(body)
    del body["spec"]["runtimeRef"]
    body["spec"]["trainer"]["numNodes"] = 2
    with pytest.raises(ValidationError):
        m.TrainerV1alpha1TrainJob.from_dict(body)


def test_job_name_is_stable_per_run_track_and_stage_and_a_valid_name():
    a = job_name("5f0c9a4e-1111", "moso-kth", "moso_vqvae")
    assert a == job_name("5f0c9a4e-1111", "moso-kth", "moso_vqvae")  # a retried task finds its job
    assert a != job_name("5f0c9a4e-2222", "moso-kth", "moso_vqvae") != job_name("5f0c9a4e-1111", "moso-kth",
                                                                                 "moso_transformer")
    odd = job_name("r", "9-track-with-a-very-long-name-indeed-here", "landmark_dynamics")
    for name in (a, odd, job_name("r", "", "")):
        assert len(name) <= 40 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
    assert a.startswith("moso-kth-moso-vqvae-")


def test_settings_round_trip_and_reject_bad_values():
    assert TrainJobSettings.from_json(SETTINGS.to_json()) == SETTINGS
    with pytest.raises(VidpredError, match="unknown key 'gpu'"):
        TrainJobSettings.from_json({**json.loads(SETTINGS.to_json()), "gpu": 1})
    with pytest.raises(VidpredError, match="integers nodes ≥ 1"):
        TrainJobSettings.from_json({**json.loads(SETTINGS.to_json()), "nodes": 0})
    with pytest.raises(VidpredError, match="PVC mounted at an absolute path"):
        TrainJobSettings.from_json({**json.loads(SETTINGS.to_json()), "pvc": ""})


def test_settings_for_a_paper_stage_on_two_nodes():
    from vidpred.profile import load_profile

    profile = load_profile("paper", ["tracks.moso-kth.stages.moso_vqvae.nodes=2"], only=["moso-kth"])
    stage = profile.tracks["moso-kth"].stages["moso_vqvae"]
    s = settings_for(profile, "train_moso_vqvae", stage)
    assert (s.nodes, s.gpus, s.nproc) == (2, 4, 4)  # MOSO §4: 4 GPUs per node
    assert (s.image, s.runtime) == ("vidpred:0.1.0", "torch-distributed")
    assert (s.pvc, s.mount_path) == ("vidpred-pipeline-data", "/data")  # where every task of the profile mounts it
    # resources.train_moso_vqvae: for each pod of the job
    assert s.resources == {"cpu_request": "8", "cpu_limit": "16", "memory_request": "32G", "memory_limit": "64G"}
    assert s.tolerations == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    assert s.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert (s.timeout_s, s.poll_s) == (168 * 3600, 30)
    # the job's pods get the cluster section's references (rank 0 logs to an MLflow behind its login; DVC keys)
    assert s.secret_env["vidpred-mlflow-auth"] == {"MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                                                   "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD"}
    body = paper_job(s)[0].to_dict()
    models().TrainerV1alpha1TrainJob.from_dict(body)  # still a valid job for the SDK
    env = {e["name"]: e for e in body["spec"]["trainer"]["env"]}
    assert env["MLFLOW_TRACKING_PASSWORD"] == {"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": "vidpred-mlflow-auth", "key": "MLFLOW_TRACKING_PASSWORD"}}}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "vidpred-dvc"
    assert env["VIDPRED_DVC_REMOTE"]["valueFrom"] == {
        "configMapKeyRef": {"name": "vidpred-tracking", "key": "VIDPRED_DVC_REMOTE"}}
    # a value the task forwards wins over the ConfigMap's (the task's own MLflow URI and home)
    assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"}
    assert not any("value" in e and "PASSWORD" in name for name, e in env.items())


# ------------------------------------------------------------------------------------------ status

def state_of(status: dict | None, nodes: int = 2):
    """A TrainJob as the API server returns it (parsed with the SDK's model), with ``status``."""
    body = paper_job()[0].to_dict()
    body["spec"]["trainer"]["numNodes"] = nodes
    body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    if status is not None:
        body["status"] = status
    return models().TrainerV1alpha1TrainJob.from_dict(body)


def cond(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason or kind, "message": message,
            "lastTransitionTime": "2026-01-01T01:00:00Z"}


def node(ready: int, active: int = 0, succeeded: int = 0, failed: int = 0) -> dict:
    return {"name": "node", "ready": ready, "active": active, "succeeded": succeeded, "failed": failed,
            "suspended": 0}


def test_job_state_from_status_objects():
    assert job_state(state_of(None)).phase == CREATED  # just created: no status yet
    s = job_state(state_of({"jobsStatus": [node(ready=1, active=2)]}))
    assert s.phase == CREATED and "1/2" in s.text
    s = job_state(state_of({"jobsStatus": [node(ready=2, active=2)], "trainerStatus": {"progressPercentage": 40}}))
    assert s.phase == RUNNING and "2/2" in s.text and "40 %" in s.text
    s = job_state(state_of({"conditions": [cond("Complete", reason="JobsCompleted", message="jobs completed")],
                            "jobsStatus": [node(ready=0, succeeded=2)]}))
    assert s.phase == COMPLETE
    s = job_state(state_of({"conditions": [cond("Failed", reason="DeadlineExceeded",
                                                message="TrainJob exceeded\nits deadline")]}))
    assert s.phase == FAILED and s.message == "DeadlineExceeded: TrainJob exceeded its deadline"
    s = job_state(state_of({"conditions": [cond("Suspended", reason="Queued")]}))
    assert s.phase == SUSPENDED and "Queued" in s.text
    # a condition that is not True does not end the job
    s = job_state(state_of({"conditions": [cond("Failed", status="False"), cond("Complete", status="False")],
                            "jobsStatus": [node(ready=2, active=2)]}))
    assert s.phase == RUNNING


class Clock:
    """Time that moves only when the loop sleeps (the injected clock of ``follow``)."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_follow_prints_changes_and_returns_on_complete():
    states = iter([state_of(None), state_of(None), state_of({"jobsStatus": [node(ready=2, active=2)]}),
                   state_of({"jobsStatus": [node(ready=2, active=2)]}),
                   state_of({"conditions": [cond("Complete")], "jobsStatus": [node(ready=0, succeeded=2)]})])
    clock, lines = Clock(), []
    final = follow(lambda: next(states), "ns/job", timeout=3600, poll=30, clock=clock, sleep=clock.sleep,
                   echo=lines.append)
    assert final.phase == COMPLETE
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["Created", "Running", "Complete"]
    assert clock.sleeps == [30, 30, 30, 30]


def test_follow_raises_one_line_on_failure():
    states = iter([state_of({"jobsStatus": [node(ready=2, active=2)]}),
                   state_of({"conditions": [cond("Failed", reason="BackoffLimitExceeded",
                                                 message="node-1 exited with code 1\nsee its log")]})])
    clock = Clock()
    with pytest.raises(VidpredError) as err:
        follow(lambda: next(states), "ns/job", timeout=3600, poll=5, clock=clock, sleep=clock.sleep,
               echo=lambda _: None)
    assert str(err.value) == "TrainJob ns/job failed: BackoffLimitExceeded: node-1 exited with code 1 see its log"


def test_follow_times_out_with_the_last_state_and_never_oversleeps():
    clock, lines = Clock(), []
    running = state_of({"jobsStatus": [node(ready=2, active=2)]})
    with pytest.raises(TrainJobTimeout) as err:
        follow(lambda: running, "ns/job", timeout=100, poll=30, clock=clock, sleep=clock.sleep, echo=lines.append,
               heartbeat=60)
    assert "did not finish within 100 s" in str(err.value) and "Running" in str(err.value)
    assert clock.sleeps == [30, 30, 30, 10]  # the last sleep ends exactly at the timeout
    assert clock.now - 1000.0 == 100
    assert len(lines) == 2  # the state once, and one heartbeat after 60 s


def test_follow_keeps_polling_while_the_api_does_not_answer():
    answers = iter([None, None, state_of({"conditions": [cond("Complete")]})])
    clock, lines = Clock(), []
    assert follow(lambda: next(answers), "ns/job", 600, 10, clock=clock, sleep=clock.sleep,
                  echo=lines.append).phase == COMPLETE
    assert sum("did not answer" in line for line in lines) == 1
    clock = Clock()
    with pytest.raises(TrainJobTimeout, match="no answer from the Kubernetes API"):
        follow(lambda: None, "ns/job", 60, 10, clock=clock, sleep=clock.sleep, echo=lambda _: None)


def test_submit_without_a_cluster_is_one_clear_error(monkeypatch, tmp_path):
    from vidpred.trainjob import submit_and_wait

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    with pytest.raises(VidpredError, match="cannot reach the Kubernetes API"):
        submit_and_wait(paper_job()[0], timeout=10, poll=1, echo=lambda _: None)


# ------------------------------------------------------------------------------------------ staging, env

def test_stage_inputs_copies_files_and_folders_once(tmp_path):
    store = tmp_path / "artifacts" / "store"
    (store / "shards").mkdir(parents=True)
    (store / "shards" / "0.npy").write_bytes(b"x" * 10)
    model = tmp_path / "artifacts" / "vqvae" / "moso_vqvae.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    where = tmp_path / "volume" / "inputs"
    lines = []
    staged = stage_inputs({"data.store": str(store), "vqvae": str(model)}, where, echo=lines.append)
    assert staged == {"data.store": str(where / "data.store" / "store"),
                      "vqvae": str(where / "vqvae" / "moso_vqvae.pt")}
    assert (where / "data.store" / "store" / "shards" / "0.npy").read_bytes() == b"x" * 10
    assert (where / "vqvae" / "moso_vqvae.pt").read_bytes() == b"weights"
    assert len(lines) == 2
    model.write_bytes(b"changed")  # a retried task reuses the finished copy
    assert stage_inputs({"vqvae": str(model)}, where, echo=lines.append) == {"vqvae": staged["vqvae"]}
    assert (where / "vqvae" / "moso_vqvae.pt").read_bytes() == b"weights" and len(lines) == 2
    assert not [p for p in where.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    with pytest.raises(VidpredError, match="data.tokens=.*does not exist"):
        stage_inputs({"data.tokens": str(tmp_path / "missing")}, where)


def test_trainer_env_forwards_tracking_and_nesting_but_no_secrets():
    environ = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "VIDPRED_PARENT_RUN_ID": "p1", "VIDPRED_DATA_MD5": "",
               "AWS_SECRET_ACCESS_KEY": "s3cr3t", "MINIO_ROOT_PASSWORD": "pw", "HOME": "/root"}
    env = trainer_env({"OMP_NUM_THREADS": 4}, environ=environ)
    assert env == {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "VIDPRED_PARENT_RUN_ID": "p1", "OMP_NUM_THREADS": "4"}


# ------------------------------------------------------------------------------------------ orchestrate side

def test_checkpoint_dir_is_per_run_track_and_stage():
    from vidpred.orchestrate import checkpoint_dir

    assert checkpoint_dir("/mnt/checkpoints", "9f1c", "moso-kth", "moso_vqvae") == \
        "/mnt/checkpoints/9f1c/moso-kth/moso_vqvae"
    assert checkpoint_dir("s3://bucket/ckpt/", "9f1c", "t", "corrwise") == "s3://bucket/ckpt/9f1c/t/corrwise"
    with pytest.raises(VidpredError, match="run id was not filled in"):  # never share one folder between runs
        checkpoint_dir("/mnt/checkpoints", "{{$.pipeline_job_uuid}}", "moso-kth", "moso_vqvae")
    with pytest.raises(VidpredError, match="run id was not filled in"):
        checkpoint_dir("/mnt/checkpoints", "", "moso-kth", "moso_vqvae")


def test_launched_stage_summary_reads_rank_0_metrics(tmp_path):
    from vidpred.orchestrate import LaunchedStage

    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (
        {"step": 10, "train/loss": 0.5}, {"step": 20, "train/loss": 0.25, "val/psnr": 21.5},
        {"step": 20, "final/psnr": 22.0, "note": "text"})) + "\nnot json\n")
    result = LaunchedStage.read("moso_vqvae", tmp_path, "torchrun, 4 processes")
    assert (result.step, result.train.step) == (20, 20)
    assert result.metrics == {"train/loss": 0.25, "val/psnr": 21.5, "final/psnr": 22.0}
    assert result.keypoints is None
    assert "trained to step 20 (torchrun, 4 processes)" in result.describe()
    assert LaunchedStage.read("x", tmp_path / "missing", "torchrun").step == 0


@pytest.mark.slow
def test_run_training_stage_under_torchrun_nests_and_checkpoints_per_run(tmp_path):
    """Two CPU processes (gloo) under torchrun, started by run_training_stage as the components do: the MLflow
    nesting variables reach the workers (rank 0's run is a child of the parent run, tagged with the track), the
    checkpoints go to <checkpoints>/<run id>/<track>/<stage>, and the summary comes from rank 0's metrics."""
    import mlflow

    from vidpred.data.sources.toycar import SOURCE
    from vidpred.data.store import StoreWriter
    from vidpred.orchestrate import LaunchedStage, run_training_stage

    store = tmp_path / "toycar"
    with StoreWriter(store, {"dataset": "toycar", "size": 32, "clip_len": 4, "options": {}}) as w:
        for v in SOURCE.iter_videos(None, {"num_videos": 4, "frames": 8, "size": 16}):
            w.add(v.video_id, v.split, v.frames, fps=v.fps, source=v.source)
    client = mlflow.MlflowClient()
    experiment = client.create_experiment(f"ddp-{tmp_path.name}")
    parent = client.create_run(experiment).info.run_id
    out = tmp_path / "model"
    result = run_training_stage(
        "corrwise", "smoke/corrwise", ["train.max_steps=3", "train.ckpt_every=3", "train.sample_every=3",
                                       "train.log_every=1", "train.batch_size=2", "model.ngf=4", "train.device=cpu"],
        inputs={"data.store": str(store)}, out_dir=str(out), nproc=2, checkpoints=str(tmp_path / "ckpt"),
        run_id="run-7", track="corrwise-t", parent_run_id=parent, data_md5="abc")
    assert isinstance(result, LaunchedStage) and result.step == 3 and "train/loss" in result.metrics
    assert sorted(p.name for p in (tmp_path / "ckpt" / "run-7" / "corrwise-t" / "corrwise").iterdir()) == \
        ["step-000003.pt"]
    [child] = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert child.data.tags.get("vidpred.track") == "corrwise-t" and child.info.status == "FINISHED"


def test_a_failed_launch_is_recorded_once(tmp_path):
    """A stage whose workers opened its MLflow run (which then holds the error) is not recorded a second time by
    the launching task; one whose workers failed before that is."""
    import time

    import mlflow

    from vidpred.orchestrate import _failure_recorded

    client = mlflow.MlflowClient()
    experiment = client.create_experiment(f"launch-{tmp_path.name}")
    parent = client.create_run(experiment).info.run_id
    since = int(time.time() * 1000) - 1000
    assert not _failure_recorded("moso_vqvae", parent, since)
    client.create_run(experiment, tags={"mlflow.parentRunId": parent, "vidpred.stage": "moso_vqvae"})
    assert _failure_recorded("moso_vqvae", parent, since)
    assert not _failure_recorded("corrwise", parent, since)  # another stage's run
    assert not _failure_recorded("moso_vqvae", parent, since + 3_600_000)  # a run of an earlier attempt
