"""Pipeline profiles (vidpred.profile): the datasets + tracks schema is checked before anything runs — every
mistake is one VidpredError line naming the key — and --only selects tracks and the datasets they use.
Nothing is compiled or run here."""

import pytest
import yaml

from vidpred.config import CONFIG_DIR, load_config
from vidpred.errors import VidpredError
from vidpred.profile import TASK_KINDS, load_profile, parse_profile, split_only

SHIPPED = sorted(p.parent.name for p in CONFIG_DIR.glob("*/pipeline.yaml"))


def one_line_error(overrides=(), only=None, profile="smoke") -> str:
    with pytest.raises(VidpredError) as err:
        load_profile(profile, list(overrides), only)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def write_profile(tmp_path, values: dict):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return load_config(path)


MINIMAL = {
    "pipeline": {"name": "probe", "base_image": "vidpred:0.1.0"},
    "datasets": {"small": {"dataset": "shapes", "size": 64, "clip_len": 8}},
    "tracks": {"toy": {"stages": {"toycar": {"loss": "l1", "mode": "corrwise"}}}},
}


# ------------------------------------------------------------------------------------------ shipped profiles

@pytest.mark.parametrize("profile", SHIPPED)
def test_every_shipped_profile_loads(profile):
    spec = load_profile(profile)
    assert spec.tracks and spec.profile == profile
    assert set(spec.datasets) == {t.dataset for t in spec.tracks.values() if t.dataset}
    assert set(spec.gpu.get("stages") or []) <= set(TASK_KINDS)


def test_shipped_profiles_include_smoke_cpu_and_paper():
    assert {"smoke", "cpu", "paper"} <= set(SHIPPED)


def test_cpu_profile_has_the_paper_profiles_tracks_and_evaluations():
    paper, cpu = load_profile("paper"), load_profile("cpu")
    assert list(cpu.tracks) == list(paper.tracks)
    for name, track in paper.tracks.items():
        mine = cpu.tracks[name]
        assert set(mine.stages) == set(track.stages), name
        assert [(e.name, e.stage) for e in mine.evaluations] == [(e.name, e.stage) for e in track.evaluations], name
        assert (mine.dataset is None) == (track.dataset is None), name
    assert all(e.protocol.startswith("shapes-") for t in cpu.tracks.values() for e in t.evaluations)
    assert all(d.dataset in ("shapes", "toycar") for d in cpu.datasets.values())  # made on this machine
    assert not cpu.gpu.get("stages")


def test_paper_profile_datasets_tracks_and_protocols():
    spec = load_profile("paper")
    assert {n: (d.dataset, d.hw, d.crop) for n, d in spec.datasets.items()} == {
        "kth": ("kth", (64, 64), "center"),
        "bair": ("bair", (64, 64), "center"),
        "kitti-64": ("kitti", (64, 64), "center"),
        "kitti-256x512": ("kitti", (256, 512), "aspect"),
        "bbcpose": ("bbcpose", (128, 128), "bbox"),
    }
    tracks = {n: (t.dataset, [e.protocol for e in t.evaluations]) for n, t in spec.tracks.items()}
    assert tracks == {
        "moso-kth": ("kth", ["moso-kth"]),
        "moso-bair": ("bair", ["moso-bair"]),
        "moso-kitti": ("kitti-64", ["moso-kitti"]),
        "corrwise-kitti-l1-pixelwise": ("kitti-256x512", ["corrwise-kitti"]),
        "corrwise-kitti-l1-corrwise": ("kitti-256x512", ["corrwise-kitti"]),
        "corrwise-kitti-l1p-pixelwise": ("kitti-256x512", ["corrwise-kitti"]),
        "corrwise-kitti-l1p-corrwise": ("kitti-256x512", ["corrwise-kitti"]),
        "toycar-pixelwise": (None, []),
        "toycar-corrwise": (None, []),
        "landmarks-bbcpose": ("bbcpose", ["landmarks-bbcpose-keypoints", "landmark-dynamics-bbcpose"]),
        "landmarks-kth": ("kth", ["landmark-dynamics-kth"]),
    }
    # KTH: persons 1–15 train, 16 val (carved out, assumed), 17–25 test (MOSO §4)
    assert spec.datasets["kth"].options == {"train_persons": "1-15", "val_persons": "16", "test_persons": "17-25"}
    assert spec.datasets["kth"].moso == {"clip_len": 20, "lower": 0.1, "upper": 0.9}
    # the four CorrWise Tab. 1 rows differ only in their loss keys
    losses = {n: spec.tracks[n].stages["corrwise"].overrides for n in spec.tracks if n.startswith("corrwise-")}
    assert losses == {
        "corrwise-kitti-l1-pixelwise": ("loss.base=l1", "loss.mode=pixelwise"),
        "corrwise-kitti-l1-corrwise": ("loss.base=l1", "loss.mode=corrwise"),
        "corrwise-kitti-l1p-pixelwise": ("loss.base=l1+perceptual", "loss.mode=pixelwise"),
        "corrwise-kitti-l1p-corrwise": ("loss.base=l1+perceptual", "loss.mode=corrwise",
                                        "loss.pixelwise_warmup_epochs=1"),
    }
    assert {spec.tracks[n].stages["corrwise"].config for n in losses} == {"paper/corrwise-kitti-tab1"}
    assert spec.tracks["toycar-pixelwise"].stages["toycar"].settings == {"loss": "l1", "mode": "pixelwise"}
    assert spec.tracks["toycar-corrwise"].stages["toycar"].settings == {"loss": "l1", "mode": "corrwise"}
    assert set(spec.gpu["stages"]) == {"train_moso_vqvae", "moso_tokens", "train_moso_transformer", "train_corrwise",
                                       "train_landmarks", "train_landmark_dynamics", "evaluate"}


def test_profile_provenance_covers_every_number():
    from vidpred.config import missing_provenance

    for profile in SHIPPED:
        cfg = load_config(CONFIG_DIR / profile / "pipeline.yaml")
        assert missing_provenance(cfg) == [], profile


# ------------------------------------------------------------------------------------------ --only

def test_only_selects_tracks_and_just_their_datasets():
    spec = load_profile("paper", only=["moso-kth"])
    assert list(spec.tracks) == ["moso-kth"] and list(spec.datasets) == ["kth"]
    assert set(spec.all_datasets) == {"kth", "bair", "kitti-64", "kitti-256x512", "bbcpose"}
    spec = load_profile("paper", only=split_only("landmarks-kth, moso-kth"))
    assert list(spec.tracks) == ["moso-kth", "landmarks-kth"]  # file order
    assert list(spec.datasets) == ["kth"]  # shared by both tracks, prepared once
    spec = load_profile("smoke", only=["toycar"])
    assert list(spec.tracks) == ["toycar"] and spec.datasets == {}


def test_disabled_tracks_run_only_when_named():
    assert "toycar" not in load_profile("smoke", ["tracks.toycar.enabled=false"]).tracks
    assert list(load_profile("smoke", ["tracks.toycar.enabled=false"], only=["toycar"]).tracks) == ["toycar"]


def test_split_only():
    assert split_only(None) is None and split_only("") is None
    assert split_only("a, b,,c") == ["a", "b", "c"]


# ------------------------------------------------------------------------------------------ one-line errors

@pytest.mark.parametrize("overrides, needle", [
    # the pre-redesign single-dataset schema
    (["data={dataset: kth, size: 64}"], "'data' is not a known key"),
    (["stages={corrwise: {config: smoke/corrwise}}"], "'stages' is not a known key"),
    # datasets
    (["datasets.shapes.sise=64"], "'datasets.shapes.sise' is not a known key"),
    (["datasets.shapes.size=big"], "'datasets.shapes.size' must be N or \"HxW\", got 'big'"),
    (["datasets.shapes.size=64x"], "'datasets.shapes.size' must be N or \"HxW\""),
    (["datasets.shapes.size=8"], "'datasets.shapes.size' must be at least 16 px per side"),
    (["datasets.shapes.crop=squash"], "'datasets.shapes.crop' must be one of center, aspect, full, bbox"),
    (["datasets.shapes.clip_len=0"], "'datasets.shapes.clip_len' must be int ≥ 1"),
    (["datasets.shapes.moso.lower=[1]"], "'datasets.shapes.moso.lower'"),
    (["datasets.shapes.moso.middle=0.5"], "'datasets.shapes.moso.middle' is not a known key"),
    (["datasets.shapes.validate.test_fraction=[0.5, 0.1]"], "'datasets.shapes.validate.test_fraction' must be [low, high]"),
    (["datasets.shapes.validate.val_fraction=0.1"], "'datasets.shapes.validate.val_fraction' must be [low, high]"),
    (["datasets.shapes.validate.clip_len=-1"], "'datasets.shapes.validate.clip_len' must be int ≥ 0"),
    (["datasets.shapes.validate.strict=true"], "'datasets.shapes.validate.strict' is not a known key"),
    (["datasets.Shapes_2={dataset: shapes, size: 64, clip_len: 8}"], "'datasets.Shapes_2' must be a lower-case name"),
    (["default_dataset=nope"], "'default_dataset' must name one of the profile's datasets"),
    # tracks
    (["tracks.corrwise.dataset=nope"], "'tracks.corrwise.dataset' must name one of the profile's datasets"),
    (["tracks.corrwise.datset=shapes"], "'tracks.corrwise.datset' is not a known key"),
    (["tracks.toycar.dataset=shapes"], "'tracks.toycar.dataset' is set, but none of the track's stages reads a dataset"),
    (["tracks.moso.stages={moso_transformer: {config: smoke/moso-transformer}}"],
     "'tracks.moso.stages.moso_transformer' builds on moso_vqvae, which the track does not have"),
    (["tracks.landmarks.stages={landmark_dynamics: {config: smoke/landmark_dynamics}}"],
     "'tracks.landmarks.stages.landmark_dynamics' builds on landmarks"),
    (["tracks.corrwise.stages={}"], "'tracks.corrwise.stages' must list at least one stage"),
    (["tracks.corrwise.stages.diffusion={config: smoke/corrwise}"], "'tracks.corrwise.stages.diffusion' is not a stage"),
    (["tracks.corrwise.stages.corrwise.config=smoke/nope"],
     "'tracks.corrwise.stages.corrwise' does not load: config file not found: smoke/nope"),
    (["tracks.corrwise.stages.corrwise.confg=smoke/corrwise"], "'tracks.corrwise.stages.corrwise.confg' is not a known key"),
    (["tracks.toycar.stages.toycar.config=smoke/corrwise"], "'tracks.toycar.stages.toycar.config' is not a known key"),
    (["tracks.moso.dataset=shapes-wide"], "'datasets.shapes-wide.moso' is needed by track moso"),
    (["tracks.My_Track={stages: {toycar: {loss: l1}}}"], "'tracks.My_Track' must be a lower-case name"),
    (["tracks.toycar.enabled=maybe"], "'tracks.toycar.enabled' must be true or false"),
    # evaluations
    (["tracks.corrwise.evaluate.protocol=nope"], "'tracks.corrwise.evaluate.protocol' names an unknown protocol 'nope'"),
    (["tracks.corrwise.evaluate={protocol: nope}"], "unknown protocol 'nope' (known: corrwise-kitti, "),
    (["tracks.corrwise.evaluate.overrides=[sampels=2]"], "'tracks.corrwise.evaluate.protocol' does not load: protocol shapes-corrwise: unknown setting(s) sampels"),
    (["tracks.corrwise.evaluate={protocol: corrwise-kitti}"],
     "'tracks.corrwise.evaluate.protocol' corrwise-kitti scores 256×512 frames but dataset shapes-wide has 32×64"),
    (["tracks.moso.evaluate={protocol: moso-kth}", "datasets.shapes.size=32"],
     "moso-kth scores 64×64 frames but dataset shapes has 32×32"),
    (["tracks.corrwise.evaluate={protocol: shapes-corrwise, baselines: [mean]}"],
     "'tracks.corrwise.evaluate.baselines' has unknown 'mean'"),
    (["tracks.corrwise.evaluate={protocol: shapes-corrwise, protocl: x}"], "'tracks.corrwise.evaluate.protocl' is not a known key"),
    (["tracks.toycar.evaluate={protocol: shapes-corrwise}"], "'tracks.toycar.evaluate.stage' must name an evaluated stage"),
    (["tracks.corrwise.evaluate.name=moso"], "'tracks' evaluation name 'moso' is used twice"),
    (["tracks.landmarks.evaluate=[{name: lm, stage: landmarks, protocol: shapes-landmarks-keypoints}, "
      "{name: lm, stage: landmark_dynamics, protocol: shapes-landmark-dynamics}]"], "evaluation name 'lm' is used twice"),
    (["tracks.corrwise.evaluate.name=Corr_Wise"], "'tracks.corrwise.evaluate.name' must be a lower-case name"),
    # resources, gpu, report
    (["resources.default.gpus=1"], "'resources.default.gpus' is not a known key"),
    (["resources.train_everything={cpu_request: '1'}"], "'resources.train_everything' is not a known key"),
    (["gpu.stages=[train_moso_vqvae, evaluate_moso-kth]"], "'gpu.stages' has unknown task 'evaluate_moso-kth'"),
    (["gpu.stages=[train_corrwise]"], "'gpu.type' must name an accelerator"),
    (["gpu.stages=[train_corrwise]", "gpu.type=nvidia.com/gpu", "gpu.count=0"], "'gpu.count' must be int ≥ 1"),
    (["report.enable=false"], "'report.enable' is not a known key"),
    (["data_refresh.on_unchanged=never"], "'data_refresh.on_unchanged' must be train or skip, got 'never'"),
    (["data_refresh.when=always"], "'data_refresh.when' is not a known key"),
    (["pipeline.name=null"], "'pipeline.name' must be str"),
])
def test_profile_mistakes_are_one_line_errors_naming_the_key(overrides, needle):
    message = one_line_error(overrides)
    assert "configs/smoke/pipeline.yaml" in message  # the file …
    assert needle in message, message  # … and the key


def test_only_with_an_unknown_track_names_the_tracks():
    message = one_line_error(only=["moso", "nope"])
    assert "--only: unknown track 'nope'" in message
    assert all(t in message for t in ("moso", "corrwise", "toycar", "landmarks"))


def test_a_profile_without_enabled_tracks_is_refused():
    overrides = [f"tracks.{t}.enabled=false" for t in ("moso", "corrwise", "toycar", "landmarks")]
    assert "'tracks' has no enabled track" in one_line_error(overrides)


def test_the_old_single_dataset_schema_is_refused(tmp_path):
    old = {  # the pre-redesign layout of configs/<profile>/pipeline.yaml
        "pipeline": {"name": "vidpred-reproduce", "base_image": "vidpred:0.1.0", "env": {}},
        "data": {"dataset": "kth", "size": 64, "clip_len": 20},
        "validate": {"clip_len": 0},
        "preprocess": {"clip_len": 20, "lower": 0.1, "upper": 0.9},
        "stages": {"corrwise": {"config": "paper/corrwise-kitti-tab1"}},
    }
    with pytest.raises(VidpredError) as err:
        parse_profile(write_profile(tmp_path, old))
    assert "'data' is not a known key" in str(err.value) and "\n" not in str(err.value)
    assert str(tmp_path / "pipeline.yaml") in str(err.value)


def test_a_minimal_profile_from_a_file(tmp_path):
    spec = parse_profile(write_profile(tmp_path, MINIMAL), "probe")
    assert list(spec.tracks) == ["toy"] and spec.datasets == {}  # toycar reads no dataset
    assert set(spec.all_datasets) == {"small"} and spec.all_datasets["small"].size == "64"
    assert spec.report is True and spec.gpu == {} and spec.resources == {}


@pytest.mark.parametrize("size, hw, text", [(64, (64, 64), "64"), ("48", (48, 48), "48"),
                                            ("32x64", (32, 64), "32x64"), ("64x64", (64, 64), "64")])
def test_dataset_sizes(tmp_path, size, hw, text):
    values = {**MINIMAL, "datasets": {"small": {"dataset": "shapes", "size": size, "clip_len": 8}}}
    d = parse_profile(write_profile(tmp_path, values)).all_datasets["small"]
    assert (d.hw, d.size, d.crop) == (hw, text, "center")


@pytest.mark.parametrize("track, needle", [
    ({"stages": {"corrwise": {"config": "smoke/corrwise"}}}, "'tracks.toy.dataset' must name one of the profile's datasets"),
    ({"dataset": "small", "stages": {"moso_vqvae": {"config": "smoke/moso-vqvae"}}}, "'datasets.small.moso' is needed by track toy"),
    ({"dataset": "small", "stages": {"corrwise": {"config": "smoke/corrwise", "overrides": "train.max_steps=1"}}},
     "'tracks.toy.stages.corrwise.overrides' must be a list of strings"),
    ({"dataset": "small", "stages": {"corrwise": {"config": "smoke/corrwise"}},
      "evaluate": {"protocol": "shapes-corrwise", "stage": "landmarks"}}, "'tracks.toy.evaluate.stage' must name"),
    ({"dataset": "small", "stages": {"corrwise": {"config": "smoke/corrwise"}},
      "evaluate": [{"protocol": "shapes-corrwise"}, {"protocol": "nope"}]}, "'tracks.toy.evaluate[1].protocol' names an unknown protocol 'nope'"),
])
def test_track_mistakes_in_a_file(tmp_path, track, needle):
    with pytest.raises(VidpredError) as err:
        parse_profile(write_profile(tmp_path, {**MINIMAL, "tracks": {"toy": track}}))
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_typo_in_a_stage_override_is_caught_when_the_profile_loads():
    # checked against the stage's own schema before anything runs, not hours later when the stage starts
    message = one_line_error(['tracks.corrwise.stages.corrwise.overrides=["train.lrr=0.1"]'])
    assert "'tracks.corrwise.stages.corrwise' does not load" in message
    assert "'train.lrr'" in message and "did you mean 'train.lr'?" in message
