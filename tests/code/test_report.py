"""The reproduction report (`vidpred report`) against a real sqlite MLflow store, and the papers' numbers file.

The store is the session's temp sqlite database (tests/conftest.py sets MLFLOW_TRACKING_URI). The fixture
builds what `vidpred evaluate` leaves behind: a parent pipeline run and nested runs `evaluate/<track>/<method>`
with `evaluation/metrics.json` (contract format vidpred-eval/1), `per_frame.png` and `samples.png`:

* track corrwise-kitti: corrwise + copy-last, real weights (no stand-in) — papers' numbers are shown beside;
* track moso-robonet: moso + copy-last, moso's LPIPS computed with stand-in weights (top-level stand_in true,
  PSNR/SSIM/FVD not); these runs sit one level deeper, under a grouping run, as a stage may nest them.

Tests that touch MLflow are slow-marked like tests/code/test_tracking.py (`import mlflow` takes seconds).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from vidpred.errors import VidpredError

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_NAMES = ["corrwise-kitti", "corrwise-kitti-multi", "moso-bair", "moso-kth", "moso-kitti", "moso-robonet",
                  "landmarks-bbcpose-keypoints", "landmark-dynamics-bbcpose", "landmark-dynamics-kth"]
KNOWN_METRICS = {"psnr", "ssim", "lpips", "fvd", "mse", "l1", "keypoint_acc"}
UNIT = {"psnr": "dB", "ssim": "index", "lpips": "distance", "fvd": "distance", "mse": "mean squared error"}
HIGHER = {"psnr": True, "ssim": True, "lpips": False, "fvd": False, "mse": False}

# the numbers each evaluation run reports (mean, ci low, ci high); per-frame values are derived below
SCORES = {
    ("corrwise-kitti", "corrwise"): {"ssim": (0.6123, 0.6011, 0.6234), "lpips": (0.2871, 0.2702, 0.3050),
                                     "mse": (0.01234, 0.0111, 0.0135)},
    ("corrwise-kitti", "copy-last"): {"ssim": (0.5012, 0.4901, 0.5133), "lpips": (0.3544, 0.3401, 0.3689),
                                      "mse": (float("nan"), None, None)},
    ("moso-robonet", "moso"): {"psnr": (27.346, 26.9, 27.8), "ssim": (0.8512, 0.84, 0.86),
                               "lpips": (0.0567, 0.05, 0.06), "fvd": (412.5, None, None)},
    ("moso-robonet", "copy-last"): {"psnr": (25.111, 24.8, 25.4), "ssim": (0.8233, 0.81, 0.83),
                                    "lpips": (0.0789, 0.07, 0.09), "fvd": (530.25, None, None)},
}
STAND_IN = {("moso-robonet", "moso"): {"lpips"}}
HORIZON = {"corrwise-kitti": 3, "moso-robonet": 10}


def _png(path: Path, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 12, 3), value, dtype=np.uint8)).save(path)


def _metrics_json(track: str, method: str) -> dict:
    horizon = HORIZON[track]
    stand_in = STAND_IN.get((track, method), set())
    metrics = {}
    for name, (mean, lo, hi) in SCORES[(track, method)].items():
        set_level = name == "fvd"
        finite = math.isfinite(mean)
        per_frame = None if set_level or not finite else [mean + 0.001 * (i - horizon // 2) for i in range(horizon)]
        metrics[name] = {
            "mean": mean, "ci95": [lo, hi] if lo is not None else None,  # a NaN mean stays NaN in the JSON
            "per_frame": per_frame,
            "per_frame_ci95": None if per_frame is None else [[v - 0.01, v + 0.01] for v in per_frame],
            "higher_is_better": HIGHER[name], "unit": UNIT[name], "stand_in": name in stand_in,
        }
    context = {"corrwise-kitti": 3, "moso-robonet": 2}[track]
    return {
        "format": "vidpred-eval/1", "track": track, "method": method, "protocol": track,
        "protocol_spec": {"description": f"test protocol {track}", "clips": {"count": 100}},
        "provenance": {}, "model": None, "store": "stores/test", "data_md5": "feedc0de", "split": "test",
        "context": context, "horizon": horizon, "samples": 1, "best_of": "single", "num_clips": 4,
        "clips": [{"video_id": f"v{i}", "clip_start": 0} for i in range(4)],
        "frames": list(range(context, context + horizon)), "metrics": metrics,
        "unavailable": {}, "weights": {"alexnet": "stand-in"} if stand_in else {},
        "stand_in": bool(stand_in), "caveats": [],
        "images": {"per_frame": "per_frame.png", "samples": "samples.png"},
    }


def _log_evaluation(mlflow, tmp: Path, track: str, method: str, parent_id: str, experiment_id: str) -> str:
    folder = tmp / f"{track}-{method}"
    folder.mkdir()
    data = _metrics_json(track, method)
    (folder / "metrics.json").write_text(json.dumps(data))
    _png(folder / "per_frame.png", 40)
    _png(folder / "samples.png", 200)
    tags = {"vidpred.stage": "evaluate", "vidpred.eval.track": track, "vidpred.eval.method": method,
            "vidpred.eval.protocol": track, "vidpred.eval.stand_in": str(data["stand_in"]).lower()}
    with mlflow.start_run(run_name=f"evaluate/{track}/{method}", nested=True, parent_run_id=parent_id,
                          experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")
    return run.info.run_id


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A parent run with four evaluation runs (two of them under a grouping run) → (parent id, tmp dir)."""
    import mlflow

    from vidpred import tracking

    tmp = tmp_path_factory.mktemp("report-runs")
    config = {"tracking": {"experiment": "vidpred-report-test"}, "provenance": {}}
    with tracking.pipeline_run("cpu", config, data_md5="0123456789abcdef") as parent:
        pid, exp = parent.info.run_id, parent.info.experiment_id  # stage runs go to the parent's experiment
        for method in ("corrwise", "copy-last"):
            _log_evaluation(mlflow, tmp, "corrwise-kitti", method, pid, exp)
        with mlflow.start_run(run_name="evaluate-all", nested=True, parent_run_id=pid, experiment_id=exp,
                              tags={"vidpred.stage": "evaluate-all"}) as group:
            for method in ("moso", "copy-last"):
                _log_evaluation(mlflow, tmp, "moso-robonet", method, group.info.run_id, exp)
    return pid, tmp


@pytest.fixture(scope="module")
def report(pipeline, tmp_path_factory):
    from vidpred.evaluate.report import write_report

    pid, _ = pipeline
    out = tmp_path_factory.mktemp("report-out") / "report"
    return write_report(pid, out)


class _Tables(HTMLParser):
    """Cells of every <table id=…> and the src of every <img> of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(html_text: str) -> _Tables:
    parser = _Tables()
    parser.feed(html_text)
    return parser


def _row(table: list[list[str]], first: str) -> dict[str, str]:
    header = table[0]
    for row in table[1:]:
        if row[0] == first:
            return dict(zip(header, row))
    raise AssertionError(f"no row {first!r} in {[r[0] for r in table[1:]]}")


# ------------------------------------------------------------------------------------------ paper numbers

def test_paper_numbers_parse_and_cite_every_row():
    from vidpred.evaluate.report import PAPER_NUMBERS_FILE, load_paper_numbers

    raw = yaml.safe_load(PAPER_NUMBERS_FILE.read_text())
    assert set(raw["protocols"]) == set(PROTOCOL_NAMES)
    checked = load_paper_numbers()
    assert sum(len(p["rows"]) for p in checked.values()) > 20
    for name, entry in raw["protocols"].items():
        assert entry["source"], name
        if not entry.get("rows"):
            assert entry.get("note"), f"{name}: an empty protocol must say why"
        for row in entry.get("rows") or []:
            assert isinstance(row["cite"], str) and row["cite"].strip(), (name, row)
            assert row["label"] and "method" in row, (name, row)
            assert row["method"] in {None, "corrwise", "moso", "landmarks", "copy-last"}, (name, row)
            for key in ("metrics", "spread", "best"):
                assert set(row.get(key) or {}) <= KNOWN_METRICS, (name, row)
            for metric, value in row["metrics"].items():
                assert isinstance(value, (int, float)) and not isinstance(value, bool)
                assert entry["units"][metric], (name, metric)


def test_paper_numbers_spot_values():
    """A few numbers checked against the papers' text, one per table."""
    from vidpred.evaluate.report import load_paper_numbers

    paper = load_paper_numbers()

    def row(protocol, label):
        return next(r for r in paper[protocol]["rows"] if r["label"] == label)

    assert row("corrwise-kitti", "L_1, Corr. ✓")["metrics"] == {"ssim": 0.586, "lpips": 0.359}
    assert row("corrwise-kitti-multi", "Ours")["metrics"] == {"ssim": 0.667, "lpips": 0.259}
    assert row("moso-bair", "MOSO")["metrics"] == {"fvd": 83.6}
    assert row("moso-robonet", "MOSO")["metrics"] == {"fvd": 53.3, "psnr": 31.2, "ssim": 92.1, "lpips": 0.017}
    assert row("landmarks-bbcpose-keypoints", "Ours (+spade)")["metrics"] == {"keypoint_acc": 75.0}
    assert paper["landmarks-bbcpose-keypoints"]["units"]["keypoint_acc"] == "percent"


def test_paper_numbers_reject_unknown_metric_and_missing_cite(tmp_path):
    from vidpred.evaluate.report import load_paper_numbers

    bad = {"protocols": {"p": {"source": "s", "units": {"psnr": "dB"},
                               "rows": [{"label": "x", "method": None, "metrics": {"psnr": 1.0}}]}}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(VidpredError, match="cite"):
        load_paper_numbers(tmp_path / "a.yaml")
    bad["protocols"]["p"]["rows"][0].update(cite="Tab. 1", metrics={"fid": 3.0})
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(VidpredError, match="unknown metric 'fid'"):
        load_paper_numbers(tmp_path / "b.yaml")


# ------------------------------------------------------------------------------------------ rendering (no MLflow)

def test_render_without_mlflow_marks_best_and_hides_stand_in_from_paper_table(tmp_path):
    """render_report alone: best per column, stand-in cells labelled and kept out of the papers' table."""
    from vidpred.evaluate.report import Evaluation, load_paper_numbers, render_report

    evals = []
    for (track, method) in SCORES:
        folder = tmp_path / f"in-{track}-{method}"
        folder.mkdir()
        _png(folder / "samples.png", 100)
        evals.append(Evaluation(run_id=f"{track}-{method}", track=track, method=method, protocol=track,
                                data=_metrics_json(track, method), start_time=1_700_000_000_000,
                                images={"samples": folder / "samples.png"}))
    out = tmp_path / "out"
    result = render_report(evals, {"vidpred.profile": "cpu"}, load_paper_numbers(), out, parent_run_id="p")
    assert result["protocols"] == {"corrwise-kitti": ["corrwise", "copy-last"],
                                   "moso-robonet": ["moso", "copy-last"]}
    assert result["stand_in"] is True
    page = _parse((out / "report.html").read_text())
    ours = page.tables["ours-moso-robonet"]
    header = ours[0]
    psnr_col = next(i for i, h in enumerate(header) if h.startswith("psnr"))
    lpips_col = next(i for i, h in enumerate(header) if h.startswith("lpips"))
    moso = next(r for r in ours[1:] if r[0] == "moso")
    assert moso[lpips_col].endswith("stand-in")  # labelled, still reported in our table
    # moso's lower LPIPS is stand-in: it is not marked best, and copy-last alone has nothing to beat
    html_text = (out / "report.html").read_text()
    assert '<td class="stand-in">0.057 (0.050–0.060) stand-in</td>' in html_text
    assert "<strong>0.079" not in html_text
    assert '<td class="best"><strong>27.35 (26.90–27.80)</strong></td>' in html_text
    assert moso[psnr_col] == "27.35 (26.90–27.80)"


def test_render_first_n_frames_rows_for_corrwise_multi(tmp_path):
    """CorrWise Tab. 2 averages the first N predicted frames: our rows use the per-frame means likewise."""
    from vidpred.evaluate.report import Evaluation, load_paper_numbers, render_report

    per_frame = [0.9, 0.8, 0.7, 0.6, 0.5]
    data = {"format": "vidpred-eval/1", "track": "kitti-multi", "method": "corrwise",
            "protocol": "corrwise-kitti-multi", "context": 4, "horizon": 5, "num_clips": 3, "stand_in": False,
            "metrics": {"ssim": {"mean": 0.7, "ci95": [0.65, 0.75], "per_frame": per_frame,
                                 "per_frame_ci95": [[v - 0.05, v + 0.05] for v in per_frame],
                                 "higher_is_better": True, "unit": "index", "stand_in": False}}}
    ev = Evaluation("r1", "kitti-multi", "corrwise", "corrwise-kitti-multi", data)
    render_report([ev], {}, load_paper_numbers(), tmp_path / "out")
    table = _parse((tmp_path / "out" / "report.html").read_text()).tables["paper-kitti-multi"]
    ssim_h = next(h for h in table[0] if h.startswith("ssim"))
    assert _row(table, "vidpred corrwise (first 1 frame)")[ssim_h] == "0.900"
    assert _row(table, "vidpred corrwise (first 3 frames)")[ssim_h] == "0.800"
    assert _row(table, "vidpred corrwise")["Frames"] == "first 5" and _row(table, "vidpred corrwise")[ssim_h] == "0.700"
    assert _row(table, "Ours (next frame)")[ssim_h] == "0.820"
    lpips_h = next(h for h in table[0] if h.startswith("lpips"))
    assert _row(table, "vidpred corrwise")[lpips_h] == "—"  # not evaluated: nothing placed beside 0.259


# ------------------------------------------------------------------------------------------ MLflow end to end

@pytest.mark.slow
def test_report_files_tables_and_inline_images(report):
    assert report.markdown.is_file() and report.html.is_file()
    assert report.protocols == {"corrwise-kitti": ["corrwise", "copy-last"], "moso-robonet": ["moso", "copy-last"]}
    assert report.num_methods == 4 and report.stand_in is True
    html_text = report.html.read_text()
    page = _parse(html_text)
    # every image inline as a data URI: 2 per-frame plots + 4 sample grids; no file references
    assert len(page.images) == 6
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    # Markdown references the image files copied next to it
    md = report.markdown.read_text()
    for rel in ("images/per_frame_corrwise-kitti.png", "images/samples_moso-robonet_moso.png"):
        assert f"]({rel})" in md and (report.out_dir / rel).is_file()
    # header from the parent run's tags
    assert "Profile: cpu" in html_text and "Data md5: 0123456789abcdef" in html_text
    assert "Git sha: " in html_text
    # our tables with the logged numbers (mean and interval), best per column in bold
    ours = page.tables["ours-corrwise-kitti"]
    corrwise, copy_last = _row(ours, "corrwise"), _row(ours, "copy-last")
    ssim_h = next(h for h in ours[0] if h.startswith("ssim"))
    lpips_h = next(h for h in ours[0] if h.startswith("lpips"))
    mse_h = next(h for h in ours[0] if h.startswith("mse"))
    assert corrwise[ssim_h] == "0.612 (0.601–0.623)" and copy_last[ssim_h] == "0.501 (0.490–0.513)"
    assert corrwise[lpips_h] == "0.287 (0.270–0.305)"
    assert corrwise[mse_h] == "0.0123 (0.0111–0.0135)" and copy_last[mse_h] == "n/a"
    assert '<td class="best"><strong>0.612 (0.601–0.623)</strong></td>' in html_text
    assert "| **0.612 (0.601–0.623)** |" in md
    # caveats: stand-in, scale, clips, FVD set size
    assert "FVD of moso is computed from 4 videos, fewer than the 2048" in html_text
    assert "clips evaluated: corrwise 4, copy-last 4; the protocol asks for 100; the paper used 100" in html_text
    assert "clips evaluated: moso 4, copy-last 4; the protocol asks for 100; the paper used 256" in html_text
    assert "profile &#x27;cpu&#x27; trains small models on CPU" in html_text


@pytest.mark.slow
def test_paper_numbers_beside_real_scores_never_beside_stand_in(report):
    page = _parse(report.html.read_text())
    paper = page.tables["paper-corrwise-kitti"]
    header = paper[0]
    ssim_h = next(h for h in header if h.startswith("ssim"))
    lpips_h = next(h for h in header if h.startswith("lpips"))
    l1c = _row(paper, "L_1, Corr. ✓")
    assert (l1c[ssim_h], l1c[lpips_h]) == ("0.586", "0.359")
    assert l1c["Citation"].startswith("Tab. 1, row 2")
    ours = _row(paper, "vidpred corrwise")  # our real (non-stand-in) scores beside the paper's
    assert (ours[ssim_h], ours[lpips_h]) == ("0.612", "0.287")

    robonet = page.tables["paper-moso-robonet"]
    header = robonet[0]
    cols = {m: next(h for h in header if h.startswith(m)) for m in ("psnr", "ssim", "lpips", "fvd")}
    moso_paper = _row(robonet, "MOSO")
    assert moso_paper[cols["lpips"]] == "0.017" and moso_paper[cols["ssim"]] == "92.1"
    assert "RoboNet table" in moso_paper["Citation"]
    ours = _row(robonet, "vidpred moso")
    assert ours[cols["lpips"]] == "stand-in — not compared"  # the stand-in LPIPS is not placed beside 0.017
    assert ours[cols["psnr"]] == "27.35" and ours[cols["ssim"]] == "85.1"  # SSIM in the paper's percent
    cells = [c for row in robonet for c in row]
    assert not any(c.startswith("0.057") or c.startswith("0.0567") for c in cells)
    # copy-last is named by no paper row: it is not put into the papers' tables
    assert not any(r[0].startswith("vidpred copy-last") for r in robonet + paper)


@pytest.mark.slow
def test_parent_run_gets_metrics_tag_and_report_artifacts(report, pipeline):
    import mlflow

    pid, _ = pipeline
    client = mlflow.MlflowClient()
    run = client.get_run(pid)
    metrics = run.data.metrics
    for (track, method), scores in SCORES.items():
        for name, (mean, _, _) in scores.items():
            key = f"{track}/{method}/{name}"
            if math.isfinite(mean):
                assert metrics[key] == pytest.approx(mean), key
            else:
                assert key not in metrics  # non-finite means are skipped
    assert report.logged_metrics == {k: v for k, v in metrics.items() if k.count("/") == 2}
    assert run.data.tags["vidpred.report.stand_in"] == "true"
    names = {a.path for a in client.list_artifacts(pid, "report")}
    assert {"report/report.md", "report/report.html", "report/images"} <= names
    images = {a.path for a in client.list_artifacts(pid, "report/images")}
    assert "report/images/per_frame_moso-robonet.png" in images


@pytest.mark.slow
def test_cli_report_writes_and_rewrites(pipeline, tmp_path):
    from typer.testing import CliRunner

    from vidpred.cli import app

    pid, _ = pipeline
    out = tmp_path / "rep"
    for _ in range(2):  # a second run replaces the previous report folder atomically
        res = CliRunner().invoke(app, ["report", "--run", pid, "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert "2 protocol(s), 4 method evaluation(s)" in res.output
        assert str(out / "report.html") in res.output
    assert sorted(p.name for p in out.iterdir()) == ["images", "report.html", "report.md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep")]  # no temp leftovers


@pytest.mark.slow
def test_cli_unknown_run_is_one_line_error(pipeline, tmp_path):
    out = tmp_path / "never"
    res = subprocess.run([sys.executable, "-m", "vidpred.cli", "report", "--run", "0" * 32, "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: MLflow run '" + "0" * 32 + "' was not found")
    assert not out.exists()


@pytest.mark.slow
def test_parent_without_evaluations_and_refused_output(tmp_path, pipeline):
    from vidpred import tracking
    from vidpred.evaluate.report import write_report

    with tracking.pipeline_run("cpu", {"tracking": {"experiment": "vidpred-report-test"}}) as empty:
        pass
    with pytest.raises(VidpredError, match="has no evaluation runs") as err:
        write_report(empty.info.run_id, tmp_path / "r")
    assert "\n" not in str(err.value) and not (tmp_path / "r").exists()
    with pytest.raises(VidpredError, match="not an MLflow run id"):
        write_report("x'; drop", tmp_path / "r")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(VidpredError, match="not a previous report folder"):
        write_report(pipeline[0], busy)
    assert (busy / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: `make browser` (run by `make test`) installs Debian's package")
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          report.html.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    page = _parse(res.stdout)
    assert {"ours-corrwise-kitti", "paper-corrwise-kitti", "ours-moso-robonet", "paper-moso-robonet"} <= set(page.tables)
    assert len(page.images) == 6 and all(s.startswith("data:image/png;base64,") for s in page.images)
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1280,2000", report.html.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 1000
