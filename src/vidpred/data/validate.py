"""Great Expectations gates over a clip store's manifest (one row per video).

:func:`validate_store` builds one GX suite (GX 1.x fluent API, ephemeral context, pandas dataframe
asset, whole-dataframe batch) and runs it over the manifest plus a few derived columns. Every
expectation carries ``meta.gate``; a gate passes when all its expectations pass. The gates:

===============  ==========================================================================================
``columns``      every manifest column of ``vidpred.data.store.MANIFEST_COLUMNS`` exists; at least one row
``types``        each column has its contract dtype and no nulls / NaN
``ranges``       height × width = the store's ``frame_shape`` [H, W, 3] (else its square ``size``); fps > 0; num_frames ≥ 1; 0 ≤ pixel_mean ≤ 255;
                 0 ≤ pixel_std ≤ 127.5 (the largest std of values in 0..255)
``unique_ids``   video_id is unique
``long_enough``  num_frames ≥ (clip_len − 1)·stride + 1 — every video yields at least one clip
                 (clip_len defaults to the store's ``clip_len``)
``not_constant`` pixel_std > ``MIN_PIXEL_STD`` (2.0 in 0..255 units; a constant video has 0 and codec
                 noise on a flat frame stays near 1 — assumed)
``splits``       split ∈ {train, val, test}; at least one train video; if a test split exists its share
                 of videos is within ``TEST_FRACTION`` = [0.05, 0.5] (assumed: fewer than 5 % gives too
                 noisy a benchmark, more than half leaves too little to train on); if a val split exists
                 its share is within ``VAL_FRACTION`` = [0.01, 0.5] (assumed: below 1 % the tuning signal
                 is noise; validation sets are often smaller than test sets, hence the lower floor) and
                 train keeps at least ``MIN_TRAIN_FRACTION`` = 0.5 of the videos (val + test ≤ half, the
                 same reason as the test bound's upper end)
``shards``       each row's shard file exists, is a readable uint8 N×H×W×3 array, and holds
                 frames offset … offset + num_frames − 1
===============  ==========================================================================================

Reports go to ``<report_dir>/validation.json`` (the GX result's JSON) and ``validation.txt`` (the
lines of :meth:`ValidationResult.describe`); ``report_dir`` defaults to the sibling folder ``<store>.validation`` — outside the store, so validating a
DVC-tracked store never changes its md5.
GX is imported lazily (its import takes seconds).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidpred.data.store import read_store_files
from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_file

MIN_PIXEL_STD = 2.0  # assumed: see the module docstring
MAX_PIXEL_STD = 127.5  # derived: the largest std of values in [0, 255]
TEST_FRACTION = (0.05, 0.5)  # assumed: see the module docstring
VAL_FRACTION = (0.01, 0.5)  # assumed: see the module docstring
MIN_TRAIN_FRACTION = 0.5  # assumed: see the module docstring (checked when a val split exists)
SPLITS = ("train", "val", "test")
GATES = ("columns", "types", "ranges", "unique_ids", "long_enough", "not_constant", "splits", "shards")
_SHOW = 8  # offending values shown per failed expectation


@dataclass
class Gate:
    name: str
    success: bool
    problems: list[str] = field(default_factory=list)  # one line per failed expectation
    notes: list[str] = field(default_factory=list)  # e.g. "no test split: fraction check skipped"


@dataclass
class ValidationResult:
    """Outcome of :func:`validate_store`: ``success``, per-gate results, the GX result as a dict."""

    store: Path
    success: bool
    gates: list[Gate]
    gx_result: dict
    report_dir: Path

    def gate(self, name: str) -> Gate:
        return next(g for g in self.gates if g.name == name)

    @property
    def failed(self) -> list[str]:
        return [g.name for g in self.gates if not g.success]

    def describe(self) -> str:
        n = len(self.gates)
        head = (f"store {self.store}: all {n} gates passed" if self.success
                else f"store {self.store}: {len(self.failed)} of {n} gates FAILED ({', '.join(self.failed)})")
        lines = [head]
        for g in self.gates:
            lines.append(f"  {'PASS' if g.success else 'FAIL'} {g.name}")
            lines += [f"       - {p}" for p in g.problems]
            lines += [f"       ({n_})" for n_ in g.notes]
        lines.append(f"report: {self.report_dir / 'validation.json'}, {self.report_dir / 'validation.txt'}")
        return "\n".join(lines)


def _shard_status(directory: Path, manifest) -> list[str]:
    """Per row: 'ok', or why its frames cannot be served (missing / unreadable / too short shard)."""
    cache: dict[str, Any] = {}
    out = []
    for shard, offset, num in zip(manifest["shard"], manifest["offset"], manifest["num_frames"]):
        if shard not in cache:
            path = directory / str(shard)
            if not path.is_file():
                cache[shard] = "missing"
            else:
                try:
                    arr = np.load(path, mmap_mode="r", allow_pickle=False)
                    ok = arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[-1] == 3
                    cache[shard] = len(arr) if ok else "not uint8 N×H×W×3"
                except (OSError, ValueError):
                    cache[shard] = "unreadable"
        length = cache[shard]
        if isinstance(length, str):
            out.append(f"{length}: {shard}")
        elif offset < 0 or offset + num > length:
            out.append(f"frames {offset}..{offset + num - 1} beyond {shard} ({length} frames)")
        else:
            out.append("ok")
    return out


def store_hw(meta: dict) -> tuple[int, int] | None:
    """The (H, W) a store declares: ``frame_shape`` [H, W, 3], else ``size`` (N or [H, W]), else None."""
    shape = meta.get("frame_shape")
    if isinstance(shape, (list, tuple)) and len(shape) >= 2 and all(isinstance(v, int) for v in shape[:2]):
        return int(shape[0]), int(shape[1])
    size = meta.get("size")
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]), int(size[1])
    return None


def _expectations(E, meta: dict, manifest, need: int, columns: dict, test_fraction=TEST_FRACTION,
                  val_fraction=VAL_FRACTION) -> list[tuple[str, str, Any]]:
    """(gate, human description, GX expectation) for every check."""
    present = set(manifest.columns)
    specs: list[tuple[str, str, Any]] = [
        ("columns", "at least one video", E.ExpectTableRowCountToBeBetween(min_value=1)),
    ]
    for col in columns:
        specs.append(("columns", f"column {col} exists", E.ExpectColumnToExist(column=col)))
    for col, dtype in columns.items():
        if col in present:
            specs.append(("types", f"{col} has dtype {dtype}", E.ExpectColumnValuesToBeOfType(column=col, type_=dtype)))
            specs.append(("types", f"{col} has no nulls/NaN", E.ExpectColumnValuesToNotBeNull(column=col)))
    hw = store_hw(meta)
    ranges = [
        ("fps", "fps > 0", dict(min_value=0, strict_min=True)),
        ("num_frames", "num_frames >= 1", dict(min_value=1)),
        ("pixel_mean", "0 <= pixel_mean <= 255", dict(min_value=0, max_value=255)),
        ("pixel_std", f"0 <= pixel_std <= {MAX_PIXEL_STD}", dict(min_value=0, max_value=MAX_PIXEL_STD)),
    ]
    if hw is not None:
        what = ("store size", "store size") if hw[0] == hw[1] else ("store height", "store width")
        ranges += [("height", f"height == {what[0]} {hw[0]}", dict(min_value=hw[0], max_value=hw[0])),
                   ("width", f"width == {what[1]} {hw[1]}", dict(min_value=hw[1], max_value=hw[1]))]
    else:
        ranges += [("height", "height >= 1", dict(min_value=1)), ("width", "width >= 1", dict(min_value=1))]
    for col, text, kw in ranges:
        if col in present:
            specs.append(("ranges", text, E.ExpectColumnValuesToBeBetween(column=col, **kw)))
    if "video_id" in present:
        specs.append(("unique_ids", "video_id is unique", E.ExpectColumnValuesToBeUnique(column="video_id")))
    if "num_frames" in present:
        specs.append(("long_enough", f"num_frames >= {need} (one clip)",
                      E.ExpectColumnValuesToBeBetween(column="num_frames", min_value=need)))
    if "pixel_std" in present:
        specs.append(("not_constant", f"pixel_std > {MIN_PIXEL_STD}",
                      E.ExpectColumnValuesToBeBetween(column="pixel_std", min_value=MIN_PIXEL_STD, strict_min=True)))
    if "split" in present:
        specs.append(("splits", f"split in {set(SPLITS)}", E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS))))
        specs.append(("splits", "at least one train video",
                      E.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train"])))
        if (manifest["split"] == "test").any():
            lo, hi = test_fraction
            specs.append(("splits", f"test fraction within [{lo}, {hi}]",
                          E.ExpectColumnMeanToBeBetween(column="_is_test", min_value=lo, max_value=hi)))
        if (manifest["split"] == "val").any():
            lo, hi = val_fraction
            specs.append(("splits", f"val fraction within [{lo}, {hi}]",
                          E.ExpectColumnMeanToBeBetween(column="_is_val", min_value=lo, max_value=hi)))
            specs.append(("splits", f"train fraction >= {MIN_TRAIN_FRACTION} (val + test at most the rest)",
                          E.ExpectColumnMeanToBeBetween(column="_is_train", min_value=MIN_TRAIN_FRACTION)))
    if {"shard", "offset", "num_frames"} <= present:
        specs.append(("shards", "shard file exists and holds the video's frames",
                      E.ExpectColumnValuesToBeInSet(column="_shard_status", value_set=["ok"])))
    return specs


def _fmt(value: Any) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def _offending(result: dict, df) -> str:
    """A short text of what failed: offending values with their video ids, or the observed value."""
    res = result.get("result") or {}
    exc = result.get("exception_info") or {}
    if exc.get("raised_exception"):
        return "could not be evaluated: " + str(exc.get("exception_message", "")).splitlines()[0][:200]
    idx = res.get("unexpected_index_list")
    if idx:
        shown = []
        for item in idx[:_SHOW]:
            if isinstance(item, dict):
                vid = item.get("video_id")
                val = {k: v for k, v in item.items() if k != "video_id"}
                shown.append(f"{vid}={_fmt(next(iter(val.values())))}" if len(val) == 1 else f"{vid}")
            else:
                shown.append(repr(item))
        more = f" (+{len(idx) - _SHOW} more)" if len(idx) > _SHOW else ""
        return f"{res.get('unexpected_count', len(idx))} offending: {', '.join(shown)}{more}"
    if "partial_unexpected_list" in res and res["partial_unexpected_list"]:
        vals = res["partial_unexpected_list"][:_SHOW]
        return f"{res.get('unexpected_count')} offending values: {', '.join(map(_fmt, vals))}"
    if "observed_value" in res:
        return f"observed {_fmt(res['observed_value'])}"
    return "failed"


def _fraction(name: str, value, default: tuple[float, float]) -> tuple[float, float]:
    if value is None:
        return default
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise VidpredError(f"{name} must be two numbers [low, high], got {value!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise VidpredError(f"{name} must satisfy 0 ≤ low ≤ high ≤ 1, got {value!r}")
    return lo, hi


def validate_store(directory: str | Path, clip_len: int | None = None, report_dir: str | Path | None = None,
                   stride: int = 1, test_fraction: tuple[float, float] | None = None,
                   val_fraction: tuple[float, float] | None = None) -> ValidationResult:
    """Run every gate on the store at ``directory``; write validation.json / validation.txt reports.

    ``test_fraction`` / ``val_fraction`` replace the default share bounds for a dataset whose published split
    is outside them (BAIR's 256 test videos are 0.6 % of the set); the profile says where such bounds come from."""
    import pandas as pd

    from vidpred.data.store import MANIFEST_COLUMNS

    directory = Path(directory)
    meta, manifest = read_store_files(directory)
    clip_len = clip_len if clip_len is not None else meta.get("clip_len")
    if clip_len is None or int(clip_len) < 1:
        raise VidpredError(f"clip_len must be >= 1 (store {directory} has {meta.get('clip_len')!r}); pass --clip-len")
    if int(stride) < 1:
        raise VidpredError(f"stride must be >= 1, got {stride}")
    need = (int(clip_len) - 1) * int(stride) + 1
    test_fraction = _fraction("test_fraction", test_fraction, TEST_FRACTION)
    val_fraction = _fraction("val_fraction", val_fraction, VAL_FRACTION)

    df = manifest.copy()
    if "split" in df.columns:
        for split in SPLITS:
            df[f"_is_{split}"] = (df["split"] == split).astype("float64")
    if {"shard", "offset", "num_frames"} <= set(df.columns):
        df["_shard_status"] = pd.Series(_shard_status(directory, df), index=df.index, dtype="str")

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (ctx.data_sources.add_pandas("clip_store").add_dataframe_asset("manifest")
             .add_batch_definition_whole_dataframe("whole_manifest"))
    suite = ctx.suites.add(gx.ExpectationSuite(name="clip_store_gates"))
    specs = _expectations(gx.expectations, meta, manifest, need, MANIFEST_COLUMNS, test_fraction, val_fraction)
    for i, (gate, text, exp) in enumerate(specs):
        exp.meta = {"gate": gate, "check": text, "index": i}
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="clip_store", data=batch, suite=suite))
    result_format: dict = {"result_format": "COMPLETE"}
    if "video_id" in df.columns:
        result_format["unexpected_index_column_names"] = ["video_id"]
    gx_result = vd.run(batch_parameters={"dataframe": df}, result_format=result_format)
    raw = gx_result.to_json_dict()

    gates = {name: Gate(name, True) for name in GATES}
    for r in raw["results"]:
        m = r["expectation_config"].get("meta") or {}
        g = gates[m["gate"]]
        if not r["success"]:
            g.success = False
            g.problems.append(f"{m['check']}: {_offending(r, df)}")
    if "split" in df.columns and not (df["split"] == "test").any():
        gates["splits"].notes.append("no test split: test-fraction check skipped")
    if "split" in df.columns and not (df["split"] == "val").any():
        gates["splits"].notes.append("no val split: val-fraction check skipped (training stages need one)")
    success = all(g.success for g in gates.values())
    result = ValidationResult(store=directory, success=success, gates=list(gates.values()), gx_result=raw,
                              report_dir=Path(report_dir) if report_dir is not None else directory.with_name(directory.name + ".validation"))

    report = dict(raw)  # the GX result's JSON, with our gate summary added under meta.vidpred
    report["meta"] = {**(raw.get("meta") or {}), "vidpred": {
        "store": str(directory.resolve()), "clip_len": int(clip_len), "stride": int(stride),
        "success": success, "gates": {g.name: g.success for g in result.gates}}}
    with atomic_file(result.report_dir / "validation.json", "w") as fh:
        json.dump(report, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    with atomic_file(result.report_dir / "validation.txt", "w") as fh:
        fh.write(result.describe() + "\n")
    return result
