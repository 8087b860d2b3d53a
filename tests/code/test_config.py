"""Config loading, overrides, provenance — and a check that every shipped config states its sources."""

from pathlib import Path

import pytest
import yaml

from vidpred.config import CONFIG_DIR, load_config, missing_provenance, profile_config
from vidpred.errors import VidpredError


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_get_set_and_override(tmp_path):
    p = write(tmp_path / "a.yaml", {
        "train": {"lr": 1e-4, "steps": 10, "name": "x"},
        "provenance": {"train.lr": "paper: Tab. 1", "train.steps": "assumed: tiny"},
    })
    cfg = load_config(p, ["train.steps=20", "train.extra=[1, 2]", "model.width=8"])
    assert cfg["train.lr"] == pytest.approx(1e-4)
    assert cfg["train.steps"] == 20 and cfg.provenance["train.steps"] == "override: --set"
    assert cfg["train.extra"] == [1, 2]
    assert cfg["model.width"] == 8
    assert cfg.flat()["train.name"] == "x"
    assert cfg.get("train.missing", 3) == 3
    with pytest.raises(VidpredError, match="train.missing"):
        cfg["train.missing"]
    sub = cfg.section("train")
    assert sub["lr"] == pytest.approx(1e-4) and sub.provenance["lr"] == "paper: Tab. 1"


def test_base_merges_and_child_wins(tmp_path):
    write(tmp_path / "base.yaml", {"a": {"x": 1, "y": 2}, "provenance": {"a": "assumed: base"}})
    child = write(tmp_path / "child.yaml", {"base": "base.yaml", "a": {"y": 3},
                                            "provenance": {"a.y": "paper: Sec. 4"}})
    cfg = load_config(child)
    assert cfg["a.x"] == 1 and cfg["a.y"] == 3
    assert cfg.provenance["a.y"] == "paper: Sec. 4" and cfg.provenance["a"] == "assumed: base"
    assert missing_provenance(cfg) == []


def test_missing_provenance_found(tmp_path):
    p = write(tmp_path / "a.yaml", {"a": {"x": 1, "s": "text", "flag": True}, "b": [1, 2]})
    assert sorted(missing_provenance(load_config(p))) == ["a.x", "b"]


@pytest.mark.parametrize("bad,msg", [
    ("key_without_value", "key=value"),
    ("=3", "key=value"),
])
def test_bad_override(tmp_path, bad, msg):
    p = write(tmp_path / "a.yaml", {"a": 1, "provenance": {"a": "assumed: x"}})
    with pytest.raises(VidpredError, match=msg):
        load_config(p, [bad])


def test_bad_files(tmp_path):
    with pytest.raises(VidpredError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(VidpredError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(VidpredError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    write(tmp_path / "prov.yaml", {"a": 1, "provenance": {"a": "from a blog"}})
    with pytest.raises(VidpredError, match="provenance of 'a'"):
        load_config(tmp_path / "prov.yaml")


def test_unknown_profile():
    with pytest.raises(VidpredError, match="unknown profile 'nope'"):
        profile_config("nope")


SHIPPED = sorted(CONFIG_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(CONFIG_DIR)) for p in SHIPPED])
def test_every_shipped_config_states_where_each_number_comes_from(path):
    cfg = load_config(path)
    assert missing_provenance(cfg) == [], f"{path}: numbers without provenance"


def test_dataclass_from_dict_rejects_typos_and_honours_ignore():
    from dataclasses import dataclass

    from vidpred.config import dataclass_from_dict

    @dataclass
    class Settings:
        width: int = 8
        depth: int = 2

    assert dataclass_from_dict(Settings, {"width": 16}, "model") == Settings(width=16, depth=2)
    with pytest.raises(VidpredError, match=r"model: unknown setting\(s\) widht"):
        dataclass_from_dict(Settings, {"widht": 16}, "model")
    # keys read elsewhere can be named, and are then left out
    assert dataclass_from_dict(Settings, {"depth": 3, "steps": 9}, "model", ignore=["steps"]) == Settings(depth=3)
