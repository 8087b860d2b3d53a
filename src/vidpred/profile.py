"""Pipeline profiles: what one reproduction run does — its datasets and its tracks.

A profile is ``configs/<profile>/pipeline.yaml``; :func:`load_profile` reads it (with ``--set`` overrides),
checks every key before anything runs (one :class:`~vidpred.errors.VidpredError` naming the key) and keeps
only the tracks asked for (``--only``) and the datasets they use. The pipeline (``pipelines/reproduce.py``)
is built from the resulting :class:`Profile`.

Top-level keys::

    pipeline:   {name, description, base_image, env}       # env: variables for every task
    tracking:   {experiment}
    default_dataset: NAME                                  # the dataset `make data` versions as data/ (optional)
    datasets:   {NAME: DATASET, …}                         # each prepared and validated once per run
    tracks:     {NAME: TRACK, …}                           # one per paper experiment; independent of each other
    resources:  {default | TASK: {cpu_request, cpu_limit, memory_request, memory_limit}}
    gpu:        {stages: [TASK, …], type, count, toleration, node_selector}
    report:     {enabled}
    provenance: {dotted.key: "paper: … | code: … | assumed: …"}

DATASET (``vidpred data prepare`` arguments)::

    dataset: kth               # the source (vidpred.data.sources)
    source: null               # URL / folder; null: the source's default
    size: 64                   # N (square) or "HxW"
    crop: center               # center | aspect | full | bbox
    clip_len: 20
    options: {…}               # source options (splits, counts, seeds)
    validate: {clip_len, test_fraction, val_fraction}   # the GX gate: clip length (0: the store's), [low, high]
                               # share bounds for a published split outside the defaults (vidpred.data.validate)
    moso: {clip_len, lower, upper}   # MOSO decomposition of this dataset, needed by tracks with MOSO stages

TRACK::

    description: "…"
    enabled: true              # false: left out unless named in --only
    dataset: kth               # a key of datasets (not needed when every stage is dataset-free: toycar)
    stages:                    # any of these; a stage needs the one it builds on
      moso_vqvae:        {config, overrides}
      moso_transformer:  {config, overrides}       # needs moso_vqvae
      corrwise:          {config, overrides}
      toycar:            {loss, mode, curve, overrides}
      landmarks:         {config, overrides}
      landmark_dynamics: {config, overrides}       # needs landmarks
    evaluate:                  # one mapping or a list of them
      - {protocol, stage, name, baselines, overrides, device}
        # stage: default the track's last evaluated stage; name: default the track's name (names are unique
        # in a profile: they name the MLflow runs evaluate/<name>/<method> and the report's sections)

TASK names (``resources``, ``gpu.stages``) are the component kinds of :data:`TASK_KINDS`; ``evaluate`` covers
every evaluation. Track and dataset names are lower-case DNS labels (they become Kubernetes task names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from vidpred.errors import VidpredError

TASK_KINDS = ("prepare_data", "validate_data", "preprocess_moso", "train_moso_vqvae", "moso_tokens",
              "train_moso_transformer", "train_corrwise", "toycar_experiment", "train_landmarks",
              "train_landmark_dynamics", "evaluate", "make_report")
TOP_KEYS = ("pipeline", "tracking", "default_dataset", "datasets", "tracks", "resources", "gpu", "report",
            "provenance")
DATASET_KEYS = ("dataset", "source", "size", "crop", "clip_len", "options", "validate", "moso")
TRACK_KEYS = ("description", "enabled", "dataset", "stages", "evaluate")
EVALUATE_KEYS = ("protocol", "stage", "name", "baselines", "overrides", "device")
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
GPU_KEYS = ("stages", "type", "count", "toleration", "node_selector")
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


@dataclass(frozen=True)
class StageKind:
    keys: tuple[str, ...] = ("config", "overrides")
    needs: str | None = None  # the stage whose model this one builds on
    method: str | None = None  # the vidpred.evaluate method that scores its model
    reads_dataset: bool = True
    task: str = ""  # its task kind


STAGES = {
    "moso_vqvae": StageKind(task="train_moso_vqvae"),
    "moso_transformer": StageKind(needs="moso_vqvae", method="moso", task="train_moso_transformer"),
    "corrwise": StageKind(method="corrwise", task="train_corrwise"),
    "toycar": StageKind(keys=("loss", "mode", "curve", "overrides"), reads_dataset=False, task="toycar_experiment"),
    "landmarks": StageKind(method="landmarks", task="train_landmarks"),
    "landmark_dynamics": StageKind(needs="landmarks", method="landmarks", task="train_landmark_dynamics"),
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    dataset: str
    source: str | None
    size: str  # "N" or "HxW"
    hw: tuple[int, int]
    crop: str
    clip_len: int
    options: dict
    validate: dict = field(default_factory=dict)  # {clip_len, test_fraction, val_fraction}
    moso: dict | None = None  # {clip_len, lower, upper}


@dataclass(frozen=True)
class StageSpec:
    name: str
    config: str | None
    overrides: tuple[str, ...]
    settings: dict = field(default_factory=dict)  # toycar: loss, mode, curve


@dataclass(frozen=True)
class EvaluationSpec:
    name: str
    stage: str
    method: str
    protocol: str
    baselines: tuple[str, ...]
    overrides: tuple[str, ...]
    device: str


@dataclass(frozen=True)
class TrackSpec:
    name: str
    dataset: str | None
    description: str
    stages: dict[str, StageSpec]
    evaluations: tuple[EvaluationSpec, ...]


@dataclass
class Profile:
    profile: str
    cfg: Any  # the vidpred.config.Config it was read from (logged as the parent run's params)
    pipeline_name: str
    description: str
    base_image: str
    env: dict
    datasets: dict[str, DatasetSpec]  # only those the selected tracks use, in file order
    tracks: dict[str, TrackSpec]  # the selected tracks, in file order
    resources: dict
    gpu: dict
    report: bool
    default_dataset: str | None = None
    all_datasets: dict[str, DatasetSpec] = field(default_factory=dict)  # every dataset of the file

    def describe(self) -> str:
        lines = [f"profile {self.profile}: {len(self.datasets)} dataset(s), {len(self.tracks)} track(s)"]
        for d in self.datasets.values():
            lines.append(f"  dataset {d.name}: {d.dataset} {d.hw[0]}×{d.hw[1]} ({d.crop}), clips of {d.clip_len}")
        for t in self.tracks.values():
            evals = ", ".join(f"{e.name} ({e.protocol})" for e in t.evaluations) or "no evaluation"
            lines.append(f"  track {t.name} on {t.dataset or 'no dataset'}: {', '.join(t.stages)} → {evals}")
        return "\n".join(lines)


class _Checker:
    """One-line errors that name the profile file and the key."""

    def __init__(self, path):
        self.path = path

    def fail(self, key: str, message: str):
        raise VidpredError(f"profile {self.path}: '{key}' {message}")

    def mapping(self, key: str, value, allowed: Iterable[str] | None = None, optional: bool = False) -> dict:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {value!r}")
        if allowed is not None:
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                          f"is not a known key (known: {', '.join(allowed)})")
        return value

    def value(self, key: str, value, kind, minimum: float | None = None, optional: bool = False, default=None):
        if value is None and optional:
            return default
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and minimum is not None:
            ok = value >= minimum
        if not ok:
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            self.fail(key, f"must be {names}{f' ≥ {minimum}' if minimum is not None else ''}, got {value!r}")
        return value

    def strings(self, key: str, value, optional: bool = True) -> tuple[str, ...]:
        if value is None and optional:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            self.fail(key, f"must be a list of strings, got {value!r}")
        return tuple(str(v) for v in value)

    def name(self, key: str, value: str) -> str:
        if not isinstance(value, str) or not NAME.match(value):
            self.fail(key, "must be a lower-case name of letters, digits and '-' (at most 40; it becomes a "
                           f"Kubernetes task name), got {value!r}")
        return value


def _validate(c: _Checker, key: str, raw) -> dict:
    raw = c.mapping(key, raw, ("clip_len", "test_fraction", "val_fraction"), optional=True)
    out = {"clip_len": c.value(f"{key}.clip_len", raw.get("clip_len"), int, 0, True, 0)}
    for name in ("test_fraction", "val_fraction"):
        value = raw.get(name)
        if value is None:
            continue
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
              and 0 <= value[0] <= value[1] <= 1)
        if not ok:
            c.fail(f"{key}.{name}", f"must be [low, high] with 0 ≤ low ≤ high ≤ 1, got {value!r}")
        out[name] = [float(v) for v in value]
    return out


def _dataset(c: _Checker, name: str, raw) -> DatasetSpec:
    from vidpred.data.frames import CROP_MODES, parse_size

    key = f"datasets.{name}"
    c.name(key, name)
    raw = c.mapping(key, raw, DATASET_KEYS)
    size = raw.get("size")
    try:
        hw = parse_size(size)
    except VidpredError:
        c.fail(f"{key}.size", f"must be N or \"HxW\", got {size!r}")
    if min(hw) < 16:
        c.fail(f"{key}.size", f"must be at least 16 px per side, got {size!r}")
    crop = raw.get("crop", "center")
    if crop not in CROP_MODES:
        c.fail(f"{key}.crop", f"must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    moso = raw.get("moso")
    if moso is not None:
        moso = c.mapping(f"{key}.moso", moso, ("clip_len", "lower", "upper"))
        moso = {"clip_len": c.value(f"{key}.moso.clip_len", moso.get("clip_len", 0), int, 0),
                "lower": float(c.value(f"{key}.moso.lower", moso.get("lower"), (int, float), 0)),
                "upper": float(c.value(f"{key}.moso.upper", moso.get("upper"), (int, float), 0))}
    source = raw.get("source")
    return DatasetSpec(
        name=name, dataset=c.value(f"{key}.dataset", raw.get("dataset"), str),
        source=None if source in (None, "") else str(source),
        size=str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}", hw=hw, crop=crop,
        clip_len=c.value(f"{key}.clip_len", raw.get("clip_len"), int, 1),
        options=dict(c.mapping(f"{key}.options", raw.get("options"), optional=True)),
        validate=_validate(c, f"{key}.validate", raw.get("validate")),
        moso=moso)


def _stage(c: _Checker, key: str, name: str, raw) -> StageSpec:
    from vidpred.config import load_config

    kind = STAGES.get(name)
    if kind is None:
        c.fail(key, f"is not a stage (stages: {', '.join(STAGES)})")
    raw = c.mapping(key, raw, kind.keys)
    overrides = c.strings(f"{key}.overrides", raw.get("overrides"))
    config = None
    if "config" in kind.keys:
        config = c.value(f"{key}.config", raw.get("config"), str)
        try:  # a missing file or a bad override is an error now, not hours into the run
            load_config(config, list(overrides))
        except VidpredError as exc:
            c.fail(key, f"does not load: {exc}")
    settings = {k: raw[k] for k in kind.keys if k not in ("config", "overrides") and k in raw}
    return StageSpec(name, config, overrides, settings)


def _evaluations(c: _Checker, key: str, track: str, stages: dict, dataset: DatasetSpec | None, raw) -> list:
    from vidpred.evaluate.predictors import BASELINES
    from vidpred.evaluate.protocols import get_protocol, known_protocols

    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(raw, list) else key
        item = c.mapping(where, item, EVALUATE_KEYS)
        evaluated = [s for s in stages if STAGES[s].method]
        stage = item.get("stage", evaluated[-1] if evaluated else None)
        if stage not in stages or not STAGES[stage].method:
            c.fail(f"{where}.stage", f"must name an evaluated stage of the track ({', '.join(evaluated) or 'none'}), "
                                     f"got {stage!r}")
        overrides = c.strings(f"{where}.overrides", item.get("overrides"))
        protocol = c.value(f"{where}.protocol", item.get("protocol"), str)
        if protocol not in known_protocols():  # checked first: with overrides get_protocol would see a new, empty entry
            c.fail(f"{where}.protocol", f"names an unknown protocol {protocol!r} (known: {', '.join(known_protocols())})")
        try:
            spec = get_protocol(protocol, list(overrides))
        except VidpredError as exc:
            c.fail(f"{where}.protocol", f"does not load: {exc}")
        if spec.size is not None and dataset is not None and tuple(spec.size) != tuple(dataset.hw):
            c.fail(f"{where}.protocol", f"{protocol} scores {spec.size[0]}×{spec.size[1]} frames but dataset "
                                        f"{dataset.name} has {dataset.hw[0]}×{dataset.hw[1]}")
        baselines = c.strings(f"{where}.baselines", item.get("baselines"))
        bad = [b for b in baselines if b not in BASELINES]
        if bad:
            c.fail(f"{where}.baselines", f"has unknown {bad[0]!r} (known: {', '.join(BASELINES)})")
        name = c.name(f"{where}.name", item.get("name", track))
        out.append(EvaluationSpec(name=name, stage=stage, method=STAGES[stage].method, protocol=protocol,
                                  baselines=baselines, overrides=overrides,
                                  device=str(c.value(f"{where}.device", item.get("device"), str, optional=True,
                                                     default="auto"))))
    return out


def _track(c: _Checker, name: str, raw, datasets: dict[str, DatasetSpec]) -> TrackSpec:
    key = f"tracks.{name}"
    c.name(key, name)
    raw = c.mapping(key, raw, TRACK_KEYS)
    stages_raw = c.mapping(f"{key}.stages", raw.get("stages"))
    if not stages_raw:
        c.fail(f"{key}.stages", "must list at least one stage")
    stages = {s: _stage(c, f"{key}.stages.{s}", s, v) for s, v in stages_raw.items()}
    for s in stages:
        needs = STAGES[s].needs
        if needs and needs not in stages:
            c.fail(f"{key}.stages.{s}", f"builds on {needs}, which the track does not have")
    dataset_name = raw.get("dataset")
    dataset = None
    if any(STAGES[s].reads_dataset for s in stages):
        if dataset_name not in datasets:
            c.fail(f"{key}.dataset", f"must name one of the profile's datasets ({', '.join(datasets) or 'none'}), "
                                     f"got {dataset_name!r}")
        dataset = datasets[dataset_name]
        if "moso_vqvae" in stages and dataset.moso is None:
            c.fail(f"datasets.{dataset_name}.moso", f"is needed by track {name} (MOSO stages): "
                                                    "{clip_len, lower, upper}")
    elif dataset_name is not None:
        c.fail(f"{key}.dataset", "is set, but none of the track's stages reads a dataset")
    evaluations = _evaluations(c, f"{key}.evaluate", name, stages, dataset, raw["evaluate"]) \
        if raw.get("evaluate") is not None else []
    return TrackSpec(name=name, dataset=dataset.name if dataset else None,
                     description=str(raw.get("description", "")), stages=stages, evaluations=tuple(evaluations))


def _gpu(c: _Checker, raw) -> dict:
    gpu = c.mapping("gpu", raw, GPU_KEYS, optional=True)
    stages = c.strings("gpu.stages", gpu.get("stages"))
    bad = [s for s in stages if s not in TASK_KINDS]
    if bad:
        c.fail("gpu.stages", f"has unknown task {bad[0]!r} (tasks: {', '.join(TASK_KINDS)})")
    if stages:
        gpu_type, count = gpu.get("type"), gpu.get("count", 1)
        if not gpu_type or not isinstance(gpu_type, str):
            c.fail("gpu.type", f"must name an accelerator (e.g. nvidia.com/gpu), got {gpu_type!r}")
        c.value("gpu.count", count, int, 1)
    return dict(gpu)


def parse_profile(cfg, profile: str = "", only: Iterable[str] | None = None) -> Profile:
    """Check a profile config (a ``vidpred.config.Config``) and select its tracks (see the module doc)."""
    c = _Checker(cfg.path)
    values = c.mapping("", cfg.values, TOP_KEYS)
    pipeline = c.mapping("pipeline", values.get("pipeline"), ("name", "description", "base_image", "env"))
    c.value("pipeline.name", pipeline.get("name"), str)
    c.value("pipeline.base_image", pipeline.get("base_image"), str)
    env = c.mapping("pipeline.env", pipeline.get("env"), optional=True)
    c.mapping("tracking", values.get("tracking"), ("experiment",), optional=True)
    datasets_raw = c.mapping("datasets", values.get("datasets"))
    datasets = {name: _dataset(c, name, raw) for name, raw in datasets_raw.items()}
    tracks_raw = c.mapping("tracks", values.get("tracks"))
    if not tracks_raw:
        c.fail("tracks", "must list at least one track")
    tracks = {name: _track(c, name, raw, datasets) for name, raw in tracks_raw.items()}
    enabled = set()
    for name, raw in tracks_raw.items():
        flag = raw.get("enabled", True)
        if not isinstance(flag, bool):
            c.fail(f"tracks.{name}.enabled", f"must be true or false, got {flag!r}")
        if flag:
            enabled.add(name)
    names = [e.name for t in tracks.values() for e in t.evaluations]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        c.fail("tracks", f"evaluation name {dup[0]!r} is used twice (set evaluate.name)")
    default = values.get("default_dataset")
    if default is not None and default not in datasets:
        c.fail("default_dataset", f"must name one of the profile's datasets, got {default!r}")
    resources = c.mapping("resources", values.get("resources"), ("default",) + TASK_KINDS, optional=True)
    for task, section in resources.items():
        c.mapping(f"resources.{task}", section, RESOURCE_KEYS)
    gpu = _gpu(c, values.get("gpu"))
    report = c.mapping("report", values.get("report"), ("enabled",), optional=True)

    if only:
        wanted = [t.strip() for t in only if t.strip()]
        unknown = [t for t in wanted if t not in tracks]
        if unknown:
            raise VidpredError(f"--only: unknown track {unknown[0]!r} (tracks of profile {profile or cfg.path}: "
                               f"{', '.join(tracks)})")
        selected = {name: t for name, t in tracks.items() if name in wanted}
    else:
        selected = {name: t for name, t in tracks.items() if name in enabled}
    if not selected:
        c.fail("tracks", "has no enabled track (enable one, or name tracks with --only)")
    used = {t.dataset for t in selected.values() if t.dataset}
    return Profile(profile=profile, cfg=cfg, pipeline_name=pipeline["name"],
                   description=str(pipeline.get("description", "")), base_image=pipeline["base_image"],
                   env={str(k): str(v) for k, v in env.items()},
                   datasets={n: d for n, d in datasets.items() if n in used}, tracks=selected,
                   resources=resources, gpu=gpu, report=bool(report.get("enabled", True)), default_dataset=default,
                   all_datasets=datasets)


def load_profile(profile: str, overrides: Iterable[str] = (), only: Iterable[str] | None = None) -> Profile:
    """``configs/<profile>/pipeline.yaml`` with ``--set`` overrides, checked, tracks selected by ``only``."""
    from vidpred.config import profile_config

    return parse_profile(profile_config(profile, list(overrides)), profile, only)


def split_only(text: str | None) -> list[str] | None:
    """``--only a,b`` → ["a", "b"]; None/empty → None (every enabled track)."""
    if not text:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


__all__ = ["Profile", "DatasetSpec", "TrackSpec", "StageSpec", "EvaluationSpec", "STAGES", "TASK_KINDS",
           "parse_profile", "load_profile", "split_only"]
