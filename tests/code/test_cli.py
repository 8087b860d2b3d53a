"""The command line: --help everywhere, one clear error line and a non-zero exit on bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

VIDPRED = [sys.executable, "-m", "vidpred.cli"]


def run(*args, **kw):
    return subprocess.run([*VIDPRED, *args], capture_output=True, text=True, timeout=120, **kw)


def all_commands():
    import typer.main

    from vidpred.cli import app

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        out.append(path)
        if getattr(cmd, "commands", None):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(root, [])
    return out


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "vidpred")
def test_help_on_every_command(path):
    from typer.testing import CliRunner

    from vidpred.cli import app

    res = CliRunner().invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


def test_contract_commands_exist():
    names = {" ".join(p) for p in all_commands()}
    for required in ["data prepare", "data validate", "preprocess moso", "run", "compile",
                     "train corrwise", "train moso-vqvae", "train moso-transformer", "train landmarks",
                     "train landmark-dynamics", "experiment toycar"]:
        assert required in names


def test_unknown_dataset_is_one_line_error(tmp_path):
    res = run("data", "prepare", "--dataset", "nope", "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: unknown dataset 'nope'")
    assert not (tmp_path / "o").exists()


def test_missing_config_file_is_one_line_error(tmp_path):
    res = run("train", "corrwise", "--config", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: config file not found")
    assert len(res.stderr.strip().splitlines()) == 1


def test_weights_list_reports_missing_and_standin(tmp_path):
    """`vidpred weights list` reads the same cache the code uses ($TORCH_HOME/hub/checkpoints)."""
    import os

    env = {**os.environ, "TORCH_HOME": str(tmp_path)}
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    from vidpred.weights import REGISTRY

    # a stand-in file (not the real AlexNet) under the expected name: its hash prefix cannot match
    (ckpt / REGISTRY["alexnet"].filename).write_bytes(b"stand-in, not real weights")
    res = run("weights", "list", env=env)
    assert res.returncode == 0, res.stderr
    rows = {ln.split()[0]: ln.split()[1] for ln in res.stdout.splitlines()[1:]}
    assert rows["alexnet"] == "stand-in"
    assert rows["vgg19"] == "missing"
    offline = run("weights", "fetch", "vgg19", env={**env, "VIDPRED_OFFLINE": "1"})
    assert offline.returncode == 2
    assert REGISTRY["vgg19"].filename in offline.stderr and str(ckpt) in offline.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path):
    missing = run("data", "prepare", "--dataset", "shapes")
    assert missing.returncode == 2
    assert "Missing option '--out'" in missing.stderr and "Traceback" not in missing.stderr
    unknown = run("no-such-command")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


def test_failed_validation_exits_1(tmp_path):
    """A store whose only video is constant fails the not_constant gate: exit 1, report beside the store."""
    import numpy as np

    from vidpred.data.store import StoreWriter

    store = tmp_path / "s"
    with StoreWriter(store, {"dataset": "test", "size": 16, "clip_len": 2, "options": {}}) as w:
        w.add("flat", "train", np.full((4, 16, 16, 3), 7, np.uint8), 10.0, "test")
    res = run("data", "validate", str(store))
    assert res.returncode == 1, res.stderr
    assert "FAIL not_constant" in res.stdout
    assert (tmp_path / "s.validation" / "validation.json").is_file()
