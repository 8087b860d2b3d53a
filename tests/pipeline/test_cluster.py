"""The profile's `cluster` section on every task of the compiled paper pipeline (ConfigMap and Secret environment,
the data volume, image pull secret, timeout, retries with backoff, GPU scheduling), its schema errors, the names it
shares with k8s/, and the pipeline's own MLflow parent run against a real `mlflow server` on loopback with the
environment a pod gets from the ConfigMap. No Kubernetes cluster or KFP backend runs here: the YAML is what KFP
would execute, and the parent-run tasks run through kfp.local."""

import json
from pathlib import Path

import pytest
import yaml

from tests.servers import MlflowServer
from vidpred.config import CONFIG_DIR, REPO_ROOT
from vidpred.errors import VidpredError
from vidpred.orchestrate import compile_pipeline
from vidpred.profile import TASK_KINDS, load_profile

K8S = REPO_ROOT / "k8s"
PAPER = CONFIG_DIR / "paper" / "pipeline.yaml"
RUN_TASKS = ("open-parent-run", "close-parent-run")


def load_docs(path):
    spec, platform = list(yaml.safe_load_all(Path(path).read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def all_tasks(spec) -> dict:
    """Every task of the pipeline, also those inside the exit handler's group (without the group itself)."""
    tasks = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            tasks.update(component["dag"]["tasks"])
        else:
            tasks[name] = task
    return tasks


def kind_of(task: str) -> str:
    if task.startswith("evaluate-"):
        return "evaluate"
    return next(k for k in sorted(TASK_KINDS, key=len, reverse=True) if task == k.replace("_", "-")
                or task.endswith("-" + k.replace("_", "-")))


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    out = compile_pipeline("paper", tmp_path_factory.mktemp("cluster") / "paper.yaml")
    spec, k8s = load_docs(out)
    return spec, k8s, load_profile("paper"), out.read_text()


# ------------------------------------------------------------------------------------------ every task of the paper YAML

def test_every_paper_task_gets_the_tracking_configmap_secrets_volume_and_pull_secret(paper):
    spec, k8s, profile, _ = paper
    tasks = all_tasks(spec)
    assert len(tasks) == 45 and set(RUN_TASKS) <= set(tasks)  # 43 stage tasks + the parent run's two
    for name, task in tasks.items():
        ex = k8s[task["componentRef"]["name"].replace("comp-", "exec-")]
        [cm] = ex["configMapAsEnv"]
        assert cm["configMapName"] == "vidpred-tracking" and not cm["optional"], name
        assert {(m["configMapKey"], m["envVar"]) for m in cm["keyToEnv"]} == {
            ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"), ("VIDPRED_HOME", "VIDPRED_HOME"),
            ("VIDPRED_DVC_REMOTE", "VIDPRED_DVC_REMOTE"), ("VIDPRED_DVC_ENDPOINT_URL", "VIDPRED_DVC_ENDPOINT_URL")}, name
        secrets = {s["secretName"]: {(m["secretKey"], m["envVar"]) for m in s["keyToEnv"]} for s in ex["secretAsEnv"]}
        assert secrets == {
            "vidpred-mlflow-auth": {("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_USERNAME"),
                                    ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_PASSWORD")},
            "vidpred-dvc": {("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
                            ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")}}, name
        [mount] = ex["pvcMount"]  # the data volume once, also where training tasks checkpoint (checkpoints.location)
        assert (mount["constant"], mount["mountPath"]) == ("vidpred-pipeline-data", "/data"), name
        assert [s["secretName"] for s in ex["imagePullSecret"]] == ["vidpred-registry"], name
    assert profile.checkpoints == {"location": "/data", "pvc": "vidpred-pipeline-data"}
    # the pipeline sends caches to the volume too
    executors = spec["deploymentSpec"]["executors"]
    env = {e["name"]: e["value"] for e in executors["exec-kth-prepare-data"]["container"]["env"]}
    assert (env["VIDPRED_CACHE"], env["TORCH_HOME"]) == ("/data/cache", "/data/torch")


def test_secrets_are_referenced_never_inlined(paper):
    spec, _, profile, text = paper
    secret_envs = {env for keys in profile.cluster["secret_env"].values() for env in keys.values()}
    for name, ex in spec["deploymentSpec"]["executors"].items():
        literal = {e["name"] for e in ex["container"].get("env", [])}
        assert not literal & secret_envs, name  # only pipeline.env is written into the container spec
    assert text.count("secretName: vidpred-mlflow-auth") == 45  # one reference per task


def test_every_task_has_its_timeout_and_retries_with_backoff(paper):
    spec, k8s, profile, _ = paper
    hours = profile.cluster["timeout_hours"]
    seen = set()
    for name, task in all_tasks(spec).items():
        kind = kind_of(name)
        seen.add(kind)
        timeout = int(hours.get(kind, hours["default"]) * 3600)
        assert int(k8s[task["componentRef"]["name"].replace("comp-", "exec-")]["activeDeadlineSeconds"]) == timeout, name
        if kind == "validate_data":  # a failed GX gate fails again: not retried
            assert "retryPolicy" not in task, name
            continue
        # two retries after 60 s and 120 s; Argo retries while maxDuration since the first attempt has not passed,
        # so it covers all three attempts and the waits
        assert task["retryPolicy"] == {"maxRetryCount": 2, "backoffDuration": "60s", "backoffFactor": 2.0,
                                       "backoffMaxDuration": f"{3 * timeout + 180}s"}, name
    assert seen == set(TASK_KINDS) - {"decide_training"}  # only with data_refresh.on_unchanged: skip (test_refresh)
    assert hours["train_moso_vqvae"] == 192 and hours["default"] == 12  # configs/paper/pipeline.yaml


def test_gpu_tasks_keep_their_accelerator_toleration_and_node_selector(paper):
    spec, k8s, _, _ = paper
    executors = spec["deploymentSpec"]["executors"]
    gpu = set()
    for name, task in all_tasks(spec).items():
        label = task["componentRef"]["name"].replace("comp-", "exec-")
        resources = executors[label]["container"]["resources"]
        if "accelerator" not in resources:
            assert "tolerations" not in k8s[label] and "nodeSelector" not in k8s[label], name
            continue
        gpu.add(name)
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", name
        assert k8s[label]["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}], name
        assert k8s[label]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert gpu == {n for n in all_tasks(spec) if "-train-" in n or n.endswith("-moso-tokens")
                   or n.startswith("evaluate-")}
    assert executors["exec-moso-kth-train-moso-vqvae"]["container"]["resources"]["accelerator"]["resourceCount"] == "4"


def test_the_pipeline_opens_and_closes_its_mlflow_parent_run(paper):
    from kfp import dsl

    from vidpred.orchestrate import load_pipeline_module

    spec, _, profile, _ = paper
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"close-parent-run", "exit-handler-1"}
    close = root["close-parent-run"]  # the exit task: runs when everything else ended, with the final state
    assert close["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert close["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    params = close["inputs"]["parameters"]
    assert params["kfp_run_id"]["runtimeValue"]["constant"] == dsl.PIPELINE_JOB_ID_PLACEHOLDER
    assert params["experiment"]["runtimeValue"]["constant"] == "vidpred-paper"
    assert params["tracking_uri"] == {"componentInputParameter": "tracking_uri"}
    tasks = all_tasks(spec)
    opener = tasks["open-parent-run"]["inputs"]["parameters"]
    assert opener["parent_run_id"] == {"componentInputParameter": "pipelinechannel--parent_run_id"}
    assert json.loads(opener["config_json"]["runtimeValue"]["constant"])["cluster"]["volume"]["pvc"] == \
        "vidpred-pipeline-data"  # the profile as the parent run's params
    for name in RUN_TASKS:
        assert tasks[name]["cachingOptions"] == {}, name  # never from KFP's cache
    for name, task in tasks.items():
        if name in RUN_TASKS:
            continue
        p = task["inputs"]["parameters"]
        # every stage nests under the run open-parent-run returns, on the server of MLFLOW_TRACKING_URI (ConfigMap)
        assert p["parent_run_id"] == {"taskOutputParameter": {"outputParameterKey": "Output",
                                                              "producerTask": "open-parent-run"}}, name
        assert p["tracking_uri"] == {"componentInputParameter": "pipelinechannel--tracking_uri"}, name
    assert spec["root"]["inputDefinitions"]["parameters"]["tracking_uri"]["defaultValue"] == ""
    # the service account: KFP 2.17 takes it per run, so the pipeline function carries it for whoever starts one
    toy = load_profile("paper", only=["toycar-corrwise"])
    assert load_pipeline_module().build_pipeline(toy).service_account == "vidpred-pipeline"


def test_profiles_without_a_cluster_section_are_unchanged(tmp_path):
    """The cpu profile (run with kfp.local, `vidpred run` holds the parent run): no parent-run tasks, no retries,
    no platform settings."""
    out = compile_pipeline("cpu", tmp_path / "cpu.yaml", only=["toycar-corrwise"])
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 1 and set(docs[0]["root"]["dag"]["tasks"]) == {"toycar-corrwise-toycar-experiment"}
    assert "retryPolicy" not in docs[0]["root"]["dag"]["tasks"]["toycar-corrwise-toycar-experiment"]


# ------------------------------------------------------------------------------------------ names shared with k8s/

def test_paper_cluster_names_match_the_manifests():
    cluster = load_profile("paper").cluster
    config_map = yaml.safe_load((K8S / "pipeline-config.yaml").read_text())
    [(name, keys)] = cluster["config_map_env"].items()
    assert name == config_map["metadata"]["name"] and set(keys) <= set(config_map["data"])
    # the volume is mounted where the ConfigMap says vidpred lives in a pod
    assert cluster["volume"]["mount_path"] == config_map["data"]["VIDPRED_HOME"]
    assert cluster["volume"]["pvc"] == yaml.safe_load((K8S / "pipeline-data-pvc.yaml").read_text())["metadata"]["name"]
    rbac = list(yaml.safe_load_all((K8S / "rbac.yaml").read_text()))
    assert cluster["service_account"] in {d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount"}
    # every Secret key the pods read is one the example env file tells the user to set
    example = {line.split("=", 1)[0] for line in (K8S / "secrets.example.env").read_text().splitlines()
               if "=" in line and not line.startswith("#")}
    for secret, keys in cluster["secret_env"].items():
        assert set(keys) <= example, secret
        assert secret in (K8S / "secrets.example.env").read_text() + (K8S / "README.md").read_text(), secret


# ------------------------------------------------------------------------------------------ schema errors

@pytest.mark.parametrize("override, needle", [
    ("cluster.timeout={default: 1}", "'cluster.timeout' is not a known key (did you mean 'cluster.timeout_hours'?"),
    ("cluster.retry.tries=3", "'cluster.retry.tries' is not a known key"),
    ("cluster.secret_env.vidpred-dvc.AWS_SECRET_ACCESS_KEY=hunter2", "a secret value never goes in a profile"),
    ("cluster.secret_env.vidpred-dvc=hunter2", "a profile references a Secret, it never holds its values"),
    ("pipeline.env.MLFLOW_TRACKING_PASSWORD=hunter2", "'pipeline.env.MLFLOW_TRACKING_PASSWORD' looks like a credential: "
                                                      "reference a Secret in cluster.secret_env"),
    ("cluster.config_map_env.vidpred-tracking=[lower_case]", "must be the name of the environment variable"),
    ("cluster.config_map_env.vidpred-tracking={MLFLOW_TRACKING_URI: AWS_ACCESS_KEY_ID}",
     "'cluster.secret_env.vidpred-dvc' sets AWS_ACCESS_KEY_ID, which cluster.config_map_env.vidpred-tracking sets"),
    ("pipeline.env.VIDPRED_HOME=/x", "sets VIDPRED_HOME, which pipeline.env sets too"),
    ("cluster.volume.pvc=Bad_Name", "'cluster.volume.pvc' must name a PersistentVolumeClaim"),
    ("cluster.volume.mount_path=data", "'cluster.volume.mount_path' must be an absolute path"),
    ("checkpoints.location=/data/checkpoints", "'checkpoints.location' is /data/checkpoints but its PVC "
                                               "vidpred-pipeline-data is mounted at cluster.volume.mount_path /data"),
    ("checkpoints={location: /data/ckpt, pvc: other}", "overlaps cluster.volume.mount_path /data"),
    ("checkpoints={location: /mnt/ckpt}", "'checkpoints.location' /mnt/ckpt is on no volume"),
    ("cluster.service_account=Pipeline_SA", "'cluster.service_account' must name a ServiceAccount"),
    ("cluster.timeout_hours.train_everything=1", "'cluster.timeout_hours.train_everything' is not a known key"),
    ("cluster.retry.factor=0.5", "'cluster.retry.factor' must be int or float ≥ 1"),
    ("cluster.retry.skip=[validate]", "'cluster.retry.skip' has unknown task 'validate'"),
    ("cluster.timeout_hours={prepare_data: 4}", "'cluster.retry' needs cluster.timeout_hours.default"),
    ("tracks.moso-kth.stages.moso_vqvae.nodes=2", "'cluster.timeout_hours.train_moso_vqvae' is 192 h, but the task "
                                                  "of the multi-node stage"),
])
def test_bad_cluster_settings_are_one_line_errors_without_output(tmp_path, override, needle):
    out = tmp_path / "bad.yaml"
    overrides = [override] + (["trainjob.timeout_hours=200"] if "nodes=2" in override else [])
    with pytest.raises(VidpredError) as err:
        compile_pipeline("paper", out, overrides)
    text = str(err.value)
    assert needle in text and "\n" not in text, text
    assert str(PAPER) in text  # names the file
    assert "hunter2" not in text  # a secret value is never echoed
    assert not out.exists() and not list(tmp_path.iterdir()), "no partial output"


def test_cluster_settings_can_be_changed_with_set(tmp_path):
    spec, k8s = load_docs(compile_pipeline("paper", tmp_path / "p.yaml", [
        "cluster.retry.count=0", "cluster.image_pull_secrets=[]", "cluster.timeout_hours.prepare_data=1",
        "cluster.volume.mount_path=/mnt/vidpred", "checkpoints.location=/mnt/vidpred",
        "pipeline.env.VIDPRED_CACHE=/mnt/vidpred/cache", "pipeline.env.TORCH_HOME=/mnt/vidpred/torch"],
        only=["toycar-corrwise"]))
    tasks = all_tasks(spec)
    assert set(tasks) == {"toycar-corrwise-toycar-experiment", *RUN_TASKS}
    assert not any("retryPolicy" in t for t in tasks.values())
    for ex in k8s.values():
        assert "imagePullSecret" not in ex and ex["pvcMount"][0]["mountPath"] == "/mnt/vidpred"
    assert int(k8s["exec-toycar-corrwise-toycar-experiment"]["activeDeadlineSeconds"]) == 12 * 3600


# ------------------------------------------------------------------------------------------ the parent run, for real

@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback, standing in for the one k8s/mlflow.yaml runs (the ConfigMap's URI)."""
    with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture
def pod_env(mlflow_server, monkeypatch, tmp_path):
    """The environment a pipeline pod gets from the ConfigMap (k8s/pipeline-config.yaml), with the in-cluster
    MLflow URI pointed at the loopback server (cluster DNS does not resolve here) and VIDPRED_HOME at a temp dir."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as mlflow_uri

    data = yaml.safe_load((K8S / "pipeline-config.yaml").read_text())["data"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert data["MLFLOW_TRACKING_URI"].startswith("http://mlflow.")
    monkeypatch.setenv("VIDPRED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VIDPRED_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("VIDPRED_PARENT_RUN_ID", raising=False)
    saved = mlflow_uri._tracking_uri  # vidpred.tracking sets MLflow's process-wide URI to the server
    yield mlflow_server
    mlflow.set_tracking_uri(saved)  # later tests must not talk to a server that is gone (monkeypatch restores the env)


@pytest.mark.slow
def test_open_creates_once_per_kfp_run_and_close_records_the_failure(pod_env):
    import mlflow

    from vidpred import parent_run, tracking

    config = json.dumps({"tracking": {"experiment": "cluster-test"}, "provenance": {"tracking": "assumed: test"}})
    first = parent_run.open_parent_run("paper", "cluster-test", config, "kfp-run-1")
    assert parent_run.open_parent_run("paper", "cluster-test", config, "kfp-run-1") == first  # a retried task
    assert parent_run.open_parent_run("paper", "cluster-test", config, "kfp-run-2") != first
    client = mlflow.MlflowClient(pod_env)
    run = client.get_run(first)
    assert run.info.status == "RUNNING" and run.info.run_name == "pipeline-paper"
    assert run.data.tags[parent_run.KFP_RUN_TAG] == "kfp-run-1" and run.data.tags["vidpred.profile"] == "paper"
    assert run.data.params["tracking.experiment"] == "cluster-test"
    # a stage failed (its error recorded by vidpred.tracking) and another's pod was killed mid-run
    with tracking.stage_run("train_corrwise", parent_run_id=first):
        pass
    with pytest.raises(RuntimeError):
        with tracking.stage_run("prepare_data", parent_run_id=first):
            raise RuntimeError("source unreachable")
    killed = client.create_run(run.info.experiment_id, run_name="kth/train_landmarks",
                               tags={"mlflow.parentRunId": first, "vidpred.track": "landmarks-kth"})
    text = parent_run.close_parent_run("kfp-run-1", "cluster-test", "FAILED", "task x failed")
    assert f"parent run {first} FAILED" in text and "3 stage run(s), 2 failed" in text
    run = client.get_run(first)
    assert run.info.status == "FAILED"
    assert "source unreachable" in run.data.tags[tracking.ERROR_TAG]
    assert "pod killed" in run.data.tags[tracking.ERROR_TAG]
    assert run.data.tags["vidpred.failed_tracks"] == "landmarks-kth"
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    # the other KFP run's parent is untouched; a cancelled run ends KILLED
    assert client.get_run(parent_run.open_parent_run("paper", "cluster-test", config, "kfp-run-2")).info.status == \
        "RUNNING"
    assert "KILLED" in parent_run.close_parent_run("kfp-run-2", "cluster-test", "CANCELLED")


@pytest.mark.slow
def test_a_parent_run_given_by_the_caller_is_checked_used_and_left_to_it(pod_env):
    import mlflow

    from vidpred import parent_run

    client = mlflow.MlflowClient(pod_env)
    exp = client.create_experiment("cluster-given")
    given = client.create_run(exp, run_name="submitted").info.run_id
    assert parent_run.open_parent_run("paper", "cluster-given", "{}", "kfp-run-3", parent_run_id=given) == given
    assert "no parent run" in parent_run.close_parent_run("kfp-run-3", "cluster-given", "SUCCEEDED")
    assert client.get_run(given).info.status == "RUNNING"  # the caller ends it
    with pytest.raises(VidpredError, match="parent MLflow run 'nope' was not found at http://127.0.0.1"):
        parent_run.open_parent_run("paper", "cluster-given", "{}", "kfp-run-3", parent_run_id="nope")
    with pytest.raises(VidpredError, match="KFP run id was not filled in"):
        parent_run.open_parent_run("paper", "cluster-given", "{}", "{{$.pipeline_job_uuid}}")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*custom or non-Python base image.*:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:.*have no effect in the current local runner.*:UserWarning")
def test_a_cluster_pipeline_nests_every_stage_under_the_run_it_opens(pod_env, tmp_path, monkeypatch):
    """A profile with a cluster section run through kfp.local with no parent run given, as on a cluster: the
    first task opens the parent run on the ConfigMap's server, the stage nests under it, the exit task ends it."""
    import mlflow
    from kfp import local

    from vidpred.orchestrate import _use_this_python, load_pipeline_module
    from vidpred.parent_run import KFP_RUN_TAG, OPENED_TAG

    profile = load_profile("smoke", ["cluster={config_map_env: {vidpred-tracking: [MLFLOW_TRACKING_URI, VIDPRED_HOME]}, "
                                     "volume: {pvc: vidpred-pipeline-data, mount_path: /data}}"], only=["toycar"])
    pipeline = load_pipeline_module().build_pipeline(profile)
    monkeypatch.setenv("PATH", __import__("os").environ.get("PATH", ""))  # restored after the test
    _use_this_python()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    pipeline(tracking_uri="", parent_run_id="")  # nothing given: as a KFP run or a schedule starts it

    client = mlflow.MlflowClient(pod_env)
    exp = client.get_experiment_by_name("vidpred-smoke")
    runs = client.search_runs([exp.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get(OPENED_TAG) == "pipeline"]
    assert parent.info.status == "FINISHED" and parent.data.tags[KFP_RUN_TAG].isdigit()
    assert parent.data.params["tracks.toycar.stages.toycar.mode"] == "corrwise"  # the profile as params
    [stage] = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert stage.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert stage.data.tags["vidpred.track"] == "toycar" and stage.info.status == "FINISHED"
    assert set(pipeline.tasks) == {"open-parent-run", "toycar-toycar-experiment", "close-parent-run"}
