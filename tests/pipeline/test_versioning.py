"""DVC versioning: our directory md5 equals what a real `dvc add` records; add → push → (delete the
workspace copy and the cache) → pull restores the bytes; the repository's data.dvc matches re-preparing
the default dataset. Every test builds its own small files (and temp git + DVC repositories)."""

import shutil
import subprocess

import numpy as np
import pytest
import yaml

from vidpred.config import REPO_ROOT
from vidpred.data import versioning
from vidpred.errors import VidpredError


def git_repo(path):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def write_tree(root):
    """A small directory of real files: text, binary (npy), nested, an empty file."""
    rng = np.random.default_rng(0)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    np.save(root / "sub" / "frames.npy", rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8))
    (root / "sub" / "deeper" / "blob.bin").write_bytes(rng.bytes(70_000))
    (root / "empty").write_bytes(b"")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_dir_md5_equals_dvc_add_and_push_pull_round_trip(tmp_path):
    repo = git_repo(tmp_path / "repo")
    versioning.init_repo(repo, repo / ".dvc-remote")
    conf = (repo / ".dvc" / "config").read_text()
    assert "remote = local" in conf and "url = ../.dvc-remote" in conf  # relative: the checkout can move
    data = repo / "data"
    data.mkdir()
    original = write_tree(data)

    ours = versioning.dir_md5(data)
    recorded = versioning.track(data, repo)
    assert ours.endswith(".dir") and len(ours) == 32 + 4
    assert recorded == ours
    dvc_file = yaml.safe_load((repo / "data.dvc").read_text())
    assert dvc_file["outs"][0]["nfiles"] == len(original)

    assert versioning.push(repo) == len(original) + 1  # the files and the .dir listing
    shutil.rmtree(data)
    shutil.rmtree(repo / ".dvc" / "cache")
    stats = versioning.pull(repo)
    assert stats["stats"]["fetched"] == len(original) + 1
    restored = {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert restored == original
    assert versioning.dir_md5(data) == recorded


def test_dir_md5_changes_with_content_and_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_tree(a), write_tree(b)
    assert versioning.dir_md5(a) == versioning.dir_md5(b)  # same bytes, other place: same md5
    (b / "a.txt").write_text("hello!\n")
    changed = versioning.dir_md5(b)
    assert changed != versioning.dir_md5(a)
    (b / "a.txt").rename(b / "renamed.txt")
    assert versioning.dir_md5(b) not in (changed, versioning.dir_md5(a))


def test_dvc_env_is_set_for_dvc_calls(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_SITE_CACHE_DIR", raising=False)
    monkeypatch.setenv("VIDPRED_CACHE", str(tmp_path / "cache"))
    env = versioning.dvc_env()
    assert env["DVC_NO_ANALYTICS"] == "1"
    assert env["DVC_SITE_CACHE_DIR"] == str(tmp_path / "cache" / "dvc-site")
    assert (tmp_path / "cache" / "dvc-site").is_dir()


def test_errors_name_the_path(tmp_path):
    with pytest.raises(VidpredError, match="not a directory"):
        versioning.dir_md5(tmp_path / "missing")
    bad = tmp_path / "data.dvc"
    bad.write_text("outs: [\n")
    with pytest.raises(VidpredError, match=r"data\.dvc is not a valid \.dvc file"):
        versioning.recorded_md5(bad)
    with pytest.raises(VidpredError, match="does not exist"):
        versioning.recorded_md5(tmp_path / "nothing.dvc")
    repo = git_repo(tmp_path / "repo")
    versioning.init_repo(repo)
    with pytest.raises(VidpredError, match="cannot track .*gone: it does not exist"):
        versioning.track(repo / "gone", repo)
    with pytest.raises(VidpredError, match="dvc in"):  # no remote configured
        versioning.push(repo)


def test_repository_points_at_the_default_dataset():
    conf = (REPO_ROOT / ".dvc" / "config").read_text()
    assert "remote = local" in conf and "url = ../.dvc-remote" in conf
    md5 = versioning.recorded_md5(REPO_ROOT / "data.dvc")
    assert md5.endswith(".dir")
    assert yaml.safe_load((REPO_ROOT / "data.dvc").read_text())["outs"][0]["path"] == "data"


def test_re_preparing_the_default_dataset_gives_the_md5_in_data_dvc(tmp_path):
    # prepares the smoke profile's shapes set (12 train + 2 val + 4 test videos × 24 frames at 64 px, ~1.5 s) anew
    md5 = versioning.prepare_default(tmp_path / "data")
    assert md5 == versioning.recorded_md5(REPO_ROOT / "data.dvc")
    # a different seed is different data
    assert versioning.prepare_default(tmp_path / "other", overrides=["datasets.shapes.options.seed=1",
                                                                    "datasets.shapes.options.num_videos=2",
                                                                    "datasets.shapes.options.num_test=1"]) != md5
