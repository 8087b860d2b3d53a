"""Config loading, overrides, provenance, strict keys (each stage's schema) — and checks that every shipped config
states its sources and loads through its stage's schema."""

import ast
import importlib
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from vidpred.config import CONFIG_DIR, REQUIRED, Schema, load_config, missing_provenance, profile_config, suggest
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
    with pytest.raises(VidpredError, match="did you mean 'width'"):
        dataclass_from_dict(Settings, {"widht": 16}, "model")


# ----------------------------------------------------------------------------------------------------
# Strict keys: every stage's schema (vidpred.config.Schema) rejects keys it does not read


STAGES = {  # stage module → (a shipped config, a typo in --set, the key it should suggest)
    "vidpred.train.corrwise": ("smoke/corrwise", "train.lrr=0.1", "train.lr"),
    "vidpred.train.moso_vqvae": ("smoke/moso-vqvae", "optim.lrr=0.1", "optim.lr"),
    "vidpred.train.moso_transformer": ("smoke/moso-transformer", "sample.stpes=2", "sample.steps"),
    "vidpred.train.landmarks": ("smoke/landmarks", "augment.huee=0.1", "augment.hue"),
    "vidpred.train.landmark_dynamics": ("smoke/landmark_dynamics", "dynamics.hiden=8", "dynamics.hidden"),
}
CONFIG_STAGE = [  # shipped config file name prefix → its stage module (longest prefix first)
    ("landmark_dynamics", "vidpred.train.landmark_dynamics"), ("landmarks", "vidpred.train.landmarks"),
    ("moso-transformer", "vidpred.train.moso_transformer"), ("moso-vqvae", "vidpred.train.moso_vqvae"),
    ("corrwise", "vidpred.train.corrwise"),
]
NOT_STAGE_CONFIGS = {"pipeline.yaml", "protocols.yaml", "paper_numbers.yaml"}


def schema_of(module: str) -> Schema:
    return importlib.import_module(module).CONFIG_SCHEMA


@pytest.mark.parametrize("module", sorted(STAGES))
def test_each_stage_rejects_a_typo_in_set_naming_the_closest_key(module, tmp_path):
    config, typo, near = STAGES[module]
    out = tmp_path / "out"
    with pytest.raises(VidpredError) as err:  # main() itself: the check comes before any data is read
        importlib.import_module(module).main(config, [f"train.out_dir={out}", typo])
    msg = str(err.value)
    key = typo.split("=")[0]
    assert f"unknown key '{key}'" in msg and f"did you mean '{near}'?" in msg and "from --set" in msg
    assert "\n" not in msg and not out.exists()
    load_config(config, [f"{near}={typo.split('=')[1]}"], schema=schema_of(module))  # the right key loads


def test_toycar_settings_are_strict_too():
    from vidpred.experiments import toycar

    assert toycar._settings(["epochs=3"])["epochs"] == 3
    with pytest.raises(VidpredError, match=r"unknown key 'experiment.toycar.epohcs'.*did you mean "
                                           r"'experiment.toycar.epochs'\?"):
        toycar._settings(["epohcs=3"])
    with pytest.raises(VidpredError, match="experiment.toycar.train"):  # a training key given to the toy
        toycar._settings(["train.lr=0.1"])


def test_unknown_key_in_a_yaml_file_and_in_nested_sections(tmp_path):
    schema = schema_of("vidpred.train.corrwise")
    base = CONFIG_DIR / "smoke" / "corrwise.yaml"
    p = write(tmp_path / "mine.yaml", {"base": str(base), "train": {"lrr": 0.1}})
    with pytest.raises(VidpredError) as err:
        load_config(p, schema=schema)
    msg = str(err.value)
    assert "mine.yaml" in msg and "'train.lrr'" in msg and "did you mean 'train.lr'?" in msg
    assert "from --set" not in msg  # it came from the file
    load_config(p, schema=None)  # without a schema nothing is checked (profiles, protocols, tests)
    # a misspelt section: the whole key is named, the suggestion is the right section's key
    p = write(tmp_path / "sect.yaml", {"base": str(base), "trian": {"lr": 0.1}})
    with pytest.raises(VidpredError, match=r"unknown key 'trian.lr' \(did you mean 'train.lr'\?\)"):
        load_config(p, schema=schema)
    # a right key in the wrong section
    with pytest.raises(VidpredError, match=r"'optim.lr' \(from --set; did you mean 'train.lr'\?\)"):
        load_config(base, ["optim.lr=0.1"], schema=schema)
    # every unknown key in one line
    with pytest.raises(VidpredError, match=r"unknown keys 'model.ngff' .*'train.lrr' "):
        load_config(base, ["train.lrr=1", "model.ngff=4"], schema=schema)
    # no close key: the known keys of that section are listed instead
    with pytest.raises(VidpredError, match=r"unknown key 'train.zzzzz' \(from --set\); known under train: "
                                           r"batch_size, betas, "):
        load_config(base, ["train.zzzzz=1"], schema=schema)
    with pytest.raises(VidpredError, match="'train' must be a section"):
        load_config(base, ["train=3"], schema=schema)
    with pytest.raises(VidpredError, match="'provenance.x'.*not settings"):
        load_config(base, ["provenance.x=1"], schema=schema)
    # a declared key's value is taken whole (PerceptualLoss arguments), common keys are accepted everywhere
    cfg = load_config(base, ["loss.perceptual={trunk_weights: null, anything: 1}", "tracking.experiment=x",
                             "loss.base={l1: 0.5, perceptual: 0.5}"], schema=schema)
    assert cfg["loss.perceptual.anything"] == 1 and cfg["tracking.experiment"] == "x"


def test_required_keys_and_partial_base_files(tmp_path):
    schema = Schema("demo", {"data.store": REQUIRED, "optim.lr": 0.1})
    p = write(tmp_path / "a.yaml", {"optim": {"lr": 0.2}})
    with pytest.raises(VidpredError, match=r"\(stage demo\): required key 'data.store' is missing"):
        load_config(p, schema=schema)
    schema.check(load_config(p), partial=True)  # a base file others complete
    assert load_config(p, ["data.store=x"], schema=schema)["data.store"] == "x"
    with pytest.raises(ValueError, match="both a key and a section"):
        Schema("bad", {"loss": 1, "loss.l1": 1})


def test_a_config_object_is_checked_and_copied():
    schema = schema_of("vidpred.train.corrwise")
    cfg = load_config("smoke/corrwise")
    again = load_config(cfg, ["train.lr=0.5"], schema=schema)
    assert again["train.lr"] == 0.5 and cfg["train.lr"] == pytest.approx(1e-4)
    with pytest.raises(VidpredError, match="train.lrr"):
        load_config(cfg, ["train.lrr=0.5"], schema=schema)


def test_loop_keys_come_from_loop_settings():
    """A new LoopSettings field is a known train.* key of every stage at once; the two the stage sets are not."""
    from vidpred.train.loop import LoopSettings

    names = {f.name for f in fields(LoopSettings)} - {"out_dir", "stage"}
    assert {"max_steps", "ckpt_every", "grad_clip", "seed"} <= names
    for module in STAGES:
        schema = schema_of(module)
        assert {f"train.{n}" for n in names} <= set(schema.keys), module
        with pytest.raises(VidpredError, match="'train.stage'"):
            schema.check(load_config(STAGES[module][0], ["train.stage=x"]))


def test_suggest():
    known = ["train.lr", "train.log_every", "model.ngf", "train", "model", "data.store", "data"]
    assert suggest("train.lrr", known) == "train.lr"
    assert suggest("trian.lr", known) == "train.lr"
    assert suggest("optim.lr", known) == "train.lr"
    assert suggest("model.zzz", known) is None
    assert suggest("dta", known) == "data"


COMPUTED = object()


def _reads(module) -> dict[str, list]:
    """Dotted key → the defaults of every ``cfg.get("key", default)`` / ``cfg["key"]`` in a module's source."""
    tree = ast.parse(Path(module.__file__).read_text())
    found: dict[str, list] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "cfg" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            default = node.args[1] if len(node.args) > 1 else None
            try:
                value = ast.literal_eval(default) if default is not None else REQUIRED
            except ValueError:
                value = COMPUTED  # e.g. the token set's VQVAE: not compared
            found.setdefault(node.args[0].value, []).append(value)
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "cfg"
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            found.setdefault(node.slice.value, []).append(REQUIRED)
    return found


@pytest.mark.parametrize("module", sorted(STAGES) + ["vidpred.train.moso_tokens"])
def test_schema_covers_every_key_the_stage_reads_with_the_same_default(module):
    mod = importlib.import_module(module)
    schema = mod.CONFIG_SCHEMA
    reads = _reads(mod)
    assert reads, "no cfg reads found: the scan is broken"
    for key, defaults in reads.items():
        assert key in schema.keys or key in schema.sections, f"{module} reads '{key}' but its schema lacks it"
        if key not in schema.keys:
            continue
        declared = schema.keys[key]
        for d in defaults:
            if d is REQUIRED or d is COMPUTED:
                continue  # cfg["k"] / a computed default: nothing to compare
            norm = (lambda v: list(v) if isinstance(v, tuple) else v)
            assert norm(d) == norm(declared), f"{module}: '{key}' defaults to {d!r} in code, {declared!r} in schema"


SHIPPED_STAGE_CONFIGS = [p for p in SHIPPED if p.name not in NOT_STAGE_CONFIGS]


@pytest.mark.parametrize("path", SHIPPED_STAGE_CONFIGS,
                         ids=[str(p.relative_to(CONFIG_DIR)) for p in SHIPPED_STAGE_CONFIGS])
def test_every_shipped_stage_config_loads_through_its_stage_schema(path):
    module = next((m for prefix, m in CONFIG_STAGE if path.stem.startswith(prefix)), None)
    assert module, f"{path}: which stage reads it? add it to CONFIG_STAGE"
    schema = schema_of(module)
    if path.stem.endswith("-base"):  # completed by the files that name it as base
        schema.check(load_config(path), partial=True)
    else:
        load_config(path, schema=schema)
    if path.stem == "corrwise":  # smoke/corrwise also holds the toy experiment's settings
        load_config(path, schema=schema_of("vidpred.experiments.toycar"))


def test_cli_unknown_key_fails_before_training_with_one_error_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "vidpred.cli", "train", "corrwise", "--config", "smoke/corrwise",
                           "--set", f"train.out_dir={out}", "--set", "data.store=/nonexistent/store",
                           "--set", "train.lrr=0.1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    # the key check comes first: the missing store would be the error otherwise
    assert len(errors) == 1 and "train.lrr" in errors[0] and "did you mean 'train.lr'?" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_profile_typo_gets_a_suggestion():
    from vidpred.profile import load_profile

    with pytest.raises(VidpredError, match=r"'tracks.moso.stagez' is not a known key \(did you mean "
                                           r"'tracks.moso.stages'\?"):
        load_profile("smoke", ["tracks.moso.stagez=1"])
    with pytest.raises(VidpredError, match=r"'datasets.shapes.sise' is not a known key \(did you mean "
                                           r"'datasets.shapes.size'\?"):
        load_profile("smoke", ["datasets.shapes.sise=64"])


def test_protocol_overrides_are_strict():
    from vidpred.evaluate.protocols import get_protocol, known_protocols

    assert get_protocol("shapes-moso", ["clips.count=8"]).clip_count == 8
    with pytest.raises(VidpredError, match=r"unknown setting\(s\) clips.cuont \(did you mean 'clips.count'\?"):
        get_protocol("shapes-moso", ["clips.cuont=8"])
    with pytest.raises(VidpredError, match=r"fvd.frame \(did you mean 'fvd.frames'\?"):
        get_protocol("shapes-moso", ["fvd.frame=8"])
    with pytest.raises(VidpredError, match=r"samles \(did you mean 'samples'\?"):
        get_protocol("shapes-moso", ["samles=2"])
    # an unknown protocol with overrides is still "unknown protocol", not a half-made entry
    with pytest.raises(VidpredError, match=r"unknown protocol 'shapes-mosoo' \(did you mean 'shapes-moso'\?"):
        get_protocol("shapes-mosoo", ["clips.count=8"])
    for name in known_protocols():  # every shipped protocol is still valid
        get_protocol(name)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_profile_stage_config_with_its_overrides_passes_the_stage_schema(profile):
    """What each stage of each track will see (before the component adds its paths): no unknown key."""
    from vidpred.experiments.toycar import _settings
    from vidpred.profile import load_profile

    spec = load_profile(profile, only=list(profile_config(profile).get("tracks")))
    for track in spec.tracks.values():
        for name, stage in track.stages.items():
            if stage.config is None:  # toycar: overrides of experiment.toycar
                _settings(list(stage.overrides))
            else:
                load_config(stage.config, list(stage.overrides), schema=schema_of(f"vidpred.train.{name}"))
