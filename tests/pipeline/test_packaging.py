"""vidpred installed NON-editable works without its source checkout: the wheel carries ``pipelines``,
``components`` and the configs; installed into a fresh virtualenv (no pip of its own; the locked dependencies
are reused from this project's .venv through a plain path entry, so the editable install's ``.pth`` is not
read), ``vidpred compile --profile smoke`` runs from a directory outside the repository."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from vidpred.config import CONFIG_DIR, REPO_ROOT

SHIPPED = ("pyproject.toml", "README.md", "src", "configs", "components", "pipelines")


def _run(cmd, cwd, env=None, timeout=300):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of what the Dockerfile copies (building in place would leave build/ and
    *.egg-info in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    tree.mkdir()
    for name in SHIPPED:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, tree / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", tree],
         cwd=tmp)
    (found,) = (tmp / "dist").glob("vidpred-*.whl")
    return found


def test_wheel_ships_pipelines_components_and_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("pipelines/__init__.py", "pipelines/reproduce.py", "components/__init__.py",
                   "components/common.py", "vidpred/config.py"):
        assert module in names, module
    configs = {f"vidpred/configs/{p.relative_to(CONFIG_DIR).as_posix()}" for p in CONFIG_DIR.rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "src/"))]


@pytest.mark.slow
def test_installed_wheel_compiles_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel], cwd=tmp_path)
    # the locked dependencies from .venv, as a plain path entry (appended after the new venv's own site-packages)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path).stdout.strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = ("import sys, vidpred, pipelines, components, vidpred.evaluate.report as r; "
             "from vidpred.config import CONFIG_DIR, FROM_CHECKOUT, REPO_ROOT; "
             "print(vidpred.__file__, pipelines.__file__, components.__file__, CONFIG_DIR, FROM_CHECKOUT, REPO_ROOT, "
             "r.PAPER_NUMBERS_FILE.is_file(), sep='\\n'); "
             f"print(sorted({{'{REPO_ROOT}', '{REPO_ROOT / 'src'}'}} & set(sys.path)))")
    out = _run([py, "-c", probe], cwd=elsewhere, env=env).stdout.split("\n")
    for path in out[:4]:
        assert Path(path).is_relative_to(site), out  # every module and the configs come from the installed wheel
    assert out[4:8] == ["False", str(elsewhere), "True", "[]"], out  # not the checkout

    done = _run([venv / "bin" / "vidpred", "compile", "--profile", "smoke", "--only", "corrwise", "--out",
                 "smoke.yaml"], cwd=elsewhere, env=env)
    spec = yaml.safe_load((elsewhere / "smoke.yaml").read_text())
    tasks = set(spec["root"]["dag"]["tasks"])
    assert tasks == {"shapes-wide-prepare-data", "shapes-wide-validate-data", "corrwise-train-corrwise",
                     "evaluate-corrwise", "make-report"}, (tasks, done.stdout)
    images = {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}
    assert images == {"vidpred:0.1.0"}

    # a missing profile is still one clear error line, found in the packaged configs
    bad = subprocess.run([venv / "bin" / "vidpred", "compile", "--profile", "nope", "--out", "x.yaml"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error: unknown profile 'nope' (known: " in bad.stderr, bad.stderr
    assert "smoke" in bad.stderr.split("known: ")[1], bad.stderr
    assert not (elsewhere / "x.yaml").exists()
