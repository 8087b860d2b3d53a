"""Compiling the pipeline: per-task resources, GPU scheduling (accelerator, toleration, node selector in
the PlatformSpec document), config errors as one line, and the CLI's `run` / `compile` error exits."""

import subprocess
import sys

import pytest
import yaml

from vidpred.errors import VidpredError
from vidpred.orchestrate import compile_pipeline

VIDPRED = [sys.executable, "-m", "vidpred.cli"]
TASKS = ("prepare-data", "validate-data", "preprocess-moso", "train-corrwise", "toycar-experiment",
         "train-landmarks", "train-landmark-dynamics", "train-moso-vqvae", "moso-tokens", "train-moso-transformer",
         "evaluate-track", "evaluate-track-2", "make-report")


def cli(*args, **kw):
    return subprocess.run([*VIDPRED, *args], capture_output=True, text=True, timeout=120, **kw)


def load_docs(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def executors(spec):
    return spec["deploymentSpec"]["executors"]


def test_cli_compile_paper_writes_resources_per_task(tmp_path):
    out = tmp_path / "paper.yaml"
    res = cli("compile", "--profile", "paper", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert str(out) in res.stdout
    spec, _ = load_docs(out)
    assert spec["pipelineInfo"]["name"] == "vidpred-reproduce"
    assert set(spec["root"]["dag"]["tasks"]) == set(TASKS)
    # MOSO preprocessing waits for the validation gate, which reads the prepared store
    dag = spec["root"]["dag"]["tasks"]
    assert "validate-data" in dag["preprocess-moso"]["dependentTasks"]
    assert "prepare-data" in dag["validate-data"]["dependentTasks"]
    ex = executors(spec)
    expected = {  # configs/paper/pipeline.yaml resources.<task>
        "exec-prepare-data": ("4", "8", "8G", "16G"),
        "exec-validate-data": ("1", "2", "4G", "8G"),
        "exec-preprocess-moso": ("4", "8", "16G", "32G"),
    }
    for name, (cpu_req, cpu_lim, mem_req, mem_lim) in expected.items():
        container = ex[name]["container"]
        r = container["resources"]
        assert (r["resourceCpuRequest"], r["resourceCpuLimit"]) == (cpu_req, cpu_lim), name
        assert (r["resourceMemoryRequest"], r["resourceMemoryLimit"]) == (mem_req, mem_lim), name
        assert container["image"] == "vidpred:0.1.0"
        assert "accelerator" not in r  # data stages run on CPU nodes
        assert not any("pip install" in part for part in container["command"]), "nothing installed at run time"


def test_paper_profile_schedules_training_on_a_gpu_node(tmp_path):
    spec, platform = load_docs(compile_pipeline("paper", tmp_path / "p.yaml"))
    dag = spec["root"]["dag"]["tasks"]
    assert "validate-data" in dag["train-corrwise"]["dependentTasks"]  # training waits for the gate
    assert "train-landmarks" in dag["train-landmark-dynamics"]["dependentTasks"]  # LSTM on the autoencoder
    assert "train-moso-vqvae" in dag["moso-tokens"]["dependentTasks"]  # VQVAE → tokens → Transformer
    assert "moso-tokens" in dag["train-moso-transformer"]["dependentTasks"]
    kth_context = dag["moso-tokens"]["inputs"]["parameters"]["context"]["runtimeValue"]["constant"]
    assert kth_context == 10  # configs/paper/moso-vqvae-kth64.yaml tokens.context (MOSO §4.1, KTH)
    for task in ("train-moso-vqvae", "train-moso-transformer", "train-corrwise", "train-landmarks",
                 "train-landmark-dynamics"):
        acc = executors(spec)[f"exec-{task}"]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and str(acc["resourceCount"]) == "1"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][f"exec-{task}"]
        assert k8s["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
        assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu" and k8s["tolerations"][0]["effect"] == "NoSchedule"


def test_paper_profile_settings_reach_the_tasks(tmp_path):
    out = compile_pipeline("paper", tmp_path / "p.yaml")
    spec, _ = load_docs(out)
    params = spec["root"]["dag"]["tasks"]["prepare-data"]["inputs"]["parameters"]
    assert params["dataset"]["runtimeValue"]["constant"] == "kth"
    assert params["size"]["runtimeValue"]["constant"] == 64
    assert params["clip_len"]["runtimeValue"]["constant"] == 20
    moso = spec["root"]["dag"]["tasks"]["preprocess-moso"]["inputs"]["parameters"]
    assert moso["clip_len"]["runtimeValue"]["constant"] == 20
    assert (moso["lower"]["runtimeValue"]["constant"], moso["upper"]["runtimeValue"]["constant"]) == (0.1, 0.9)
    # the per-run values stay pipeline parameters
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"tracking_uri", "parent_run_id"}


def test_gpu_stage_compiles_accelerator_toleration_and_node_selector(tmp_path):
    out = compile_pipeline("paper", tmp_path / "gpu.yaml", [
        "gpu.stages=[preprocess_moso]", "gpu.count=2",
        "gpu.toleration.key=dedicated", "gpu.toleration.value=ml", "gpu.toleration.effect=NoExecute",
        "gpu.node_selector.label=example.com/gpu-pool", "gpu.node_selector.value=a100-pool"])
    spec, platform = load_docs(out)
    acc = executors(spec)["exec-preprocess-moso"]["container"]["resources"]["accelerator"]
    assert acc["resourceType"] == "nvidia.com/gpu" and str(acc["resourceCount"]) == "2"
    assert "accelerator" not in executors(spec)["exec-validate-data"]["container"]["resources"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == {"exec-preprocess-moso"}
    moso = k8s["exec-preprocess-moso"]
    assert moso["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"}]
    assert moso["nodeSelector"]["labels"] == {"example.com/gpu-pool": "a100-pool"}


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


@pytest.mark.parametrize("override, needle", [
    ("data.size=big", "'data.size' must be int"),
    ("data.clip_len=0", "'data.clip_len' must be int ≥ 1"),
    ("preprocess.lower=[1]", "'preprocess.lower'"),
    ("resources.default.gpus=1", "resources.default.gpus: unknown setting"),
])
def test_bad_profile_values_are_one_line_errors(tmp_path, override, needle):
    out = tmp_path / "bad.yaml"
    with pytest.raises(VidpredError, match=needle) as err:
        compile_pipeline("smoke", out, [override])
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(tmp_path.iterdir()), "no partial output"


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
        assert "smoke" in lines[0] and "paper" in lines[0]  # the known profiles are named
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


def test_paper_profile_evaluates_on_a_gpu_node_and_reports_after_every_evaluation(tmp_path):
    spec, platform = load_docs(compile_pipeline("paper", tmp_path / "p.yaml"))
    dag = spec["root"]["dag"]["tasks"]
    evals = {t["taskInfo"]["name"]: key for key, t in dag.items() if key.startswith("evaluate-track")}
    assert set(evals) == {"evaluate-moso-kth", "evaluate-landmarks-kth"}
    moso = dag[evals["evaluate-moso-kth"]]
    params = {k: v["runtimeValue"]["constant"] for k, v in moso["inputs"]["parameters"].items() if "runtimeValue" in v}
    assert (params["protocol"], params["method"], params["baselines"]) == ("moso-kth", "moso", ["copy-last", "linear"])
    assert moso["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train-moso-transformer"
    assert "train-moso-transformer" in moso["dependentTasks"]
    for key in evals.values():
        acc = executors(spec)[f"exec-{key}"]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu"
        assert platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][f"exec-{key}"]["tolerations"]
    assert set(dag["make-report"]["dependentTasks"]) >= set(evals.values())
    assert "accelerator" not in executors(spec)["exec-make-report"]["container"]["resources"]


@pytest.mark.parametrize("override, needle", [
    ("stages.corrwise.evaluate={protocol: nope}", "unknown protocol 'nope'"),
    ("stages.toycar.evaluate={protocol: shapes-corrwise}", "stage toycar has no evaluation"),
    ("stages.corrwise.evaluate={protocol: shapes-corrwise, baselines: [mean]}", "unknown ['mean']"),
    ("stages.corrwise.evaluate={protocol: shapes-corrwise, protocl: x}", "unknown key(s) protocl"),
])
def test_bad_evaluate_sections_are_one_line_errors(tmp_path, override, needle):
    with pytest.raises(VidpredError) as exc:
        compile_pipeline("smoke", tmp_path / "x.yaml", [override])
    assert needle in str(exc.value) and "\n" not in str(exc.value)
