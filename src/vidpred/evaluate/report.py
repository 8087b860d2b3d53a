"""The reproduction report of one pipeline run: ``vidpred report --run PARENT --out DIR``.

What it reads
    The evaluation runs nested under the pipeline's parent MLflow run (tag ``mlflow.parentRunId`` = parent,
    tag ``vidpred.stage`` = ``evaluate``; runs nested one level deeper, under a stage that groups them, are
    found too). From each it downloads ``evaluation/metrics.json`` (format ``vidpred-eval/1``, see
    docs/CONTRACTS.md "Evaluation"), ``evaluation/per_frame.png`` and ``evaluation/samples.png``. The
    papers' published numbers come from ``configs/paper_numbers.yaml`` (protocol → rows with citations).

What it writes (atomically, :func:`vidpred.fsutil.atomic_dir`)
    ``DIR/report.md``    Markdown; images are files in ``DIR/images/`` referenced relatively.
    ``DIR/report.html``  the same content as one standalone file: images inline as base64 data URIs.
    ``DIR/images/``      the combined per-frame plot of every protocol and the runs' sample grids.

    The header gives the profile, git sha and data md5 (tags of the parent run) and the dates of the
    evaluation runs. Per protocol (= evaluation track): a table of our methods and baselines (mean and 95 %
    bootstrap interval over clips, the best per column in bold), the papers' numbers with their citations,
    one per-frame plot with all methods on one axis per metric (bands = per-frame 95 % intervals), the sample
    grids, and the caveats (stand-in weights, scale, number of clips, FVD set size).

Stand-in scores
    A score is *stand-in* when it was computed with stand-in or unverified weights: ``metrics.<m>.stand_in``
    is true, or the metric carries no flag of its own and the file's top-level ``stand_in`` is true. Such a
    score is shown labelled "stand-in" in our table and is never put beside a paper number: in the papers'
    table its cell reads "stand-in — not compared".

What it logs to the parent run
    ``report/`` (report.md, report.html, images/), the headline metrics ``<track>/<method>/<metric>`` (the
    means; non-finite ones are skipped) and the tag ``vidpred.report.stand_in`` (``true`` when any score in
    the report is stand-in).

``mlflow`` and ``matplotlib`` are imported inside functions (both are slow to import).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from vidpred.config import CONFIG_DIR
from vidpred.errors import VidpredError

PAPER_NUMBERS_FILE = CONFIG_DIR / "paper_numbers.yaml"
EVAL_STAGE = "evaluate"
EVAL_FORMAT = "vidpred-eval/"
IMAGE_FILES = ("samples.png",)  # per-frame plots are drawn from metrics.json
BASELINES = ("linear", "copy-last")  # listed after our methods, in this order
PAPER_METHODS = ("corrwise", "moso", "landmarks", "copy-last")
PAPER_METRICS = ("psnr", "ssim", "lpips", "fvd", "mse", "l1", "keypoint_acc")
METRIC_ORDER = ("psnr", "ssim", "lpips", "mse", "l1", "fvd", "keypoint_acc", "keypoint_err_px")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "mse": False, "l1": False, "fvd": False,
                    "keypoint_acc": True, "keypoint_err_px": False}
DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "mse": 4, "l1": 4, "fvd": 1, "keypoint_acc": 3,
            "keypoint_err_px": 2}
FVD_REFERENCE_VIDEOS = 2048  # StyleGAN-V / MOSO compute FVD on 2048 videos; fewer biases it upward
STAND_IN_NOT_COMPARED = "stand-in — not compared"
_RUN_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_METRIC_KEY_BAD = re.compile(r"[^\w.\- :/]")


# ------------------------------------------------------------------------------------------ data

@dataclass
class Evaluation:
    """One evaluation run (one method on one protocol) with its downloaded files."""

    run_id: str
    track: str
    method: str
    protocol: str
    data: dict  # metrics.json
    start_time: int | None = None  # ms since the epoch
    images: dict[str, Path] = field(default_factory=dict)  # per_frame / samples → local file

    @property
    def metrics(self) -> dict[str, dict]:
        return {k: v for k, v in (self.data.get("metrics") or {}).items() if isinstance(v, Mapping)}

    @property
    def is_baseline(self) -> bool:
        return self.method in BASELINES

    def stand_in(self, metric: str) -> bool:
        """True when ``metric`` was computed with stand-in/unverified weights (its own flag, else the file's)."""
        entry = self.metrics.get(metric) or {}
        if "stand_in" in entry and entry["stand_in"] is not None:
            return bool(entry["stand_in"])
        return bool(self.data.get("stand_in"))

    def mean(self, metric: str) -> float | None:
        return _finite((self.metrics.get(metric) or {}).get("mean"))

    def ci(self, metric: str) -> tuple[float, float] | None:
        ci = (self.metrics.get(metric) or {}).get("ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = _finite(ci[0]), _finite(ci[1])
            if lo is not None and hi is not None:
                return lo, hi
        return None

    def per_frame(self, metric: str) -> list[float | None] | None:
        values = (self.metrics.get(metric) or {}).get("per_frame")
        if not isinstance(values, list) or not values:
            return None
        return [_finite(v) for v in values]

    def first_n_mean(self, metric: str, n: int) -> float | None:
        """Mean over the first ``n`` predicted frames (from ``per_frame``), as CorrWise Tab. 2 reports."""
        values = self.per_frame(metric)
        if values is None or len(values) < n or any(v is None for v in values[:n]):
            return None
        return sum(values[:n]) / n


@dataclass
class ReportResult:
    """What :func:`write_report` wrote and logged."""

    parent_run_id: str
    out_dir: Path
    markdown: Path
    html: Path
    images: list[Path]
    protocols: dict[str, list[str]]  # track → methods, in report order
    logged_metrics: dict[str, float]  # <track>/<method>/<metric> → mean, as logged on the parent run
    stand_in: bool  # any score in the report is stand-in
    skipped: list[str] = field(default_factory=list)  # runs left out, with the reason

    @property
    def num_methods(self) -> int:
        return sum(len(m) for m in self.protocols.values())

    def describe(self) -> str:
        lines = [f"report of run {self.parent_run_id}: {len(self.protocols)} protocol(s), "
                 f"{self.num_methods} method evaluation(s)"
                 + (" (some scores use stand-in weights)" if self.stand_in else ""),
                 f"  {self.markdown}", f"  {self.html}",
                 f"  logged to the run under report/ with {len(self.logged_metrics)} metrics <track>/<method>/<metric>"]
        lines += [f"  {track}: {', '.join(methods)}" for track, methods in self.protocols.items()]
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ paper numbers

def load_paper_numbers(path: str | Path | None = None) -> dict[str, dict]:
    """``configs/paper_numbers.yaml`` → {protocol: {source, units, note, clips, rows}}, checked.

    Every row needs a ``label``, a ``cite`` and ``metrics`` whose names are in :data:`PAPER_METRICS`, each
    with a unit in the protocol's ``units``; ``method`` is one of :data:`PAPER_METHODS` or null.
    """
    path = Path(path) if path is not None else PAPER_NUMBERS_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise VidpredError(f"paper numbers file {path} cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise VidpredError(f"paper numbers file {path} is not valid YAML: {exc}") from None
    protocols = (doc or {}).get("protocols") if isinstance(doc, Mapping) else None
    if not isinstance(protocols, Mapping):
        raise VidpredError(f"paper numbers file {path} has no 'protocols:' mapping")
    out: dict[str, dict] = {}
    for name, entry in protocols.items():
        where = f"{path}: protocols.{name}"
        if not isinstance(entry, Mapping) or not entry.get("source"):
            raise VidpredError(f"{where} needs a 'source'")
        units = dict(entry.get("units") or {})
        rows = entry.get("rows") or []
        if not isinstance(rows, list):
            raise VidpredError(f"{where}.rows must be a list")
        for i, row in enumerate(rows):
            at = f"{where}.rows[{i}]"
            if not isinstance(row, Mapping) or not row.get("label") or not row.get("cite"):
                raise VidpredError(f"{at} needs a 'label' and a 'cite'")
            if row.get("method") is not None and row["method"] not in PAPER_METHODS:
                raise VidpredError(f"{at}: method {row['method']!r} is not one of {', '.join(PAPER_METHODS)} or null")
            metrics = row.get("metrics")
            if not isinstance(metrics, Mapping) or not metrics:
                raise VidpredError(f"{at} needs 'metrics'")
            for key in ("metrics", "spread", "best"):
                for metric, value in (row.get(key) or {}).items():
                    if metric not in PAPER_METRICS:
                        raise VidpredError(f"{at}.{key}: unknown metric {metric!r} (known: {', '.join(PAPER_METRICS)})")
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                        raise VidpredError(f"{at}.{key}.{metric} must be a number, got {value!r}")
                    if metric not in units:
                        raise VidpredError(f"{at}: metric {metric!r} has no unit in protocols.{name}.units")
        out[str(name)] = {**dict(entry), "units": units, "rows": [dict(r) for r in rows]}
    return out


# ------------------------------------------------------------------------------------------ MLflow side

def _check_run_id(run_id: str) -> str:
    run_id = str(run_id or "").strip()
    if not _RUN_ID.fullmatch(run_id):
        raise VidpredError(f"'{run_id}' is not an MLflow run id (expected letters, digits, '-' or '_')")
    return run_id


def _children(client, experiment_ids: list[str], run_id: str) -> list:
    """All runs whose ``mlflow.parentRunId`` tag is ``run_id`` (every page)."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def find_evaluation_runs(client, parent) -> list:
    """Evaluation runs under ``parent``: children and grandchildren tagged ``vidpred.stage=evaluate``.

    They are looked for in the parent's experiment (where :func:`vidpred.tracking.stage_run` puts them), and in
    every experiment when there are none there.

    A run tagged ``evaluate`` that itself has evaluation runs below it is a grouping stage, not an
    evaluation, and is left out.
    """
    found: list = []
    for experiment_ids in ([parent.info.experiment_id], None):  # the parent's experiment, else all of them
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in client.search_experiments(max_results=50000)]
        children = _children(client, experiment_ids, parent.info.run_id)
        grandchildren = [g for c in children for g in _children(client, experiment_ids, c.info.run_id)]
        candidates = [r for r in children + grandchildren if r.data.tags.get("vidpred.stage") == EVAL_STAGE]
        containers = {r.data.tags.get("mlflow.parentRunId") for r in candidates}
        found = [r for r in candidates if r.info.run_id not in containers]
        if found:
            break
    return found


def _download(run_id: str, name: str, dst: Path) -> Path | None:
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"evaluation/{name}",
                                                        dst_path=str(dst)))
    except Exception:  # absent artifact: MlflowException / OSError depending on the store
        return None


def _load_evaluation(run, workdir: Path) -> Evaluation | str:
    """The run's :class:`Evaluation`, or a one-line reason why it is left out (no metrics.json)."""
    run_id = run.info.run_id
    dst = workdir / run_id
    dst.mkdir(parents=True, exist_ok=True)
    path = _download(run_id, "metrics.json", dst)
    name = run.data.tags.get("mlflow.runName", run_id)
    if path is None or not path.is_file():
        return f"run {run_id} ({name}): no evaluation/metrics.json (the evaluation did not finish?)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VidpredError(f"evaluation run {run_id}: evaluation/metrics.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith(EVAL_FORMAT):
        raise VidpredError(f"evaluation run {run_id}: evaluation/metrics.json is not a {EVAL_FORMAT}1 file "
                           f"(format {data.get('format') if isinstance(data, dict) else None!r})")
    tags = run.data.tags
    track = data.get("track") or tags.get("vidpred.eval.track")
    method = data.get("method") or tags.get("vidpred.eval.method")
    protocol = data.get("protocol") or tags.get("vidpred.eval.protocol") or track
    if not track or not method:
        raise VidpredError(f"evaluation run {run_id}: metrics.json names no track/method")
    images = {}
    for image in IMAGE_FILES:
        local = _download(run_id, image, dst)
        if local is not None and local.is_file():
            images[image.split(".")[0]] = local
    return Evaluation(run_id=run_id, track=str(track), method=str(method), protocol=str(protocol), data=data,
                      start_time=run.info.start_time, images=images)


def write_report(parent_run_id: str, out_dir: str | Path) -> ReportResult:
    """Write ``report.md`` / ``report.html`` of the parent run's evaluations into ``out_dir`` and log them.

    ``out_dir`` is replaced atomically; an existing non-empty folder that is not a previous report is
    refused (so ``--out .`` cannot wipe a working directory). Raises :class:`VidpredError` (one line) for an
    unknown run id, a parent without evaluation runs, or a malformed ``metrics.json``.
    """
    import mlflow

    from vidpred.fsutil import atomic_dir
    from vidpred.tracking import preflight

    parent_run_id = _check_run_id(parent_run_id)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir())
                                                      and not (out_dir / "report.md").is_file())):
        raise VidpredError(f"output {out_dir} exists and is not a previous report folder: "
                           "choose a new or empty directory")
    uri = preflight()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    try:
        parent = client.get_run(parent_run_id)
    except Exception:
        raise VidpredError(f"MLflow run '{parent_run_id}' was not found at {uri}") from None
    runs = find_evaluation_runs(client, parent)
    if not runs:
        raise VidpredError(f"MLflow run '{parent_run_id}' has no evaluation runs (nested runs tagged "
                           f"vidpred.stage={EVAL_STAGE}): run `vidpred evaluate` under it first")
    paper = load_paper_numbers() if PAPER_NUMBERS_FILE.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="vidpred-report-") as tmp:
        evaluations, skipped = [], []
        for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
            loaded = _load_evaluation(run, Path(tmp))
            (skipped if isinstance(loaded, str) else evaluations).append(loaded)
        evaluations, replaced = _latest_per_method(evaluations)
        skipped += replaced
        if not evaluations:
            raise VidpredError(f"MLflow run '{parent_run_id}': none of its {len(runs)} evaluation run(s) has "
                               "evaluation/metrics.json")
        with atomic_dir(out_dir) as staging:
            failed = [f"{r.info.run_name}: {r.data.tags.get('vidpred.error', 'failed')}"
                      for r in _children(client, [parent.info.experiment_id], parent_run_id)
                      if r.info.status == "FAILED"]
            rendered = render_report(evaluations, dict(parent.data.tags), paper, staging,
                                     parent_run_id=parent_run_id, skipped=skipped, failed=failed)
    logged = headline_metrics(evaluations)
    _log_to_parent(client, parent_run_id, out_dir, logged, rendered["stand_in"])
    return ReportResult(parent_run_id=parent_run_id, out_dir=out_dir, markdown=out_dir / "report.md",
                        html=out_dir / "report.html", images=[out_dir / p for p in rendered["images"]],
                        protocols=rendered["protocols"], logged_metrics=logged, stand_in=rendered["stand_in"],
                        skipped=skipped)


def _latest_per_method(evaluations: list[Evaluation]) -> tuple[list[Evaluation], list[str]]:
    """Keep the latest run of each (track, method); the earlier ones are reported as replaced."""
    latest: dict[tuple[str, str], Evaluation] = {}
    replaced = []
    for ev in evaluations:  # sorted by start time
        key = (ev.track, ev.method)
        if key in latest:
            replaced.append(f"run {latest[key].run_id} ({ev.track}/{ev.method}): superseded by run {ev.run_id}")
        latest[key] = ev
    return list(latest.values()), replaced


def headline_metrics(evaluations: Iterable[Evaluation]) -> dict[str, float]:
    """``<track>/<method>/<metric>`` → mean, finite values only (keys made valid for MLflow)."""
    out = {}
    for ev in evaluations:
        for metric in ev.metrics:
            value = ev.mean(metric)
            if value is not None:
                out[_METRIC_KEY_BAD.sub("_", f"{ev.track}/{ev.method}/{metric}")[:250]] = value
    return out


def _log_to_parent(client, run_id: str, out_dir: Path, metrics: Mapping[str, float], stand_in: bool) -> None:
    import time

    from mlflow.entities import Metric

    client.log_artifacts(run_id, str(out_dir), artifact_path="report")
    now = int(time.time() * 1000)
    items = [Metric(key, float(value), now, 0) for key, value in sorted(metrics.items())]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i:i + 1000])
    client.set_tag(run_id, "vidpred.report.stand_in", "true" if stand_in else "false")


# ------------------------------------------------------------------------------------------ formatting

def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: float | None, metric: str, decimals: int | None = None) -> str:
    """A metric value with the metric's usual number of decimals ("n/a" when missing or non-finite)."""
    value = _finite(value)
    if value is None:
        return "n/a"
    d = DECIMALS.get(metric, 4) if decimals is None else decimals
    if value != 0 and abs(value) < 10 ** -d:
        return f"{value:.2e}"
    return f"{value:.{d}f}"


def _paper_decimals(value: float, metric: str, unit: str) -> int:
    """Decimals to print a paper number as the paper does: its own digits, padded to the column's usual
    precision (YAML drops trailing zeros: 0.170 → 0.17)."""
    text = repr(float(value))
    own = len(text.split(".")[1].rstrip("0")) if "." in text and "e" not in text else 0
    if _is_percent(unit) or metric in ("fvd", "psnr"):
        usual = 1
    else:
        usual = 3
    return max(own, usual)


def _is_percent(unit: Any) -> bool:
    return isinstance(unit, str) and (unit.strip() == "%" or "percent" in unit.lower())


def _metric_sort(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


def _method_sort(evaluations: Iterable[Evaluation]) -> list[Evaluation]:
    def key(ev: Evaluation):
        return (1, BASELINES.index(ev.method), "") if ev.is_baseline else (0, 0, ev.method)
    return sorted(evaluations, key=key)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _data_line(parent_tags: Mapping[str, str]) -> str:
    """``Data md5: <dataset> <md5>, …`` from the per-dataset tags of a pipeline run, else its single md5 tag."""
    prefix = "vidpred.data_md5."
    per_dataset = sorted((k[len(prefix):], v) for k, v in parent_tags.items() if k.startswith(prefix))
    if per_dataset:
        return "Data md5: " + ", ".join(f"{name} {md5}" for name, md5 in per_dataset)
    return f"Data md5: {parent_tags.get('vidpred.data_md5', 'unknown')}"


def _date(ms: int | None) -> str:
    if not ms:
        return "unknown"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------------------------ document model
# The report is built once as a list of blocks and rendered twice (Markdown, HTML).

@dataclass
class Cell:
    text: str
    best: bool = False
    stand_in: bool = False


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    css: str  # class and id prefix: "ours" / "paper"
    table_id: str


@dataclass
class Image:
    path: str  # relative to the report folder
    alt: str


Block = tuple  # ("h", level, text) | ("p", text) | ("ul", [text]) | ("table", Table) | ("img", Image)


def _our_table(track: str, evals: list[Evaluation]) -> Table:
    """Our methods and baselines: mean (95 % interval) per metric, best per column in bold."""
    metrics = _metric_sort({m for ev in evals for m in ev.metrics})
    best: dict[str, set[str]] = {}
    for metric in metrics:
        scored = [(ev, ev.mean(metric)) for ev in evals if ev.mean(metric) is not None]
        pool = [(ev, v) for ev, v in scored if not ev.stand_in(metric)] or scored  # stand-in only among themselves
        if len(pool) < 2:
            continue
        higher = _higher_is_better(evals, metric)
        target = max(v for _, v in pool) if higher else min(v for _, v in pool)
        best[metric] = {ev.run_id for ev, v in pool if v == target}
    header = ["Method", "Kind"] + [f"{m} ({_unit(evals, m)}, {'↑' if _higher_is_better(evals, m) else '↓'})"
                                   for m in metrics]
    rows = []
    for ev in evals:
        row = [Cell(ev.method), Cell("baseline" if ev.is_baseline else "method")]
        for metric in metrics:
            mean = ev.mean(metric)
            if metric not in ev.metrics:
                reason = (ev.data.get("unavailable") or {}).get(metric)
                row.append(Cell("unavailable" if reason else "—"))
                continue
            text = fmt(mean, metric)
            ci = ev.ci(metric)
            if mean is not None and ci is not None:
                text += f" ({fmt(ci[0], metric)}–{fmt(ci[1], metric)})"
            stand_in = ev.stand_in(metric)
            if stand_in:
                text += " stand-in"
            row.append(Cell(text, best=ev.run_id in best.get(metric, set()), stand_in=stand_in))
        rows.append(row)
    return Table(header, rows, "ours", f"ours-{_slug(track)}")


def _higher_is_better(evals: list[Evaluation], metric: str) -> bool:
    for ev in evals:
        flag = (ev.metrics.get(metric) or {}).get("higher_is_better")
        if isinstance(flag, bool):
            return flag
    return HIGHER_IS_BETTER.get(metric, True)


def _unit(evals: list[Evaluation], metric: str) -> str:
    for ev in evals:
        unit = (ev.metrics.get(metric) or {}).get("unit")
        if unit:
            return str(unit)
    return "—"


def _paper_table(track: str, entry: dict, evals: list[Evaluation]) -> Table | None:
    """The papers' rows of this protocol (printed values, units, citations), then our methods that the
    paper rows name, in the paper's units — stand-in scores are not placed there."""
    rows_in = entry.get("rows") or []
    if not rows_in:
        return None
    units = entry.get("units") or {}
    metrics = _metric_sort({m for r in rows_in for m in (r.get("metrics") or {})})
    with_frames = any(r.get("frames") for r in rows_in)
    with_res = any(r.get("resolution") for r in rows_in)
    header = ["Row", "Source", "Method (ours)", "Variant"] + (["Frames"] if with_frames else []) \
        + (["Resolution"] if with_res else []) + [f"{m} ({units.get(m, '?')})" for m in metrics] + ["Citation"]
    rows = []
    for r in rows_in:
        cells = [Cell(str(r["label"])), Cell("paper"), Cell(r.get("method") or "—"), Cell(r.get("variant") or "—")]
        if with_frames:
            cells.append(Cell(f"first {r['frames']}" if r.get("frames") else "all"))
        if with_res:
            cells.append(Cell(f"{r['resolution']}²" if r.get("resolution") else "—"))
        for metric in metrics:
            value = (r.get("metrics") or {}).get(metric)
            if value is None:
                cells.append(Cell("—"))
                continue
            text = fmt(value, metric, _paper_decimals(value, metric, units.get(metric, "")))
            spread = (r.get("spread") or {}).get(metric)
            if spread is not None:
                text += f" ± {fmt(spread, metric, _paper_decimals(spread, metric, units.get(metric, '')))}"
            best = (r.get("best") or {}).get(metric)
            if best is not None:
                text += f" (best {fmt(best, metric, _paper_decimals(best, metric, units.get(metric, '')))})"
            cells.append(Cell(text))
        cells.append(Cell(str(r["cite"])))
        rows.append(cells)
    named = {r.get("method") for r in rows_in if r.get("method")}
    frame_counts = sorted({int(r["frames"]) for r in rows_in if r.get("frames")}) or [None]
    for ev in evals:
        if ev.method not in named:
            continue
        horizon = ev.data.get("horizon")
        for n in frame_counts:
            label = f"vidpred {ev.method}" + (f" (first {n} frame{'s' if n > 1 else ''})" if n and n != horizon else "")
            cells = [Cell(label), Cell("this run"), Cell(ev.method), Cell("—")]
            if with_frames:
                cells.append(Cell(f"first {n}" if n else "all"))
            if with_res:
                size = (ev.data.get("protocol_spec") or {}).get("size")
                cells.append(Cell("×".join(str(s) for s in size) if isinstance(size, list) else "—"))
            for metric in metrics:
                if metric not in ev.metrics:
                    cells.append(Cell("—"))
                    continue
                if ev.stand_in(metric):
                    cells.append(Cell(STAND_IN_NOT_COMPARED, stand_in=True))
                    continue
                value = ev.mean(metric) if (n is None or n == horizon) else ev.first_n_mean(metric, n)
                if value is None:
                    cells.append(Cell("n/a"))
                    continue
                ours_unit = _unit([ev], metric)
                if _is_percent(units.get(metric)) and not _is_percent(ours_unit):
                    cells.append(Cell(fmt(100.0 * value, metric, max(1, DECIMALS.get(metric, 3) - 2))))
                else:
                    cells.append(Cell(fmt(value, metric)))
            cells.append(Cell(f"this report: run {ev.run_id}, mean over {ev.data.get('num_clips', '?')} clips"))
            rows.append(cells)
    return Table(header, rows, "paper", f"paper-{_slug(track)}")


def _per_frame_plot(track: str, evals: list[Evaluation], path: Path) -> bool:
    """One figure, one axis per metric, every method of the track as a line with its 95 % band."""
    from vidpred.evaluate.plots import plot_per_frame

    curves = {ev.method: ev.data for ev in evals}
    return plot_per_frame(curves, path, f"{track}: per predicted frame (bands: 95 % interval over clips)") is not None


def _caveats(track: str, evals: list[Evaluation], entry: dict | None, profile: str | None) -> list[str]:
    """Stand-in weights, scale of the run, number of clips, FVD set size, the evaluator's own caveats."""
    out = []
    stand_ins = [f"{ev.method}: {', '.join(m for m in _metric_sort(ev.metrics) if ev.stand_in(m))}"
                 for ev in evals if any(ev.stand_in(m) for m in ev.metrics)]
    if stand_ins:
        out.append("Stand-in or unverified weights: these scores are labelled 'stand-in' and are not compared "
                   "with the papers' numbers — " + "; ".join(stand_ins) + ".")
    weights = sorted({f"{name} {status}" for ev in evals for name, status in (ev.data.get("weights") or {}).items()
                      if status not in ("verified", None)})
    if weights:
        out.append("Weight files not verified against their published hashes: " + ", ".join(weights) + ".")
    protocol = evals[0].protocol
    if entry is None:
        out.append(f"Protocol '{protocol}' has no published numbers (configs/paper_numbers.yaml): the scores "
                   "measure this pipeline only; they are not a reproduction of a paper's table.")
    elif not entry.get("rows"):
        out.append(f"The papers print no number for '{protocol}': {' '.join(str(entry.get('note', '')).split())}")
    if protocol.startswith("shapes-") or profile in ("smoke", "cpu"):
        out.append(f"Scale: profile '{profile or 'unknown'}' trains small models on CPU"
                   + (" and evaluates on synthetic data" if protocol.startswith("shapes-") else "")
                   + "; the papers train full-size models on GPUs on their datasets, so the numbers are not "
                   "expected to match.")
    stores = sorted({str(ev.data.get("store")) for ev in evals if ev.data.get("store")})
    if stores:
        out.append("Data: " + ", ".join(stores) + f" (split {evals[0].data.get('split', '?')}).")
    spec = evals[0].data.get("protocol_spec") or {}
    wanted = (spec.get("clips") or {}).get("count") if isinstance(spec.get("clips"), Mapping) else None
    paper_clips = ((entry or {}).get("clips") or {}).get("count")
    counts = [ev.data.get("num_clips") for ev in evals]
    if any((wanted and n != wanted) or (paper_clips and n != paper_clips) for n in counts):
        parts = ["clips evaluated: " + ", ".join(f"{ev.method} {n}" for ev, n in zip(evals, counts))]
        if wanted:
            parts.append(f"the protocol asks for {wanted}")
        if paper_clips:
            parts.append(f"the paper used {paper_clips} ({(entry or {}).get('clips', {}).get('cite', '')})")
        out.append("Number of clips — " + "; ".join(parts) + ". Fewer clips give wider intervals and noisier means.")
    for ev in evals:
        n = ev.data.get("num_clips")
        if ev.mean("fvd") is not None:
            fvd = ev.metrics.get("fvd") or {}
            videos = fvd.get("num_videos") or fvd.get("videos")
            if not isinstance(videos, int):
                fvd_spec = spec.get("fvd") if isinstance(spec.get("fvd"), Mapping) else {}
                trials = ev.data.get("samples") if fvd_spec.get("samples") == "all" else 1
                videos = (n or 0) * (trials or 1)
            if videos < FVD_REFERENCE_VIDEOS:
                out.append(f"FVD of {ev.method} is computed from {videos} videos, fewer than the "
                           f"{FVD_REFERENCE_VIDEOS} of the reference implementation: it is biased upward and "
                           "not comparable with published FVDs.")
        for metric, reason in (ev.data.get("unavailable") or {}).items():
            out.append(f"{ev.method}: {metric} unavailable — {reason}")
        out.extend(f"{ev.method}: {c}" for c in ev.data.get("caveats") or [] if c)
    seen, unique = set(), []
    for c in out:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def render_report(evaluations: list[Evaluation], parent_tags: Mapping[str, str], paper: Mapping[str, dict],
                  out: Path, parent_run_id: str = "", skipped: Iterable[str] = (), failed: Iterable[str] = ()) -> dict:
    """Write report.md, report.html and images/ for ``evaluations`` into the folder ``out``.

    No MLflow here (the tests call it directly). Returns {"protocols": {track: [methods]}, "stand_in": bool,
    "images": [relative paths]}.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Evaluation]] = {}
    for ev in evaluations:
        groups.setdefault(ev.track, []).append(ev)
    groups = {t: _method_sort(groups[t]) for t in sorted(groups)}
    profile = parent_tags.get("vidpred.profile")
    times = [ev.start_time for ev in evaluations if ev.start_time]
    dates = (_date(min(times)) + ("" if _date(min(times)) == _date(max(times)) else f" – {_date(max(times))}")
             if times else "unknown")
    stand_in = any(ev.stand_in(m) for ev in evaluations for m in ev.metrics)
    blocks: list[Block] = [
        ("h", 1, "vidpred reproduction report"),
        ("ul", [f"Pipeline run: {parent_run_id or '?'}",
                f"Profile: {profile or 'unknown'}",
                f"Git sha: {parent_tags.get('vidpred.git_sha', 'unknown')}",
                _data_line(parent_tags),
                f"Evaluation runs: {dates}",
                f"Protocols: {len(groups)}; method evaluations: {len(evaluations)}"
                + ("; some scores use stand-in weights (labelled 'stand-in', never compared with a paper)"
                   if stand_in else "")]),
        ("p", "Our tables: mean over the evaluated clips with the 95 % percentile-bootstrap interval over clips "
              "in brackets; the best value per column is in bold (stand-in scores are ranked only when no "
              "column entry is free of stand-in weights). Papers' tables: numbers as printed, in the papers' "
              "units, with the table and row they come from (configs/paper_numbers.yaml)."),
    ]
    if skipped:
        blocks.append(("p", "Runs left out: " + "; ".join(skipped)))
    if failed:
        blocks.append(("p", "Failed stages (their tracks have partial or no results below): " + "; ".join(failed)))
    images: list[str] = []
    for track, evals in groups.items():
        protocol = evals[0].protocol
        first = evals[0].data
        blocks.append(("h", 2, f"{track} — protocol {protocol}"))
        desc = (first.get("protocol_spec") or {}).get("description")
        blocks.append(("p", (f"{desc}. " if desc else "")
                       + f"{first.get('context', '?')} context → {first.get('horizon', '?')} predicted frames; "
                       f"{first.get('samples', '?')} trial(s) per clip, best of: {first.get('best_of', '?')}; "
                       f"split {first.get('split', '?')}; clips: "
                       + ", ".join(f"{ev.method} {ev.data.get('num_clips', '?')}" for ev in evals) + "."))
        blocks.append(("h", 3, "Our evaluation"))
        blocks.append(("table", _our_table(track, evals)))
        entry = paper.get(protocol)
        blocks.append(("h", 3, "Papers' numbers"))
        table = _paper_table(track, entry, evals) if entry else None
        if table is not None:
            blocks.append(("p", f"Source: {entry['source']}. " + " ".join(str(entry.get("note", "")).split())))
            blocks.append(("table", table))
        elif entry:
            blocks.append(("p", f"Source: {entry['source']}. No published number: "
                                + " ".join(str(entry.get("note", "")).split())))
        else:
            blocks.append(("p", f"No published numbers for protocol '{protocol}'."))
        plot = f"images/per_frame_{_slug(track)}.png"
        blocks.append(("h", 3, "Per predicted frame"))
        if _per_frame_plot(track, evals, out / plot):
            images.append(plot)
            blocks.append(("img", Image(plot, f"{track}: per-frame metrics of all methods")))
        else:
            blocks.append(("p", "No per-frame values (set-level or keypoint metrics only)."))
        blocks.append(("h", 3, "Samples"))
        any_samples = False
        for ev in evals:
            if "samples" in ev.images:
                rel = f"images/samples_{_slug(track)}_{_slug(ev.method)}.png"
                shutil.copyfile(ev.images["samples"], out / rel)
                images.append(rel)
                blocks.append(("p", f"{ev.method}: context | ground truth | prediction"))
                blocks.append(("img", Image(rel, f"{track} / {ev.method}: samples")))
                any_samples = True
        if not any_samples:
            blocks.append(("p", "No sample grids were logged."))
        blocks.append(("h", 3, "Caveats"))
        blocks.append(("ul", _caveats(track, evals, entry, profile)))
    (out / "report.md").write_text(_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(_html(blocks, out), encoding="utf-8")
    return {"protocols": {t: [ev.method for ev in evals] for t, evals in groups.items()}, "stand_in": stand_in,
            "images": images}


# ------------------------------------------------------------------------------------------ renderers

def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            table: Table = block[1]
            lines.append("| " + " | ".join(_md_escape(h) for h in table.header) + " |")
            lines.append("|" + "---|" * len(table.header))
            for row in table.rows:
                lines.append("| " + " | ".join(f"**{_md_escape(c.text)}**" if c.best else _md_escape(c.text)
                                               for c in row) + " |")
            lines.append("")
        elif kind == "img":
            image: Image = block[1]
            lines += [f"![{image.alt}]({image.path})", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.best { background: #e6f4ea; }
td.stand-in { color: #8a5a00; font-style: italic; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def _html(blocks: list[Block], root: Path) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>vidpred reproduction report</title>", f"<style>{_CSS}</style>", "</head><body>"]
    for block in blocks:
        kind = block[0]
        if kind == "h":
            parts.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
        elif kind == "p":
            parts.append(f"<p>{esc(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            table: Table = block[1]
            parts.append(f'<table class="{table.css}" id="{esc(table.table_id)}"><thead><tr>'
                         + "".join(f"<th>{esc(h)}</th>" for h in table.header) + "</tr></thead><tbody>")
            for row in table.rows:
                cells = []
                for c in row:
                    classes = " ".join(k for k, on in (("best", c.best), ("stand-in", c.stand_in)) if on)
                    attr = f' class="{classes}"' if classes else ""
                    text = f"<strong>{esc(c.text)}</strong>" if c.best else esc(c.text)
                    cells.append(f"<td{attr}>{text}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table>")
        elif kind == "img":
            image: Image = block[1]
            data = base64.b64encode((root / image.path).read_bytes()).decode("ascii")
            parts.append(f'<figure><img alt="{esc(image.alt)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{esc(image.alt)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["write_report", "ReportResult", "Evaluation", "render_report", "load_paper_numbers",
           "find_evaluation_runs", "headline_metrics", "PAPER_NUMBERS_FILE"]
