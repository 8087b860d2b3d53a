"""Compiling the pipeline: one prepare/gate per dataset and an independent branch per track, each track
training on its own dataset's store; per-task resources, GPU scheduling (accelerator, toleration, node selector
in the PlatformSpec document), --only, config errors as one line, and the CLI's `run` / `compile` error exits."""

import subprocess
import sys

import pytest
import yaml

from vidpred.errors import VidpredError
from vidpred.orchestrate import compile_pipeline

VIDPRED = [sys.executable, "-m", "vidpred.cli"]

# configs/paper/pipeline.yaml: dataset → (source, size, crop); track → dataset and evaluations (name, stage task)
PAPER_DATASETS = {"kth": ("kth", "64", "center"), "bair": ("bair", "64", "center"), "kitti-64": ("kitti", "64", "center"),
                  "kitti-256x512": ("kitti", "256x512", "aspect"), "bbcpose": ("bbcpose", "128", "bbox")}
MOSO_DATASETS = {"kth", "bair", "kitti-64"}
CPU_STAND_INS = {"kth": "shapes-kth", "bair": "shapes-bair", "kitti-64": "shapes-kitti-64",  # configs/cpu/pipeline.yaml
                 "kitti-256x512": "shapes-kitti-64x128", "bbcpose": "shapes-bbcpose"}
PAPER_TRACKS = {
    "moso-kth": "kth", "moso-bair": "bair", "moso-kitti": "kitti-64",
    "corrwise-kitti-l1-pixelwise": "kitti-256x512", "corrwise-kitti-l1-corrwise": "kitti-256x512",
    "corrwise-kitti-l1p-pixelwise": "kitti-256x512", "corrwise-kitti-l1p-corrwise": "kitti-256x512",
    "toycar-pixelwise": None, "toycar-corrwise": None,
    "landmarks-bbcpose": "bbcpose", "landmarks-kth": "kth",
}
PAPER_EVALUATIONS = {  # evaluate-<name> → (track, the task whose model it scores, protocol, method)
    "evaluate-moso-kth": ("moso-kth", "moso-kth-train-moso-transformer", "moso-kth", "moso"),
    "evaluate-moso-bair": ("moso-bair", "moso-bair-train-moso-transformer", "moso-bair", "moso"),
    "evaluate-moso-kitti": ("moso-kitti", "moso-kitti-train-moso-transformer", "moso-kitti", "moso"),
    **{f"evaluate-{t}": (t, f"{t}-train-corrwise", "corrwise-kitti", "corrwise")
       for t in PAPER_TRACKS if t.startswith("corrwise-")},
    "evaluate-landmarks-bbcpose-keypoints": ("landmarks-bbcpose", "landmarks-bbcpose-train-landmarks",
                                             "landmarks-bbcpose-keypoints", "landmarks"),
    "evaluate-landmarks-bbcpose": ("landmarks-bbcpose", "landmarks-bbcpose-train-landmark-dynamics",
                                   "landmark-dynamics-bbcpose", "landmarks"),
    "evaluate-landmarks-kth": ("landmarks-kth", "landmarks-kth-train-landmark-dynamics", "landmark-dynamics-kth",
                               "landmarks"),
}


def track_tasks(track: str) -> set[str]:
    kind = track.split("-")[0]
    stages = {"moso": ["train-moso-vqvae", "moso-tokens", "train-moso-transformer"], "corrwise": ["train-corrwise"],
              "toycar": ["toycar-experiment"], "landmarks": ["train-landmarks", "train-landmark-dynamics"]}[kind]
    return {f"{track}-{s}" for s in stages}


PAPER_TASKS = ({f"{d}-{k}" for d in PAPER_DATASETS for k in ("prepare-data", "validate-data")}
               | {f"{d}-preprocess-moso" for d in MOSO_DATASETS}
               | {t for track in PAPER_TRACKS for t in track_tasks(track)}
               | set(PAPER_EVALUATIONS) | {"make-report"})
GPU_TASKS = {t for t in PAPER_TASKS if "-train-" in t or t.endswith("-moso-tokens") or t.startswith("evaluate-")}
# configs/paper/pipeline.yaml: MOSO trains on 4 GPUs (MOSO §4), the landmark autoencoder on 8 (landmarks appendix A),
# every other GPU task on gpu.count = 1
PAPER_GPUS = {t: 4 if "-train-moso-" in t else 8 if t.endswith("-train-landmarks") else 1 for t in GPU_TASKS}


def cli(*args, **kw):
    return subprocess.run([*VIDPRED, *args], capture_output=True, text=True, timeout=120, **kw)


def load_docs(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def executors(spec):
    return spec["deploymentSpec"]["executors"]


def dag_tasks(spec) -> dict:
    """The stage tasks of a compiled pipeline: the root DAG's, with the exit handler's group (a profile with a
    `cluster:` section, tests/pipeline/test_cluster.py) replaced by its tasks, without the parent-run tasks."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for name, task in list(tasks.items()):
        component = spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            del tasks[name]
            tasks.update(component["dag"]["tasks"])
    return {n: t for n, t in tasks.items() if n not in ("open-parent-run", "close-parent-run")}


def constants(task) -> dict:
    return {k: v["runtimeValue"]["constant"] for k, v in task["inputs"].get("parameters", {}).items()
            if "runtimeValue" in v}


def producer(task, artifact: str) -> str:
    return task["inputs"]["artifacts"][artifact]["taskOutputArtifact"]["producerTask"]


def source_dataset(dag, name: str, artifact: str) -> str:
    """The dataset whose prepare task made the store behind ``artifact`` of task ``name`` (through MOSO
    preprocessing and tokens)."""
    task = producer(dag[name], artifact)
    while not task.endswith("-prepare-data"):
        task = producer(dag[task], "store" if "store" in dag[task]["inputs"]["artifacts"] else "moso")
    return task.removesuffix("-prepare-data")


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """configs/paper/pipeline.yaml compiled once: (pipeline spec, platform spec)."""
    return load_docs(compile_pipeline("paper", tmp_path_factory.mktemp("paper") / "paper.yaml"))


# ------------------------------------------------------------------------------------------ paper profile

def test_cli_compile_paper_writes_resources_per_task(tmp_path):
    out = tmp_path / "paper.yaml"
    res = cli("compile", "--profile", "paper", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert str(out) in res.stdout
    spec, _ = load_docs(out)
    assert spec["pipelineInfo"]["name"] == "vidpred-reproduce"
    assert set(dag_tasks(spec)) == PAPER_TASKS
    ex = executors(spec)
    expected = {  # configs/paper/pipeline.yaml resources.<kind>
        "prepare-data": ("4", "8", "8G", "16G"),
        "validate-data": ("1", "2", "4G", "8G"),
        "preprocess-moso": ("4", "8", "16G", "32G"),
    }
    for kind, (cpu_req, cpu_lim, mem_req, mem_lim) in expected.items():
        names = [n for n in ex if n.endswith(f"-{kind}")]
        assert len(names) == (len(MOSO_DATASETS) if kind == "preprocess-moso" else len(PAPER_DATASETS)), kind
        for name in names:
            container = ex[name]["container"]
            r = container["resources"]
            assert (r["resourceCpuRequest"], r["resourceCpuLimit"]) == (cpu_req, cpu_lim), name
            assert (r["resourceMemoryRequest"], r["resourceMemoryLimit"]) == (mem_req, mem_lim), name
            assert container["image"] == "vidpred:0.1.0"
            assert "accelerator" not in r  # data stages run on CPU nodes
            assert not any("pip install" in part for part in container["command"]), "nothing installed at run time"
    r = ex["exec-corrwise-kitti-l1-pixelwise-train-corrwise"]["container"]["resources"]  # resources.default
    assert (r["resourceCpuRequest"], r["resourceMemoryLimit"]) == ("2", "16G")
    r = ex["exec-moso-kth-train-moso-vqvae"]["container"]["resources"]  # 4 training processes
    assert (r["resourceCpuRequest"], r["resourceCpuLimit"], r["resourceMemoryLimit"]) == ("8", "16", "64G")
    r = ex["exec-landmarks-kth-train-landmarks"]["container"]["resources"]  # 8 training processes
    assert (r["resourceCpuRequest"], r["resourceMemoryLimit"]) == ("16", "128G")


def test_paper_profile_prepares_and_gates_each_dataset_once(paper):
    spec, _ = paper
    dag = dag_tasks(spec)
    prepared = {name.removesuffix("-prepare-data"): constants(task) for name, task in dag.items()
                if name.endswith("-prepare-data")}
    assert set(prepared) == set(PAPER_DATASETS)  # KTH, BAIR, KITTI (two geometries) and BBC Pose: one task each
    for name, (dataset, size, crop) in PAPER_DATASETS.items():
        params = prepared[name]
        assert (params["dataset"], params["size"], params["crop"], params["dataset_name"]) == (dataset, size, crop, name)
        gate = dag[f"{name}-validate-data"]
        assert producer(gate, "store") == f"{name}-prepare-data"
        if name in MOSO_DATASETS:  # MOSO preprocessing waits for the gate and reads the prepared store
            moso = dag[f"{name}-preprocess-moso"]
            assert f"{name}-validate-data" in moso["dependentTasks"]
            assert producer(moso, "store") == f"{name}-prepare-data"
    assert sum(n.endswith("-prepare-data") and n.startswith("kitti") for n in dag) == 2


def test_paper_profile_trains_each_track_on_its_own_datasets_store(paper):
    spec, _ = paper
    dag = dag_tasks(spec)
    for track, dataset in PAPER_TRACKS.items():
        for name in track_tasks(track):
            task = dag[name]
            artifacts = set(task["inputs"].get("artifacts", {}))
            if dataset is None:  # the toy car reads no dataset and waits for nothing (but the MLflow parent run)
                assert not artifacts and not set(task.get("dependentTasks", [])) - {"open-parent-run"}, name
                continue
            for artifact in artifacts & {"store", "moso", "tokens"}:
                assert source_dataset(dag, name, artifact) == dataset, (name, artifact)
            md5 = task["inputs"]["parameters"]["data_md5"]["taskOutputParameter"]["producerTask"]
            assert md5 == f"{dataset}-prepare-data", name
            if "-train-" in name:  # nothing of a track trains before its data passed the gate
                assert f"{dataset}-validate-data" in task["dependentTasks"], name
            assert constants(task)["track"] == track
    assert "landmarks-kth-train-landmarks" in dag["landmarks-kth-train-landmark-dynamics"]["dependentTasks"]
    assert producer(dag["moso-kth-train-moso-transformer"], "tokens") == "moso-kth-moso-tokens"
    assert producer(dag["moso-kth-moso-tokens"], "vqvae") == "moso-kth-train-moso-vqvae"


def test_paper_profile_settings_reach_the_tasks(paper):
    spec, _ = paper
    dag = dag_tasks(spec)
    kth = constants(dag["kth-prepare-data"])
    assert (kth["size"], kth["clip_len"]) == ("64", 20)
    assert yaml.safe_load(kth["options_json"]) == {"train_persons": "1-15", "val_persons": "16", "test_persons": "17-25"}
    assert yaml.safe_load(constants(dag["bair-prepare-data"])["options_json"]) == {"val_count": 512}
    for dataset, clip_len in (("kth", 20), ("bair", 16), ("kitti-64", 20)):  # MOSO §4: T per dataset
        moso = constants(dag[f"{dataset}-preprocess-moso"])
        assert (moso["clip_len"], moso["lower"], moso["upper"]) == (clip_len, 0.1, 0.9), dataset
    # the token context belongs to each VQVAE config (MOSO §4.1: 10 previous frames on KTH, 1 on BAIR)
    contexts = {t: constants(dag[f"{t}-moso-tokens"])["context"] for t in ("moso-kth", "moso-bair", "moso-kitti")}
    assert contexts == {"moso-kth": 10, "moso-bair": 1, "moso-kitti": 5}
    assert constants(dag["moso-bair-train-moso-vqvae"])["config"] == "paper/moso-vqvae-bair64"
    corrwise = {t: constants(dag[f"{t}-train-corrwise"]) for t in PAPER_TRACKS if t.startswith("corrwise-")}
    assert {c["config"] for c in corrwise.values()} == {"paper/corrwise-kitti-tab1"}
    assert corrwise["corrwise-kitti-l1-pixelwise"]["overrides"] == ["loss.base=l1", "loss.mode=pixelwise"]
    assert corrwise["corrwise-kitti-l1p-corrwise"]["overrides"] == [
        "loss.base=l1+perceptual", "loss.mode=corrwise", "loss.pixelwise_warmup_epochs=1"]
    toy = {t: constants(dag[f"{t}-toycar-experiment"]) for t in ("toycar-pixelwise", "toycar-corrwise")}
    assert {t: (c["loss"], c["mode"]) for t, c in toy.items()} == {
        "toycar-pixelwise": ("l1", "pixelwise"), "toycar-corrwise": ("l1", "corrwise")}
    # the per-run values stay pipeline parameters
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"tracking_uri", "parent_run_id", "refresh_data"}
    # data preparation gets the refresh flag (vidpred schedule sets it: re-prepare from the source, compare md5s)
    for name in ("kth", "bair", "kitti-64", "kitti-256x512", "bbcpose"):
        param = dag[f"{name}-prepare-data"]["inputs"]["parameters"]["refresh"]["componentInputParameter"]
        assert param in ("refresh_data", "pipelinechannel--refresh_data")  # (inside the exit handler's group)


def test_paper_profile_evaluates_every_track_evaluation_and_reports_after_all(paper):
    spec, _ = paper
    dag = dag_tasks(spec)
    evals = {name for name in dag if name.startswith("evaluate-")}
    assert evals == set(PAPER_EVALUATIONS)
    for name, (track, model_task, protocol, method) in PAPER_EVALUATIONS.items():
        task = dag[name]
        params = constants(task)
        assert (params["name"], params["track"], params["protocol"], params["method"]) == \
            (name.removeprefix("evaluate-"), track, protocol, method), name
        assert producer(task, "model") == model_task and model_task in task["dependentTasks"], name
        assert source_dataset(dag, name, "store") == PAPER_TRACKS[track], name  # scored on its track's dataset
    assert constants(dag["evaluate-moso-kth"])["baselines"] == ["copy-last", "linear"]
    assert constants(dag["evaluate-landmarks-bbcpose-keypoints"])["baselines"] == []
    assert set(dag["make-report"]["dependentTasks"]) - {"open-parent-run"} == evals
    assert "accelerator" not in executors(spec)["exec-make-report"]["container"]["resources"]


def test_paper_profile_schedules_training_and_evaluation_on_a_gpu_node(paper):
    spec, platform = paper
    ex = executors(spec)
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # tolerations/node selectors only where a GPU is asked for
    assert {n for n, e in k8s.items() if "tolerations" in e or "nodeSelector" in e} == {f"exec-{t}" for t in GPU_TASKS}
    for task in PAPER_TASKS:
        resources = ex[f"exec-{task}"]["container"]["resources"]
        if task not in GPU_TASKS:  # data stages, the toy car and the report stay on CPU nodes
            assert "accelerator" not in resources, task
            continue
        acc = resources["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and str(acc["resourceCount"]) == str(PAPER_GPUS[task]), task
        assert k8s[f"exec-{task}"]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
        assert k8s[f"exec-{task}"]["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    assert {"toycar-corrwise-toycar-experiment", "kth-preprocess-moso", "make-report"}.isdisjoint(GPU_TASKS)


# ------------------------------------------------------------------------------------------ --only, cpu profile

def test_only_moso_kth_compiles_that_track_and_its_dataset(tmp_path):
    out = tmp_path / "kth.yaml"
    res = cli("compile", "--profile", "paper", "--only", "moso-kth", "--out", str(out))
    assert res.returncode == 0, res.stderr
    spec, _ = load_docs(out)
    assert set(dag_tasks(spec)) == {
        "kth-prepare-data", "kth-validate-data", "kth-preprocess-moso", "moso-kth-train-moso-vqvae",
        "moso-kth-moso-tokens", "moso-kth-train-moso-transformer", "evaluate-moso-kth", "make-report"}


def test_only_tracks_sharing_a_dataset_prepare_it_once(tmp_path):
    spec, _ = load_docs(compile_pipeline("paper", tmp_path / "kth.yaml", only=["landmarks-kth", "moso-kth"]))
    dag = dag_tasks(spec)
    assert [n for n in dag if n.endswith("-prepare-data")] == ["kth-prepare-data"]
    assert source_dataset(dag, "landmarks-kth-train-landmarks", "store") == "kth"
    assert source_dataset(dag, "moso-kth-train-moso-vqvae", "moso") == "kth"
    spec, _ = load_docs(compile_pipeline("paper", tmp_path / "toy.yaml", only=["toycar-corrwise"]))
    assert set(dag_tasks(spec)) == {"toycar-corrwise-toycar-experiment"}  # no dataset, no evaluation


def test_cli_only_with_an_unknown_track_exits_2_with_one_line(tmp_path):
    res = cli("compile", "--profile", "paper", "--only", "moso-kth,moso-robonet", "--out", str(tmp_path / "x.yaml"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--only: unknown track 'moso-robonet'" in lines[0], res.stderr
    assert "moso-kth" in lines[0] and "landmarks-bbcpose" in lines[0]  # the profile's tracks are named
    assert not (tmp_path / "x.yaml").exists()


def test_cpu_profile_compiles_with_the_paper_track_names(tmp_path, paper):
    spec, platform = load_docs(compile_pipeline("cpu", tmp_path / "cpu.yaml"))
    dag = dag_tasks(spec)
    paper_dag = dag_tasks(paper[0])
    # every track task and every evaluation has the paper profile's name; only the datasets differ
    assert {n for n in dag if not n.startswith("shapes-")} == \
        {n for n in paper_dag if not any(n.startswith(f"{d}-") for d in PAPER_DATASETS)}
    assert {n for n in dag if n.endswith("-prepare-data")} == {f"{d}-prepare-data" for d in CPU_STAND_INS.values()}
    for track, dataset in PAPER_TRACKS.items():  # each track trains on the stand-in of its paper dataset
        for name in track_tasks(track):
            for artifact in set(dag[name]["inputs"].get("artifacts", {})) & {"store", "moso"}:
                assert source_dataset(dag, name, artifact) == CPU_STAND_INS[dataset], (name, artifact)
    for name, (track, model_task, _, method) in PAPER_EVALUATIONS.items():
        params = constants(dag[name])
        assert params["protocol"].startswith("shapes-") and params["method"] == method, name
        assert producer(dag[name], "model") == model_task, name
        assert source_dataset(dag, name, "store") == CPU_STAND_INS[PAPER_TRACKS[track]], name
    assert not any("accelerator" in e["container"]["resources"] for e in executors(spec).values())  # CPU only
    assert not platform


# ------------------------------------------------------------------------------------------ GPU settings

def test_gpu_stage_compiles_accelerator_toleration_and_node_selector(tmp_path):
    out = compile_pipeline("paper", tmp_path / "gpu.yaml", [
        "gpu.stages=[preprocess_moso]", "gpu.count=2",
        "gpu.toleration.key=dedicated", "gpu.toleration.value=ml", "gpu.toleration.effect=NoExecute",
        "gpu.node_selector.label=example.com/gpu-pool", "gpu.node_selector.value=a100-pool"])
    spec, platform = load_docs(out)
    moso_tasks = {f"exec-{d}-preprocess-moso" for d in MOSO_DATASETS}
    for name in moso_tasks:  # a kind covers that task of every dataset
        acc = executors(spec)[name]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and str(acc["resourceCount"]) == "2"
    assert "accelerator" not in executors(spec)["exec-kth-validate-data"]["container"]["resources"]
    # a training kind left out of gpu.stages runs on the CPU, unless its stage sets its own gpus (MOSO: 4)
    ex = executors(spec)
    assert "accelerator" not in ex["exec-corrwise-kitti-l1-pixelwise-train-corrwise"]["container"]["resources"]
    assert ex["exec-moso-kth-train-moso-vqvae"]["container"]["resources"]["accelerator"]["resourceCount"] == "4"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    explicit = {f"exec-{t}-train-moso-{s}" for t in ("moso-kth", "moso-bair", "moso-kitti")
                for s in ("vqvae", "transformer")} | {f"exec-landmarks-{d}-train-landmarks" for d in ("bbcpose", "kth")}
    assert {n for n, e in k8s.items() if "tolerations" in e} == moso_tasks | explicit
    moso = k8s["exec-kth-preprocess-moso"]
    assert moso["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"}]
    assert moso["nodeSelector"]["labels"] == {"example.com/gpu-pool": "a100-pool"}


def test_gpu_for_evaluations_only(tmp_path):
    spec, platform = load_docs(compile_pipeline("paper", tmp_path / "eval.yaml", ["gpu.stages=[evaluate]"],
                                                only=["landmarks-bbcpose", "toycar-pixelwise"]))
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # the landmark autoencoder keeps the 8 GPUs its stage sets (gpus: 8 wins over gpu.stages); the dynamics do not
    assert {n for n, e in k8s.items() if "tolerations" in e} == {
        "exec-evaluate-landmarks-bbcpose", "exec-evaluate-landmarks-bbcpose-keypoints",
        "exec-landmarks-bbcpose-train-landmarks"}


def test_request_gpu_on_a_task(tmp_path):
    from kfp import compiler, dsl

    from components import validate_data
    from pipelines.reproduce import request_gpu

    @dsl.pipeline(name="gpu-probe")
    def probe():
        task = validate_data(store=dsl.importer(artifact_uri="file:///nowhere", artifact_class=dsl.Dataset).output)
        request_gpu(task, {"type": "nvidia.com/gpu", "count": 1,
                           "toleration": {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                           "node_selector": {"label": "cloud.google.com/gke-accelerator", "value": "nvidia-l4"}})

    out = tmp_path / "probe.yaml"
    compiler.Compiler().compile(probe, str(out))
    spec, platform = load_docs(out)
    acc = executors(spec)["exec-validate-data"]["container"]["resources"]["accelerator"]
    assert acc["resourceType"] == "nvidia.com/gpu" and str(acc["resourceCount"]) == "1"
    ex = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-validate-data"]
    assert ex["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert ex["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}


@pytest.mark.parametrize("gpu, needle", [
    ({"type": "nvidia.com/gpu", "count": 0}, "gpu.count"),
    ({"count": 1}, "gpu.type"),
    ({"type": "nvidia.com/gpu", "toleration": {"key": "k", "effect": "Sometimes"}}, "gpu.toleration.effect"),
    ({"type": "nvidia.com/gpu", "node_selector": {"label": "x"}}, "gpu.node_selector"),
])
def test_request_gpu_rejects_bad_settings(gpu, needle):
    from kfp import dsl

    from components import validate_data
    from pipelines.reproduce import request_gpu

    with pytest.raises(VidpredError, match=needle):
        @dsl.pipeline(name="bad-gpu")
        def probe():
            task = validate_data(store=dsl.importer(artifact_uri="file:///x", artifact_class=dsl.Dataset).output)
            request_gpu(task, gpu)


# ------------------------------------------------------------------------------------------ nodes × GPUs, checkpoints

TRAINING_TASKS = {t for t in PAPER_TASKS if "-train-" in t}


def test_paper_training_tasks_request_their_gpus_and_run_that_many_processes(paper):
    spec, platform = paper
    dag, ex = dag_tasks(spec), executors(spec)
    for task in TRAINING_TASKS:
        gpus = PAPER_GPUS[task]
        params = constants(dag[task])
        assert int(ex[f"exec-{task}"]["container"]["resources"]["accelerator"]["resourceCount"]) == gpus, task
        assert params["nproc"] == gpus, task  # G > 1: the component runs the stage under torchrun, G processes
        assert "trainjob" not in params, task  # one node: no Trainer job
    assert {t for t in TRAINING_TASKS if PAPER_GPUS[t] > 1} == {
        f"{t}-train-moso-{s}" for t in ("moso-kth", "moso-bair", "moso-kitti") for s in ("vqvae", "transformer")} | {
        "landmarks-bbcpose-train-landmarks", "landmarks-kth-train-landmarks"}
    # the landmark autoencoder's global batch is the paper's 8 GPUs × 16 images
    assert constants(dag["landmarks-kth-train-landmarks"])["overrides"] == ["optim.batch_size=128"]


def test_nproc_is_a_torchrun_launch_with_nproc_per_node(paper, monkeypatch, tmp_path):
    """The component's nproc input reaches torchrun as --nproc-per-node (the launcher itself is recorded, not run:
    there are no GPUs here)."""
    import vidpred.train.distributed as dist
    from vidpred.orchestrate import run_training_stage

    params = constants(dag_tasks(paper[0])["moso-kth-train-moso-vqvae"])
    calls = []

    def record(stage, config, overrides=(), nproc=1, *args, **kwargs):
        calls.append(dist.torchrun_command(stage, config, overrides, nproc))
        return 0

    monkeypatch.setattr(dist, "launch", record)
    out = tmp_path / "model"
    run_training_stage("moso_vqvae", params["config"], params["overrides"], inputs={"data.moso_store": "/data/moso"},
                       out_dir=str(out), nproc=int(params["nproc"]), checkpoints=params["checkpoints"], run_id="r-1",
                       track=params["track"])
    [cmd] = calls
    assert cmd[cmd.index("--nproc-per-node") + 1] == "4" and "--standalone" in cmd
    text = " ".join(cmd)
    assert "train moso-vqvae --config paper/moso-vqvae-kth64" in text
    assert f"--set data.moso_store=/data/moso --set train.out_dir={out}" in text
    assert "--set train.ckpt_dir=/data/r-1/moso-kth/moso_vqvae" in text


def test_multi_node_stage_compiles_a_task_that_creates_a_trainjob(tmp_path):
    from kubeflow_trainer_api import models

    from vidpred.trainjob import TrainJobSettings, build_trainjob, job_name, stage_command

    spec, platform = load_docs(compile_pipeline("paper", tmp_path / "multi.yaml", [
        "tracks.moso-kth.stages.moso_vqvae.nodes=2", "trainjob.timeout_hours=48"], only=["moso-kth"]))
    dag, ex = dag_tasks(spec), executors(spec)
    task = "moso-kth-train-moso-vqvae"
    params = constants(dag[task])
    settings = TrainJobSettings.from_json(params["trainjob"])
    assert (settings.nodes, settings.gpus, settings.image) == (2, 4, "vidpred:0.1.0")
    assert (settings.pvc, settings.mount_path, settings.timeout_s) == ("vidpred-pipeline-data", "/data",
                                                                       48 * 3600)
    assert settings.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    # the task only creates and follows the job: default resources, no GPU, no GPU node, but the shared volume
    resources = ex[f"exec-{task}"]["container"]["resources"]
    assert "accelerator" not in resources and (resources["resourceCpuRequest"], resources["resourceMemoryLimit"]) == \
        ("2", "16G")
    assert settings.resources["cpu_request"] == "8"  # resources.train_moso_vqvae: for each pod of the job
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "tolerations" not in k8s[f"exec-{task}"] and "nodeSelector" not in k8s[f"exec-{task}"]
    assert k8s[f"exec-{task}"]["pvcMount"][0]["mountPath"] == "/data"
    # the single-node stage of the same track is unchanged
    assert "trainjob" not in constants(dag["moso-kth-train-moso-transformer"])
    assert ex["exec-moso-kth-train-moso-transformer"]["container"]["resources"]["accelerator"]["resourceCount"] == "4"
    # the job the task would create from these inputs, checked by the SDK's models
    cmd = stage_command("moso_vqvae", params["config"], list(params["overrides"]) + ["train.out_dir=/x"],
                        settings.nproc, settings.nodes)
    job = build_trainjob(job_name("run", params["track"], "moso_vqvae"), settings, cmd, {"VIDPRED_TRACK": "moso-kth"})
    body = models.TrainerV1alpha1TrainJob.from_dict(job.to_dict()).to_dict()
    trainer = body["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["image"]) == (2, 4, "vidpred:0.1.0")
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    assert body["spec"]["activeDeadlineSeconds"] == 48 * 3600


def test_checkpoint_dir_with_the_run_id_reaches_every_training_task(paper):
    from kfp import dsl

    spec, platform = paper
    dag = dag_tasks(spec)
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task in PAPER_TASKS:
        params = constants(dag[task])
        # the paper profile's cluster volume is the checkpoints PVC: one mount at the location, in every task
        [mount] = k8s[f"exec-{task}"]["pvcMount"]
        assert (mount["mountPath"], mount["constant"]) == ("/data", "vidpred-pipeline-data"), task
        if task not in TRAINING_TASKS:
            assert "run_id" not in params, task
            continue
        assert params["checkpoints"] == "/data", task
        # the whole value: the KFP driver substitutes a placeholder only then
        assert params["run_id"] == dsl.PIPELINE_JOB_ID_PLACEHOLDER == "{{$.pipeline_job_uuid}}", task


def test_cpu_profile_training_runs_in_process_without_checkpoint_location(tmp_path):
    spec, platform = load_docs(compile_pipeline("cpu", tmp_path / "cpu.yaml", only=["moso-kth", "landmarks-kth"]))
    dag = dag_tasks(spec)
    trained = [n for n in dag if "-train-" in n]
    assert len(trained) == 4
    for name in trained:
        params = constants(dag[name])
        assert params["nproc"] == 1 and not {"checkpoints", "run_id", "trainjob"} & set(params), name
    assert not platform


@pytest.mark.filterwarnings("ignore:.*custom or non-Python base image.*:RuntimeWarning")
def test_kfp_local_fills_in_the_run_id(tmp_path, monkeypatch):
    """Under kfp.local the run id placeholder becomes one number per pipeline run, the same in every task."""
    from kfp import dsl, local

    from components.common import vidpred_component

    @vidpred_component
    def echo_run_id(run_id: str, out: dsl.OutputPath(str)):
        with open(out, "w") as fh:
            fh.write(run_id)

    @dsl.pipeline(name="run-id-probe")
    def probe() -> str:
        first = echo_run_id(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        echo_run_id(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).after(first)
        return first.outputs["out"]

    import os

    from vidpred.orchestrate import _use_this_python

    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after the test
    _use_this_python()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    value = probe().output
    assert value.isdigit(), value
    seen = {p.read_text() for p in tmp_path.rglob("out")}
    assert seen == {value}


# ------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("override, needle", [
    ("datasets.shapes.size=big", "'datasets.shapes.size' must be N or"),
    ("datasets.shapes.clip_len=0", "'datasets.shapes.clip_len' must be int ≥ 1"),
    ("datasets.shapes.moso.lower=[1]", "'datasets.shapes.moso.lower'"),
    ("data.dataset=kth", "'data' is not a known key"),  # the pre-redesign schema
    ("resources.default.gpus=1", "'resources.default.gpus' is not a known key"),
    ("gpu.stages=[evaluate_moso-kth]", "'gpu.stages' has unknown task 'evaluate_moso-kth'"),
    ("gpu.stages=[train_corrwise]", "'gpu.type' must name an accelerator"),
    ("gpu.toleration={key: k, effect: Sometimes}", "gpu.toleration.effect must be"),  # only checked when scheduling
    ("tracks.corrwise.stages.corrwise.nodes=0", "'tracks.corrwise.stages.corrwise.nodes' must be int ≥ 1"),
    ("tracks.corrwise.stages.corrwise.gpus=-1", "'tracks.corrwise.stages.corrwise.gpus' must be int ≥ 0"),
    ("tracks.corrwise.stages.corrwise.gpus=2", "'tracks.corrwise.stages.corrwise.gpus' is 2 but gpu.type names no"),
    ("tracks.corrwise.stages.corrwise.nodes=2", "'tracks.corrwise.stages.corrwise.nodes' is 2: a multi-node stage"),
    ("tracks.toycar.stages.toycar.gpus=1", "'tracks.toycar.stages.toycar.gpus' is not a known key"),
    ("checkpoints=runs/ckpt", "'checkpoints.location' must be an absolute path or a URI"),
    ("checkpoints={location: s3://bucket/ckpt, pvc: data}", "'checkpoints.location' must be the absolute path the PVC"),
    ("checkpoints={location: /mnt/c, pvc: Bad_Name}", "'checkpoints.pvc' must name a PersistentVolumeClaim"),
    ("checkpoints={location: /mnt/c, volume: x}", "'checkpoints.volume' is not a known key"),
    ("trainjob.timeout_hours=0", "'trainjob.timeout_hours' must be"),
    ("trainjob.poll_seconds=0.5", "'trainjob.poll_seconds' must be int"),
])
def test_bad_profile_values_are_one_line_errors(tmp_path, override, needle):
    out = tmp_path / "bad.yaml"
    overrides = [override] + (["gpu.stages=[evaluate]", "gpu.type=nvidia.com/gpu"] if "toleration" in override else [])
    with pytest.raises(VidpredError) as err:
        compile_pipeline("smoke", out, overrides)
    assert needle in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(tmp_path.iterdir()), "no partial output"


@pytest.mark.parametrize("override, needle", [
    ("tracks.corrwise.evaluate={protocol: nope}", "unknown protocol 'nope'"),
    ("tracks.toycar.evaluate={protocol: shapes-corrwise}", "'tracks.toycar.evaluate.stage' must name an evaluated stage"),
    ("tracks.corrwise.evaluate={protocol: shapes-corrwise, baselines: [mean]}", "has unknown 'mean'"),
    ("tracks.corrwise.evaluate={protocol: shapes-corrwise, protocl: x}", "'tracks.corrwise.evaluate.protocl' is not a known key"),
    ("tracks.corrwise.evaluate={protocol: corrwise-kitti}", "corrwise-kitti scores 256×512 frames but dataset shapes-wide"),
])
def test_bad_evaluate_sections_are_one_line_errors(tmp_path, override, needle):
    with pytest.raises(VidpredError) as exc:
        compile_pipeline("smoke", tmp_path / "x.yaml", [override])
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_compile_refuses_non_yaml_output(tmp_path):
    with pytest.raises(VidpredError, match="must end in .yaml"):
        compile_pipeline("smoke", tmp_path / "pipeline.txt")


def test_cli_unknown_profile_exits_2_with_one_line(tmp_path):
    for args in (["run", "--profile", "nope", "--workdir", str(tmp_path / "runs")],
                 ["compile", "--profile", "nope", "--out", str(tmp_path / "x.yaml")]):
        res = cli(*args, cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: unknown profile 'nope'"), res.stderr
        assert all(p in lines[0] for p in ("smoke", "cpu", "paper"))  # the known profiles are named
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x.yaml").exists()


def test_run_fails_fast_when_the_tracking_server_is_down(tmp_path, monkeypatch):
    from vidpred.orchestrate import run_local

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(VidpredError, match="MLflow tracking server at http://127.0.0.1:9 is unreachable"):
        run_local("smoke", [], workdir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_tasks_use_this_interpreter(monkeypatch):
    import os
    from pathlib import Path

    from vidpred.orchestrate import _use_this_python

    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", bindir, "/bin"]))
    _use_this_python()
    assert os.environ["PATH"].split(os.pathsep) == [bindir, "/usr/bin", "/bin"]
    _use_this_python()  # idempotent
    assert os.environ["PATH"].split(os.pathsep) == [bindir, "/usr/bin", "/bin"]
