"""Great Expectations gates over clip stores: a good store passes, each broken store fails its gate.

The stores are made here with the real StoreWriter from small random frames (8×8 px); broken ones are
written with a bad video, or have their manifest/shards altered afterwards, the way a corrupted or
hand-edited store would look.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vidpred.data.store import StoreWriter
from vidpred.data.validate import GATES, validate_store
from vidpred.errors import VidpredError

CLIP_LEN = 4


def make_store(path: Path, splits=("train",) * 6 + ("val", "test"), lengths=None, constant=()) -> Path:
    rng = np.random.default_rng(0)
    with StoreWriter(path, {"dataset": "test", "size": 8, "clip_len": CLIP_LEN, "options": {}}, shard_frames=16) as w:
        for i, split in enumerate(splits):
            n = lengths[i] if lengths else 6
            frames = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
            if i in constant:
                frames[:] = 90
            w.add(f"v{i}", split, frames, fps=25.0, source="test")
    return path


def edit_manifest(store: Path, fn) -> None:
    m = pd.read_parquet(store / "manifest.parquet")
    fn(m).to_parquet(store / "manifest.parquet", index=False)


def failed(result) -> set[str]:
    return {g.name for g in result.gates if not g.success}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("good") / "store")


def test_good_store_passes_and_writes_reports(good, tmp_path):
    res = validate_store(good, report_dir=tmp_path / "rep")
    assert res.success, res.describe()
    assert [g.name for g in res.gates] == list(GATES)
    report = json.loads((tmp_path / "rep" / "validation.json").read_text())
    assert report["success"] is True and len(report["results"]) > 20  # GX result JSON
    assert report["meta"]["vidpred"]["gates"] == {g: True for g in GATES}
    txt = (tmp_path / "rep" / "validation.txt").read_text()
    assert "all 8 gates passed" in txt and "PASS shards" in txt


def test_default_report_dir_is_beside_the_store(tmp_path):
    store = make_store(tmp_path / "s")
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    validate_store(store)
    assert (tmp_path / "s.validation" / "validation.json").is_file()
    assert (tmp_path / "s.validation" / "validation.txt").is_file()
    # the store itself (tracked by DVC) is untouched
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_too_short_video_fails_long_enough(tmp_path):
    store = make_store(tmp_path / "s", lengths=[6, 6, 3, 6, 6, 6, 6, 6])
    res = validate_store(store)
    assert failed(res) == {"long_enough"}
    assert "v2=3" in "\n".join(res.gate("long_enough").problems)
    assert "FAIL long_enough" in (store.with_name(store.name + ".validation") / "validation.txt").read_text()
    # a longer clip_len asked on the command line makes every video too short
    assert "long_enough" in failed(validate_store(make_store(tmp_path / "t"), clip_len=7))


def test_constant_video_fails_not_constant(tmp_path):
    store = make_store(tmp_path / "s", constant=(1,))
    res = validate_store(store)
    assert failed(res) == {"not_constant"}
    assert "v1=0" in res.gate("not_constant").problems[0]
    report = json.loads((store.with_name(store.name + ".validation") / "validation.json").read_text())
    assert report["success"] is False and report["meta"]["vidpred"]["gates"]["not_constant"] is False


def test_duplicate_id_fails_unique_ids(tmp_path):
    store = make_store(tmp_path / "s")
    edit_manifest(store, lambda m: m.assign(video_id=["v0", "v0", *m["video_id"][2:]]))
    res = validate_store(store)
    assert failed(res) == {"unique_ids"}
    assert "2 offending: v0, v0" in res.gate("unique_ids").problems[0]


def test_no_train_split_fails_splits(tmp_path):
    store = make_store(tmp_path / "s", splits=("val",) * 6 + ("test",))
    res = validate_store(store)
    assert failed(res) == {"splits"}
    assert "at least one train video" in res.gate("splits").problems[0]


def test_test_fraction_out_of_range_and_unknown_split(tmp_path):
    store = make_store(tmp_path / "s", splits=("train", "train", "test", "test", "test"))
    res = validate_store(store)
    assert failed(res) == {"splits"}
    assert "test fraction" in res.gate("splits").problems[0] and "0.6" in res.gate("splits").problems[0]
    store2 = make_store(tmp_path / "t", splits=("train",) * 4 + ("holdout",))
    assert "split in" in validate_store(store2).gate("splits").problems[0]


def test_val_split_is_accepted_and_its_share_checked(tmp_path, good):
    res = validate_store(good, report_dir=tmp_path / "rep")  # 6 train, 1 val (12.5 %), 1 test
    checks = [r["expectation_config"]["meta"]["check"] for r in res.gx_result["results"]]
    assert "val fraction within [0.01, 0.5]" in checks and res.gate("splits").success
    assert not any("no val split" in n for n in res.gate("splits").notes)
    # val bigger than half the store
    res = validate_store(make_store(tmp_path / "big", splits=("train", "train", "val", "val", "val", "val")))
    assert failed(res) == {"splits"}
    problems = "\n".join(res.gate("splits").problems)
    assert "val fraction within [0.01, 0.5]: observed 0.6667" in problems
    # val and test each fine on their own, but together they leave train less than half the videos
    res = validate_store(make_store(tmp_path / "held", splits=("train",) * 4 + ("val",) * 3 + ("test",) * 3))
    assert failed(res) == {"splits"}
    assert "train fraction >= 0.5" in res.gate("splits").problems[0] and "0.4" in res.gate("splits").problems[0]
    # a sliver of val (1 video in 120, 0.8 %) is too small to tune on
    res = validate_store(make_store(tmp_path / "tiny", splits=("train",) * 109 + ("val",) + ("test",) * 10))
    assert failed(res) == {"splits"} and "val fraction" in res.gate("splits").problems[0]
    # no val split: passes, with a note
    res = validate_store(make_store(tmp_path / "noval", splits=("train",) * 6 + ("test",)))
    assert res.success and any("no val split" in n for n in res.gate("splits").notes)


def test_missing_and_short_shards_fail_shards(tmp_path):
    store = make_store(tmp_path / "s")  # 8 videos × 6 frames, shard_frames=16 → several shards
    (store / "shards" / "shard-00001.npy").unlink()
    edit_manifest(store, lambda m: m.assign(offset=[*m["offset"][:-1], 10_000]))
    res = validate_store(store)
    assert failed(res) == {"shards"}
    text = res.gate("shards").problems[0]
    assert "missing: shards/shard-00001.npy" in text and "beyond" in text


def test_nan_wrong_size_and_missing_column(tmp_path):
    store = make_store(tmp_path / "s")
    edit_manifest(store, lambda m: m.assign(fps=[np.nan, *m["fps"][1:]], height=[16, *m["height"][1:]]))
    res = validate_store(store)
    assert {"types", "ranges"} <= failed(res)
    assert "fps has no nulls" in "\n".join(res.gate("types").problems)
    assert "height == store size 8" in "\n".join(res.gate("ranges").problems)
    edit_manifest(store, lambda m: m.drop(columns=["pixel_std"]))
    res = validate_store(store)
    assert "columns" in failed(res)
    assert "column pixel_std exists" in res.gate("columns").problems[0]


def test_non_store_dir_raises(tmp_path):
    with pytest.raises(VidpredError, match="not a vidpred clip store"):
        validate_store(tmp_path)
    with pytest.raises(VidpredError, match="does not exist"):
        validate_store(tmp_path / "nope")
    store = make_store(tmp_path / "s")
    (store / "manifest.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(VidpredError, match="manifest.parquet cannot be read"):
        validate_store(store)


def test_cli_exit_codes(good, tmp_path, monkeypatch, capsys):
    """`vidpred data validate`: 0 when every gate passes, 1 when one fails, 2 (one error line) on a non-store."""
    from typer.testing import CliRunner

    from vidpred.cli import app, main

    ok = CliRunner().invoke(app, ["data", "validate", str(good), "--report-dir", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    assert "all 8 gates passed" in ok.output
    bad = make_store(tmp_path / "bad", constant=(0,))
    res = CliRunner().invoke(app, ["data", "validate", str(bad)])
    assert res.exit_code == 1 and "FAIL not_constant" in res.output
    monkeypatch.setattr(sys, "argv", ["vidpred", "data", "validate", str(tmp_path / "ok")])  # not a store
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error:") and len(err.splitlines()) == 1


def test_published_split_bounds_replace_the_default_shares(tmp_path):
    # one test video in 40 (2.5 %, like a published benchmark split): fails the default 5 % floor …
    store = make_store(tmp_path / "s", splits=("train",) * 38 + ("val", "test"))
    res = validate_store(store)
    assert failed(res) == {"splits"} and "test fraction within [0.05, 0.5]" in res.gate("splits").problems[0]
    # … passes with the dataset's own bounds, which the report states
    res = validate_store(store, test_fraction=[0.01, 0.5], report_dir=tmp_path / "rep")
    checks = [r["expectation_config"]["meta"]["check"] for r in res.gx_result["results"]]
    assert res.success and "test fraction within [0.01, 0.5]" in checks
    # the bound still bites: a floor above the observed share fails
    assert failed(validate_store(store, val_fraction=[0.1, 0.5])) == {"splits"}
    for bad in ([0.5, 0.1], [0.1], ["a", 0.2], [-0.1, 0.5]):
        with pytest.raises(VidpredError, match="test_fraction"):
            validate_store(store, test_fraction=bad)
