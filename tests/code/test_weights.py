"""The pretrained-weight registry: found / missing / hash mismatch / download, and the error text.

No real weights exist offline: every file here is a STAND-IN written by the test (random tensors saved with
torch.save under TORCH_HOME, or bytes crafted to carry a given sha256 prefix). None of them is the real network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from vidpred import weights
from vidpred.errors import VidpredError


@pytest.fixture
def torch_home(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", raising=False)
    monkeypatch.delenv("VIDPRED_OFFLINE", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _bytes_with_prefix(prefix: str) -> bytes:
    """Search a few payloads for one whose sha256 starts with `prefix` (4 hex digits → ~65k tries, < 0.2 s)."""
    for i in range(1 << 22):
        data = b"stand-in weights %d" % i
        if hashlib.sha256(data).hexdigest().startswith(prefix):
            return data
    raise AssertionError("no payload found")


def _register(monkeypatch, **fields) -> weights.WeightSpec:
    spec = weights.WeightSpec(**{"name": "toy", "sha256": None, "hash_prefix": None, "description": "test"} | fields)
    monkeypatch.setitem(weights.REGISTRY, "toy", spec)
    return spec


def test_registry_has_the_networks_we_need_with_torchvision_names():
    for name in ("alexnet", "vgg19", "vgg16", "raft_large", "raft_small", "i3d"):
        s = weights.spec(name)
        assert s.url.endswith(s.filename) or s.filename in s.url
    assert weights.spec("alexnet").filename == "alexnet-owt-7be5be79.pth"
    assert weights.spec("vgg19").filename == "vgg19-dcbb9e9d.pth"
    # torchvision convention: the hash prefix is the part of the file name after the last '-'
    for name in ("alexnet", "vgg16", "vgg19", "raft_large", "raft_small"):
        s = weights.spec(name)
        assert s.filename.rsplit("-", 1)[1].split(".")[0] == s.hash_prefix
    with pytest.raises(VidpredError, match="unknown pretrained weights 'nope'"):
        weights.spec("nope")


def test_cache_dir_follows_torch_home(torch_home):
    assert weights.cache_dir() == torch_home
    import torch.hub

    assert Path(torch.hub.get_dir()) / "checkpoints" == torch_home  # same place torchvision/lpips look


def test_found_file_with_matching_prefix_is_returned(torch_home, monkeypatch):
    spec = _register(monkeypatch, filename="toy-abcd.pth", url="https://example.invalid/toy-abcd.pth",
                     hash_prefix="abcd")
    torch_home.mkdir(parents=True)
    (torch_home / spec.filename).write_bytes(_bytes_with_prefix("abcd"))
    assert weights.weight_path("toy", download=False) == torch_home / spec.filename
    assert weights.weight_status("toy") == "verified"


def test_missing_offline_error_names_file_directory_and_url(torch_home, monkeypatch):
    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    with pytest.raises(VidpredError) as err:
        weights.weight_path("vgg19")
    msg = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in msg and str(torch_home) in msg
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in msg
    assert "\n" not in msg
    assert weights.weight_status("vgg19") == "missing"
    assert not torch_home.exists() or not any(torch_home.iterdir())  # nothing partial left behind


def test_hash_mismatch_is_refused_unless_stand_ins_are_allowed(torch_home):
    # STAND-IN: a random AlexNet-like tensor dict under the real name; its hash cannot match 7be5be79.
    torch_home.mkdir(parents=True)
    torch.save({"features.0.weight": torch.randn(64, 3, 11, 11)}, torch_home / "alexnet-owt-7be5be79.pth")
    with pytest.raises(VidpredError) as err:
        weights.weight_path("alexnet", download=False)
    msg = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in msg and "expected 7be5be79" in msg and "delete it" in msg
    assert weights.weight_status("alexnet") == "stand-in"
    with pytest.warns(UserWarning, match="STAND-IN"):
        state = weights.load_state_dict("alexnet", download=False, allow_stand_in=True)
    assert state["features.0.weight"].shape == (64, 3, 11, 11)


def test_download_through_project_downloader_then_cached(torch_home, monkeypatch, tmp_path):
    # STAND-IN source file served from a file:// URL (the downloader copies local URLs like remote ones)
    payload = _bytes_with_prefix("beef")
    src = tmp_path / "remote" / "toy-beef.pth"
    src.parent.mkdir()
    src.write_bytes(payload)
    spec = _register(monkeypatch, filename="toy-beef.pth", url=src.as_uri(), hash_prefix="beef")
    path = weights.weight_path("toy")
    assert path == torch_home / spec.filename and path.read_bytes() == payload
    src.unlink()  # second call must not need the source any more
    assert weights.weight_path("toy") == path


def test_downloaded_file_with_wrong_prefix_is_removed(torch_home, monkeypatch, tmp_path):
    src = tmp_path / "toy-0000.pth"
    src.write_bytes(_bytes_with_prefix("1234"))  # sha256 does not start with 0000
    _register(monkeypatch, filename="toy-0000.pth", url=src.as_uri(), hash_prefix="0000")
    with pytest.raises(VidpredError, match="does not match sha256 prefix 0000"):
        weights.weight_path("toy")
    assert not (torch_home / "toy-0000.pth").exists()


def test_failed_download_gives_one_clear_error(torch_home, monkeypatch, tmp_path):
    _register(monkeypatch, filename="toy.pth", url=(tmp_path / "absent.pth").as_uri())
    with pytest.raises(VidpredError) as err:
        weights.weight_path("toy")
    msg = str(err.value)
    assert msg.startswith("pretrained weights 'toy' could not be downloaded")
    assert f"put toy.pth into {torch_home}" in msg and "\n" not in msg


def test_unreadable_state_dict_is_reported(torch_home, monkeypatch):
    spec = _register(monkeypatch, filename="toy.pth", url="https://example.invalid/toy.pth")
    torch_home.mkdir(parents=True)
    (torch_home / spec.filename).write_bytes(b"this is not a torch file")
    with pytest.raises(VidpredError, match="not a readable torch state dict"):
        weights.load_state_dict("toy", download=False)
    assert weights.weight_status("toy") == "unverified"
