"""The newcomer path (issue 12, item 5): on the default data exactly as `make data` prepares it, every standalone
command the smoke configs' comments document runs as written — through the real `vidpred` CLI, from the project
directory — and writes its model; every `--config NAME` in README.md resolves to a config file.

The commands are read from the configs' comments (so the documentation and this test cannot drift apart); the
only thing added is `--set train.max_steps=2` on training commands (step counts, never data paths)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vidpred.config import CONFIG_DIR, REPO_ROOT, resolve_config_path
from vidpred.data import versioning

# in dependency order: landmark dynamics needs the landmarks model, the transformer the MOSO tokens
SMOKE_CONFIGS = ["corrwise", "landmarks", "landmark_dynamics", "moso-vqvae", "moso-transformer"]
MODEL_FILE = {"corrwise": "predictor.pt", "landmarks": "landmarks.pt", "landmark-dynamics": "dynamics.pt",
              "moso-vqvae": "moso_vqvae.pt", "moso-transformer": "moso_transformer.pt"}
SHRINK = ["--set", "train.max_steps=2"]  # step counts only


STANDALONE = ("train", "preprocess", "moso")  # not `data version` (= make data: the fixture; it writes the
#                                            repository's own data/) nor `run` (the whole pipeline)


def documented_commands(config: Path) -> list[str]:
    """Standalone `vidpred train|preprocess|moso …` commands in a config's comment lines: `backticked` ones and
    indented `#   vidpred …` lines."""
    found = []
    for line in config.read_text().splitlines():
        if not line.lstrip().startswith("#"):
            continue
        text = line.lstrip()[1:].strip()
        if text.startswith("vidpred "):
            found.append(text)
        found += re.findall(r"`(vidpred [^`]+)`", text)
    return [c for c in found if shlex.split(c)[1] in STANDALONE]


def vidpred_exe() -> str:
    exe = Path(sys.executable).with_name("vidpred")
    return str(exe) if exe.exists() else "vidpred"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A temp project directory whose data/ is prepared by the function `vidpred data version` uses."""
    proj = tmp_path_factory.mktemp("newcomer")
    md5 = versioning.prepare_default(proj / "data")
    assert md5 == versioning.recorded_md5(REPO_ROOT / "data.dvc")  # the same bytes a fresh clone's `make data` gives
    return proj


@pytest.mark.slow
def test_documented_smoke_commands_run_on_the_default_data(project):
    commands: list[str] = []
    for name in SMOKE_CONFIGS:
        for cmd in documented_commands(CONFIG_DIR / "smoke" / f"{name}.yaml"):
            if cmd not in commands:
                commands.append(cmd)
    trained = {shlex.split(c)[2] for c in commands if shlex.split(c)[1] == "train"}
    assert trained == set(MODEL_FILE), f"smoke configs' comments document training of {sorted(trained)}"

    timings = {}
    for cmd in commands:
        argv = shlex.split(cmd)
        args = argv[1:] + (SHRINK if argv[1] == "train" else [])
        start = time.monotonic()
        proc = subprocess.run([vidpred_exe(), *args], cwd=project, capture_output=True, text=True,
                              env={**os.environ, "VIDPRED_OFFLINE": "1"}, timeout=300)
        timings[cmd] = round(time.monotonic() - start, 1)
        assert proc.returncode == 0, f"`{cmd}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        if argv[1] == "train":
            config = yaml.safe_load(resolve_config_path(argv[argv.index("--config") + 1]).read_text())
            model = project / config["train"]["out_dir"] / MODEL_FILE[argv[2]]
            assert model.is_file(), f"`{cmd}` wrote no {model.relative_to(project)}"
    print(timings)
    # nothing was written into the DVC-tracked default data
    assert versioning.dir_md5(project / "data") == versioning.recorded_md5(REPO_ROOT / "data.dvc")


def test_every_readme_config_resolves():
    readme = (REPO_ROOT / "README.md").read_text()
    names = set(re.findall(r"--config\s+`?([\w./-]+)", readme))
    names |= set(re.findall(r"\(or `((?:smoke|cpu|paper)/[\w.-]+)`\)", readme))  # "…--config X (or `Y`)"
    names = {n for n in names if not n.isupper()}  # placeholders such as FILE
    assert names, "README.md names no config"
    for name in sorted(names):
        assert resolve_config_path(name).is_file(), f"README's --config {name} does not resolve"
