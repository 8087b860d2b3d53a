"""Prepared datasets in a DVC remote on a real S3-compatible server: moto's standalone server (``moto_server``
from the ``moto`` PyPI package) run as a separate process on loopback, with IAM authentication switched on
after the setup requests, so wrong keys are refused as by MinIO. (No MinIO server binary is packaged for
Debian or PyPI here; moto's server speaks the same S3 REST API that DVC's s3 plugin uses.)

Checked: push → pull into a fresh directory gives the same bytes and md5; a spec already in the remote is
pulled, not prepared; scheduled refresh tells new / changed / unchanged data apart and says whether to train;
wrong or missing credentials, a missing bucket, a corrupted index or object → one error line and no output
left behind; the data component does all this end to end with MLflow tags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port
from vidpred.data import remote as R
from vidpred.data.prepare import prepare
from vidpred.data.versioning import dir_md5
from vidpred.errors import VidpredError

BUCKET = "vidpred-data"
TINY = {"num_videos": 2, "num_test": 1, "num_frames": 6, "num_objects": 1, "seed": 3}


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto_server on 127.0.0.1 with one IAM user allowed s3:*, and the bucket; yields (endpoint, key, secret)."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    # the first 4 requests (the setup below) run unauthenticated, every later one is checked against IAM
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                                 "-p", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        setup = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                     aws_secret_access_key="setup")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="pipeline")
        iam.put_user_policy(UserName="pipeline", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="pipeline")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    """Credentials in the environment (as a pod gets them from a Secret), a remote under a fresh prefix,
    and a boto3 client for looking at / tampering with the bucket."""
    import boto3

    endpoint, key, secret = s3_server
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", R.REMOTE_ENV, R.ENDPOINT_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a cloud metadata address for keys
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    prefix = request.node.name.replace("[", "-").replace("]", "")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                          aws_secret_access_key=secret)
    return R.Remote.resolve(f"s3://{BUCKET}/{prefix}", endpoint), client, prefix


def keys(client, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1:] for o in listed.get("Contents", []))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def writer(content: str):
    """A stand-in for prepare(): writes a small directory whose bytes depend on ``content``."""
    calls = []

    def prepare_fn(out: Path):
        calls.append(out)
        (out / "shards").mkdir(parents=True, exist_ok=True)
        (out / "store.json").write_text(json.dumps({"content": content}))
        (out / "shards" / "0.bin").write_bytes(content.encode() * 100)
    prepare_fn.calls = calls
    return prepare_fn


def never(out: Path):
    raise AssertionError("prepare must not run: the remote has this dataset")


# ------------------------------------------------------------------------------------------ no server needed

def test_remote_from_arguments_or_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(R.REMOTE_ENV, raising=False)
    monkeypatch.delenv(R.ENDPOINT_ENV, raising=False)
    assert R.Remote.resolve() is None
    monkeypatch.setenv(R.REMOTE_ENV, "s3://bucket/dvc/")
    monkeypatch.setenv(R.ENDPOINT_ENV, "http://minio:9000")
    remote = R.Remote.resolve()
    assert remote == R.Remote("s3://bucket/dvc", "http://minio:9000") and remote.is_s3
    assert remote.dvc_config() == {"url": "s3://bucket/dvc", "endpointurl": "http://minio:9000"}  # no keys
    assert R.Remote.resolve("s3://other/x", "https://s3.example:9000").url == "s3://other/x"  # arguments win
    monkeypatch.delenv(R.ENDPOINT_ENV)
    assert R.Remote.resolve(str(tmp_path / "rem")) == R.Remote(str(tmp_path / "rem"))
    for url, endpoint, message in [("gs://bucket/x", "", "only s3://"), ("s3://", "", "no bucket"),
                                   ("s3://b/x", "minio:9000", "not an http"), ("", "http://minio:9000", "without")]:
        monkeypatch.delenv(R.REMOTE_ENV, raising=False)
        with pytest.raises(VidpredError, match=message):
            R.Remote.resolve(url, endpoint)
    with pytest.raises(VidpredError, match="only applies to s3"):
        R.Remote.resolve(str(tmp_path), "http://minio:9000")


def test_spec_key_follows_the_settings_that_decide_the_bytes():
    key = R.spec_key("shapes", 32, 4, {"seed": 1, "num_videos": 2})
    assert key.startswith("shapes-") and len(key) == len("shapes-") + 16
    assert key == R.spec_key("shapes", "32", 4, {"num_videos": 2, "seed": 1})  # option order, int/str size
    others = {R.spec_key("shapes", 32, 4, {"seed": 2, "num_videos": 2}),
              R.spec_key("shapes", 32, 8, {"seed": 1, "num_videos": 2}),
              R.spec_key("shapes", "32x64", 4, {"seed": 1, "num_videos": 2}),
              R.spec_key("shapes", 32, 4, {"seed": 1, "num_videos": 2}, crop="full"),
              R.spec_key("folder", 32, 4, {"seed": 1, "num_videos": 2}, source="/data/videos")}
    assert key not in others and len(others) == 5
    assert R.spec_key("my videos/1", 64, 16).startswith("my_videos_1-")


def test_decide():
    assert R.decide("a.dir", "", "skip") == (True, True)  # nothing recorded: new data trains
    assert R.decide("b.dir", "a.dir", "skip") == (True, True)  # changed data trains
    assert R.decide("a.dir", "a.dir", "skip") == (False, False)
    assert R.decide("a.dir", "a.dir", "train") == (False, True)
    with pytest.raises(VidpredError, match="on_unchanged must be one of train, skip"):
        R.decide("a.dir", "a.dir", "maybe")


def test_directory_remote_and_no_remote(tmp_path):
    remote = R.Remote.resolve(str(tmp_path / "remote"))
    first = R.obtain(writer("one"), tmp_path / "a" / "store", "k", remote)
    assert first.action == "prepared" and first.pushed and first.md5 == dir_md5(tmp_path / "a" / "store")
    again = R.obtain(never, tmp_path / "b" / "store", "k", remote)
    assert again.action == "pulled" and again.md5 == first.md5 and again.train and not again.changed
    assert files(tmp_path / "b" / "store") == files(tmp_path / "a" / "store")
    assert (tmp_path / "remote" / "vidpred" / "datasets" / "k.dvc").is_file()
    assert list(tmp_path.glob("b/.*")) == []  # no scratch repository or temp dir left beside the output

    plain = R.obtain(writer("one"), tmp_path / "c" / "store", "k", None)
    assert (plain.action, plain.md5, plain.remote) == ("prepared", first.md5, "")
    assert "no DVC remote" in plain.describe()
    with pytest.raises(VidpredError, match="refresh compares .* none is configured"):
        R.obtain(writer("one"), tmp_path / "d" / "store", "k", None, refresh=True)
    with pytest.raises(VidpredError, match="on_unchanged"):
        R.obtain(writer("one"), tmp_path / "d" / "store", "k", remote, on_unchanged="never")
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------------------------------ against the S3 server

@pytest.mark.slow
def test_push_then_pull_into_a_fresh_directory_is_bit_identical(s3, tmp_path):
    remote, client, prefix = s3
    store = tmp_path / "prepared"
    prepare("shapes", store, size=32, clip_len=4, options=dict(TINY), cache_dir=tmp_path / "cache")
    key = R.spec_key("shapes", 32, 4, TINY)
    assert R.lookup(remote, key) == ""

    md5 = R.push(remote, key, store, spec={"dataset": "shapes"})
    assert md5 == dir_md5(store) and R.lookup(remote, key) == md5
    stored = keys(client, prefix)
    assert f"vidpred/datasets/{key}.dvc" in stored
    assert f"files/md5/{md5[:2]}/{md5[2:]}" in stored  # DVC's own layout: the .dir listing and every file
    assert len([k for k in stored if k.startswith("files/md5/")]) == len(files(store)) + 1

    fresh = tmp_path / "elsewhere" / "store"
    assert R.pull(remote, key, fresh) == md5
    assert dir_md5(fresh) == md5 and files(fresh) == files(store)

    state = R.obtain(never, tmp_path / "third" / "store", key, remote)  # present → pulled, not prepared
    assert (state.action, state.md5, state.changed, state.train) == ("pulled", md5, False, True)
    assert "pulled from the DVC remote" in state.describe()
    assert keys(client, prefix) == stored  # nothing pushed again
    with pytest.raises(VidpredError, match="no dataset recorded for shapes-"):
        R.pull(remote, R.spec_key("shapes", 32, 8, TINY), tmp_path / "none")


@pytest.mark.slow
def test_a_repository_with_an_s3_default_remote(s3, tmp_path, monkeypatch):
    """`vidpred data version`'s path (dvc add / push / pull in a DVC repository) with the S3 remote as default."""
    from vidpred.data import versioning

    remote, client, prefix = s3
    repo = tmp_path / "repo"
    repo.mkdir()
    versioning.init_repo(repo, remote.url, no_scm=True, endpoint_url=remote.endpoint_url)
    conf = (repo / ".dvc" / "config").read_text()
    assert f"url = {remote.url}" in conf and f"endpointurl = {remote.endpoint_url}" in conf
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in conf and "access_key" not in conf  # never stored
    writer("repo data")(repo / "data")
    md5 = versioning.track(repo / "data", repo)
    assert versioning.push(repo) == 3  # two files and the .dir listing
    assert f"files/md5/{md5[:2]}/{md5[2:]}" in keys(client, prefix)
    before = files(repo / "data")
    import shutil

    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    versioning.pull(repo)
    assert files(repo / "data") == before and versioning.dir_md5(repo / "data") == md5
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(VidpredError, match=f"^dvc in {repo}: Forbidden") as err:
        versioning.push(repo)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_scheduled_refresh_new_changed_unchanged(s3, tmp_path):
    remote, client, prefix = s3
    index = f"{prefix}/vidpred/datasets/k.dvc"

    new = R.obtain(writer("v1"), tmp_path / "r1" / "store", "k", remote, refresh=True, on_unchanged="skip")
    assert (new.action, new.previous_md5, new.changed, new.train, new.pushed) == ("prepared", "", True, True, True)
    assert "new data" in new.describe()
    written = client.get_object(Bucket=BUCKET, Key=index)["LastModified"]

    prep = writer("v1")
    same = R.obtain(prep, tmp_path / "r2" / "store", "k", remote, refresh=True, on_unchanged="skip")
    assert prep.calls  # refresh re-prepares from the source even though the remote has the key
    assert (same.md5, same.previous_md5, same.changed, same.train, same.pushed) == (new.md5, new.md5, False,
                                                                                   False, False)
    assert "unchanged" in same.describe() and "skipping training" in same.describe()
    assert client.get_object(Bucket=BUCKET, Key=index)["LastModified"] == written  # index untouched
    anyway = R.obtain(writer("v1"), tmp_path / "r3" / "store", "k", remote, refresh=True, on_unchanged="train")
    assert (anyway.changed, anyway.train) == (False, True) and "retraining anyway" in anyway.describe()

    changed = R.obtain(writer("v2"), tmp_path / "r4" / "store", "k", remote, refresh=True, on_unchanged="skip")
    assert changed.md5 != new.md5 and (changed.previous_md5, changed.changed, changed.train) == (new.md5, True, True)
    assert f"was {new.md5}" in changed.describe()
    import yaml

    entry = yaml.safe_load(client.get_object(Bucket=BUCKET, Key=index)["Body"].read())
    assert entry["outs"][0]["md5"] == changed.md5 and entry["meta"]["vidpred"]["previous_md5"] == new.md5
    # a run without refresh now gets the new data
    latest = R.obtain(never, tmp_path / "r5" / "store", "k", remote)
    assert latest.md5 == changed.md5 and files(tmp_path / "r5" / "store") == files(tmp_path / "r4" / "store")


@pytest.mark.slow
def test_wrong_or_missing_credentials_and_missing_bucket_fail_in_one_line(s3, s3_server, tmp_path, monkeypatch):
    remote, client, prefix = s3
    R.obtain(writer("x"), tmp_path / "ok" / "store", "k", remote)
    out = tmp_path / "run" / "store"

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(VidpredError) as err:
        R.obtain(never, out, "k", remote)
    assert "\n" not in str(err.value) and "check the credentials" in str(err.value)
    assert str(err.value).startswith(f"dvc remote s3://{BUCKET}/{prefix} (endpoint http://127.0.0.1:")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
    with pytest.raises(VidpredError, match="check the credentials") as err:
        R.obtain(writer("y"), out, "other", remote, refresh=True)
    assert "\n" not in str(err.value)

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(VidpredError, match="Unable to locate credentials.*check the credentials"):
        R.obtain(never, out, "k", remote)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # nothing left behind

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server[1])  # good keys, but a bucket that does not exist
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server[2])
    no_bucket = R.Remote.resolve("s3://no-such-bucket/dvc", remote.endpoint_url)
    with pytest.raises(VidpredError, match="pushing .* bucket does not exist .*; create the bucket first$") as err:
        R.obtain(writer("z"), out, "k", no_bucket)
    assert "\n" not in str(err.value)
    assert not out.exists() or list(out.iterdir()) == []
    assert "no-such-bucket" not in [b["Name"] for b in client.list_buckets()["Buckets"]]  # not created behind our back
    assert [k for k in keys(client, prefix) if k.startswith("vidpred/")] == ["vidpred/datasets/k.dvc"]


@pytest.mark.slow
def test_corrupted_remote_fails_and_leaves_no_partial_store(s3, tmp_path):
    remote, client, prefix = s3
    good = R.obtain(writer("data"), tmp_path / "a" / "store", "k", remote)
    objects = [k for k in keys(client, prefix) if k.startswith("files/md5/") and not k.endswith(".dir")]
    out = tmp_path / "b" / "store"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("what was there before")

    # a file object with other bytes: DVC copies it, the md5 check after the pull catches it
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/{objects[0]}", Body=b"bit rot")
    with pytest.raises(VidpredError, match=f"pulled data hashes to .* the index records {good.md5}: the remote "
                                           f"copy is corrupted") as err:
        R.obtain(never, out, "k", remote)
    assert "\n" not in str(err.value)
    assert files(out) == {"old.txt": b"what was there before"}  # left as it was
    assert sorted(p.name for p in out.parent.iterdir()) == ["store"]  # no temp dirs beside it

    client.delete_object(Bucket=BUCKET, Key=f"{prefix}/{objects[0]}")  # a missing object
    with pytest.raises(VidpredError, match="pulling data .* misses or cannot serve") as err:
        R.obtain(never, out, "k", remote)
    assert "\n" not in str(err.value) and files(out) == {"old.txt": b"what was there before"}

    client.put_object(Bucket=BUCKET, Key=f"{prefix}/vidpred/datasets/k.dvc", Body=b"outs: nonsense")
    with pytest.raises(VidpredError, match=r"index vidpred/datasets/k.dvc is corrupted \(no outs\[0\]\.md5\)"):
        R.obtain(never, out, "k", remote)


@pytest.mark.slow
def test_data_component_pulls_pushes_and_reports_refresh(s3, tmp_path, monkeypatch):
    """``prepare_data`` as a plain function on a folder of real videos, remote from the environment."""
    import mlflow
    from kfp import dsl

    from components import prepare_data
    from vidpred import tracking
    from vidpred.data.synthetic import moving_square, write_video

    remote, client, prefix = s3
    monkeypatch.setenv(R.REMOTE_ENV, remote.url)  # as the cluster's ConfigMap would set them
    monkeypatch.setenv(R.ENDPOINT_ENV, remote.endpoint_url)
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", moving_square(6, 48, 48, step=2 + i), fps=10, codec="mpeg4")
    args = dict(dataset="folder", size="32", clip_len=4, source=str(videos), tracking_uri=tracking.tracking_uri())

    def run(name, **kw):
        store = dsl.Dataset(name=name, uri=str(tmp_path / name / "store"))
        with tracking.pipeline_run("unit", {"tracking": {"experiment": "remote-unit"}}) as parent:
            out = prepare_data.python_func(store=store, parent_run_id=parent.info.run_id, **args, **kw)
        runs = mlflow.MlflowClient(tracking.tracking_uri()).search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        return out, store, runs[0].data.tags

    first, store1, tags = run("first")
    assert first.data_changed and first.train and tags["vidpred.data_action"] == "prepared"
    assert first.data_md5 == dir_md5(store1.path) == tags["vidpred.data_md5"]
    second, store2, tags = run("second")
    assert (second.data_md5, second.data_changed, second.train) == (first.data_md5, False, True)
    assert tags["vidpred.data_action"] == "pulled" and store2.metadata["data_action"] == "pulled"
    assert files(Path(store2.path)) == files(Path(store1.path))

    same, _, tags = run("same", refresh=True, on_unchanged="skip")
    assert (same.data_md5, same.data_changed, same.train) == (first.data_md5, False, False)
    assert tags["vidpred.train"] == "false" and tags["vidpred.data_previous_md5"] == first.data_md5

    write_video(videos / "v3.mp4", moving_square(6, 48, 48, step=5), fps=10, codec="mpeg4")  # new data
    new, store4, tags = run("new", refresh=True, on_unchanged="skip")
    assert new.data_md5 != first.data_md5 and new.data_changed and new.train
    assert R.lookup(remote, R.spec_key("folder", "32", 4, {}, source=str(videos))) == new.data_md5


def test_any_true_reads_booleans_and_their_text():
    from vidpred.data.remote import any_true

    assert any_true([False, "true"]) and any_true(["True"]) and not any_true(["false", False]) and not any_true([])
    with pytest.raises(VidpredError, match="expected true or false, got 'yes'"):
        any_true(["yes"])
