"""The MLflow UI, checked in a REAL browser: two REAL kfp.local smoke runs (the CorrWise track, tiny settings as in
test_local_run) into a fresh sqlite store, a REAL `mlflow server` on loopback over it, and Debian's headless
Chromium rendering the UI (a React app: ``--virtual-time-budget`` lets it fetch and render before the DOM is dumped
and the screenshot taken). Asserted on the rendered pages, as a user sees them:

* the experiment opens on its training-runs view with both pipeline runs;
* the compare view of the two parent runs shows every headline metric (track/method/metric) with its value;
* the CorrWise training run's page shows the dataset it read (name and DVC md5), its registered model version,
  its training metrics and its system metrics;
* the registered model's page shows the ``champion`` and ``challenger`` aliases and the logged promotion decision.

Screenshots are saved to ``$VIDPRED_TEST_ARTIFACTS/mlflow-ui/`` (default ``tests/artifacts/mlflow-ui/``,
git-ignored): ``experiment.png``, ``compare.png``, ``training-run.png``, ``model.png``.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.pipeline.test_local_run import TINY
from tests.servers import MlflowServer
from vidpred.config import REPO_ROOT

ARTIFACTS = Path(os.environ.get("VIDPRED_TEST_ARTIFACTS") or REPO_ROOT / "tests" / "artifacts") / "mlflow-ui"
HEADLINE = ("psnr", "ssim", "lpips")
METHODS = ("corrwise", "copy-last", "linear")


def ui_number(value: float) -> str:
    """A metric value as the MLflow UI's compare table prints it (3 decimals below 10, 2 below 100, else whole)."""
    if value == 0:
        return "0"
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 100 else 0
    text = f"{round(value, digits):.{digits}f}".rstrip("0").rstrip(".") if digits else f"{round(value):d}"
    return text


def page_text(dom: str) -> str:
    """The visible text of a dumped DOM (scripts and styles dropped, whitespace collapsed)."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))  # \s also takes &nbsp;


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two smoke pipeline runs (CorrWise track) in their own sqlite store; yields (db path, artifacts, results)."""
    from tests.standins import write_standin_alexnet
    from vidpred.orchestrate import run_local

    root = tmp_path_factory.mktemp("ui-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("VIDPRED_ARTIFACT_ROOT", str(root / "mlartifacts"))
        mp.setenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", "1")  # LPIPS with a stand-in AlexNet (labelled so)
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # a stage of a second or two gets samples
        mp.delenv("VIDPRED_PARENT_RUN_ID", raising=False)
        write_standin_alexnet()
        results = [run_local("smoke", TINY, workdir=root / "runs", only=["corrwise"]) for _ in range(2)]
    yield root / "mlflow.db", root / "mlartifacts", results


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    db, artifacts, _ = store
    with MlflowServer(tmp_path_factory.mktemp("ui-server"), db=db, artifacts=artifacts, timeout=180) as uri:
        yield uri


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: `make browser` (run by `make test`) installs Debian's package")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def render(url: str, shot: str, expect: list[str], size: str = "1600,1400") -> str:
        """Render ``url``, save ``ARTIFACTS/shot``; retry with more time while an expected text is missing."""
        missing: list[str] = []
        for budget in (30000, 90000):
            target = ARTIFACTS / shot
            target.unlink(missing_ok=True)
            res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                  f"--virtual-time-budget={budget}", f"--window-size={size}",
                                  f"--screenshot={target}", "--dump-dom", url],
                                 capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, res.stderr[-2000:]
            text = page_text(res.stdout)
            missing = [e for e in expect if e not in text]
            if not missing:
                assert target.is_file() and target.stat().st_size > 20_000, target  # a rendered page, not a blank
                return text
        pytest.fail(f"{url}: not visible after rendering: {missing}\n{text[:3000]}")

    return render


@pytest.mark.slow
def test_mlflow_ui_shows_runs_metrics_dataset_and_registered_model(store, server, browser):
    import mlflow

    db, _, results = store
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    parents = [client.get_run(r.parent_run_id) for r in results]
    exp_id = parents[0].info.experiment_id
    assert {p.info.status for p in parents} == {"FINISHED"}
    runs = client.search_runs([exp_id])

    # 1. the experiment's training-runs table, at the link `vidpred run` prints: both pipeline runs (their stage
    # runs nested under them)
    from vidpred.orchestrate import runs_view_url

    text = browser(runs_view_url(server, exp_id), "experiment.png",
                   ["Run Name", "Dataset", "Models", parents[0].info.run_name, f"{len(runs)} matching runs"],
                   size="1600,1000")
    assert text.count(parents[0].info.run_name) == 2, text[:2000]
    # … and the Dataset column names the data each pipeline run used (the parent lists its stages' datasets)
    names = {d.dataset.name for p in parents for d in p.inputs.dataset_inputs}
    assert names and any(name in text for name in names), (names, text[:2000])

    # 2. the compare view of the two parent runs: every headline metric with its value
    ids = quote("[" + ",".join(f'"{p.info.run_id}"' for p in parents) + "]")
    headline = {f"corrwise/{m}/{k}": v for m in METHODS for k in HEADLINE
                for v in [parents[-1].data.metrics[f"corrwise/{m}/{k}"]]}
    experiments = quote(f'["{exp_id}"]')
    text = browser(f"{server}/#/compare-runs?runs={ids}&experiments={experiments}", "compare.png",
                   [f"Comparing {len(parents)} Runs", *(p.info.run_id for p in parents), *headline], size="1600,2400")
    values = text[text.index("Metrics Show diff only"):]
    for key, value in headline.items():
        assert ui_number(value) in values, (key, value, ui_number(value))

    # 3. the CorrWise training run of the second pipeline run: its dataset, registered model version, metrics
    train = next(r for r in runs if r.info.run_name == "corrwise/corrwise"
                 and r.data.tags.get("mlflow.parentRunId") == parents[-1].info.run_id)
    datasets = [i.dataset for i in train.inputs.dataset_inputs]
    assert datasets, "the training run logged no dataset input"
    versions = client.search_model_versions(f"run_id = '{train.info.run_id}'")
    assert len(versions) == 1, versions
    version = versions[0]
    system = sorted(k for k in train.data.metrics if k.startswith("system/"))
    assert "system/cpu_utilization_percentage" in system, sorted(train.data.metrics)
    text = browser(f"{server}/#/experiments/{exp_id}/runs/{train.info.run_id}", "training-run.png",
                   ["corrwise/corrwise", "Datasets", *(f"{d.name} ({d.digest})" for d in datasets),
                    "Registered models", version.name, f"v{version.version}", "train/loss", "System metrics", *system])

    # 4. the registered model: champion and challenger aliases, the promotion decision logged on the version
    model = client.get_registered_model(version.name)
    assert set(model.aliases) == {"champion", "challenger"}, model.aliases
    decision = client.get_model_version(version.name, str(model.aliases["challenger"])).tags
    browser(f"{server}/#/models/{version.name}", "model.png",
            [version.name, "Version 1", "Version 2", "@ champion", "@ challenger",
             f"vidpred.promotion.decision : {decision['vidpred.promotion.decision']}"])
